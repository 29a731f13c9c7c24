"""Quantization, pooling and elementwise kernels on flat arenas (NHWC, one image).

Each matches the numpy reference of the op of the same name in seprt/ops/
(quantize_act of seprt.quant for quantize_u8).
"""
from __future__ import annotations

from enum import IntEnum

import numpy as np
from .jit import jit

from .intrinsics import max16_cols, roundeven32

# Instruction rows (see kernels/conv.py for the conventions): fbuf f32 and abuf u8 offsets.
OP_QUANT, OP_ADD, OP_RELU, OP_POOL, OP_GAP, OP_SHORTCUT, OP_CONCAT = 1, 6, 7, 8, 9, 10, 11
OP_ACT, OP_MUL, OP_AFFINE, OP_SHUFFLE, OP_SLICE, OP_MAXPOOL_U8 = 13, 14, 15, 16, 17, 18

# act kinds (seprt/ops/op_act.py): the `kind` attribute of op act
ACT_RELU6, ACT_LEAKY, ACT_SILU, ACT_HARDSWISH, ACT_SIGMOID, ACT_HARDSIGMOID = 1, 2, 3, 4, 5, 6


class QuantRow(IntEnum):
    """quantize_u8: a float value -> the interior of its padded u8 buffer."""
    IN = 1           # fbuf: (H, W, C)
    H = 2
    W = 3
    C = 4
    SCALE = 5        # wf32: the value's scale
    ZERO = 6
    QMAX = 7
    OUT = 8          # abuf: (Hp, Wp, G, Cgp)
    WP = 9
    PAD = 10
    G = 11
    CGP = 12


class AddRow(IntEnum):
    A = 1            # fbuf: (n,)
    B = 2            # fbuf: (n,)
    OUT = 3          # fbuf: (n,)
    N = 4
    RELU = 5


class ReluRow(IntEnum):
    IN = 1           # fbuf: (n,)
    OUT = 2          # fbuf: (n,)
    N = 3


class PoolRow(IntEnum):
    IN = 1           # fbuf: (H, W, C)
    H = 2
    W = 3
    C = 4
    KERNEL = 5
    STRIDE = 6
    PAD = 7
    HO = 8
    WO = 9
    OUT = 10         # fbuf: (Ho, Wo, C)
    IS_MAX = 11
    COUNT_PAD = 12   # avgpool: 1 = divide by the window clipped to the padded input (count_include_pad)
    Q_OFF = 13       # abuf: fused quantization into the consumers' padded buffer (Hp, Wp, C), -1: none
    Q_PAD = 14       #   its border
    Q_WP = 15        #   its padded width
    Q_ZERO = 16      #   the output's zero point
    Q_MAX = 17       #   2^bits - 1
    Q_SCALE = 18     # wf32: the output's scale (one float)


class MaxPoolU8Row(IntEnum):
    """Max pool on quantized values, into the interior of the consumers' padded
    buffer. Exact: quantization is monotonic, so max(q(x)) = q(max(x)); the
    producer quantizes with the pool output's scale (seprt/plan.py)."""
    IN = 1           # abuf: (H, W, C) u8, no border
    H = 2
    W = 3
    C = 4
    KERNEL = 5
    STRIDE = 6
    PAD = 7
    HO = 8
    WO = 9
    OUT = 10         # abuf: (Ho + 2 OPAD, WP, C) u8
    WP = 11
    OPAD = 12


class GapRow(IntEnum):
    IN = 1           # fbuf: (n_pix, C)
    N_PIX = 2
    C = 3
    OUT = 4          # fbuf: (C,)


class ShortcutRow(IntEnum):
    IN = 1           # fbuf: (H, W, C)
    H = 2
    W = 3
    C = 4
    STRIDE = 5
    HO = 6
    WO = 7
    COUT = 8
    OUT = 9          # fbuf: (Ho, Wo, Cout)


