"""Converters: PyTorch -> seprt .bin and TFLite (python -m converters).

    from_torch(module, input_size, labels=..., preprocess=...)   any traced classifier (torch_import.py)
"""
from .torch_import import from_torch  # noqa: F401
