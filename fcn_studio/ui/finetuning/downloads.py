"""Getting a backbone's ImageNet weights: a dialog with size, progress, cancel and
checksum when online; offline, the exact file and folder to put it in."""

from __future__ import annotations

import threading
from pathlib import Path

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import QMessageBox, QProgressDialog, QWidget

from ...models.model_spec import BACKBONE_LABELS


class _Relay(QObject):
    progress = Signal(int, int)
    finished = Signal(str)  # "" on success, else the message


def ensure_imagenet_weights(parent: QWidget, backbone: str = "vgg16") -> bool:
    """True when the weights are cached (or were just downloaded)."""
    from training.weights import imagenet_weights_info

    info = imagenet_weights_info(backbone)
    if info["cached"]:
        return True
    where = Path(info["path"])
    answer = QMessageBox.question(
        parent, "ImageNet weights",
        f"The FCN-8s backbone needs the ImageNet {BACKBONE_LABELS.get(backbone, backbone)} "
        f"weights ({info['size_mb']:.0f} MB), "
        f"downloaded once into\n{where.parent}\n\nDownload now?")
    if answer != QMessageBox.StandardButton.Yes:
        return False
    return _download(parent, info["url"], where, info["size_mb"])


def _download(parent: QWidget, url: str, dest: Path, size_mb: float) -> bool:
    from training.download import DownloadCancelled, download_file

    dialog = QProgressDialog(f"Downloading {dest.name} ({size_mb:.0f} MB)…", "Cancel", 0, 1000,
                             parent)
    dialog.setWindowModality(Qt.WindowModality.WindowModal)
    dialog.setMinimumDuration(0)
    relay = _Relay()
    stop = threading.Event()
    outcome: dict[str, str] = {}

    def on_progress(done: int, total: int) -> None:
        if total > 0:
            dialog.setValue(int(1000 * done / total))
            dialog.setLabelText(f"Downloading {dest.name}: {done / 1e6:.0f} of {total / 1e6:.0f} MB")

    def on_finished(text: str) -> None:
        outcome["result"] = text
        dialog.reset()
        dialog.close()

    relay.progress.connect(on_progress)
    relay.finished.connect(on_finished)
    dialog.canceled.connect(stop.set)

    def work() -> None:
        try:
            download_file(url, dest, lambda d, t: relay.progress.emit(d, t or 0), stop.is_set)
        except DownloadCancelled:
            relay.finished.emit("cancelled")
        except Exception as exc:  # offline, corrupt: shown to the person
            relay.finished.emit(str(exc))
        else:
            relay.finished.emit("")

    threading.Thread(target=work, daemon=True).start()
    dialog.exec()
    while "result" not in outcome:  # the dialog closed by cancel: wait for the thread
        stop.set()
        from PySide6.QtWidgets import QApplication

        QApplication.processEvents()
    result = outcome["result"]
    if result and result != "cancelled":
        QMessageBox.warning(parent, "ImageNet weights", result)
    return result == ""