class ConcatRow(IntEnum):
    """One input of a channel concat, copied into its channel slice of the output."""
    IN = 1           # fbuf: (n_pix, C_in)
    OUT = 2          # fbuf: (n_pix, C_out)
    N_PIX = 3
    C_IN = 4
    C_OUT = 5
    C0 = 6           # first output channel of this input


class ActRow(IntEnum):
    IN = 1           # fbuf: (n,)
    OUT = 2          # fbuf: (n,)
    N = 3
    KIND = 4         # ACT_* above
    SLOPE = 5        # wf32: leaky slope (one float)


class MulRow(IntEnum):
    """Channel-wise multiply (squeeze-and-excitation): y[p, c] = x[p, c] * s[c]."""
    IN = 1           # fbuf: (n_pix, C)
    S = 2            # fbuf: (C,)
    OUT = 3          # fbuf: (n_pix, C)
    N_PIX = 4
    C = 5


class AffineRow(IntEnum):
    """Per-channel affine (standalone batch norm): y = x * w[c] + b[c] (+ res) (relu)."""
    IN = 1           # fbuf: (n_pix, C)
    WT = 2           # wf32: (C,) scale
    BIAS = 3         # wf32: (C,) shift
    OUT = 4          # fbuf: (n_pix, C)
    RES = 5          # fbuf: (n_pix, C) residual, -1: none
    N_PIX = 6
    C = 7
    RELU = 8


class SliceRow(IntEnum):
    """Channel slice: y[p, c] = x[p, c0 + c] for c < C_out."""
    IN = 1           # fbuf: (n_pix, C_in)
    OUT = 2          # fbuf: (n_pix, C_out)
    N_PIX = 3
    C_IN = 4
    C_OUT = 5
    C0 = 6           # first input channel taken


class ShuffleRow(IntEnum):
    """Channel shuffle (ShuffleNet): y[p, i*G + g] = x[p, g*(C/G) + i]."""
    IN = 1           # fbuf: (n_pix, C)
    OUT = 2          # fbuf: (n_pix, C)
    N_PIX = 3
    C = 4
    G = 5


@jit
def quantize_u8(fbuf, in_off, H, W, C, scale, z, qmax, A, Wp, pad, G, Cgp, stage, y_lo, y_hi):
    """x (H,W,C) f32 -> interior of A (Hp,Wp,G,Cgp) u8: clip(rint(x / s) + z, 0, qmax), rows y_lo..y_hi.

    The border (value z) and channel padding (0) are written once at setup;
    stage: f32 scratch of W*C (used when channels are padded).
    """
    cg = C // G
    s, zf, top = np.float32(scale), np.float32(z), np.float32(qmax)
    n = W * C
    for y in range(y_lo, y_hi):
        src = fbuf[in_off + y * n:in_off + (y + 1) * n]
        d0 = ((y + pad) * Wp + pad) * G * Cgp
        if Cgp == cg:                 # rows are contiguous: one vectorizable loop over views
            dst = A[d0:d0 + n]
            for i in range(n):
                dst[i] = np.uint8(min(max(roundeven32(src[i] / s) + zf, np.float32(0)), top))
            continue
        row = stage[:n]                   # channels padded per group: quantize the
        for i in range(n):                # contiguous row first (vectorizes), then place it
            row[i] = min(max(roundeven32(src[i] / s) + zf, np.float32(0)), top)
        dst = A[d0:d0 + W * G * Cgp]
        if cg == 3 and Cgp == 4:          # an RGB image (the usual first conv), unrolled
            for p in range(W * G):
                dst[4 * p] = np.uint8(row[3 * p])
                dst[4 * p + 1] = np.uint8(row[3 * p + 1])
                dst[4 * p + 2] = np.uint8(row[3 * p + 2])
            continue
        for p in range(W * G):
            for c in range(cg):
                dst[p * Cgp + c] = np.uint8(row[p * cg + c])


