"""``python -m workers.mps``: the Python worker (MPS, CUDA or CPU)."""
