"""Fine-tuning from the window: the controller, its dialogs, the training
child process and the ImageNet download."""
