"""seprt vs TFLite (LiteRT, XNNPACK) on the same weights, in one process.

    python benchmarks/run.py [--archs sepnet-cifar resnet20 sepnet-t8] [--runs 200] [--out results.json]
    python benchmarks/run.py --startup-only --out startup.json     # cold start and RSS only

For each architecture: a random-init checkpoint (converters init, seed 0:
speed does not depend on training) is converted to seprt BQ with 8-bit and
4-bit activations and to TFLite fp32 and int8 (TFLite's own calibrator, the
same calibration images). Latency is measured interleaved (each round runs
every model once; with threads > 1, BLOCK times back to back), after warm-up,
as median and p90, for batch 1 and 8 and
1 and 2 threads. Also: seprt's per-layer profile, cold start (import + load
+ first predict: cold cache, warm with the AOT-compiled engine, warm JIT
cache with SEPRT_AOT=0) and peak RSS of a predict process,
next to what numba alone costs (`import numba`, and the first call of one
trivial cached numba function: numba's typing and target set-up).
Run it on an idle machine; it prints the CPU, the code paths that ran and
ratios, and writes everything to --out.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

# With threads > 1 every runtime keeps its workers spinning for a while after a
# run (seprt's team 2 ms, XNNPACK's pthreadpool likewise): on a 2-core machine a
# run that follows another runtime's run loses a core to that runtime's
# spinning worker, and a run after a pause pays the wake-up of sleeping workers
# (~0.5 ms on this project's VM, for both runtimes). An app that uses threads
# on one image runs one runtime, frame after frame: so with threads > 1 each
# round runs every model untimed for SETTLE_S (the previous runtime's workers
# stop spinning meanwhile), then BLOCK timed runs back to back (still
# interleaved, by block).
BLOCK, SETTLE_S = 10, 0.005

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import seprt  # noqa: E402
from seprt import arch  # noqa: E402
from seprt.cli import engine_paths, per_layer  # noqa: E402


def cpu_name() -> str:
    """The CPU's model name, and on x86 its family/model and SIMD level: a VM's
    "AMD EPYC" alone does not tell a Zen 2 (AVX2) from a Zen 4 (AVX-512 VNNI)."""
    info = {}
    try:
        for line in open("/proc/cpuinfo"):
            key, _, val = line.partition(":")
            info.setdefault(key.strip(), val.strip())
    except OSError:
        pass
    name = info.get("model name") or platform.processor() or platform.machine()
    if "cpu family" in info and "flags" in info:
        flags = set(info["flags"].split())
        simd = next((f for f in ("avx512_vnni", "avx512f", "avx2", "avx") if f in flags), "sse")
        name += f" (family {info['cpu family']}, model {info.get('model', '?')}; {simd})"
    return name


def calib_images(folder: Path, size: int, n: int = 16) -> None:
    """Smooth random RGB images (upsampled noise) in one class folder."""
    from PIL import Image
    d = folder / "x"
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        a = (rng.random((8, 8, 3)) * 255).astype(np.uint8)
        Image.fromarray(a).resize((size + size // 7, size + size // 7), Image.BILINEAR).save(d / f"{i}.png")


def convert(arch_id: str, work: Path) -> dict[str, Path]:
    """Checkpoint -> seprt BQ8, BQ4 and TFLite fp32, int8 (converter CLI, same weights)."""
    ck, calib = work / f"{arch_id}.pt", work / f"calib-{arch_id}"
    size = arch.get(arch_id).input_shape[0]
    calib_images(calib, size)
    py = [sys.executable, "-m", "converters"]
    out = {"seprt BQ u8": work / f"{arch_id}-BQ8.bin", "seprt BQ u4": work / f"{arch_id}-BQ4.bin",
           "tflite fp32": work / f"{arch_id}-fp32.tflite", "tflite int8": work / f"{arch_id}-int8.tflite"}
    steps = [["init", "--arch", arch_id, "-o", ck],
             ["seprt", ck, "-o", out["seprt BQ u8"], "--variant", "BQ", "--calib", calib],
             ["seprt", ck, "-o", out["seprt BQ u4"], "--variant", "BQ", "--act-bits", "4", "--calib", calib],
             ["tflite", ck, "-o", out["tflite fp32"], "--quant", "fp32"],
             ["tflite", ck, "-o", out["tflite int8"], "--quant", "int8", "--calib", calib]]
    for s in steps:
        if not Path(s[s.index("-o") + 1]).exists():
            subprocess.run(py + [str(a) for a in s], cwd=ROOT, check=True, capture_output=True)
    return out


def tflite_runner(path: Path, threads: int, batch: int):
    from ai_edge_litert.interpreter import Interpreter
    it = Interpreter(model_path=str(path), num_threads=threads)
    inp = it.get_input_details()[0]
    shape = [batch] + list(inp["shape"][1:])
    it.resize_tensor_input(inp["index"], shape)
    it.allocate_tensors()
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)

    def run():
        it.set_tensor(inp["index"], x)
        it.invoke()
    return run


def latency(models: dict[str, "Path | seprt.Model"], threads: int, batch: int, runs: int) -> dict:
    runners = {}
    for name, p in models.items():
        if name.startswith("seprt"):
            m = p if isinstance(p, seprt.Model) else seprt.Model(p, threads=threads)
            x = np.random.default_rng(0).standard_normal((batch,) + m.input_shape).astype(np.float32)
            m.logits(x)
            runners[name] = (lambda m=m, x=x: m.logits(x))
        else:
            runners[name] = tflite_runner(p, threads, batch)
    for run in runners.values():
        for _ in range(max(5, runs // 10)):
            run()
    times = {k: [] for k in runners}
    block = BLOCK if threads > 1 else 1
    for _ in range(-(-runs // block)):
        for k, run in runners.items():
            settle = time.perf_counter() + (SETTLE_S if threads > 1 else 0)
            while time.perf_counter() < settle:
                run()
            for _ in range(block):
                t = time.perf_counter()
                run()
                times[k].append(time.perf_counter() - t)
    return {k: {"median_ms": float(np.median(v) * 1e3), "p90_ms": float(np.percentile(v, 90) * 1e3)}
            for k, v in times.items()}


# peak RSS from VmHWM: ru_maxrss of a child process still holds its parent's size
HWM = "[l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')][0]"
PREDICT = ("import sys, time; t0 = time.perf_counter(); import numpy as np, seprt; "
           "m = seprt.Model(sys.argv[1]); m.predict(np.zeros((64, 64, 3), np.uint8)); t1 = time.perf_counter(); "
           f"print(t1 - t0, {HWM})")
TFLITE = ("import sys, time; t0 = time.perf_counter(); import numpy as np; "
          "from ai_edge_litert.interpreter import Interpreter; it = Interpreter(model_path=sys.argv[1]); "
          "it.allocate_tensors(); d = it.get_input_details()[0]; "
          "it.set_tensor(d['index'], np.zeros(d['shape'], np.float32)); it.invoke(); t1 = time.perf_counter(); "
          f"print(t1 - t0, {HWM})")


# what numba itself costs before seprt does anything: importing it, and the first call of
# any function from its on-disk cache (numba then builds its typing and target contexts)
NUMBA_IMPORT = f"import sys, time; t0 = time.perf_counter(); import numpy, numba; print(time.perf_counter() - t0, {HWM})"
NUMBA_FLOOR = ("import sys, time; t0 = time.perf_counter(); import numpy as np; sys.path.insert(0, sys.argv[1]); "
               f"import seprt_floor; seprt_floor.f(np.ones(4)); print(time.perf_counter() - t0, {HWM})")
FLOOR_MODULE = "from numba import njit\n\n\n@njit(cache=True, nogil=True)\ndef f(a):\n    return a.sum()\n"


def numba_floor() -> dict:
    """Cold start and peak RSS of `import numba` alone, and of a process that only
    calls one trivial cached numba function (warm cache): what any numba
    runtime pays before its own work."""
    d = Path(tempfile.mkdtemp(prefix="seprt-floor-"))
    (d / "seprt_floor.py").write_text(FLOOR_MODULE)
    imp = process_stats(NUMBA_IMPORT, d)
    process_stats(NUMBA_FLOOR, d)                        # compiles and caches f
    call = process_stats(NUMBA_FLOOR, d)
    return {"import numba": {"s": imp[0], "peak_rss_mb": imp[1]},
            "import numba + first cached call": {"s": call[0], "peak_rss_mb": call[1]}}


def process_stats(code: str, model: Path, env: dict | None = None) -> tuple[float, float]:
    """(seconds from interpreter start to first result, peak RSS MB) of a fresh process.
    Python may write and read bytecode (.pyc), as in an installed package, even when
    PYTHONDONTWRITEBYTECODE is set here: else every run compiles seprt's sources
    (0.06 s of a 0.5 s start); main() writes them first (an untimed `import seprt`)."""
    env = {**{k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}, **(env or {})}
    r = subprocess.run([sys.executable, "-c", code, str(model)], capture_output=True, text=True, check=True,
                       env=env, cwd=ROOT)
    secs, kb = r.stdout.split()
    return float(secs), int(kb) / 1e3


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--archs", nargs="+", default=["sepnet-cifar", "resnet20", "sepnet-t8"])
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "seprt-bench"))
    ap.add_argument("--out", default="benchmarks/results.json")
    ap.add_argument("--startup-only", action="store_true",
                    help="only cold start and peak RSS of a predict process (no latency, no per-layer profile)")
    args = ap.parse_args(argv)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    res = {"cpu": cpu_name(), "cores": os.cpu_count(), "python": platform.python_version(),
           "numpy": np.__version__, "seprt": seprt.__version__, "archs": {}}
    print(f"CPU: {res['cpu']} ({res['cores']} cores)")
    process_stats("import seprt; print(0, 0)", ROOT)       # writes seprt's .pyc files (process_stats)
    res["numba_floor"] = numba_floor()
    print("numba alone: " + "; ".join(f"{k} {v['s']:.2f} s, {v['peak_rss_mb']:.1f} MB"
                                      for k, v in res["numba_floor"].items()))
    for aid in args.archs:
        models = convert(aid, work)
        m = seprt.Model(models["seprt BQ u8"])
        r = {"macs": m.graph.macs(), "bytes": {k: p.stat().st_size for k, p in models.items()},
             "paths": {k: engine_paths(seprt.Model(p)) for k, p in models.items() if k.startswith("seprt")},
             "latency": {}}
        runs = args.runs if m.graph.macs() < 1e8 else max(20, args.runs // 4)
        for threads in () if args.startup_only else (1, 2):
            for batch in (1, 8):
                key = f"threads={threads} batch={batch}"
                r["latency"][key] = latency(models, threads, batch, runs if batch == 1 else max(10, runs // 4))
        x = np.random.default_rng(0).standard_normal((1,) + m.input_shape).astype(np.float32)
        r["per_layer"] = [] if args.startup_only else per_layer(m, x, 50)
        cache = tempfile.mkdtemp(prefix="seprt-numba-")      # empty: the first process builds the engine
        env, jit = {"NUMBA_CACHE_DIR": cache}, {"NUMBA_CACHE_DIR": cache, "SEPRT_AOT": "0"}
        cold = process_stats(PREDICT, models["seprt BQ u8"], env)
        warm = process_stats(PREDICT, models["seprt BQ u8"], env)
        process_stats(PREDICT, models["seprt BQ u8"], jit)      # fills numba's JIT cache
        warm_jit = process_stats(PREDICT, models["seprt BQ u8"], jit)
        tfl = process_stats(TFLITE, models["tflite int8"])
        r["cold_start_s"] = {"seprt cold cache (builds the AOT module)": cold[0], "seprt warm (AOT module)": warm[0],
                             "seprt warm JIT cache (SEPRT_AOT=0)": warm_jit[0], "tflite int8": tfl[0]}
        r["peak_rss_mb"] = {"seprt BQ u8 (AOT module)": warm[1], "seprt BQ u8 (SEPRT_AOT=0)": warm_jit[1],
                            "tflite int8": tfl[1]}
        res["archs"][aid] = r
        report(aid, r)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=1))
    print(f"wrote {args.out}")
    return 0


def report(aid: str, r: dict) -> None:
    print(f"\n## {aid}: {r['macs'] / 1e6:.1f}M MACs; bytes: " +
          ", ".join(f"{k} {v / 1e6:.3f} MB" for k, v in r["bytes"].items()))
    for k, v in r["paths"].items():
        print(f"  {k} ran: {v}")
    for key, lat in r["latency"].items():
        f32, i8 = lat["tflite fp32"]["median_ms"], lat["tflite int8"]["median_ms"]
        print(f"  {key}:")
        for name, s in lat.items():
            print(f"    {name:<12} median {s['median_ms']:8.3f} ms  p90 {s['p90_ms']:8.3f} ms   "
                  f"x{s['median_ms'] / f32:5.2f} of tflite fp32, x{s['median_ms'] / i8:5.2f} of tflite int8")
    print("  cold start (s): " + ", ".join(f"{k} {v:.2f}" for k, v in r["cold_start_s"].items()))
    print("  peak RSS (MB): " + ", ".join(f"{k} {v:.1f}" for k, v in r["peak_rss_mb"].items()))
    top = sorted(r["per_layer"], key=lambda l: -l["us"])[:8]
    if top:
        print("  slowest steps (seprt BQ u8, 1 thread, batch 1):")
    for l in top:
        print(f"    {l['name'][:44]:<44} {l['path']:<12} {l['us']:8.1f} us {l['gmacs']:7.1f} GMAC/s "
              f"{l['share'] * 100:5.1f}%")


if __name__ == "__main__":
    sys.exit(main())
