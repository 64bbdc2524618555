"""``fcn-predict WEIGHTS IMAGES_OR_DIRS... --out DIR``: a palette PNG per image.

Output: ``DIR/<stem>.png`` (VOC palette PNG, same size as the image) and, with
``--uncertainty``, ``DIR/uncertainty/<stem>.png`` (8-bit, 255 = most uncertain).
Decoding the next batch and encoding the last one's PNGs run in worker threads
while the model computes, so the device is not left waiting on file I/O.
"""

from __future__ import annotations

import argparse
import errno
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from .atomic import atomic_save
from .errors import DataError, FCNError
from .images import is_image_path, list_images, read_image
from .progress import EtaEstimator, Reporter


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("weights", type=Path,
                   help="FCN Studio checkpoint or pytorch-fcn/Caffe FCN state dict")
    p.add_argument("inputs", nargs="+", type=Path, help="image files and/or folders of images")
    p.add_argument("--out", type=Path, required=True, help="folder for the label PNGs")
    p.add_argument("--uncertainty", choices=("entropy", "margin"),
                   help="also write DIR/uncertainty/<stem>.png (8-bit, 255 = most uncertain)")
    p.add_argument("--batch-size", type=int, default=4,
                   help="images per forward pass (equal sizes batch together)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    p.add_argument("--amp", choices=("none", "fp16", "bf16"), default="none",
                   help="mixed precision (CUDA only)")
    p.add_argument("--classes", type=Path, help="class names file (one per line) for an imported state dict")
    p.add_argument("--at-once", action="store_true",
                   help="the imported state dict is an at-once FCN-8s (pool4 x0.01, pool3 x0.0001)")
    p.add_argument("--tile-size", type=int, default=1024,
                   help="images larger than this on a side are predicted in overlapping tiles")
    p.add_argument("--huge", choices=("tile", "downscale"), default="tile",
                   help="how to handle images larger than --tile-size")
    p.add_argument("--overwrite-labels", action="store_true",
                   help="allow --out to be a dataset's own SegmentationClass folder (the "
                        "predictions then replace its ground-truth labels)")
    p.add_argument("--json", action="store_true", help="JSON events on stdout, one per line")


class OutputError(FCNError):
    """``--out`` cannot be written (unwritable, full disk) or must not be written to."""


def _write_problem(exc: OSError) -> str:
    if exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        return f"the disk is full ({exc.strerror})"
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"the folder is not writable ({exc.strerror})"
    return exc.strerror or str(exc)


def check_out(out: Path, allow_labels: bool) -> None:
    """Refuse a dataset's ground-truth folder as --out unless asked for explicitly."""
    from .voc import IMAGES_DIR, LABELS_DIR

    resolved = out.expanduser().resolve()
    if (resolved.name == LABELS_DIR and (resolved.parent / IMAGES_DIR).is_dir()
            and not allow_labels):
        raise DataError(out, f"this is the ground-truth label folder of the dataset "
                             f"{resolved.parent}; predictions written there would replace its "
                             "labels. Choose another --out, or pass --overwrite-labels if that "
                             "is really what you want")


def _make_out(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{out}: cannot create the output folder "
                          f"({_write_problem(exc)}); no labels were written") from None
    if not out.is_dir():
        raise OutputError(f"{out}: not a folder; no labels were written")


def _written_text(written: list[str]) -> str:
    if not written:
        return "no labels were written"
    shown = ", ".join(written[:10]) + (f" and {len(written) - 10} more" if len(written) > 10 else "")
    return f"{len(written)} label(s) were written before it stopped: {shown}"


