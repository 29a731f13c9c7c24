"""Weight format `i8` (code 2): int8 weights with one float32 scale per
output channel: W = q * scale[k]."""
import numpy as np

from ..errors import FormatError
from .base import Tensor, WeightFormat, register_wfmt


def _check(n, kernel, kshape):
    s = n.tensors[1]
    if not (np.all(np.isfinite(s)) and np.all(s > 0)):
        raise FormatError(f"node {n.name!r}: weight scales must be finite and > 0")


def _float_weight(n, kshape):
    q, s = n.tensors[0], n.tensors[1]
    return q.astype(np.float32) * s.reshape((-1,) + (1,) * (q.ndim - 1))


I8 = register_wfmt(WeightFormat(
    name="i8", code=2, integer=True,
    tensors=(Tensor("weight", np.dtype("i1"), lambda ks: ks),
             Tensor("scale", np.dtype("<f4"), lambda ks: ks[:1]),
             Tensor("bias", np.dtype("<f4"), lambda ks: ks[:1])),
    check=_check, float_weight=_float_weight, scale_name="scale",
    int_weight=lambda n, kshape: n.tensors[0],
    doc="i8 (K, k, k, Cg) or (K, C) weight (writers -127..127, readers take -128); f32 (K) scale > 0; f32 (K) bias"))
