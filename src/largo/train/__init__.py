"""Training: the loop, EMA and checkpoints."""
