"""Stacked binary filters (weight format `stack`): bank conv once per d-channel
slice, then a gather-sum per output channel.

    R[p, s, j] = sum_{t, c<d} A[pix[p] + toff_t + s*d + c] * bank[j, t, c]     (u8 x ±1 dot tiles)
    acc[p, o]  = sum_s R[p, s, index[o, s]]      ( = sum over the window of q * W_expanded[o] )

then the shared conv epilogue (acc - z*wsum) * mult + bias (+ res) (relu)
(+ requantization), exactly the integers of the expanded ±1 weight
(seprt/ops/wfmt_stack.py). MACs: Ho*Wo*(Cg*m*k*k + K*Cg/d) against
Ho*Wo*K*Cg*k*k expanded, so it pays when m < K. Needs d % 4 == 0 (slices
start on a 4-channel step of the padded buffer); the planner expands the
weight otherwise.
"""
from __future__ import annotations

from enum import IntEnum

import numpy as np

from .conv import P16, _tile_1x16, _tile_p16, _write
from .jit import jit

OP_CONV_STACK = 20


class ConvStackRow(IntEnum):
    """conv_stack_u8: u8 activations x a ±1 bank, gather-sum by index."""
    A = 1            # abuf: padded input (Hp, Wp, G, Cgp) u8
    PIX = 2          # aux: (Ho*Wo,) window offsets
    N_PIX = 3
    KOFF = 4         # aux: (nk,) offsets of the 4-channel steps of one d-slice inside a window (nk = k*k*d/4)
    NK = 5
    B = 6            # wi8: bank packed (mp/16, nk, 16, 4) i8 (m padded to mp with zero filters)
    MP = 7           # bank filters padded to a multiple of 16
    S = 8            # slices per filter (Cg / d)
    D = 9            # slice depth
    G = 10
    CGP = 11
    KG = 12
    IDX = 13         # wi32: (G, S, Kg) gather offsets s*mp + index[o, s]
    ZERO = 14
    WSUM = 15        # wi32: (K,) sums of the expanded ±1 filters




@jit
def conv_stack_u8(A, pix, koff, nk, B, mp, S, d, G, Cgp, Kg, idx, z, wsum, mult, bias,
                  fbuf, out_off, res_off, K, relu, acc, qbuf, qspec, qscale, stage, p_lo, p_hi):
    """A (Hp,Wp,G,Cgp) u8, bank B (mp/16, nk, 16, 4) i8, idx (G, S, Kg) i32 -> fbuf (Ho*Wo, K) f32,
    output pixels p_lo..p_hi. acc: i32 scratch (8*16 + 8*S*mp + Kg): tile, responses R, gather."""
    nb = mp // 16
    P = P16          # <= 8: the plan sizes acc for 8
    tile = acc[:P * 16]
    R = acc[P * 16:P * 16 + P * S * mp]
    out = acc[P * 16 + P * S * mp:P * 16 + P * S * mp + Kg]
    for g in range(G):
        p0 = p_lo
        while p0 < p_hi:
            tp = P if p_hi - p0 >= P else 1
            for s in range(S):
                a_add = g * Cgp + s * d
                for jb in range(nb):
                    if tp == P:
                        _tile_p16(tile, A, a_add, pix, p0, B, jb * nk * 64, koff, nk)
                    else:
                        _tile_1x16(tile, A, a_add, pix, p0, B, jb * nk * 64, koff, nk)
                    for p in range(tp):
                        r0 = (p * S + s) * mp + jb * 16
                        for l in range(16):
                            R[r0 + l] = tile[p * 16 + l]
            for p in range(tp):
                rp = R[p * S * mp:(p + 1) * S * mp]
                for o in range(Kg):
                    out[o] = 0
                for s in range(S):
                    ix = idx[(g * S + s) * Kg:(g * S + s + 1) * Kg]
                    for o in range(Kg):
                        out[o] += rp[ix[o]]
                pi = p0 + p
                at = pi * K + g * Kg
                _write(out, Kg, g * Kg, z, wsum, mult, bias, fbuf, out_off + at if out_off >= 0 else -1,
                       res_off + at if res_off >= 0 else -1, relu, qbuf, qspec, qscale, pi, K, stage)
            p0 += tp


def pack_stack(bank_pm1: np.ndarray, index: np.ndarray, groups: int, kernel: int):
    """bank (m, k, k, d) ±1, index (K, S) -> (B (mp/16, k*k*d/4, 16, 4) i8 flat, mp,
    idx (G, S, Kg) i32 flat = s*mp + index, wsum (K,) i32 of the expanded filters)."""
    m, _, _, d = bank_pm1.shape
    k_out, S = index.shape
    mp = -(-m // 16) * 16
    nk = kernel * kernel * d // 4
    w = np.zeros((mp, kernel * kernel, d), np.int8)
    w[:m] = bank_pm1.reshape(m, kernel * kernel, d)
    b = w.reshape(mp // 16, 16, nk, 4).transpose(0, 2, 1, 3)
    kg = k_out // groups
    idx = (np.arange(S)[None, :] * mp + index.astype(np.int64)).reshape(groups, kg, S).transpose(0, 2, 1)
    bsum = bank_pm1.reshape(m, -1).astype(np.int32).sum(axis=1)
    wsum = bsum[index.astype(np.intp)].sum(axis=1).astype(np.int32)
    return np.ascontiguousarray(b).reshape(-1), mp, np.ascontiguousarray(idx, np.int32).reshape(-1), wsum
