"""Weight format `f32` (code 1): float32 weights and bias (R and B models)."""
import numpy as np

from ..errors import FormatError
from .base import Tensor, WeightFormat, register_wfmt


def _check(n, kernel, kshape):
    if not np.all(np.isfinite(n.tensors[0])):
        raise FormatError(f"node {n.name!r}: weight has NaN or Inf")


F32 = register_wfmt(WeightFormat(
    name="f32", code=1, integer=False,
    tensors=(Tensor("weight", np.dtype("<f4"), lambda ks: ks),
             Tensor("bias", np.dtype("<f4"), lambda ks: ks[:1])),
    check=_check,
    float_weight=lambda n, kshape: n.tensors[0],
    doc="f32 (K, k, k, Cg) or (K, C) weight; f32 (K) bias"))