@jit
def add_f32(fbuf, a_off, b_off, out_off, n, relu, lo, hi):
    """out[i] = a[i] + b[i] (relu), i in lo..hi of (n,)."""
    a, b, out = fbuf[a_off:a_off + n], fbuf[b_off:b_off + n], fbuf[out_off:out_off + n]
    for i in range(lo, hi):
        v = a[i] + b[i]
        out[i] = max(v, np.float32(0)) if relu else v


@jit
def relu_f32(fbuf, in_off, out_off, n, lo, hi):
    """out[i] = max(x[i], 0), i in lo..hi of (n,)."""
    x, out = fbuf[in_off:in_off + n], fbuf[out_off:out_off + n]
    for i in range(lo, hi):
        out[i] = max(x[i], np.float32(0))


@jit
def pool_f32(fbuf, in_off, H, W, C, k, stride, pad, Ho, Wo, out_off, is_max, count_pad,
             qbuf, q_off, q_pad, q_wp, q_zero, q_max, q_scale, stage, oy_lo, oy_hi):
    """Max pool (padding never wins) or average pool (divide by the non-padding
    count, or with count_pad by the window clipped to the padded input, as
    PyTorch's count_include_pad). Ho, Wo may be ceil-mode sizes: windows past
    the input are clipped. Output rows oy_lo..oy_hi.

    Max: per output row, the window's input rows are reduced into stage (W*C,
    one contiguous loop per row), then each output pixel takes the max of its
    columns of stage; max is exact in any order. Average: taps summed in
    window order (iy, ix), as before. q_off >= 0: each output row is also
    quantized into the interior of the consumers' padded u8 buffer at q_off
    (Hp, q_wp, C): clip(roundeven(y / q_scale) + q_zero, 0, q_max), as
    quantize_u8, so no separate quantize step runs.

    Input, output and stage are separate views; channels are the inner contiguous
    loop with uint64 indices (no wraparound checks), so it vectorizes."""
    x = fbuf[in_off:in_off + H * W * C]
    y = fbuf[out_off:out_off + Ho * Wo * C]
    n = W * C
    for oy in range(oy_lo, oy_hi):
        y0, y1 = max(oy * stride - pad, 0), min(oy * stride - pad + k, H)
        yrow = y[oy * Wo * C:(oy + 1) * Wo * C]
        if is_max:
            row = stage[:n]
            n16 = n - n % 16
            for i in range(0, n16, 16):         # the window's rows, 16 lanes in registers
                max16_cols(row, i, x, y0 * n + i, y1 - y0, n)
            src = x[y0 * n:(y0 + 1) * n]
            for i in range(n16, n):
                row[i] = src[i]
            for iy in range(y0 + 1, y1):
                src = x[iy * n:(iy + 1) * n]
                for i in range(n16, n):
                    row[i] = max(row[i], src[i])
            c16 = C - C % 16
            for ox in range(Wo):
                x0, x1 = max(ox * stride - pad, 0), min(ox * stride - pad + k, W)
                for c in range(0, c16, 16):     # 16 channels in registers over the window's columns
                    max16_cols(yrow, ox * C + c, row, x0 * C + c, x1 - x0, C)
                dst = yrow[ox * C:(ox + 1) * C]
                r = row[x0 * C:(x0 + 1) * C]
                for c in range(c16, C):
                    dst[c] = r[c]
                for ix in range(x0 + 1, x1):
                    r = row[ix * C:(ix + 1) * C]
                    for c in range(c16, C):
                        dst[c] = max(dst[c], r[c])
        else:
            for i in range(Wo * C):
                yrow[i] = np.float32(0)
            for ox in range(Wo):
                x0, x1 = max(ox * stride - pad, 0), min(ox * stride - pad + k, W)
                dst = yrow[ox * C:(ox + 1) * C]
                for iy in range(y0, y1):
                    for ix in range(x0, x1):
                        src = x[(iy * W + ix) * C:(iy * W + ix + 1) * C]
                        for c in range(C):
                            dst[c] += src[c]
                if count_pad:
                    inv = np.float32((min(oy * stride - pad + k, H + pad) - (oy * stride - pad))
                                     * (min(ox * stride - pad + k, W + pad) - (ox * stride - pad)))
                else:
                    inv = np.float32((y1 - y0) * (x1 - x0))
                for c in range(C):
                    dst[c] /= inv
        if q_off >= 0:
            d0 = q_off + ((oy + q_pad) * q_wp + q_pad) * C
            q = qbuf[d0:d0 + Wo * C]
            s, zf, top = np.float32(q_scale), np.float32(q_zero), np.float32(q_max)
            for i in range(Wo * C):
                q[i] = np.uint8(min(max(roundeven32(yrow[i] / s) + zf, np.float32(0)), top))


