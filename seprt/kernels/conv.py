"""Conv kernels (NHWC, one image), each with the numpy reference it must match.

All kernels read and write flat arenas (1-D arrays) at offsets computed by the
plan (seprt/plan.py), and end in the same epilogue:

    y[p, oc] = f32(acc[p, oc]) * mult[oc] + bias[oc]  (+ res[p, oc])  (relu)

Kernels and their inputs:
    conv_u8i8           acc = sum (q - z) * w8    u8 x i8 dot tiles (AVX-512 VNNI
                                                  where present, generic vectors else)
    conv_dw_u8i8        acc = sum (q - z) * w8    depthwise, 4 pixels x 16 channels per
                                                  register tile (make_dw_tile)
    conv_bin_popcount   acc = sum (q - z) * (±1)  bit-plane popcount, 2/4/8-bit q
    conv_f32            acc = sum x * w           float32 (R and B models)

Integer kernels read a zero-padded quantized input
    A  u8 (Hp, Wp, G, Cgp)   q of the value, border pixels = z, channels
                             padded per group to Cgp = ceil(Cg/4)*4 (pad = 0)
so every window is whole and acc = sum_all q*w - z * wsum[oc] exactly
(the border's q - z is 0, as the reference's zero padding).
"""
from __future__ import annotations

from enum import IntEnum

import numpy as np
from .jit import jit

from .intrinsics import dot_isa, make_dot_tile, make_dw_tile, popcount64, roundeven32

# ------------------------------------------------------ instruction rows
# Each kernel is run by one opcode of the plan's instruction table (a row of
# WIDTH int64 columns, column 0 the opcode); the IntEnums below name the
# columns its row uses. Offsets are element offsets into the engine's arenas:
# abuf u8 (quantized inputs), fbuf f32 (activations), aux i64, wf32/wi8/wu64/wi32
# (read-only weights). Every conv row ends in the same Epilogue columns.

OP_PLANES, OP_CONV_DOT, OP_CONV_BIN, OP_CONV_F32, OP_CONV_DW = 2, 3, 4, 5, 12
RELU, RELU6 = 1, 2   # Epilogue.RELU: max(v, 0); min(max(v, 0), 6) (act relu6)


class Epilogue(IntEnum):
    """Columns shared by every conv row: y = f32(acc - z*wsum) * mult + bias (+ res) (relu)."""
    MULT = 20        # wf32: (K,) multiplier (input scale * weight scale / alpha; ones for f32)
    BIAS = 21        # wf32: (K,) bias
    OUT = 22         # fbuf: (Ho*Wo, K) float output, -1: none (only the quantized copy is used)
    RES = 23         # fbuf: (Ho*Wo, K) residual added before relu, -1: none
    K = 24           # output channels
    RELU = 25        # 0: none, RELU, RELU6
    Q_OFF = 26       # abuf: fused requantization into the consumer's padded buffer, -1: none
    Q_WO = 27        #   output width (pixels per row)
    Q_PAD = 28       #   the consumer buffer's border
    Q_WP = 29        #   the consumer buffer's padded width
    Q_ZERO = 30      #   its zero point
    Q_MAX = 31       #   2^bits - 1
    Q_SCALE = 32     # wf32: its scale (one float)
    Q_K = 33         #   its channels per pixel: K, or a concat's total when writing a slice of it


class PlanesRow(IntEnum):
    """planes_from_u8: a padded u8 buffer -> bit planes and per-pixel sums."""
    A = 1            # abuf: (n_pix, G, Cgp) u8
    N_PIX = 2
    G = 3
    CG = 4
    CGP = 5
    BITS = 6
    NW = 7           # 64-bit words per plane
    PLANES = 8       # pbuf: (n_pix, G, bits, nw) u64
    QSUM = 9         # qbuf: (n_pix, G) i32


