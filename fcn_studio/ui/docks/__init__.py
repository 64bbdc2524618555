"""The dock panels: images, classes, tool options, training, models and
correction effort."""
