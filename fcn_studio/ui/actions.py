"""Every QAction of the main window in one table: text, icon, shortcut, tooltip.

Shortcuts show in menus (Qt does that) and in tooltips (we add them), so a person
learns them by hovering.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QWidget

from .icons import icon


@dataclass(frozen=True)
class ActionDef:
    name: str
    text: str
    icon: str | None = None
    shortcuts: tuple[str | QKeySequence.StandardKey, ...] = ()
    tip: str = ""
    checkable: bool = False


ACTIONS: tuple[ActionDef, ...] = (
    ActionDef("open", "&Open Project…", "open", (QKeySequence.StandardKey.Open,),
              "Open a VOC dataset folder or a folder of images"),
    ActionDef("new_project", "&New Project from Images…", "new_project", (),
              "Make a VOC project from a folder of images"),
    ActionDef("import_masks", "&Import Class-id Masks…", "import", (),
              "Import images with grayscale class-id masks (CamVid, Cityscapes style)"),
    ActionDef("save", "&Save Label", "save", (QKeySequence.StandardKey.Save,),
              "Save the label of this image into SegmentationClass/"),
    ActionDef("export", "&Export VOC Dataset…", "export", (),
              "Copy the labelled images as a VOC dataset"),
    ActionDef("quit", "&Quit", None, (QKeySequence.StandardKey.Quit,), "Quit FCN Studio"),
    ActionDef("undo", "&Undo", "undo", ("Ctrl+Z",), "Undo the last edit"),
    ActionDef("redo", "&Redo", "redo", ("Ctrl+Shift+Z", "Ctrl+Y"), "Redo"),
    ActionDef("use_prediction", "Use &Prediction as Label", "use_prediction", ("Ctrl+Return",),
              "Replace the label with the model's prediction (undoable)"),
    ActionDef("clear_label", "&Clear Label", "remove", (), "Set every pixel to background (undoable)"),
    ActionDef("brush", "&Brush", "brush", ("B",), "Paint the current class", True),
    ActionDef("eraser", "&Eraser", "eraser", ("E",), "Paint background (class 0)", True),
    ActionDef("void", "&Void Brush", "void", ("V",),
              "Paint void (255): ignored in training and metrics", True),
    ActionDef("fill", "&Fill", "fill", ("F",), "Flood-fill a connected region", True),
    ActionDef("polygon", "&Polygon", "polygon", ("P",),
              "Click corners; double-click or Enter fills, Esc cancels", True),
    ActionDef("eyedropper", "E&yedropper", "eyedropper", ("I",), "Pick the class under the cursor", True),
    ActionDef("brush_smaller", "Smaller Brush", None, ("[",), "Make the brush smaller"),
    ActionDef("brush_larger", "Larger Brush", None, ("]",), "Make the brush larger"),
    ActionDef("zoom_in", "Zoom &In", "zoom_in", ("+", "=", QKeySequence.StandardKey.ZoomIn), "Zoom in"),
    ActionDef("zoom_out", "Zoom &Out", "zoom_out", ("-", QKeySequence.StandardKey.ZoomOut), "Zoom out"),
    ActionDef("fit", "&Fit to Window", "fit", ("0",), "Show the whole image"),
    ActionDef("actual_size", "&Actual Size (1:1)", "actual_size", ("Ctrl+1",),
              "One image pixel per screen pixel"),
    ActionDef("toggle_overlay", "Show &Overlay", "overlay", ("O",), "Show or hide the label overlay", True),
    ActionDef("outline", "O&utline View", "outline", ("U",), "Show class outlines instead of fills", True),
    ActionDef("uncertainty", "Show &Uncertainty", "uncertainty", ("H",),
              "Heat map of the model's uncertainty", True),
    ActionDef("prev", "&Previous Image", "prev", ("PgUp", "Left"), "Previous image (saves first)"),
    ActionDef("next", "&Next Image", "next", ("PgDown", "Right"), "Next image (saves first)"),
    ActionDef("next_uncertain", "Next Most &Uncertain", "next_uncertain", ("Ctrl+U",),
              "Go to the unsaved image the model is least sure about"),
    ActionDef("predict", "&Predict Again", "predict", ("Ctrl+R",), "Run the model on this image"),
    ActionDef("model_imagenet", "&ImageNet FCN-8s", "model", (),
              "A new FCN-8s on the ImageNet weights of the backbone chosen in Backbone for New "
              "Models (downloaded once: VGG16 528 MB, MobileNetV3-Large 21 MB)"),
    ActionDef("model_file", "Import &Model File…", "import", (),
              "An FCN Studio checkpoint or a pytorch-fcn / Caffe FCN state dict"),
    ActionDef("instant_learning", "&Learn From Every Save", None, (),
              "After each saved label the model's head learns from your saved labels in a second "
              "or two, so the next prediction needs fewer corrections", True),
    ActionDef("undo_learning", "&Undo Last Learning", None, (),
              "Put the model's head back as it was before the last instant learning"),
    ActionDef("finetune", "&Fine-tune", "finetune", ("Ctrl+T",),
              "Train the model on your saved labels with the defaults, while you keep working"),
    ActionDef("finetune_dialog", "Fine-tune &Options…", "settings", ("Ctrl+Shift+T",),
              "Choose the base model, duration, learning rate, device and validation share"),
    ActionDef("cancel_training", "&Cancel Training", "cancel", (),
              "Stop the run; its last checkpoint is kept as a version"),
    ActionDef("import_run", "&Import Run…", "import", (),
              "Add a run trained on a GPU server or cluster as a model version"),
    ActionDef("export_job", "E&xport Training Job…", "export", (),
              "A folder with the dataset, config and the torchrun command for a GPU server"),
    ActionDef("help_shortcuts", "&Keyboard Shortcuts", "help", ("F1",), "List the keyboard shortcuts"),
)


def _text(seq: str | QKeySequence.StandardKey) -> str:
    return QKeySequence(seq).toString(QKeySequence.SequenceFormat.NativeText)


def create_actions(parent: QWidget, handlers: dict[str, Callable[..., object]]) -> dict[str, QAction]:
    """Create every action, connect the handler of the same name when given."""
    actions: dict[str, QAction] = {}
    for d in ACTIONS:
        act = QAction(d.text, parent)
        if d.icon:
            act.setIcon(icon(d.icon))
        seqs = [QKeySequence(s) for s in d.shortcuts]
        if seqs:
            act.setShortcuts(seqs)
        keys = ", ".join(_text(s) for s in d.shortcuts)
        act.setToolTip(f"{d.tip} ({keys})" if keys else d.tip)
        act.setStatusTip(d.tip)
        act.setCheckable(d.checkable)
        if d.name in handlers:
            signal = act.toggled if d.checkable else act.triggered
            handler = handlers[d.name]
            signal.connect(lambda *a, h=handler: h(*a))
        actions[d.name] = act
    return actions


def shortcut_table() -> list[tuple[str, str]]:
    """(action, keys) rows for the help dialog."""
    rows = [(d.text.replace("&", "").rstrip("…"), ", ".join(_text(s) for s in d.shortcuts))
            for d in ACTIONS if d.shortcuts]
    rows.append(("Pick class 1–9", "1 … 9"))
    rows.append(("Pan", "Space + drag, or middle button"))
    rows.append(("Zoom", "Mouse wheel"))
    return rows
