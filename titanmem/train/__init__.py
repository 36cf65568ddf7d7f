"""Training: job configuration, optimizer, loop, checkpoints, distributed wrapping."""
