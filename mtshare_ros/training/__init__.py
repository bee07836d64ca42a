"""Training and evaluation of the single-task models: losses, metrics, the train loop and the CLIs."""
