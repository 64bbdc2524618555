"""The labelling loop: the controller (show, predict, save), the one thread
that owns the model, and the background label writer."""