def collect_images(inputs: Sequence[Path]) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Expand folders; return (images, skipped with reasons). Missing paths are errors."""
    images: list[Path] = []
    skipped: list[tuple[Path, str]] = []
    for path in inputs:
        if path.is_dir():
            found, skip = list_images(path)
            images.extend(found)
            skipped.extend(skip)
        elif path.is_file():
            if is_image_path(path):
                images.append(path)
            else:
                skipped.append((path, f"not an image type ({path.suffix or 'no extension'})"))
        else:
            raise DataError(path, "no such file or folder")
    seen: dict[str, Path] = {}
    for img in images:
        other = seen.setdefault(img.stem, img)
        if other != img:
            raise DataError(img, f"has the same name stem as {other}; their outputs would collide")
    return images, skipped


def _read(path: Path) -> tuple[Path, np.ndarray | None, str | None]:
    try:
        return path, read_image(path), None
    except DataError as exc:
        return path, None, exc.problem


def _batches(paths: list[Path], size: int, pool: ThreadPoolExecutor) -> Iterator[list]:
    """Yield batches of decoded images while the next batch decodes in the background."""
    chunks = [paths[i : i + size] for i in range(0, len(paths), size)]
    pending: list[Future] | None = None
    for k in range(len(chunks) + 1):
        nxt = [pool.submit(_read, p) for p in chunks[k]] if k < len(chunks) else None
        if pending is not None:
            yield [f.result() for f in pending]
        pending = nxt


def _write_outputs(out: Path, stem: str, label: np.ndarray, palette: list[int],
                   unc: np.ndarray | None) -> None:
    from .predict import uncertainty_to_uint8

    img = Image.fromarray(label, mode="P")
    img.putpalette(palette)
    atomic_save(out / f"{stem}.png", lambda f: img.save(f, format="PNG"))
    if unc is not None:
        u = Image.fromarray(uncertainty_to_uint8(unc), mode="L")
        atomic_save(out / "uncertainty" / f"{stem}.png", lambda f: u.save(f, format="PNG"))


def _collect_writes(out: Path, writes: list[tuple[str, Future]], written: list[str],
                    failures: dict[str, tuple[Path, OSError]], wait: bool) -> None:
    """Move finished writes into ``written`` or ``failures`` (by stem)."""
    for stem, future in list(writes):
        if not wait and not future.done():
            continue
        writes.remove((stem, future))
        try:
            future.result()
        except OSError as exc:
            # The label's own name: the error itself names the temp file beside it.
            failures[stem] = (out / f"{stem}.png", exc)
        else:
            written.append(stem)


def run(args: argparse.Namespace, reporter: Reporter) -> int:
    from .id_masks import read_class_list
    from .predict import Predictor

    check_out(args.out, args.overwrite_labels)
    images, skipped = collect_images(args.inputs)
    for path, reason in skipped:
        reporter.log(f"skipped {path}: {reason}")
    if not images:
        raise DataError(None, "no images found in " + ", ".join(str(p) for p in args.inputs))
    classes = read_class_list(args.classes) if args.classes else None
    predictor = Predictor.load(
        args.weights, args.device, classes=classes, at_once=args.at_once,
        amp=None if args.amp == "none" else args.amp, tile_size=args.tile_size, huge=args.huge,
    )
    palette = predictor.palette.reshape(-1).tolist()
    _make_out(args.out)
    reporter.event("start", total=len(images), device=str(predictor.device),
                   classes=predictor.class_names, skipped=[str(p) for p, _ in skipped])
    failed: list[tuple[Path, str]] = []
    written: list[str] = []
    failures: dict[str, tuple[Path, OSError]] = {}
    done = 0
    eta = EtaEstimator()
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=2) as pool:
        writes: list[tuple[str, Future]] = []
        for batch in _batches(images, max(1, args.batch_size), pool):
            ok = [(p, a) for p, a, err in batch if a is not None]
            failed += [(p, err) for p, a, err in batch if a is None]
            preds = predictor.predict_batch([a for _, a in ok], uncertainty=args.uncertainty)
            for (path, _), pred in zip(ok, preds, strict=True):
                writes.append((path.stem, pool.submit(_write_outputs, args.out, path.stem,
                                                      pred.label, palette, pred.uncertainty)))
            done += len(batch)
            remaining = eta.update(done, len(images))
            reporter.event("progress", iteration=done, total=len(images), eta=remaining)
            reporter.bar(done, len(images), "predict", eta=remaining)
            _collect_writes(args.out, writes, written, failures, wait=False)
            if failures:
                break  # a full disk or a lost folder fails every later write too
        _collect_writes(args.out, writes, written, failures, wait=True)
    order = {path.stem: i for i, path in enumerate(images)}
    written.sort(key=order.__getitem__)
    elapsed = time.perf_counter() - t0
    for path, reason in failed:
        reporter.error(f"{path}: {reason}", file=str(path))
    if failures:
        path, exc = failures[min(failures, key=order.__getitem__)]  # the first in input order
        reporter.error(f"{path}: cannot write: {_write_problem(exc)}; {_written_text(written)}",
                       file=str(path), written=written)
        reporter.event("done", written=len(written), failed=len(failed), seconds=elapsed,
                       images_per_s=None, out=str(args.out), stopped=True)
        return 4
    n_ok = len(images) - len(failed)
    reporter.event("done", written=n_ok, failed=len(failed), seconds=elapsed,
                   images_per_s=n_ok / elapsed if elapsed > 0 else None, out=str(args.out))
    reporter.log(f"wrote {n_ok} label(s) to {args.out} in {elapsed:.1f} s"
                 + (f"; {len(failed)} image(s) failed" if failed else ""))
    return 1 if failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fcn-predict", description=__doc__.splitlines()[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    reporter = Reporter(args.json)
    try:
        return run(args, reporter)
    except OutputError as exc:
        reporter.error(str(exc))
        return 4
    except FCNError as exc:
        reporter.error(str(exc))
        return 2