class ConvDotRow(IntEnum):
    """conv_u8i8: u8 activations x i8 weights on dot tiles."""
    A = 1            # abuf: padded input (Hp, Wp, G, Cgp) u8
    PIX = 2          # aux: (Ho*Wo,) window offsets
    N_PIX = 3
    KOFF = 4         # aux: (nk,) offsets of the 4-channel steps inside a window
    NK = 5
    B = 6            # wi8: packed weights (G, Kg/16M, nk, M, 16, 4)
    G = 7
    CGP = 8
    KG = 9
    M = 10           # 16-channel blocks per tile (1 or 2)
    ZERO = 11        # input zero point
    WSUM = 12        # wi32: (K,) sum of each filter's integer weights
    # a paired 1x1 conv of the same input (PRB: 3x3 + 1x1, summed), run in the same
    # tiles; its output is the residual (Epilogue.RES is then -1). NK2 = 0: none
    B2 = 13          # wi8: its packed weights (G, Kg/16M, nk2, M, 16, 4)
    KOFF2 = 14       # aux: (nk2,) offsets of its 4-channel steps inside the window (the centre tap)
    NK2 = 15
    WSUM2 = 16       # wi32: (K,)
    MULT2 = 17       # wf32: (K,) its multiplier
    BIAS2 = 18       # wf32: (K,) its bias
    PM1 = 19         # 1: every weight of B is -1, 0 or 1 (binary patterns; AVX2 tiles sum them in i16)


class ConvBinRow(IntEnum):
    """conv_bin_popcount: bit planes x packed ±1 patterns."""
    PLANES = 1       # pbuf: (n_pix, G, bits, nw) u64
    QSUM = 2         # qbuf: (n_pix, G) i32
    PIX = 3          # aux: (Ho*Wo,) padded-pixel index of each window's first tap
    N_PIX = 4
    TOFF = 5         # aux: (T,) pixel offsets of the taps
    T = 6
    G = 7
    BITS = 8
    NW = 9
    PAT = 10         # wu64: (G, T, nw, Kg) pattern words
    KG = 11
    ZERO = 12
    WSUM = 13        # wi32: (K,)


class ConvF32Row(IntEnum):
    """conv_f32: float activations x float weights."""
    IN = 1           # fbuf: (H, W, C) input
    H = 2
    W = 3
    C = 4
    WT = 5           # wf32: (G, k*k, Cg, Kg) weights
    G = 6
    KERNEL = 7
    STRIDE = 8
    PAD = 9
    HO = 10
    WO = 11
    KG = 12


class ConvDwRow(IntEnum):
    """conv_dw_u8i8: depthwise (groups = channels = outputs), one filter per channel."""
    A = 1            # abuf: padded input (Hp, Wp, Cp) u8
    PIX = 2          # aux: (Ho*Wo,) window offsets
    N_PIX = 3
    TOFF = 4         # aux: (T,) offsets of the taps inside a window
    T = 5            # taps (k*k)
    WT = 6           # wi8: (T, Cp) weights, tap-major
    CP = 7           # channels padded to a multiple of 4
    ZERO = 8
    WSUM = 9         # wi32: (K,)


# Pixels per whole tile of 32 (M = 2) and 16 channels (M = 1): with AVX-512 VNNI 4 x 32
# and 8 x 16 are 8 zmm accumulators; AVX2's vpmaddwd tile keeps 4 ymm per pixel and
# 16 channels (16 ymm in all), so 1 x 32 and 2 x 16 (measured fastest on Zen 2).
P32, P16 = (1, 2) if dot_isa() == "avx2" else (4, 8)
_tile_p16 = make_dot_tile(P16, 1, pm1=True)   # P16 pixels x 16 filters of a ±1 bank (kernels/stack.py)
_tile_1x16 = make_dot_tile(1, 1, pm1=True)
# with the epilogue in registers (conv_u8i8)
_tile_p32e = make_dot_tile(P32, 2, epilogue=True)  # P32 pixels x 32 channels
_tile_1x32e = make_dot_tile(1, 2, epilogue=True)
_tile_p16e = make_dot_tile(P16, 1, epilogue=True)  # P16 pixels x 16 channels, for groups of <= 16 outputs
_tile_1x16e = make_dot_tile(1, 1, epilogue=True)
_dw_4x16e = make_dw_tile(4)                       # depthwise: 4 pixels x 16 channels (conv_dw_u8i8)
_dw_1x16e = make_dw_tile(1)


