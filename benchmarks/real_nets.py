"""seprt BQ vs TFLite int8 on real 224x224 networks imported from PyTorch, in one process.

    python benchmarks/real_nets.py [--nets resnet18 googlenet squeezenet1_1 mobilenet_v2 resnext50_32x4d] [--runs 40]

Each net of converters/zoo_nets.py (torchvision's layouts, random weights, seed 0:
speed does not depend on trained values) is converted by the converter CLI to
seprt BQ (every k x k conv binarized, depthwise included; 8-bit activations)
and to TFLite int8 (TFLite's own calibrator), the same calibration images for
both. Latency: interleaved rounds after warm-up (benchmarks/run.py:latency), 1
thread and 2 threads, batch 1, median and p90; then seprt's in-run per-layer
profile summed by code path. Run it on an idle machine; it prints the CPU.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import ROOT, calib_images, cpu_name, latency  # noqa: E402

import seprt  # noqa: E402
from seprt.cli import per_layer  # noqa: E402

NETS = ("resnet18", "googlenet", "squeezenet1_1", "mobilenet_v2", "resnext50_32x4d")


def convert(net: str, work: Path) -> dict[str, Path]:
    """converters.zoo_nets:<net> -> seprt BQ and TFLite int8 (skipped when the file exists)."""
    calib = work / "calib-224"
    if not calib.exists():
        calib_images(calib, 224)
    spec = ["--model", f"converters.zoo_nets:{net}", "--input-size", "224", "224"]
    out = {"seprt BQ": work / f"{net}-BQ.bin", "tflite int8": work / f"{net}-int8.tflite"}
    steps = [["seprt", *spec, "-o", out["seprt BQ"], "--variant", "BQ", "--binarize", "all", "--calib", calib],
             ["tflite", *spec, "-o", out["tflite int8"], "--quant", "int8", "--calib", calib]]
    for s in steps:
        if not Path(s[s.index("-o") + 1]).exists():
            subprocess.run([sys.executable, "-m", "converters"] + [str(a) for a in s], cwd=ROOT, check=True,
                           capture_output=True)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nets", nargs="+", default=list(NETS), choices=NETS)
    ap.add_argument("--runs", type=int, default=40)
    ap.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "seprt-real-nets"))
    args = ap.parse_args(argv)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    print(f"CPU: {cpu_name()}")
    print("| net | MACs | seprt BQ bytes | TFLite int8 bytes | threads | seprt BQ ms | TFLite int8 ms | BQ / int8 |")
    print("|---|---|---|---|---|---|---|---|")
    profiles = {}
    for net in args.nets:
        models = convert(net, work)
        m = seprt.Model(models["seprt BQ"])
        sizes = [models[k].stat().st_size for k in ("seprt BQ", "tflite int8")]
        for threads in (1, 2):
            lat = latency(models, threads, 1, args.runs)
            s, t = lat["seprt BQ"]["median_ms"], lat["tflite int8"]["median_ms"]
            print(f"| {net} | {m.graph.macs() / 1e9:.2f} G | {sizes[0]:,} | {sizes[1]:,} | {threads} | "
                  f"{s:.2f} ({lat['seprt BQ']['p90_ms']:.2f}) | {t:.2f} ({lat['tflite int8']['p90_ms']:.2f}) | "
                  f"{s / t:.2f}x |", flush=True)
        x = np.random.default_rng(0).standard_normal((1,) + m.input_shape).astype(np.float32)
        profiles[net] = per_layer(m, x, 10)
    for net, layers in profiles.items():
        by_path: dict[str, list[float]] = {}
        for layer in layers:
            acc = by_path.setdefault(layer["path"], [0, 0.0])
            acc[0] += 1
            acc[1] += layer["us"]
        total = sum(v[1] for v in by_path.values())
        print(f"\n{net}: seprt BQ in-run profile by path (1 thread; steps, us, share)")
        for path, (n, us) in sorted(by_path.items(), key=lambda kv: -kv[1][1]):
            print(f"  {path:<18} {n:4d} {us:9.1f} {us / total * 100:5.1f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
