"""Weight and activation quantization, in plain numpy (no torch).

Used by converters to produce model files and by the runtime to unpack them.

Pattern binarization (paper Eq. 1): for a filter W (kh, kw, c),
B = sign(W) with sign(0) = +1 and alpha = mean |W|.

Bit packing of patterns (docs/format.md, "Packed patterns"): a filter's
kh*kw*c bits are numbered j = (ky*kw + kx)*c + ci; bit j lives in byte j // 8
at bit position j % 8 (least significant first); 1 means +1, 0 means -1;
unused high bits of the last byte are 0. Shape (K, ceil(kh*kw*c / 8)) uint8.
"""
from __future__ import annotations

import numpy as np


def binarize(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pattern binarization of filters.

    Args:
        w: (K, kh, kw, c) float weights (OHWI).
    Returns:
        pattern (K, kh, kw, c) int8 in {-1, +1} (sign(0) = +1) and
        alpha (K,) float32 = mean |w| over each filter.
    Example:
        >>> p, a = binarize(np.array([[[[0.5, -1.0, 0.0]]]], np.float32))
        >>> p.ravel().tolist(), a.tolist()
        ([1, -1, 1], [0.5])
    """
    w = np.asarray(w, np.float32)
    pattern = np.where(w >= 0, 1, -1).astype(np.int8)
    alpha = np.abs(w).reshape(w.shape[0], -1).mean(axis=1).astype(np.float32)
    return pattern, alpha


def pack_pattern(pattern: np.ndarray) -> np.ndarray:
    """(K, kh, kw, c) ±1 -> (K, ceil(kh*kw*c/8)) uint8, LSB-first, 1 = +1."""
    k = pattern.shape[0]
    bits = (pattern.reshape(k, -1) > 0).astype(np.uint8)
    return np.packbits(bits, axis=1, bitorder="little")


def unpack_pattern(packed: np.ndarray, kernel_shape: tuple[int, int, int]) -> np.ndarray:
    """(K, nbytes) uint8 -> (K, kh, kw, c) int8 in {-1, +1}."""
    n = int(np.prod(kernel_shape))
    bits = np.unpackbits(packed, axis=1, count=n, bitorder="little")
    return (bits.astype(np.int8) * 2 - 1).reshape((packed.shape[0],) + tuple(kernel_shape))


def pattern_nbytes(kh: int, kw: int, c: int) -> int:
    """Bytes per packed filter."""
    return (kh * kw * c + 7) // 8


def quantize_weights_i8(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric per-output-channel int8: w ≈ q * scale[k], q in [-127, 127].

    Args:
        w: (K, ...) float weights.
    Returns:
        q with w's shape, int8, and scale (K,) float32 (> 0; an all-zero
        channel gets scale 1).
    """
    w = np.asarray(w, np.float32)
    amax = np.abs(w).reshape(w.shape[0], -1).max(axis=1)
    scale = np.where(amax > 0, amax / 127.0, 1.0).astype(np.float32)
    q = np.clip(np.rint(w / scale.reshape((-1,) + (1,) * (w.ndim - 1))), -127, 127).astype(np.int8)
    return q, scale


def act_qparams(lo: float, hi: float, bits: int) -> tuple[float, int]:
    """Asymmetric unsigned activation quantization covering [lo, hi] (0 included).

    Returns (scale, zero_point) so that q = clip(rint(x / scale) + zero, 0, 2^bits - 1).
    A non-negative range (after relu) gets zero_point 0.
    """
    qmax = (1 << bits) - 1
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    if hi - lo <= 0:
        return 1.0, 0
    scale = (hi - lo) / qmax
    zero = int(np.clip(np.rint(-lo / scale), 0, qmax))
    return float(np.float32(scale)), zero


CLIP_FRACTIONS = np.round(np.linspace(1.0, 0.2, 81), 2)   # low-bit ranges tried: [lo, hi] x f, widest first


def act_qparams_mse(x: np.ndarray, lo: float, hi: float, bits: int) -> tuple[float, int]:
    """act_qparams of [lo, hi] x f for the f in CLIP_FRACTIONS whose quantization of
    the samples x has the least mean squared error (the widest on a tie).

    For 2- and 4-bit activations min/max wastes most levels on rare large
    values: `resnet20`'s post-ReLU values are best clipped at 0.44-0.65 of their
    max; 4-bit `resnet20-ste` then has 86.64 % validation accuracy (min/max:
    85.80 %, 8 bits: 87.16 %; docs/converters.md).
    """
    x = np.asarray(x, np.float32).reshape(-1)
    qmax = (1 << bits) - 1
    best, out = np.inf, act_qparams(lo, hi, bits)
    for f in CLIP_FRACTIONS:
        scale, zero = act_qparams(lo * f, hi * f, bits)
        q = np.clip(np.rint(x / np.float32(scale)) + np.float32(zero), 0, qmax)
        err = float(np.mean(np.square((q - np.float32(zero)) * np.float32(scale) - x, dtype=np.float64)))
        if err < best:
            best, out = err, (scale, zero)
    return out


class ActRange:
    """What calibration gathers about one value quantized to `bits`: its exact
    min and max and, below 8 bits, a sample for act_qparams_mse: SAMPLE
    elements of each batch (channels last) at positions drawn by a generator
    seeded 0, so the same batches give the same sample (a stride would alias
    with the channel count and sample one channel).
    add() the batches in order, then qparams(): min/max at 8 bits (act_qparams),
    the least-squared-error range below. The converter (seprt.variants.calibrate)
    and training.actquant both calibrate through this class."""

    SAMPLE = 4096

    def __init__(self, bits: int):
        self.bits, self.lo, self.hi, self.samples = bits, np.inf, -np.inf, []
        self.rng = np.random.default_rng(0)

    def add(self, x: np.ndarray) -> None:
        x = np.asarray(x, np.float32).reshape(-1)
        if not x.size:
            return
        lo, hi = float(x.min()), float(x.max())
        self.lo = lo if np.isnan(lo) else min(self.lo, lo)        # NaN sticks: not finite() then
        self.hi = hi if np.isnan(hi) else max(self.hi, hi)
        if self.bits < 8:
            self.samples.append(x[self.rng.integers(0, x.size, self.SAMPLE)] if x.size > self.SAMPLE else x)

    def finite(self) -> bool:
        return bool(np.isfinite(self.lo) and np.isfinite(self.hi))

    def qparams(self) -> tuple[float, int]:
        if self.bits >= 8 or not self.samples:
            return act_qparams(self.lo, self.hi, self.bits)
        return act_qparams_mse(np.concatenate(self.samples), self.lo, self.hi, self.bits)


def quantize_act(x: np.ndarray, scale: float, zero: int, bits: int) -> np.ndarray:
    """Activation quantization: q = clip(rint(x / scale) + zero, 0, 2^bits - 1).

    Computed in float32, rint rounds half to even. Returns int32.
    """
    q = np.rint(np.asarray(x, np.float32) / np.float32(scale)) + np.float32(zero)
    return np.clip(q, 0, (1 << bits) - 1).astype(np.int32)