@jit(inline="always")
def _epilogue(acc, z, wsum, mult, bias, out, has_out, res, has_res, relu, qout, has_q, qs, qz, qmax):
    """One pixel, k < len(acc): v = f32(acc[k] - z*wsum[k]) * mult[k] + bias[k] (+ res[k]) (relu);
    out[k] = v and/or qout[k] = clip(roundeven(v / qs) + qz, 0, qmax) (the next layer's
    quantized input, as seprt.quant.quantize_act). Arguments are views starting at
    the pixel's first channel; each step is its own branch-free loop, so it vectorizes.
    v is staged in `out` (the caller passes a scratch view when has_out is False)."""
    n = acc.shape[0]
    for k in range(n):
        out[k] = np.float32(acc[k] - z * wsum[k]) * mult[k] + bias[k]
    if has_res:
        for k in range(n):
            out[k] += res[k]
    if relu:
        for k in range(n):
            out[k] = max(out[k], np.float32(0))
    if relu == RELU6:
        for k in range(n):
            out[k] = min(out[k], np.float32(6))
    if has_q:
        for k in range(n):
            qout[k] = np.uint8(min(max(roundeven32(out[k] / qs) + qz, np.float32(0)), qmax))


@jit(inline="always")
def _write(acc, n, oc0, z, wsum, mult, bias, fbuf, out_at, res_at, relu, qbuf, qspec, qscale, p, K, stage):
    """_epilogue for n channels from oc0 of output pixel p (K channels per pixel).

    Float output at fbuf[out_at] (< 0: not needed), residual at fbuf[res_at]
    (< 0: none); qspec = [q_off (< 0: none), Wo, pad, Wp, zero, qmax, (scale), q_k] places
    the quantized copy in the consumer's padded u8 buffer qbuf, q_k channels per pixel
    (q_off already at this conv's first channel there); stage: f32 scratch
    for v when there is no float output.
    """
    has_out, has_res, has_q = out_at >= 0, res_at >= 0, qspec[0] >= 0
    o = out_at if has_out else 0
    r = res_at if has_res else 0
    q = 0
    if has_q:
        wo, pad = qspec[1], qspec[2]
        oy = p // wo
        q = qspec[0] + ((oy + pad) * qspec[3] + (p - oy * wo) + pad) * qspec[7] + oc0
    out = fbuf[o:o + n] if has_out else stage[:n]
    _epilogue(acc[:n], z, wsum[oc0:oc0 + n], mult[oc0:oc0 + n], bias[oc0:oc0 + n], out, has_out,
              fbuf[r:r + n], has_res, relu, qbuf[q:q + n], has_q, qscale, np.float32(qspec[4]),
              np.float32(qspec[5]))


# ---------------------------------------------------------------- u8 x i8

@jit
def conv_u8i8(A, pix, koff, nk, B, G, Cgp, Kg, M, z, wsum, mult, bias,
              fbuf, out_off, res_off, K, relu, qbuf, qspec, qscale, B2, koff2, nk2, wsum2, mult2, bias2,
              pm1, p_lo, p_hi):
    """A (Hp,Wp,G,Cgp) u8, B packed (G, Kg/16M, nk, M, 16, 4) i8 -> fbuf (Ho*Wo, K) f32,
    output pixels p_lo..p_hi (this thread's share).

    pix (Ho*Wo,) i64: A offset of each output pixel's window; koff (nk,) i64:
    offset of each 4-channel step inside the window; out_off < 0: no float
    output; qbuf/qspec/qscale: fused requantization (as _write's).
    nk2 > 0: a paired conv (B2, koff2, wsum2, mult2, bias2; ConvDotRow.B2) whose
    output is the residual, computed in the same tiles.
    pm1: 1 when every weight of B is -1, 0 or 1 (binary patterns): AVX2's faster tile.
    """
    blk = 16 * M
    nob = (Kg + blk - 1) // blk
    P = P32 if M == 2 else P16
    for g in range(G):
        for ob in range(nob):
            b_off = (g * nob + ob) * nk * 64 * M
            b_off2 = (g * nob + ob) * nk2 * 64 * M
            n = min(blk, Kg - ob * blk)
            oc0 = g * Kg + ob * blk
            p0 = p_lo
            while p0 < p_hi:
                # the tile applies the epilogue in registers (kernels/intrinsics.py:_emit_epilogue)
                tp = P if p_hi - p0 >= P else 1
                if M == 2:
                    if tp == P:
                        _tile_p32e(A, g * Cgp, pix, p0, B, b_off, koff, nk, n, wsum, mult, bias, oc0, z,
                                    fbuf, out_off, res_off, K, relu, qbuf, qspec, qscale, B2, b_off2, koff2, nk2,
                                    wsum2, mult2, bias2, pm1)
                    else:
                        _tile_1x32e(A, g * Cgp, pix, p0, B, b_off, koff, nk, n, wsum, mult, bias, oc0, z,
                                    fbuf, out_off, res_off, K, relu, qbuf, qspec, qscale, B2, b_off2, koff2, nk2,
                                    wsum2, mult2, bias2, pm1)
                elif tp == P:
                    _tile_p16e(A, g * Cgp, pix, p0, B, b_off, koff, nk, n, wsum, mult, bias, oc0, z,
                                fbuf, out_off, res_off, K, relu, qbuf, qspec, qscale, B2, b_off2, koff2, nk2,
                                wsum2, mult2, bias2, pm1)
                else:
                    _tile_1x16e(A, g * Cgp, pix, p0, B, b_off, koff, nk, n, wsum, mult, bias, oc0, z,
                                fbuf, out_off, res_off, K, relu, qbuf, qspec, qscale, B2, b_off2, koff2, nk2,
                                wsum2, mult2, bias2, pm1)
                p0 += tp


