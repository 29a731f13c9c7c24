"""Typed errors. Both subclass ValueError and say what is wrong and what to do."""


class FormatError(ValueError):
    """A model file (or buffer) is not a valid seprt model.

    Example: ``FormatError: file truncated: 1024 bytes, header says 1310720;
    re-export the model``.
    """


class ImageError(ValueError):
    """An image cannot be used as model input (unreadable, corrupt, too large,
    wrong shape or dtype)."""
