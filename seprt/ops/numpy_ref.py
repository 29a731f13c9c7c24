"""Plain-numpy building blocks shared by the ops' reference definitions."""
from __future__ import annotations

import numpy as np

from ..quant import quantize_act
from .base import get_wfmt


def im2col(x: np.ndarray, k: int, stride: int, pad: int, pad_value=0, ho: int = 0, wo: int = 0) -> np.ndarray:
    """x (N,H,W,C) -> patches (N,Ho,Wo,k,k,C); Ho, Wo default to floor mode
    (larger ones pad the bottom/right with pad_value, as ceil mode does)."""
    n, h, w, c = x.shape
    ho = ho or (h + 2 * pad - k) // stride + 1
    wo = wo or (w + 2 * pad - k) // stride + 1
    extra_h = max(0, (ho - 1) * stride + k - h - 2 * pad)
    extra_w = max(0, (wo - 1) * stride + k - w - 2 * pad)
    xp = np.pad(x, ((0, 0), (pad, pad + extra_h), (pad, pad + extra_w), (0, 0)), constant_values=pad_value)
    cols = np.empty((n, ho, wo, k, k, c), x.dtype)
    for ky in range(k):
        for kx in range(k):
            cols[:, :, :, ky, kx, :] = xp[:, ky:ky + stride * ho:stride, kx:kx + stride * wo:stride, :]
    return cols


def conv2d(x: np.ndarray, w: np.ndarray, stride: int, pad: int, groups: int) -> np.ndarray:
    """x (N,H,W,C), w (K,k,k,C/g) -> (N,Ho,Wo,K), zero padding, same dtype
    arithmetic as the inputs (float32, or int64 for exact integer sums)."""
    k_out, k = w.shape[0], w.shape[1]
    cols = im2col(x, k, stride, pad)
    cg, kg = x.shape[3] // groups, k_out // groups
    outs = []
    for g in range(groups):
        xg = cols[..., g * cg:(g + 1) * cg].reshape(cols.shape[:3] + (-1,))
        wg = w[g * kg:(g + 1) * kg].reshape(kg, -1)
        outs.append(xg @ wg.T)
    return np.concatenate(outs, axis=-1)


def weighted(g, n, x: np.ndarray, kshape: tuple, linear) -> np.ndarray:
    """A conv or fc node on x (float32): `linear(x, w)` is its bias-free op.

    float path (float weights or float input):
        y = linear(x, W) + bias, W the weight format's effective float weight
    integer path (integer weights and a quantized input value):
        q = clip(rint(x / s) + z, 0, 2^bits - 1)              (int)
        acc = linear(q - z, w_int)  with zero padding          (exact int64)
        y = f32(acc) * f32(s * scale[k]) + bias[k]             (float32)
    """
    v = g.values[n.inputs[0]]
    wf = get_wfmt(n.wfmt)
    if g.is_integer(n):
        q = quantize_act(x, v.q_scale, v.q_zero, v.q_bits).astype(np.int64) - v.q_zero
        acc = linear(q, wf.int_weight(n, kshape).astype(np.int64))
        mult = (np.float32(v.q_scale) * n.scale).astype(np.float32)
        return acc.astype(np.float32) * mult + n.bias
    y = linear(x, wf.float_weight(n, kshape))
    return (y + n.bias).astype(np.float32)
