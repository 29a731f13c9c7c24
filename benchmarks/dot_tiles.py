"""One dot tile alone, weights in L1: GMAC/s of every path this CPU runs.

    python benchmarks/dot_tiles.py [--nk 36 144] [--reps 200000]

For each ISA of kernels.intrinsics.runnable_isas() (e.g. vnni, avx2 and
generic on an AVX-512 VNNI CPU), each tile shape (P pixels x 16*M channels)
and each kind of weights (int8; ±1, the pm1 tile on AVX2), one
make_dot_tile(P, M, isa=...) is called in a numba loop over the same
inputs (nk k4 steps, worst-case activations 255 in part) and checked
bit-exact against numpy first. Run it on an idle machine; it names the CPU.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from numba import njit

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import cpu_name  # noqa: E402

from seprt.kernels.intrinsics import make_dot_tile, runnable_isas  # noqa: E402

SHAPES = ((1, 1), (2, 1), (4, 1), (8, 1), (1, 2), (2, 2), (4, 2))


def inputs(nk: int, M: int, pm1: bool, seed: int = 0):
    rng = np.random.default_rng(seed)
    A = rng.integers(0, 256, 8192, dtype=np.uint8)
    A[:64] = 255
    B = rng.integers(-1, 2, nk * 64 * M, dtype=np.int8) if pm1 else rng.integers(-128, 128, nk * 64 * M,
                                                                                   dtype=np.int8)
    pix = (np.arange(16) * 37).astype(np.int64)
    koff = (np.arange(nk) * 28 % 4000).astype(np.int64)
    return A, B, pix, koff


def reference(A, B, pix, koff, P: int, M: int) -> np.ndarray:
    """acc[(p*M + j)*16 + l] = sum_kk,b A[pix[p] + koff[kk] + b] * B[((kk*M + j)*16 + l)*4 + b]."""
    nk = len(koff)
    a = np.stack([A[(pix[p] + koff)[:, None] + np.arange(4)].reshape(-1) for p in range(P)]).astype(np.int64)
    w = B.reshape(nk, M, 16, 4).transpose(1, 2, 0, 3).reshape(M * 16, nk * 4).astype(np.int64)
    return (a @ w.T).reshape(-1)


def measure(isa: str, P: int, M: int, nk: int, pm1: bool, reps: int) -> float:
    tile = make_dot_tile(P, M, isa=isa, pm1=pm1)

    @njit
    def run(acc, A, pix, B, koff, nk, reps):
        for _ in range(reps):
            tile(acc, A, 0, pix, 0, B, 0, koff, nk)

    A, B, pix, koff = inputs(nk, M, pm1)
    acc = np.zeros(P * M * 16, np.int32)
    run(acc, A, pix, B, koff, nk, 1)
    if not np.array_equal(acc, reference(A, B, pix, koff, P, M)):
        raise SystemExit(f"{isa} P={P} M={M} nk={nk} pm1={pm1}: not bit-exact")
    n = max(1, reps // nk)
    t0 = time.perf_counter()
    run(acc, A, pix, B, koff, nk, n)
    return P * M * 16 * nk * 4 * n / (time.perf_counter() - t0) / 1e9


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--nk", type=int, nargs="+", default=[36, 144])
    ap.add_argument("--reps", type=int, default=200000, help="k4 steps x calls per measurement")
    args = ap.parse_args(argv)
    isas = runnable_isas()
    print(f"CPU: {cpu_name()}; paths: {', '.join(isas)}; GMAC/s of one tile, bit-exact checked")
    print("| nk | tile | " + " | ".join(f"{i} i8 | {i} ±1" for i in isas) + " |")
    print("|---" * (2 + 2 * len(isas)) + "|")
    for nk in args.nk:
        for P, M in SHAPES:
            cells = [f"{measure(i, P, M, nk, pm1, args.reps):.1f}" for i in isas for pm1 in (False, True)]
            print(f"| {nk} | {P} px x {16 * M} ch | " + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
