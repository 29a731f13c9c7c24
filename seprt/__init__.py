"""seprt: a runtime for SEP-Net pattern-binarized CNNs.

    >>> import seprt
    >>> m = seprt.Model(seprt.demo_model_path())
    >>> len(m.predict(seprt.demo_images()[0], top_k=3))
    3

Data flow: model file (seprt.format) -> graph (seprt.graph) -> executor
(seprt.reference; the fast engine) -> result (seprt.Model).
"""
from .errors import FormatError, ImageError
from .model import Model, demo_images, demo_model_path

__version__ = "0.1.0"
__all__ = ["Model", "FormatError", "ImageError", "demo_model_path", "demo_images", "__version__"]
