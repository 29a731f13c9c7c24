"""Training, binarization and refinement of seprt models (PyTorch, CPU).

Not part of the `seprt` runtime: needs torch, numpy, pillow and tqdm.
"""
