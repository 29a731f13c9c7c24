"""Quantization, pooling and elementwise kernels on flat arenas (NHWC, one image).

Each matches the op of the same name in seprt/reference.py (quantize_act,
add, relu, maxpool, avgpool, gap, shortcut_a).
"""
from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def quantize_u8(fbuf, in_off, H, W, C, scale, z, qmax, A, Wp, pad, G, Cgp):
    """x (H,W,C) f32 -> interior of A (Hp,Wp,G,Cgp) u8: clip(rint(x / s) + z, 0, qmax).

    The border (value z) and channel padding (0) are written once at setup.
    """
    cg = C // G
    s = np.float32(scale)
    for y in range(H):
        for x in range(W):
            src = in_off + (y * W + x) * C
            dst = ((y + pad) * Wp + (x + pad)) * G * Cgp
            for g in range(G):
                for c in range(cg):
                    q = np.rint(fbuf[src + g * cg + c] / s) + np.float32(z)
                    if q < 0:
                        q = np.float32(0)
                    elif q > qmax:
                        q = np.float32(qmax)
                    A[dst + g * Cgp + c] = np.uint8(q)


@njit(cache=True, nogil=True)
def add_f32(fbuf, a_off, b_off, out_off, n, relu):
    for i in range(n):
        v = fbuf[a_off + i] + fbuf[b_off + i]
        fbuf[out_off + i] = v if (v > 0 or not relu) else np.float32(0)


@njit(cache=True, nogil=True)
def relu_f32(fbuf, in_off, out_off, n):
    for i in range(n):
        v = fbuf[in_off + i]
        fbuf[out_off + i] = v if v > 0 else np.float32(0)


@njit(cache=True, nogil=True)
def pool_f32(fbuf, in_off, H, W, C, k, stride, pad, Ho, Wo, out_off, is_max):
    """Max pool (padding never wins) or average pool (divide by non-padding count)."""
    for oy in range(Ho):
        for ox in range(Wo):
            o = out_off + (oy * Wo + ox) * C
            for c in range(C):
                fbuf[o + c] = -np.inf if is_max else np.float32(0)
            cnt = 0
            for ky in range(k):
                iy = oy * stride - pad + ky
                if iy < 0 or iy >= H:
                    continue
                for kx in range(k):
                    ix = ox * stride - pad + kx
                    if ix < 0 or ix >= W:
                        continue
                    cnt += 1
                    src = in_off + (iy * W + ix) * C
                    for c in range(C):
                        v = fbuf[src + c]
                        if is_max:
                            if v > fbuf[o + c]:
                                fbuf[o + c] = v
                        else:
                            fbuf[o + c] += v
            if not is_max:
                for c in range(C):
                    fbuf[o + c] /= np.float32(cnt)


@njit(cache=True, nogil=True)
def gap_f32(fbuf, in_off, n_pix, C, out_off, acc):
    """(n_pix, C) -> (C,) mean, accumulated in float64 (acc scratch)."""
    for c in range(C):
        acc[c] = 0.0
    for p in range(n_pix):
        for c in range(C):
            acc[c] += fbuf[in_off + p * C + c]
    for c in range(C):
        fbuf[out_off + c] = np.float32(acc[c] / n_pix)


@njit(cache=True, nogil=True)
def shortcut_a_f32(fbuf, in_off, H, W, C, stride, Ho, Wo, Cout, out_off):
    """x[::s, ::s, :] with (Cout - C)/2 zero channels on each side."""
    p = (Cout - C) // 2
    for oy in range(Ho):
        for ox in range(Wo):
            o = out_off + (oy * Wo + ox) * Cout
            src = in_off + (oy * stride * W + ox * stride) * C
            for c in range(Cout):
                fbuf[o + c] = fbuf[src + c - p] if p <= c < p + C else np.float32(0)
