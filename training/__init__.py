"""FCN Studio's shared engine: FCN models, VOC data, training, prediction, evaluation.

This package never imports Qt or the desktop app (ARCHITECTURE.md, "Arrows"). Importing it
is cheap: torch is only loaded by the submodules that need it.
"""

__version__ = "0.1.0"
