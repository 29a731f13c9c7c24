"""Issue 16 item 4: binary weights kept as bits, expanded in registers, against
the engine's ±1 int8 weights, on the same dot tiles (AVX-512 VNNI here).

    python benchmarks/packed_weights.py [--runs 200]

The engine unpacks a conv's ±1 pattern to one int8 per weight at load (8x the
file's bits in memory). `conv_u8bit` is conv_u8i8 (seprt/kernels/conv.py) with
the weight stream as sign bits: per 64 weights one u64, expanded in the k4 loop
by sext(<64 x i1>) | 1 (kmovq + vpmovm2b + vporq on AVX-512BW) instead of one
64-byte load. Same accumulators, bit for bit (tests/test_packed_weights.py).
Timed per layer shape, interleaved, with the caches warm (the layer alone,
back to back) and cold (16 MB written between calls, as when other work runs
between inferences). Prints the CPU and the ratio bits / int8 per shape.
"""
from __future__ import annotations

import argparse
import platform
import time

import numpy as np

from seprt.kernels.conv import pack_u8i8, window_offsets
from seprt.kernels.intrinsics import dot_isa, make_dot_tile
from seprt.kernels.jit import jit

_tile_4x32b = make_dot_tile(4, 2, epilogue=True, packed=True)
_tile_1x32b = make_dot_tile(1, 2, epilogue=True, packed=True)
_tile_8x16b = make_dot_tile(8, 1, epilogue=True, packed=True)
_tile_1x16b = make_dot_tile(1, 1, epilogue=True, packed=True)


def pack_u8bit(w_int: np.ndarray, groups: int, cgp: int, M: int) -> tuple[np.ndarray, np.ndarray]:
    """±1 weights (K, kh, kw, Cg) -> (sign bits in pack_u8i8's order, 8 bytes per 64 weights, u8; wsum).
    Padding (0 in the int8 layout) becomes +1: it meets zero activations (padded
    channels) or lanes that are never stored (padded outputs)."""
    if not np.all(np.abs(w_int) == 1):
        raise ValueError("pack_u8bit: weights must be ±1")
    b, wsum = pack_u8i8(w_int, groups, cgp, M)
    return np.packbits(b.reshape(-1, 64) < 0, axis=1, bitorder="little").reshape(-1), wsum


@jit
def conv_u8bit(A, pix, koff, nk, B, G, Cgp, Kg, M, z, wsum, mult, bias,
               fbuf, out_off, res_off, K, relu, qbuf, qspec, qscale, B2, koff2, nk2, wsum2, mult2, bias2,
               pm1, p_lo, p_hi):
    """conv_u8i8 with B as sign bits (pack_u8bit): (G, Kg/16M, nk, M, 64 bits); pm1 is 1."""
    blk = 16 * M
    nob = (Kg + blk - 1) // blk
    P = 4 if M == 2 else 8
    for g in range(G):
        for ob in range(nob):
            b_off = (g * nob + ob) * nk * 8 * M
            b_off2 = (g * nob + ob) * nk2 * 64 * M
            n = min(blk, Kg - ob * blk)
            oc0 = g * Kg + ob * blk
            p0 = p_lo
            while p0 < p_hi:
                tp = P if p_hi - p0 >= P else 1
                if M == 2:
                    if tp == P:
                        _tile_4x32b(A, g * Cgp, pix, p0, B, b_off, koff, nk, n, wsum, mult, bias, oc0, z,
                                    fbuf, out_off, res_off, K, relu, qbuf, qspec, qscale, B2, b_off2, koff2, nk2,
                                    wsum2, mult2, bias2, 1)
                    else:
                        _tile_1x32b(A, g * Cgp, pix, p0, B, b_off, koff, nk, n, wsum, mult, bias, oc0, z,
                                    fbuf, out_off, res_off, K, relu, qbuf, qspec, qscale, B2, b_off2, koff2, nk2,
                                    wsum2, mult2, bias2, 1)
                elif tp == P:
                    _tile_8x16b(A, g * Cgp, pix, p0, B, b_off, koff, nk, n, wsum, mult, bias, oc0, z,
                                fbuf, out_off, res_off, K, relu, qbuf, qspec, qscale, B2, b_off2, koff2, nk2,
                                wsum2, mult2, bias2, 1)
                else:
                    _tile_1x16b(A, g * Cgp, pix, p0, B, b_off, koff, nk, n, wsum, mult, bias, oc0, z,
                                fbuf, out_off, res_off, K, relu, qbuf, qspec, qscale, B2, b_off2, koff2, nk2,
                                wsum2, mult2, bias2, 1)
                p0 += tp


