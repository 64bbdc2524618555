"""Choosing the torch device: CUDA, then MPS, then CPU, or what the user asked for."""

from __future__ import annotations

import torch

from .errors import FCNError

DEVICE_CHOICES: tuple[str, ...] = ("auto", "cpu", "cuda", "mps")


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def resolve_device(name: str = "auto") -> torch.device:
    """Turn ``auto``/``cpu``/``cuda``/``cuda:N``/``mps`` into a usable torch.device.

    Asking for a device that is not there is an error, not a silent fallback to
    the CPU: a person who asked for the GPU wants to know it is not being used.
    """
    name = (name or "auto").strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise FCNError(f"device {name!r} requested but CUDA is not available on this machine")
        dev = torch.device(name)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise FCNError(
                f"device {name!r} requested but only {torch.cuda.device_count()} CUDA device(s) exist"
            )
        return dev
    if name == "mps":
        if not _mps_available():
            raise FCNError("device 'mps' requested but Apple MPS is not available on this machine")
        return torch.device("mps")
    raise FCNError(f"unknown device {name!r}; use one of {', '.join(DEVICE_CHOICES)} or cuda:N")


def describe_device(device: torch.device) -> str:
    """A short human description, e.g. 'cuda:0 (NVIDIA H100)' or 'cpu (2 threads)'."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    if device.type == "cpu":
        return f"cpu ({torch.get_num_threads()} threads)"
    return str(device)


def autocast_dtype(device: torch.device, amp: str | None) -> torch.dtype | None:
    """The autocast dtype for ``--amp`` (``fp16``/``bf16``/``none``) on this device.

    Mixed precision is a CUDA feature here; on CPU and MPS it is refused rather
    than silently ignored.
    """
    if amp in (None, "", "none", "fp32"):
        return None
    if amp not in ("fp16", "bf16"):
        raise FCNError(f"unknown --amp mode {amp!r}; use fp16, bf16 or none")
    if device.type != "cuda":
        raise FCNError(f"--amp {amp} needs a CUDA device; this run uses {device.type}")
    return torch.float16 if amp == "fp16" else torch.bfloat16
