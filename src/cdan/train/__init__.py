"""Training: the official objective (losses.py), the loop (trainer.py), DDP helpers (distributed.py)."""