@jit
def maxpool_u8(A, in_off, H, W, C, k, stride, pad, Ho, Wo, out_off, Wp, opad, oy_lo, oy_hi):
    """Max pool of A[in_off:] (H,W,C) u8 into the interior of A[out_off:]
    (Ho + 2 opad, Wp, C) u8, output rows oy_lo..oy_hi. Windows are clipped to
    the input (padding never wins; ceil-mode windows past the input too), and
    every window holds at least one input, so 0 (the least u8) starts each max."""
    x = A[in_off:in_off + H * W * C]
    for oy in range(oy_lo, oy_hi):
        y0, y1 = max(oy * stride - pad, 0), min(oy * stride - pad + k, H)
        for ox in range(Wo):
            x0, x1 = max(ox * stride - pad, 0), min(ox * stride - pad + k, W)
            o = out_off + ((oy + opad) * Wp + ox + opad) * C
            y = A[o:o + C]
            y[:] = 0
            for iy in range(y0, y1):
                for ix in range(x0, x1):
                    src = x[(iy * W + ix) * C:(iy * W + ix + 1) * C]
                    for c in range(C):
                        y[c] = max(y[c], src[c])


@jit
def gap_f32(fbuf, in_off, n_pix, C, out_off, acc, c_lo, c_hi):
    """(n_pix, C) -> (C,) mean: float32 sums over pixels in order, then / f32(n_pix)
    (exactly the reference's arithmetic), channels c_lo..c_hi. acc: f32 scratch (C)."""
    m = c_hi - c_lo
    a = acc[:m]
    a[:] = np.float32(0)
    for p in range(n_pix):
        x = fbuf[in_off + p * C + c_lo:in_off + p * C + c_hi]
        for c in range(m):
            a[c] += x[c]
    out = fbuf[out_off + c_lo:out_off + c_hi]
    n = np.float32(n_pix)
    for c in range(m):
        out[c] = a[c] / n


@jit
def concat_f32(fbuf, in_off, out_off, n_pix, C_in, C_out, c0, p_lo, p_hi):
    """x (n_pix, C_in) -> channels c0..c0+C_in of y (n_pix, C_out), pixels p_lo..p_hi."""
    for p in range(p_lo, p_hi):
        x = fbuf[in_off + p * C_in:in_off + (p + 1) * C_in]
        y = fbuf[out_off + p * C_out + c0:out_off + p * C_out + c0 + C_in]
        for c in range(C_in):
            y[c] = x[c]


@jit
def shortcut_a_f32(fbuf, in_off, H, W, C, stride, Ho, Wo, Cout, out_off, oy_lo, oy_hi):
    """x[::s, ::s, :] with (Cout - C)/2 zero channels on each side, output rows oy_lo..oy_hi."""
    p = (Cout - C) // 2
    c16 = C - C % 16
    for oy in range(oy_lo, oy_hi):
        o0 = out_off + oy * Wo * Cout
        zu = np.uint64(o0)
        for i in range(Wo * Cout):               # the row zeroed in one long loop (unsigned: no
            fbuf[zu + np.uint64(i)] = np.float32(0)   # wraparound checks), then each pixel's C
                                                      # channels copied 16 lanes at a time
        for ox in range(Wo):
            o = o0 + ox * Cout + p
            src = in_off + (oy * stride * W + ox * stride) * C
            for c in range(0, c16, 16):
                max16_cols(fbuf, o + c, fbuf, src + c, 1, 0)     # n = 1: a copy
            for c in range(c16, C):
                fbuf[o + c] = fbuf[src + c]


