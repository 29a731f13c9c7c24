"""Latency of the zoo's stacked models against the pattern model of the same
arch and TFLite int8 of the same effective weights (issue 18's latency target:
stacked BQ <= pattern BQ).

    python benchmarks/stacked_latency.py [--runs 300] [--threads 1] [--models models]

For every models/<arch>-stacked-*-BQ.bin: seprt runs it twice, as planned by
default (every stacked conv's ±1 weight expanded onto the dot tiles) and with
SEPRT_STACK_KERNEL=auto (the bank-conv + gather-sum kernel where it does fewer
MACs); beside them the best pattern BQ file of the arch and TFLite int8 of the
stacked file's effective weights (<name>-int8.tflite), and a second instance
of the stacked model as a control (two instances of one plan differ by a few
per cent with where their arenas sit). All interleaved in one
process (benchmarks/run.py: latency; the stack-kernel plan in a run of its own
beside the default one), batch 1; prints the CPU, each seprt
model's kernel paths, medians, p90s and the ratios. Run it on an idle machine
(pause training: kill -STOP).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import cpu_name, latency  # noqa: E402

import seprt  # noqa: E402
from seprt.cli import engine_paths  # noqa: E402

PATTERN = {"resnet20": "resnet20-ste-BQ.bin", "resnet56": "resnet56-ste-BQ.bin", "sepnet-cifar": "sepnet-cifar-BQ.bin"}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default=str(Path(__file__).resolve().parent.parent / "models"))
    ap.add_argument("--runs", type=int, default=300)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    md = Path(args.models)
    print(f"CPU: {cpu_name()}, {args.threads} thread(s), batch 1, {args.runs} interleaved runs")
    for st in sorted(md.glob("*-stacked-*-BQ.bin")):
        a = seprt.Model(st).info()["arch"]
        models = {"seprt stacked (expanded)": st, "seprt stacked (SEPRT_STACK_KERNEL=auto)": st}
        if a in PATTERN and (md / PATTERN[a]).exists():
            models["seprt pattern"] = md / PATTERN[a]
            models["seprt stacked (expanded), 2nd instance"] = st     # control: the same plan twice differs
        tfl = md / st.name.replace("-BQ.bin", "-int8.tflite")
        if tfl.exists():
            models["tflite int8 (same weights)"] = tfl
        # two interleaved runs: the slow stack kernel would evict the others' weights between their calls
        auto = "seprt stacked (SEPRT_STACK_KERNEL=auto)"
        res = _latency_with_env({k: v for k, v in models.items() if k != auto}, args)
        res[auto] = _latency_with_env({k: models[k] for k in ("seprt stacked (expanded)", auto)}, args)[auto]
        print(f"\n{st.name} ({a})")
        for name, r in res.items():
            path = f"  [{r['paths']}]" if "paths" in r else ""
            print(f"  {name:<42} median {r['median_ms']:.3f} ms  p90 {r['p90_ms']:.3f} ms{path}")
        base = res["seprt stacked (expanded)"]["median_ms"]
        for other in ("seprt pattern", "seprt stacked (expanded), 2nd instance", "tflite int8 (same weights)",
                      "seprt stacked (SEPRT_STACK_KERNEL=auto)"):
            if other in res:
                print(f"  ratio stacked (expanded) / {other}: {base / res[other]['median_ms']:.2f}x")
    return 0


def _latency_with_env(models: dict, args) -> dict:
    """latency() with the plan of the SEPRT_STACK_KERNEL=auto entry built under
    that setting and every other one under the default; adds each seprt model's paths."""
    auto = "seprt stacked (SEPRT_STACK_KERNEL=auto)"
    loaded = {}
    for name, p in models.items():
        if name.startswith("seprt"):
            if name == auto:
                os.environ["SEPRT_STACK_KERNEL"] = "auto"
            else:
                os.environ.pop("SEPRT_STACK_KERNEL", None)
            loaded[name] = seprt.Model(p, threads=args.threads)
    os.environ.pop("SEPRT_STACK_KERNEL", None)
    res = latency({k: (loaded.get(k) or v) for k, v in models.items()}, args.threads, 1, args.runs)
    for k, m in loaded.items():
        res[k]["paths"] = engine_paths(m)
    return res


if __name__ == "__main__":
    raise SystemExit(main())