def pack_u8i8(w_int: np.ndarray, groups: int, cgp: int, M: int) -> tuple[np.ndarray, np.ndarray]:
    """Integer weights (K, kh, kw, Cg) -> (B packed for the tiles, wsum (K,) int32).

    B layout: (G, ceil(Kg/16M), kh*kw*Cgp/4, M, 16, 4) int8, zero padded.
    """
    k_out, kh, kw, cg = w_int.shape
    kg, blk = k_out // groups, 16 * M
    nob = -(-kg // blk)
    w = np.zeros((groups, nob * blk, kh * kw, cgp), np.int8)
    w[:, :kg, :, :cg] = w_int.reshape(groups, kg, kh * kw, cg)
    nk = kh * kw * cgp // 4
    b = w.reshape(groups, nob, M, 16, nk, 4).transpose(0, 1, 4, 2, 3, 5)
    wsum = w_int.reshape(k_out, -1).astype(np.int32).sum(axis=1).astype(np.int32)
    return np.ascontiguousarray(b).reshape(-1), wsum


def window_offsets(ho: int, wo: int, stride: int, shift: int, wp: int, cpix: int, k: int, cgp: int):
    """pix (Ho*Wo,) and koff (k*k*Cgp/4,) for a padded input of width wp and
    cpix bytes per pixel; `shift` = buffer padding - layer padding."""
    oy, ox = np.arange(ho, dtype=np.int64)[:, None], np.arange(wo, dtype=np.int64)[None, :]
    pix = (((oy * stride + shift) * wp + (ox * stride + shift)) * cpix).reshape(-1)
    ky, kx = np.arange(k, dtype=np.int64)[:, None, None], np.arange(k, dtype=np.int64)[None, :, None]
    koff = ((ky * wp + kx) * cpix + 4 * np.arange(cgp // 4, dtype=np.int64)[None, None, :]).reshape(-1)
    return pix, koff


def rows_width(k: int, cg: int) -> int:
    """Bytes of one window row of a row-packed conv: k*Cg rounded up to 4-byte steps."""
    return -(-k * cg // 4) * 4


def use_rows(k: int, cg: int, groups: int) -> bool:
    """Row-packed windows for a dense conv whose channels are not a multiple of 4
    (the RGB stem): in an unpadded (Hp, Wp, Cg) buffer a window row's k*Cg bytes
    are contiguous, so it runs in ceil(k*Cg/4) dot steps instead of k*ceil(Cg/4)
    (5x5 on RGB: 20 instead of 25, 7x7: 42 instead of 49). The steps' extra bytes
    (the next pixel's) meet zero weights; the buffer has 3 bytes of slack after it."""
    return groups == 1 and cg % 4 != 0 and rows_width(k, cg) < k * (-(-cg // 4) * 4)


def pack_u8i8_rows(w_int: np.ndarray, M: int) -> tuple[np.ndarray, np.ndarray]:
    """Integer weights (K, kh, kw, Cg) -> pack_u8i8 of (K, kh, 1, kw*Cg): one zero-padded
    byte row per kernel row, in the order of window_offsets_rows' steps."""
    k_out, kh, kw, cg = w_int.shape
    return pack_u8i8(w_int.reshape(k_out, kh, 1, kw * cg), 1, rows_width(kw, cg), M)


def window_offsets_rows(ho: int, wo: int, stride: int, shift: int, wp: int, cg: int, k: int):
    """pix (Ho*Wo,) and koff (k * rows_width/4,) of a row-packed conv on an unpadded
    (Hp, wp, Cg) u8 buffer: step j of kernel row ky reads bytes 4j..4j+3 of that row."""
    pix, _ = window_offsets(ho, wo, stride, shift, wp, cg, 1, 4)
    koff = (np.arange(k)[:, None] * wp * cg + 4 * np.arange(rows_width(k, cg) // 4)[None, :]).reshape(-1)
    return pix, koff.astype(np.int64)


def conv_int_ref(q: np.ndarray, z: int, w_int: np.ndarray, stride: int, pad: int, groups: int) -> np.ndarray:
    """Reference accumulators: q (H,W,C) ints, w (K,k,k,Cg) ints -> (Ho,Wo,K) int64."""
    from ..reference import conv2d
    return conv2d((q.astype(np.int64) - z)[None], w_int.astype(np.int64), stride, pad, groups)[0]


# ---------------------------------------------------------------- binary

@jit
def planes_from_u8(A, n_pix, G, Cg, Cgp, bits, nw, planes, qsum, p_lo, p_hi):
    """A (n_pix, G, Cgp) u8 -> planes (n_pix, G, bits, nw) u64 and qsum (n_pix, G) i32,
    pixels p_lo..p_hi.

    Bit c of word c//64 of plane b is bit b of q[c]; qsum = sum of q over the group.
    """
    for p in range(p_lo, p_hi):
        for g in range(G):
            base = (p * G + g) * bits * nw
            for i in range(bits * nw):
                planes[base + i] = 0
            s = 0
            a = (p * G + g) * Cgp
            for c in range(Cg):
                v = np.uint64(A[a + c])
                s += np.int32(v)
                bit = np.uint64(1) << np.uint64(c & 63)
                for b in range(bits):
                    if (v >> np.uint64(b)) & np.uint64(1):
                        planes[base + b * nw + (c >> 6)] |= bit
            qsum[p * G + g] = s


@jit
def conv_bin_popcount(planes, qsum, pix, toff, T, G, bits, nw, pat, Kg, z, wsum, mult, bias,
                      fbuf, out_off, res_off, K, relu, acc, qbuf, qspec, qscale, stage, p_lo, p_hi):
    """planes (n_pix, G, bits, nw) u64 x patterns (G, T, nw, Kg) u64 -> fbuf (Ho*Wo, K).

    pix (Ho*Wo,) i64: padded-pixel index of each window's first tap; toff (T,):
    pixel offsets of the taps. acc: i64 scratch (Kg). For +-1 weights,
    sum w*q = 2*sum_{w=+1} q - sum q, and sum_{w=+1} q = sum_b 2^b popcount(X_b & P).
    """
    for p in range(p_lo, p_hi):
        for g in range(G):
            a = acc[:Kg]
            a[:] = 0
            s = 0
            for t in range(T):
                pp = pix[p] + toff[t]
                s += qsum[pp * G + g]
                xb = (pp * G + g) * bits * nw
                for w in range(nw):
                    pb = ((g * T + t) * nw + w) * Kg
                    prow = pat[pb:pb + Kg]
                    for b in range(bits):
                        x = planes[xb + b * nw + w]
                        for o in range(Kg):
                            a[o] += np.int64(popcount64(x & prow[o])) << b
            for o in range(Kg):
                a[o] = 2 * a[o] - s
            at = p * K + g * Kg
            _write(a, Kg, g * Kg, z, wsum, mult, bias, fbuf, out_off + at if out_off >= 0 else -1,
                   res_off + at if res_off >= 0 else -1, relu, qbuf, qspec, qscale, p, K, stage)


def pack_bin(pattern: np.ndarray, groups: int) -> tuple[np.ndarray, np.ndarray]:
    """±1 patterns (K, kh, kw, Cg) -> (words (G, kh*kw, nw, Kg) u64, wsum (K,) int32)."""
    k_out, kh, kw, cg = pattern.shape
    kg, nw = k_out // groups, -(-cg // 64)
    bits = np.zeros((k_out, kh * kw, nw * 64), np.uint8)
    bits[:, :, :cg] = (pattern.reshape(k_out, kh * kw, cg) > 0)
    words = np.packbits(bits, axis=2, bitorder="little").view(np.uint64)      # (K, T, nw)
    words = words.reshape(groups, kg, kh * kw, nw).transpose(0, 2, 3, 1)
    wsum = pattern.reshape(k_out, -1).astype(np.int32).sum(axis=1).astype(np.int32)
    return np.ascontiguousarray(words).reshape(-1), wsum


# ---------------------------------------------------------------- depthwise

@jit
def conv_dw_u8i8(A, pix, toff, Wt, Cp, z, wsum, mult, bias, fbuf, out_off, res_off, K, relu,
                 qbuf, qspec, qscale, p_lo, p_hi):
    """A (Hp,Wp,Cp) u8, Wt (T, Cp) i8 -> fbuf (Ho*Wo, K) f32: depthwise, K = C,
    output pixels p_lo..p_hi.

    acc[p, c] = sum_t A[pix[p] + toff[t] + c] * Wt[t, c], then acc - z*wsum[c]
    (the border holds z, so every window is whole), in register tiles of 4 pixels x
    16 channels (_dw_4x16e, kernels/intrinsics.py:make_dw_tile) with the conv
    epilogue applied in registers. The cost is the layer's real MACs (k*k per output).
    Reference: conv_int_ref(..., groups=C) and _epilogue.
    """
    T = toff.shape[0]
    p0 = p_lo
    while p0 < p_hi:
        tp = 4 if p_hi - p0 >= 4 else 1
        for c0 in range(0, K, 16):
            n = min(16, K - c0)
            if tp == 4:
                _dw_4x16e(A, pix, p0, Wt, Cp, toff, T, c0, n, wsum, mult, bias, z, fbuf, out_off, res_off, K,
                          relu, qbuf, qspec, qscale)
            else:
                _dw_1x16e(A, pix, p0, Wt, Cp, toff, T, c0, n, wsum, mult, bias, z, fbuf, out_off, res_off, K,
                          relu, qbuf, qspec, qscale)
        p0 += tp


def pack_dw(w_int: np.ndarray, cp: int) -> tuple[np.ndarray, np.ndarray]:
    """Depthwise integer weights (K, kh, kw, 1) -> (Wt (kh*kw, Cp) i8 flat, wsum (K,) i32)."""
    k_out, kh, kw, _ = w_int.shape
    wt = np.zeros((kh * kw, cp), np.int8)
    wt[:, :k_out] = w_int.reshape(k_out, kh * kw).T
    return wt.reshape(-1), w_int.reshape(k_out, -1).astype(np.int32).sum(axis=1).astype(np.int32)


# ---------------------------------------------------------------- float

@jit
def conv_f32(fbuf, in_off, H, W, C, Wt, G, k, stride, pad, Ho, Wo, Kg, mult, bias,
             out_off, res_off, K, relu, acc, qbuf, qspec, qscale, stage, p_lo, p_hi):
    """x (H,W,C) f32 at in_off, Wt (G, k*k, Cg, Kg) f32 -> fbuf (Ho*Wo, K) f32 at out_off,
    output pixels p_lo..p_hi.

    Zero padding by skipping taps outside the image; acc: f32 scratch (Kg);
    mult: ones (K,) (the shared epilogue's scale).
    """
    cg = C // G
    a = acc[:Kg]
    for p in range(p_lo, p_hi):
        oy = p // Wo
        ox = p - oy * Wo
        for g in range(G):
            a[:] = 0
            for ky in range(k):
                iy = oy * stride - pad + ky
                if iy < 0 or iy >= H:
                    continue
                for kx in range(k):
                    ix = ox * stride - pad + kx
                    if ix < 0 or ix >= W:
                        continue
                    xb = in_off + (iy * W + ix) * C + g * cg
                    xrow = fbuf[xb:xb + cg]
                    wb = (g * k * k + ky * k + kx) * cg * Kg
                    for c in range(cg):
                        xv = xrow[c]
                        wrow = Wt[wb + c * Kg:wb + (c + 1) * Kg]
                        for o in range(Kg):
                            a[o] += xv * wrow[o]
            at = (oy * Wo + ox) * K + g * Kg
            _write(a, Kg, g * Kg, 0, mult, mult, bias, fbuf, out_off + at if out_off >= 0 else -1,
                   res_off + at if res_off >= 0 else -1, relu, qbuf, qspec, qscale, oy * Wo + ox, K, stage)


def pack_f32(w: np.ndarray, groups: int) -> np.ndarray:
    """(K, kh, kw, Cg) f32 -> (G, kh*kw, Cg, Kg) f32 flat."""
    k_out, kh, kw, cg = w.shape
    return np.ascontiguousarray(
        w.reshape(groups, k_out // groups, kh * kw, cg).transpose(0, 2, 3, 1)).reshape(-1).astype(np.float32)
