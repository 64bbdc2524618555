"""FCN Studio: the desktop labelling app.

The package root stays import-light on purpose: the core modules (editing,
history, geometry) are numpy only, and only ``fcn_studio.ui`` imports PySide6.
"""
