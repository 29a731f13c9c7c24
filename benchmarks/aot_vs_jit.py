"""The engine compiled ahead of time (kernels/aot.py) against numba's JIT
dispatchers, and both against TFLite int8, on the same weights in one process.

    python benchmarks/aot_vs_jit.py [--archs sepnet-cifar resnet20 sepnet-t8] [--runs 200]

The models are benchmarks/run.py's (random-init checkpoints converted by the
converter CLI, in --work). Interleaved rounds (run.py's `latency`), batch 1,
1 and 2 threads; prints the CPU, the entry and kernel paths that ran, medians
and the ratios. Run it on an idle machine.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run as bench  # noqa: E402
import seprt  # noqa: E402
from seprt.cli import engine_paths  # noqa: E402


def model(path: Path, threads: int, entry: str) -> seprt.Model:
    old = os.environ.get("SEPRT_AOT")
    os.environ["SEPRT_AOT"] = "1" if entry == "aot" else "0"
    try:
        m = seprt.Model(str(path), threads=threads)
        m._fast.fns                                # the entry is chosen on first use: here
        return m
    finally:
        os.environ.pop("SEPRT_AOT") if old is None else os.environ.__setitem__("SEPRT_AOT", old)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--archs", nargs="+", default=["sepnet-cifar", "resnet20", "sepnet-t8"])
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "seprt-bench"))
    args = ap.parse_args(argv)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    print(f"CPU: {bench.cpu_name()} ({os.cpu_count()} cores)")
    for aid in args.archs:
        files = bench.convert(aid, work)
        for threads in (1, 2):
            ms = {f"seprt {e}": model(files["seprt BQ u8"], threads, e) for e in ("aot", "jit")}
            if threads == 1:
                print(f"\n## {aid}: " + "; ".join(f"{k} ran {engine_paths(m)}" for k, m in ms.items()))
            runs = args.runs if ms["seprt aot"].graph.macs() < 1e8 else max(20, args.runs // 4)
            lat = bench.latency({**ms, "tflite int8": files["tflite int8"]}, threads, 1, runs)
            a, j, t = (lat[k]["median_ms"] for k in ("seprt aot", "seprt jit", "tflite int8"))
            print(f"  threads={threads} batch=1: aot {a:.3f} ms, jit {j:.3f} ms, tflite int8 {t:.3f} ms; "
                  f"aot/jit {a / j:.3f}x, aot/tflite int8 {a / t:.2f}x, jit/tflite int8 {j / t:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
