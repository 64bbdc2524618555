"""Lazy image thumbnails (background loads, LRU cache) and the badge that marks state.

The image list asks ``ThumbnailCache.get(path)`` only for the rows it paints. A
miss schedules one load and returns None (the list shows a placeholder); when the
load finishes, ``thumbnailReady`` names the path and the list repaints that row.
So opening a 10,000-image project reads no image file at all, and scrolling reads
only the rows that come into view.

Threading: the worker makes a ``QImage`` (safe off the GUI thread); the cache
turns it into a ``QIcon``/``QPixmap`` in the GUI thread, where pixmaps must live.
A failed load is a result too (the reason, shown in a tooltip), never an
exception in the GUI. Cancel is a flag the job checks before it starts, so a fast
scroll does not leave hundreds of off-screen loads queued ahead of visible ones.
"""

from __future__ import annotations

import warnings
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from PIL import Image, ImageOps, UnidentifiedImageError
from PySide6.QtCore import (
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    QRect,
    Qt,
    QThread,
    QThreadPool,
    Signal,
)
from PySide6.QtGui import QColor, QFont, QIcon, QImage, QPainter, QPixmap
from PySide6.QtWidgets import QApplication, QStyle, QStyledItemDelegate, QStyleOptionViewItem

from training.images import MAX_PIXELS

THUMB_SIZE: Final[int] = 96
"""Longest side of a thumbnail in pixels."""
CACHE_CAPACITY: Final[int] = 1000
"""Thumbnails kept (about 27 kB each at 96 px, so about 27 MB)."""
MAX_PENDING: Final[int] = 512
"""Queued loads beyond this cancel the oldest: those rows have scrolled away."""

Loader = Callable[[Path, int], QImage]


class ThumbnailError(Exception):
    """A thumbnail cannot be made; the message is the reason shown to a person."""


@dataclass(frozen=True)
class Thumbnail:
    """A finished load: an icon, or the reason there is none."""

    icon: QIcon | None
    error: str | None = None


def load_thumbnail(path: Path, size: int = THUMB_SIZE) -> QImage:
    """Decode ``path`` into a QImage whose longest side is at most ``size``.

    Runs in a worker thread. JPEGs are decoded at reduced scale (``Image.draft``:
    the decoder skips DCT detail, 5-20x faster than decoding then shrinking), EXIF
    orientation is applied so the thumbnail matches the canvas. Raises
    ``ThumbnailError`` with a short reason for every failure.
    """
    try:
        if path.stat().st_size == 0:
            raise ThumbnailError("file is empty (0 bytes)")
        with warnings.catch_warnings():
            # Our own pixel limit below gives a consistent message.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                w, h = img.size
                if w * h > MAX_PIXELS:
                    raise ThumbnailError(f"refused: {w}x{h} is over the "
                                         f"{MAX_PIXELS / 1e6:.0f} MP limit")
                img.draft("RGB", (size, size))
                shown = ImageOps.exif_transpose(img)
                shown.thumbnail((size, size), Image.Resampling.BILINEAR)
                return _to_qimage(shown)
    except FileNotFoundError:
        raise ThumbnailError("file not found") from None
    except UnidentifiedImageError:
        raise ThumbnailError("not an image file, or an unsupported format") from None
    except Image.DecompressionBombError:
        raise ThumbnailError("refused: image too large") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ThumbnailError(f"corrupt or truncated image data ({exc})") from None


def _to_qimage(img: Image.Image) -> QImage:
    if img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info:
        img, fmt, channels = img.convert("RGBA"), QImage.Format.Format_RGBA8888, 4
    else:
        img, fmt, channels = img.convert("RGB"), QImage.Format.Format_RGB888, 3
    data = img.tobytes()
    # copy(): the QImage must own its pixels; ``data`` dies with this frame.
    return QImage(data, img.width, img.height, img.width * channels, fmt).copy()


class _Relay(QObject):
    """Carries results from pool threads to the GUI thread (a queued connection).

    Parentless and referenced by every job, so it outlives any job still running
    when the cache goes away; emitting never touches a deleted object.
    """

    done = Signal(object, object, str)  # job, QImage | None, error


class _Job:
    """One thumbnail load; a plain callable for ``QThreadPool.start``."""

    __slots__ = ("key", "path", "size", "generation", "cancelled", "_loader", "_relay")

    def __init__(self, key: str, path: Path, size: int, generation: int,
                 loader: Loader, relay: _Relay) -> None:
        self.key, self.path, self.size, self.generation = key, path, size, generation
        self.cancelled = False  # set by the GUI thread; a bool store is atomic
        self._loader, self._relay = loader, relay

    def __call__(self) -> None:
        if self.cancelled:
            return
        image: QImage | None = None
        error = ""
        try:
            image = self._loader(self.path, self.size)
        except ThumbnailError as exc:
            error = str(exc)
        except Exception as exc:  # noqa: BLE001 - a worker must never raise
            error = f"{type(exc).__name__}: {exc}"
        if image is not None and image.isNull():
            image, error = None, "image decoded to nothing"
        try:
            self._relay.done.emit(self, image, error)
        except RuntimeError:  # the application is shutting down
            pass


