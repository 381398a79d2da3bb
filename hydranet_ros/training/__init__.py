"""Multi-task training: data sources, masked per-task losses, and the training loop."""
