"""Project actions: open, create, import, export, class edits, and their dialogs."""