class ThumbnailCache(QObject):
    """Thumbnails by file path: LRU-cached, loaded on demand in a private pool."""

    thumbnailReady = Signal(str)
    """The key (``str(path)``) of a thumbnail or error that just arrived."""

    def __init__(
        self,
        size: int = THUMB_SIZE,
        capacity: int = CACHE_CAPACITY,
        loader: Loader = load_thumbnail,
        max_threads: int | None = None,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.size = size
        self.capacity = capacity
        self.loader = loader
        self.loads_started = 0
        """Loads scheduled so far (tests and the benchmark read it)."""
        self._cache: OrderedDict[str, Thumbnail] = OrderedDict()
        self._pending: OrderedDict[str, _Job] = OrderedDict()
        self._generation = 0
        self._relay = _Relay()
        self._relay.done.connect(self._on_done)
        self._pool = QThreadPool()
        # Leave a core to the GUI thread: decoding is the expensive part and PIL
        # releases the GIL while it decodes, so a few threads really run at once.
        ideal = QThread.idealThreadCount()
        self._pool.setMaxThreadCount(max_threads or max(1, min(4, ideal - 1)))

    def get(self, path: Path) -> Thumbnail | None:
        """The cached thumbnail for ``path``, or None after scheduling a load."""
        key = str(path)
        found = self._cache.get(key)
        if found is not None:
            self._cache.move_to_end(key)
            return found
        job = self._pending.get(key)
        if job is not None:
            self._pending.move_to_end(key)  # still wanted: keep it from being cancelled
            return None
        self._schedule(key, path)
        return None

    def peek(self, path: Path) -> Thumbnail | None:
        """The cached thumbnail, without scheduling anything or touching LRU order."""
        return self._cache.get(str(path))

    def is_pending(self, path: Path) -> bool:
        return str(path) in self._pending

    def pending_count(self) -> int:
        """Loads scheduled whose result has not arrived (cancelled ones excluded)."""
        return len(self._pending)

    def clear(self) -> None:
        """Forget everything; loads already running finish and are dropped."""
        for job in self._pending.values():
            job.cancelled = True
        self._pending.clear()
        self._cache.clear()
        self._generation += 1

    def wait_idle(self, msecs: int = 30_000) -> bool:
        """Block until no load runs (benchmarks, shutdown); results arrive as events."""
        return self._pool.waitForDone(msecs)

    def _schedule(self, key: str, path: Path) -> None:
        while len(self._pending) >= MAX_PENDING:
            _stale_key, stale = self._pending.popitem(last=False)
            stale.cancelled = True
        job = _Job(key, path, self.size, self._generation, self.loader, self._relay)
        self._pending[key] = job
        self.loads_started += 1
        # Newer requests first: they are the rows on screen now.
        self._pool.start(job, self.loads_started & 0x3FFF_FFFF)

    def _on_done(self, job: _Job, image: QImage | None, error: str) -> None:
        if job.generation != self._generation:
            return  # cleared (a new project) while it ran
        if self._pending.get(job.key) is job:
            del self._pending[job.key]
        if image is not None:
            thumb = Thumbnail(QIcon(QPixmap.fromImage(image)))
        else:
            thumb = Thumbnail(None, error or "unknown error")
        self._cache[job.key] = thumb
        self._cache.move_to_end(job.key)
        while len(self._cache) > self.capacity:
            self._cache.popitem(last=False)
        self.thumbnailReady.emit(job.key)


BADGES: Final[dict[str, tuple[str, str]]] = {
    # state -> (colour, letter); the letter keeps the badge readable without colour.
    "new": ("#9e9e9e", "N"),
    "predicted": ("#1e88e5", "P"),
    "saved": ("#43a047", "S"),
    "error": ("#e53935", "!"),
}


class BadgeDelegate(QStyledItemDelegate):
    """Paints an item as usual, then a state badge on its thumbnail's corner.

    The model gives the state under ``state_role`` and, under ``error_role``, a
    reason the image is unreadable (which wins: the badge turns red).
    """

    def __init__(self, state_role: int, error_role: int, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._state_role, self._error_role = state_role, error_role

    def paint(self, painter: QPainter, option: QStyleOptionViewItem,
              index: QModelIndex | QPersistentModelIndex) -> None:
        super().paint(painter, option, index)
        state = "error" if index.data(self._error_role) else index.data(self._state_role)
        badge = BADGES.get(state)
        if badge is None:
            return
        opt = QStyleOptionViewItem(option)
        self.initStyleOption(opt, index)
        widget = opt.widget
        style = widget.style() if widget is not None else QApplication.style()
        deco = style.subElementRect(QStyle.SubElement.SE_ItemViewItemDecoration, opt, widget)
        side = max(10, min(16, deco.height() // 3))
        rect = QRect(deco.right() - side + 2, deco.bottom() - side + 2, side, side)
        painter.save()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setPen(QColor("white"))
        painter.setBrush(QColor(badge[0]))
        painter.drawEllipse(rect)
        font = QFont(opt.font)
        font.setPixelSize(max(7, side - 5))
        font.setBold(True)
        painter.setFont(font)
        painter.drawText(rect, Qt.AlignmentFlag.AlignCenter, badge[1])
        painter.restore()