def layer(h, w, c, k_out, kernel=3, stride=1, seed=0):
    """Arguments of one 'same' binary conv (groups 1, zero point 3) for both kernels:
    -> (common args before B, int8 B, bit B, args after B, output size)."""
    rng = np.random.default_rng(seed)
    pad = kernel // 2
    cgp = -(-c // 4) * 4
    hp, wp = h + 2 * pad, w + 2 * pad
    A = np.zeros((hp, wp, cgp), np.uint8)
    A[:, :, :c] = 3
    A[pad:pad + h, pad:pad + w, :c] = rng.integers(0, 256, (h, w, c))
    w_int = np.where(rng.random((k_out, kernel, kernel, c)) < 0.5, -1, 1).astype(np.int8)
    M = 2 if k_out > 16 else 1
    b8, wsum = pack_u8i8(w_int, 1, cgp, M)
    b1, _ = pack_u8bit(w_int, 1, cgp, M)
    ho, wo = (h + 2 * pad - kernel) // stride + 1, (w + 2 * pad - kernel) // stride + 1
    pix, koff = window_offsets(ho, wo, stride, 0, wp, cgp, kernel, cgp)
    n_out = ho * wo * k_out
    no_pair = (np.zeros(64, np.int8), np.zeros(0, np.int64), 0, np.zeros(1, np.int32), np.zeros(1, np.float32),
               np.zeros(1, np.float32))
    head = (A.reshape(-1), pix, koff, len(koff))
    tail = (1, cgp, k_out, M, 3, wsum, np.ones(k_out, np.float32), np.zeros(k_out, np.float32),
            np.zeros(n_out, np.float32), 0, -1, k_out, 1, np.zeros(1, np.uint8), np.array([-1, 0, 0, 0, 0, 0, 0, 0]),
            np.float32(1), *no_pair, 1, 0, ho * wo)
    return head, b8, b1, tail, n_out, w_int, A


SHAPES = [  # name, H, W, C, K
    ("resnet20 stage1 3x3 16->16 @32x32", 32, 32, 16, 16),
    ("resnet20 stage3 3x3 64->64 @8x8", 8, 8, 64, 64),
    ("resnet56-wide 3x3 128->128 @16x16", 16, 16, 128, 128),
    ("3x3 256->256 @14x14 (590 KB int8 weights)", 14, 14, 256, 256),
]


def main() -> int:
    from seprt.kernels.conv import conv_u8i8
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=200)
    args = ap.parse_args()
    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")),
               platform.processor())
    print(f"CPU: {cpu}; dot tiles: {dot_isa()}; median of {args.runs} calls, interleaved")
    big = np.zeros(16 << 20, np.uint8)
    for name, h, w, c, k in SHAPES:
        head, b8, b1, tail, n_out, _, _ = layer(h, w, c, k)
        runs = {"int8": lambda: conv_u8i8(*head, b8, *tail), "bits": lambda: conv_u8bit(*head, b1, *tail)}
        for f in runs.values():
            f()
        res = {}
        for cold in (False, True):
            ts = {key: [] for key in runs}
            for _ in range(args.runs):
                for key, f in runs.items():
                    if cold:
                        big += 1
                    t = time.perf_counter()
                    f()
                    ts[key].append(time.perf_counter() - t)
            res[cold] = {key: float(np.median(v)) * 1e6 for key, v in ts.items()}
        print(f"{name}: weights int8 {b8.nbytes:,} B, bits {b1.nbytes:,} B")
        for cold in (False, True):
            r = res[cold]
            print(f"    {'cold' if cold else 'warm'}: int8 {r['int8']:8.1f} us  bits {r['bits']:8.1f} us  "
                  f"bits/int8 {r['bits'] / r['int8']:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
