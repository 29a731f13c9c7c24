"""Weight formats `stack` (code 4) and `stack_packed` (code 5): stacked
low-dimensional binary filters (Lan & Lan 2020, "Compressing Deep CNNs by
Stacking Low-dimensional Binary Convolution Filters").

A conv layer's filters (K, k, k, Cg) are cut along their input channels into
S = Cg / d slices of d channels; slice s of filter o is one of the layer's m
shared binary filters, bank[index[o, s]] (k, k, d) in ±1, and the whole filter
is scaled by alpha[o]:

    W[o, ky, kx, s*d + c] = alpha[o] * bank[index[o, s], ky, kx, c]

Tensors, in file order:
    bank   u8 (m, ceil(k*k*d/8))  ±1 bank filters packed as `bin` patterns
                                  (bit j = (ky*k + kx)*d + c, LSB first, 1 = +1)
    index  u8 (K, Cg/d)           bank row of each slice, < m
    alpha  f32 (K)                the integer path's multiplier; any sign (a BN fold
                                  with gamma < 0 negates it: the bank need not hold -B)
    bias   f32 (K)
m (1..256) and d are not stored: m is the bank's rows, d = Cg / (index
columns); the index columns MUST divide Cg and the bank's row bytes MUST be
ceil(k*k*d/8).

`stack_packed` stores the same index at b = max(1, ceil(log2 m)) bits, one
row per slice (so S and d still follow from the shapes):
    index  u8 (S, ceil(K*b/8))    index[o, s] = bits o*b .. o*b+b-1 of row s
                                  (LSB first, as the bank); padding bits 0

    >>> import numpy as np
    >>> bank = np.array([[0b101], [0b010]], np.uint8)            # m=2, k=1, d=3: [+,-,+] and [-,+,-]
    >>> index = np.array([[0, 1], [1, 1]], np.uint8)            # K=2, Cg=6
    >>> expand(bank, index, (2, 1, 1, 6))[:, 0, 0].tolist()
    [[1, -1, 1, -1, 1, -1], [-1, 1, -1, -1, 1, -1]]
    >>> pack_index(index, 2).tolist()                            # b = 1: slice 0 -> 0b10, slice 1 -> 0b11
    [[2], [3]]
"""
import numpy as np

from ..errors import FormatError
from ..quant import pattern_nbytes, unpack_pattern
from .base import Tensor, WeightFormat, register_wfmt

MAX_BANK = 256
FORMATS = ("stack", "stack_packed")          # the stacked weight formats


def index_bits(m: int) -> int:
    """Bits per index of `stack_packed` for a bank of m filters: ceil(log2 m), at least 1."""
    return max(1, (m - 1).bit_length())


def pack_index(index: np.ndarray, m: int) -> np.ndarray:
    """index u8 (K, S), all < m -> `stack_packed`'s u8 (S, ceil(K*b/8))."""
    b = index_bits(m)
    k_out, s = index.shape
    bits = (index.T[:, :, None] >> np.arange(b, dtype=np.uint8)) & 1            # (S, K, b)
    return np.packbits(bits.reshape(s, k_out * b), axis=1, bitorder="little")


def unpack_index(packed: np.ndarray, k_out: int, m: int) -> np.ndarray:
    """`stack_packed`'s u8 (S, ceil(K*b/8)) -> index u8 (K, S)."""
    b = index_bits(m)
    bits = np.unpackbits(packed, axis=1, count=k_out * b, bitorder="little").reshape(len(packed), k_out, b)
    return np.ascontiguousarray((bits.astype(np.uint16) << np.arange(b, dtype=np.uint16)).sum(-1).T, np.uint8)


def slices(n) -> int:
    """S = Cg / d of a node of either stacked format, from its index's shape."""
    return n.tensor("index").shape[0 if n.wfmt == "stack_packed" else 1]


def index_of(n, k_out: int) -> np.ndarray:
    """The bank row of each slice, u8 (K, S), of a node of either stacked format."""
    index = n.tensor("index")
    return unpack_index(index, k_out, n.tensor("bank").shape[0]) if n.wfmt == "stack_packed" else index


