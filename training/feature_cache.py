"""A bounded store of backbone features per image, for instant learning.

The features an FCN's head reads (pool3, pool4 and fc7 for FCN-8s) are kept in
fp16 on the CPU, least recently used first out, within a byte budget. An
optional disk folder takes what memory evicts (and keeps it across restarts);
it has a byte budget of its own and drops its oldest files first. Every entry
records the backbone it came from (a fingerprint), so features of an older
backbone are never mixed with a newer head.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from .atomic import atomic_save

DEFAULT_MEMORY_BYTES = 1 << 30  # 1 GiB: about 270 images of 500x375 at FCN-8s / VGG16
DEFAULT_DISK_BYTES = 8 << 30


@dataclass(frozen=True)
class ImageFeatures:
    """One image's skip-tap features (``1 x C x h x w`` fp16 each) and its input size."""

    taps: dict[str, Tensor]
    size: tuple[int, int]  # H, W of the network input these came from
    backbone: str  # fingerprint of the backbone weights

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.taps.values())

    @staticmethod
    def from_taps(taps: dict[str, Tensor], size: tuple[int, int], backbone: str) -> ImageFeatures:
        """Detach, move to CPU and halve: the cache's storage form."""
        stored = {k: v.detach().to("cpu", torch.float16).contiguous() for k, v in taps.items()}
        return ImageFeatures(stored, (int(size[0]), int(size[1])), backbone)


class FeatureCache:
    """LRU map ``key -> ImageFeatures`` bounded by ``memory_bytes`` (and ``disk_bytes``)."""

    def __init__(self, memory_bytes: int = DEFAULT_MEMORY_BYTES, disk_dir: str | Path | None = None,
                 disk_bytes: int = DEFAULT_DISK_BYTES) -> None:
        if memory_bytes < 0 or disk_bytes < 0:
            raise ValueError("cache budgets must not be negative")
        self.memory_bytes = int(memory_bytes)
        self.disk_dir = Path(disk_dir) if disk_dir is not None else None
        self.disk_bytes = int(disk_bytes)
        self._mem: OrderedDict[str, ImageFeatures] = OrderedDict()
        self._used = 0

    # -- memory ---------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._mem)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._mem))

    @property
    def used_bytes(self) -> int:
        return self._used

    def put(self, key: str, feats: ImageFeatures) -> None:
        self.discard(key, disk=False)
        if feats.nbytes > self.memory_bytes:
            self._to_disk(key, feats)  # too big to hold at all: disk only, if there is one
            return
        self._mem[key] = feats
        self._used += feats.nbytes
        while self._used > self.memory_bytes:
            old_key, old = self._mem.popitem(last=False)
            self._used -= old.nbytes
            self._to_disk(old_key, old)

    def get(self, key: str, backbone: str | None = None) -> ImageFeatures | None:
        """The features of ``key`` (from memory, else disk), or None; with ``backbone``
        only features of that backbone count (others are dropped as stale)."""
        feats = self._mem.get(key)
        if feats is not None:
            self._mem.move_to_end(key)
        else:
            feats = self._from_disk(key)
            if feats is not None:
                self.put(key, feats)
        if feats is not None and backbone is not None and feats.backbone != backbone:
            self.discard(key)
            return None
        return feats

    def discard(self, key: str, disk: bool = True) -> None:
        old = self._mem.pop(key, None)
        if old is not None:
            self._used -= old.nbytes
        if disk and self.disk_dir is not None:
            self._disk_path(key).unlink(missing_ok=True)

    def clear(self) -> None:
        """Forget everything (after the backbone changed), on disk too."""
        for key in list(self._mem):
            self.discard(key)
        if self.disk_dir is not None and self.disk_dir.is_dir():
            for f in self.disk_dir.glob("*.pt"):
                f.unlink(missing_ok=True)

    # -- disk -------------------------------------------------------------------------
    def _disk_path(self, key: str) -> Path:
        assert self.disk_dir is not None
        return self.disk_dir / (hashlib.sha1(key.encode("utf-8")).hexdigest() + ".pt")

    def _to_disk(self, key: str, feats: ImageFeatures) -> None:
        if self.disk_dir is None or feats.nbytes > self.disk_bytes:
            return
        try:
            self.disk_dir.mkdir(parents=True, exist_ok=True)
            record = {"key": key, "size": list(feats.size), "backbone": feats.backbone, **{
                f"tap.{k}": v for k, v in feats.taps.items()}}
            atomic_save(self._disk_path(key), lambda f: torch.save(record, f))
            self._trim_disk()
        except OSError:
            pass  # a cache: a full or read-only disk only costs a recomputation later

    def _from_disk(self, key: str) -> ImageFeatures | None:
        if self.disk_dir is None:
            return None
        path = self._disk_path(key)
        if not path.is_file():
            return None
        try:
            rec = torch.load(path, map_location="cpu", weights_only=True)
            if rec.get("key") != key:
                return None
            taps = {k[4:]: v for k, v in rec.items() if k.startswith("tap.")}
            return ImageFeatures(taps, (int(rec["size"][0]), int(rec["size"][1])), str(rec["backbone"]))
        except Exception:  # unreadable cache file: recompute rather than fail
            path.unlink(missing_ok=True)
            return None

    def _trim_disk(self) -> None:
        assert self.disk_dir is not None
        files = sorted(self.disk_dir.glob("*.pt"), key=lambda p: p.stat().st_mtime)
        total = sum(p.stat().st_size for p in files)
        for p in files:
            if total <= self.disk_bytes:
                break
            total -= p.stat().st_size
            with contextlib.suppress(OSError):
                os.unlink(p)

