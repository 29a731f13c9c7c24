"""Quantization, pooling and elementwise kernels on flat arenas (NHWC, one image).

Each matches the op of the same name in seprt/reference.py (quantize_act,
add, relu, maxpool, avgpool, gap, shortcut_a).
"""
from __future__ import annotations

import numpy as np
from .jit import jit

from .intrinsics import roundeven32


@jit
def quantize_u8(fbuf, in_off, H, W, C, scale, z, qmax, A, Wp, pad, G, Cgp):
    """x (H,W,C) f32 -> interior of A (Hp,Wp,G,Cgp) u8: clip(rint(x / s) + z, 0, qmax).

    The border (value z) and channel padding (0) are written once at setup.
    """
    cg = C // G
    s, zf, top = np.float32(scale), np.float32(z), np.float32(qmax)
    n = W * C
    for y in range(H):
        src = fbuf[in_off + y * n:in_off + (y + 1) * n]
        d0 = ((y + pad) * Wp + pad) * G * Cgp
        if Cgp == cg:                 # rows are contiguous: one vectorizable loop over views
            dst = A[d0:d0 + n]
            for i in range(n):
                dst[i] = np.uint8(min(max(roundeven32(src[i] / s) + zf, np.float32(0)), top))
            continue
        for x in range(W):
            for g in range(G):
                dst = A[d0 + (x * G + g) * Cgp:d0 + (x * G + g) * Cgp + cg]
                for c in range(cg):
                    dst[c] = np.uint8(min(max(roundeven32(src[x * C + g * cg + c] / s) + zf, np.float32(0)), top))


@jit
def add_f32(fbuf, a_off, b_off, out_off, n, relu):
    a, b, out = fbuf[a_off:a_off + n], fbuf[b_off:b_off + n], fbuf[out_off:out_off + n]
    for i in range(n):
        v = a[i] + b[i]
        out[i] = max(v, np.float32(0)) if relu else v


@jit
def relu_f32(fbuf, in_off, out_off, n):
    x, out = fbuf[in_off:in_off + n], fbuf[out_off:out_off + n]
    for i in range(n):
        out[i] = max(x[i], np.float32(0))


@jit
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


@jit
def gap_f32(fbuf, in_off, n_pix, C, out_off, acc):
    """(n_pix, C) -> (C,) mean, accumulated in float64 (acc scratch)."""
    a = acc[:C]
    a[:] = 0.0
    for p in range(n_pix):
        x = fbuf[in_off + p * C:in_off + (p + 1) * C]
        for c in range(C):
            a[c] += x[c]
    out = fbuf[out_off:out_off + C]
    for c in range(C):
        out[c] = np.float32(a[c] / n_pix)


@jit
def shortcut_a_f32(fbuf, in_off, H, W, C, stride, Ho, Wo, Cout, out_off):
    """x[::s, ::s, :] with (Cout - C)/2 zero channels on each side."""
    p = (Cout - C) // 2
    for oy in range(Ho):
        for ox in range(Wo):
            o = out_off + (oy * Wo + ox) * Cout
            src = in_off + (oy * stride * W + ox * stride) * C
            for c in range(Cout):
                fbuf[o + c] = fbuf[src + c - p] if p <= c < p + C else np.float32(0)
