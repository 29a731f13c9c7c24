"""Weight format `bin` (code 3): bit-packed ±1 patterns with one alpha per
filter (SEP-Net pattern binarization): W = alpha[k] * B, B = sign(W_full)."""
import numpy as np

from ..errors import FormatError
from ..quant import pattern_nbytes, unpack_pattern
from .base import Tensor, WeightFormat, register_wfmt


def _check(n, kernel, kshape):
    if len(kshape) != 4 or kernel < 2:
        raise FormatError(f"node {n.name!r}: binary patterns need a k x k conv with k > 1")
    alpha = n.tensors[1]
    if not (np.all(np.isfinite(alpha)) and np.all(alpha >= 0)):
        raise FormatError(f"node {n.name!r}: alpha must be finite and >= 0")
    used = kshape[1] * kshape[2] * kshape[3] % 8
    if used and np.any(n.tensors[0][:, -1] >> used):
        raise FormatError(f"node {n.name!r}: padding bits of packed patterns must be 0")


def _int_weight(n, kshape):
    return unpack_pattern(n.tensors[0], kshape[1:])


def _float_weight(n, kshape):
    w = _int_weight(n, kshape).astype(np.float32)
    return w * n.tensors[1].reshape((-1, 1, 1, 1))


BIN = register_wfmt(WeightFormat(
    name="bin", code=3, integer=True, min_kernel=2,
    tensors=(Tensor("pattern", np.dtype("u1"), lambda ks: (ks[0], pattern_nbytes(*ks[1:]) if len(ks) == 4 else -1)),
             Tensor("alpha", np.dtype("<f4"), lambda ks: ks[:1]),
             Tensor("bias", np.dtype("<f4"), lambda ks: ks[:1])),
    check=_check, float_weight=_float_weight, int_weight=_int_weight, scale_name="alpha",
    doc="u8 (K, ceil(k*k*Cg/8)) packed ±1 patterns (k > 1); f32 (K) alpha >= 0; f32 (K) bias"))