@jit
def act_f32(fbuf, in_off, out_off, n, kind, slope, lo, hi):
    """y = act(x) elementwise, float32 (the formulas of seprt/ops/op_act.py, in the same order)."""
    x, out = fbuf[in_off:in_off + n], fbuf[out_off:out_off + n]
    zero, three, six, one = np.float32(0), np.float32(3), np.float32(6), np.float32(1)
    sl = np.float32(slope)
    if kind == ACT_RELU6:
        for i in range(lo, hi):
            out[i] = min(max(x[i], zero), six)
    elif kind == ACT_LEAKY:
        for i in range(lo, hi):
            v = x[i]
            out[i] = v if v > zero else v * sl
    elif kind == ACT_SILU:
        for i in range(lo, hi):
            v = x[i]
            out[i] = v / (one + np.exp(-v))
    elif kind == ACT_HARDSWISH:
        for i in range(lo, hi):
            v = x[i]
            out[i] = v * min(max(v + three, zero), six) / six
    elif kind == ACT_SIGMOID:
        for i in range(lo, hi):
            out[i] = one / (one + np.exp(-x[i]))
    else:   # ACT_HARDSIGMOID
        for i in range(lo, hi):
            out[i] = min(max(x[i] + three, zero), six) / six


@jit
def mul_f32(fbuf, in_off, s_off, out_off, n_pix, C, p_lo, p_hi):
    """x (n_pix, C) * s (C,) -> y (n_pix, C)."""
    s = fbuf[s_off:s_off + C]
    for p in range(p_lo, p_hi):
        x = fbuf[in_off + p * C:in_off + (p + 1) * C]
        y = fbuf[out_off + p * C:out_off + (p + 1) * C]
        for c in range(C):
            y[c] = x[c] * s[c]


@jit
def affine_f32(fbuf, in_off, w, b, out_off, res_off, n_pix, C, relu, p_lo, p_hi):
    """x (n_pix, C) * w (C,) + b (C,) (+ res (n_pix, C)) (relu: 1 relu, 2 relu6) -> y (n_pix, C)."""
    for p in range(p_lo, p_hi):
        x = fbuf[in_off + p * C:in_off + (p + 1) * C]
        y = fbuf[out_off + p * C:out_off + (p + 1) * C]
        for c in range(C):
            v = x[c] * w[c] + b[c]
            if res_off >= 0:
                v = v + fbuf[res_off + p * C + c]
            if relu:
                v = max(v, np.float32(0))
            y[c] = min(v, np.float32(6)) if relu == 2 else v


@jit
def shuffle_f32(fbuf, in_off, out_off, n_pix, C, G, p_lo, p_hi):
    """x (n_pix, C) -> y (n_pix, C): y[p, i*G + g] = x[p, g*(C/G) + i]."""
    cg = C // G
    for p in range(p_lo, p_hi):
        x = fbuf[in_off + p * C:in_off + (p + 1) * C]
        y = fbuf[out_off + p * C:out_off + (p + 1) * C]
        for g in range(G):
            for i in range(cg):
                y[i * G + g] = x[g * cg + i]


@jit
def slice_f32(fbuf, in_off, out_off, n_pix, C_in, C_out, c0, p_lo, p_hi):
    """x (n_pix, C_in) -> y (n_pix, C_out) = x[:, c0:c0 + C_out]."""
    for p in range(p_lo, p_hi):
        x = fbuf[in_off + p * C_in + c0:in_off + p * C_in + c0 + C_out]
        y = fbuf[out_off + p * C_out:out_off + (p + 1) * C_out]
        for c in range(C_out):
            y[c] = x[c]
