"""The canvas: the image with its label overlay, the tools that turn mouse
events into core edits, and the overlay's colouring."""