def expand(bank: np.ndarray, index: np.ndarray, kshape: tuple) -> np.ndarray:
    """bank (m, nb) u8, index (K, S) u8 -> the ±1 effective weight (K, k, k, Cg) int8."""
    k_out, kh, kw, cg = kshape
    d = cg // max(index.shape[1], 1)
    filters = unpack_pattern(bank, (kh, kw, d))                   # (m, k, k, d)
    w = filters[index.astype(np.intp)]                            # (K, S, k, k, d)
    return np.ascontiguousarray(w.transpose(0, 2, 3, 1, 4)).reshape(kshape)


def _check(n, kernel, kshape):
    if len(kshape) != 4:
        raise FormatError(f"node {n.name!r}: stacked binary filters need a conv")
    bank, index, alpha = n.tensors[0], n.tensors[1], n.tensors[2]
    packed = n.wfmt == "stack_packed"
    cg, s, m = kshape[3], index.shape[0 if packed else 1], bank.shape[0]
    if not 1 <= m <= MAX_BANK:
        raise FormatError(f"node {n.name!r}: bank has {m} filters, must be 1..{MAX_BANK}")
    if s < 1 or cg % s:
        raise FormatError(f"node {n.name!r}: {s} slices per filter do not divide its {cg} input channels "
                          "(slice depth d must divide Cg)")
    d = cg // s
    nb = pattern_nbytes(kshape[1], kshape[2], d)
    if bank.shape[1] != nb:
        raise FormatError(f"node {n.name!r}: bank rows are {bank.shape[1]} bytes, a {kshape[1]}x{kshape[2]}x{d} "
                          f"binary filter needs {nb}")
    used = kshape[1] * kshape[2] * d % 8
    if used and np.any(bank[:, -1] >> used):
        raise FormatError(f"node {n.name!r}: padding bits of packed bank filters must be 0")
    if packed:
        b = index_bits(m)
        nbits = kshape[0] * b
        if index.shape[1] != -(-nbits // 8):
            raise FormatError(f"node {n.name!r}: packed index rows are {index.shape[1]} bytes, {kshape[0]} "
                              f"indices of {b} bits need {-(-nbits // 8)}")
        if nbits % 8 and np.any(index[:, -1] >> (nbits % 8)):
            raise FormatError(f"node {n.name!r}: padding bits of packed index rows must be 0")
        index = unpack_index(index, kshape[0], m)
    if index.size and int(index.max()) >= m:
        raise FormatError(f"node {n.name!r}: bank index {int(index.max())} out of range for a bank of {m} filters")
    if not np.all(np.isfinite(alpha)):
        raise FormatError(f"node {n.name!r}: alpha must be finite")


def _int_weight(n, kshape):
    return expand(n.tensors[0], index_of(n, kshape[0]), kshape)


def _float_weight(n, kshape):
    return _int_weight(n, kshape).astype(np.float32) * n.tensors[2].reshape((-1, 1, 1, 1))


STACK = register_wfmt(WeightFormat(
    name="stack", code=4, integer=True,
    # None: a size the format's own check derives (m, and S = Cg / d)
    tensors=(Tensor("bank", np.dtype("u1"), lambda ks: (None, None)),
             Tensor("index", np.dtype("u1"), lambda ks: (ks[0], None)),
             Tensor("alpha", np.dtype("<f4"), lambda ks: ks[:1]),
             Tensor("bias", np.dtype("<f4"), lambda ks: ks[:1])),
    check=_check, float_weight=_float_weight, int_weight=_int_weight, scale_name="alpha",
    doc="u8 (m, ceil(k*k*d/8)) packed ±1 bank (m 1..256); u8 (K, Cg/d) index < m; f32 (K) alpha (any sign); "
        "f32 (K) bias"))


STACK_PACKED = register_wfmt(WeightFormat(
    name="stack_packed", code=5, integer=True,
    tensors=(Tensor("bank", np.dtype("u1"), lambda ks: (None, None)),
             Tensor("index", np.dtype("u1"), lambda ks: (None, None)),
             Tensor("alpha", np.dtype("<f4"), lambda ks: ks[:1]),
             Tensor("bias", np.dtype("<f4"), lambda ks: ks[:1])),
    check=_check, float_weight=_float_weight, int_weight=_int_weight, scale_name="alpha",
    doc="as stack, the index bit-packed: u8 (Cg/d, ceil(K*b/8)), b = max(1, ceil(log2 m)) bits per index"))
