"""The Python fast engine timed as `seprt bench MODEL --threads 1` times it, printing the minimum too.

    python android_demo/bench_python.py MODEL [RUNS]

For the JVM table of android_demo/README.md: run it interleaved with
`java -jar android_demo/build/seprt-core.jar --bench MODEL RUNS` on the same files. On a busy
machine the minimum is the better estimate of the uncontended time.
"""
from __future__ import annotations

import statistics
import sys
import time

import numpy as np

from seprt.model import Model


def main() -> int:
    path = sys.argv[1]
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 200
    m = Model(path, engine="fast", threads=1)
    x = np.random.default_rng(0).standard_normal((1,) + m.input_shape).astype(np.float32)
    m.logits(x)                         # JIT compile (or load from the numba cache)
    for _ in range(max(2, runs // 10)):  # warm-up, as seprt bench
        m.logits(x)
    t = []
    for _ in range(runs):
        t0 = time.perf_counter()
        m.logits(x)
        t.append(time.perf_counter() - t0)
    print(f"python fast engine {path}: median {statistics.median(t) * 1e3:.3f} ms, "
          f"min {min(t) * 1e3:.3f} ms over {runs} runs, 1 thread")
    return 0


if __name__ == "__main__":
    sys.exit(main())
