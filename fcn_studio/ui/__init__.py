"""The desktop user interface: the only package that imports PySide6.

Widgets translate events into calls on the Qt-free core (``fcn_studio``) and the
engine (``training``); they do no tensor maths and no pixel editing themselves.
"""
