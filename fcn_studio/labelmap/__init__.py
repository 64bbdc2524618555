"""Label maps and their edits: pure numpy functions (brush, fill, polygon,
remap) that return bounding-box deltas, and the delta history with its byte budget."""
