"""The `seprt` command: info, predict, eval, bench, demo.

User errors end with a one-line message on stderr and exit code 1 (2 for
bad command-line syntax), never a traceback.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

from . import __version__, image
from .folders import count_labelled, is_image_source, iter_labelled
from .errors import FormatError, ImageError
from .model import Model, demo_images, demo_model_path

class UserError(Exception):
    """A problem with what the user asked for; printed as one line."""


def _progress(done: int, total: int, t0: float, label: str) -> None:
    if not sys.stderr.isatty() and done not in (total,) and done % 500:
        return
    rate = done / max(time.perf_counter() - t0, 1e-9)
    width = 30
    fill = int(width * done / max(total, 1))
    sys.stderr.write(f"\r{label} [{'#' * fill}{'.' * (width - fill)}] {done}/{total} {rate:.0f} img/s")
    if done == total:
        sys.stderr.write("\n")
    sys.stderr.flush()


# ------------------------------------------------------------------ info

def cmd_info(args) -> int:
    m = Model(args.model, engine="reference")
    info = m.info()
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    p = info["provenance"]
    print(f"{args.model}: {info['arch']} variant {info['variant']}, {info['bytes']:,} bytes, "
          f"{info['params']:,} weights (conv + fc, biases not counted), {info['macs'] / 1e6:.1f}M MACs")
    print(f"input {info['preprocess']['size'][0]}x{info['preprocess']['size'][1]} RGB, resize "
          f"{info['preprocess']['resize']}, mean {fmt_list(info['preprocess']['mean'])}, "
          f"std {fmt_list(info['preprocess']['std'])}; {len(info['labels'])} classes")
    if info["activation_bits"]:
        print(f"activation bits: {info['activation_bits']}")
    print(f"dot tiles on this CPU: {info['dot_isa']} (fast engine's int8 and binary convs)")
    for k, v in p.items():
        print(f"{k}: {v}")
    print()
    weights = [(r.get("weights", "") + ("*" if r.get("integer") else "")) if "weights" in r else ""
               for r in info["layers"]]
    ww = max([7] + [len(w) for w in weights])                   # "stack_packed*" is 13
    print(f"{'layer':<28} {'op':<10} {'output':<14} {'weights':<{ww}} {'k/s/g':<8} {'params':>9} {'bytes':>9}")
    for r, w in zip(info["layers"], weights):
        ksg = f"{r['kernel']}/{r['stride']}/{r['groups']}" if "kernel" in r else ""
        print(f"{r['name']:<28} {r['op']:<10} {'x'.join(map(str, r['shape'])):<14} {w:<{ww}} {ksg:<8} "
              f"{r['params'] or '':>9} {r.get('bytes', ''):>9}")
    print(f"{'total':<{64 + ww}} {info['params']:>9,}")
    print("(* = runs on integers: quantized activations)")
    print("\nbytes per section: " + ", ".join(f"{k} {v:,}" for k, v in info["sections"].items()))
    return 0


def fmt_list(xs) -> str:
    return "[" + ", ".join(f"{x:.4g}" for x in xs) + "]"


# --------------------------------------------------------------- predict

def cmd_predict(args) -> int:
    m = Model(args.model)
    results = {}
    for path in args.images:
        results[path] = m.predict(path, top_k=args.top_k)
    if args.json:
        print(json.dumps({p: [{"label": l, "prob": pr} for l, pr in r] for p, r in results.items()}, indent=2))
    else:
        for p, r in results.items():
            print(f"{p}: " + ", ".join(f"{l} {pr:.3f}" for l, pr in r))
    return 0


# ------------------------------------------------------------------ eval

def evaluate(m: Model, data: str, limit: int | None = None, batch: int = 64, progress: bool = True) -> dict:
    """Top-1/top-5 of a model on a labelled folder or tar; skips unreadable images."""
    index = {l: i for i, l in enumerate(m.labels)}
    if not is_image_source(data):
        raise UserError(f"{data}: not a folder or a .tar/.tar.gz archive")
    total = count_labelled(data)
    total = min(total, limit) if limit else total
    if total == 0:
        raise UserError(f"{data}: no images found in class folders (expected e.g. cat/0001.jpg)")
    n = top1 = top5 = skipped = 0
    xs, ys = [], []
    t0 = time.perf_counter()

    def flush():
        nonlocal top1, top5
        if not xs:
            return
        z = m.logits(np.stack(xs))
        order = np.argsort(-z, axis=1, kind="stable")[:, :5]
        y = np.asarray(ys)
        top1 += int(np.sum(order[:, 0] == y))
        top5 += int(np.sum(np.any(order == y[:, None], axis=1)))
        xs.clear(), ys.clear()

    for cls, name, src in iter_labelled(data, limit):
        if cls not in index:
            raise UserError(f"{name}: folder {cls!r} is not a class of this model "
                            f"(classes: {', '.join(m.labels[:10])}{', ...' if len(m.labels) > 10 else ''})")
        try:
            xs.append(image.preprocess(src, m.meta))
            ys.append(index[cls])
            n += 1
        except ImageError as e:
            skipped += 1
            print(f"warning: skipped {name}: {e}", file=sys.stderr)
        if len(xs) == batch:
            flush()
        if progress:
            _progress(n + skipped, total, t0, "eval")
    flush()
    if n == 0:
        raise UserError(f"{data}: none of the images could be read")
    return {"top1": top1 / n, "top5": top5 / n, "n": n, "skipped": skipped}


def cmd_eval(args) -> int:
    m = Model(args.model)
    r = evaluate(m, args.data, args.limit, progress=not args.json)
    if args.json:
        print(json.dumps(r))
    else:
        print(f"{args.data}: top-1 {r['top1']:.4f}  top-5 {r['top5']:.4f}  n={r['n']}"
              + (f"  skipped={r['skipped']}" if r["skipped"] else ""))
    return 0


# ----------------------------------------------------------------- bench

def _stats(ts: list[float]) -> dict:
    a = np.asarray(ts) * 1e3
    return {"median_ms": float(np.median(a)), "p90_ms": float(np.percentile(a, 90)), "runs": len(ts)}


def _tflite_runner(path: str, threads: int, batch: int):
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        try:
            from tflite_runtime.interpreter import Interpreter
        except ImportError:
            raise UserError("--tflite needs LiteRT: pip install 'seprt[tflite]'") from None
    try:
        it = Interpreter(model_path=path, num_threads=threads)
        inp = it.get_input_details()[0]
        shape = list(inp["shape"])
        shape[0] = batch
        it.resize_tensor_input(inp["index"], shape)
        it.allocate_tensors()
    except (ValueError, RuntimeError) as e:
        raise UserError(f"{path}: LiteRT cannot load it: {e}") from None
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    if inp["dtype"] != np.float32:
        s, z = inp["quantization"]
        x = np.clip(np.rint(x / s) + z, np.iinfo(inp["dtype"]).min, np.iinfo(inp["dtype"]).max).astype(inp["dtype"])

    def run():
        it.set_tensor(inp["index"], x)
        it.invoke()
    return run


def cmd_bench(args) -> int:
    m = Model(args.model, engine=args.engine, threads=args.threads)
    x = np.random.default_rng(0).standard_normal((args.batch,) + m.input_shape).astype(np.float32)
    t0 = time.perf_counter()
    m.logits(x)
    first = time.perf_counter() - t0
    runners = {"seprt": lambda: m.logits(x)}
    if args.tflite:
        runners["tflite"] = _tflite_runner(args.tflite, args.threads, args.batch)
    for run in runners.values():       # warm-up
        for _ in range(max(2, args.runs // 10)):
            run()
    times = {k: [] for k in runners}
    for _ in range(args.runs):          # interleaved, so both see the same machine state
        for k, run in runners.items():
            t = time.perf_counter()
            run()
            times[k].append(time.perf_counter() - t)
    res = {"model": args.model, "arch": m.meta["arch"], "variant": m.meta["variant"], "engine": m.engine,
           "path": engine_paths(m), "threads": args.threads, "batch": args.batch,
           "first_call_ms": first * 1e3, "macs": m.graph.macs() * args.batch}
    res.update({k: _stats(v) for k, v in times.items()})
    if args.tflite:
        res["ratio_seprt_over_tflite"] = res["seprt"]["median_ms"] / res["tflite"]["median_ms"]
    if args.per_layer:
        res["layers"] = per_layer(m, x, args.runs)
    if args.json:
        print(json.dumps(res, indent=2))
        return 0
    s = res["seprt"]
    print(f"{args.model}: {res['arch']} {res['variant']}, engine {m.engine} [{res['path']}], "
          f"threads {args.threads}, batch {args.batch}")
    print(f"first call {first * 1e3:.1f} ms (includes any JIT compile)")
    gmacs = res["macs"] / (s["median_ms"] * 1e-3) / 1e9
    print(f"seprt   median {s['median_ms']:.3f} ms  p90 {s['p90_ms']:.3f} ms  ({gmacs:.2f} GMAC/s, {args.runs} runs)")
    if args.tflite:
        t = res["tflite"]
        print(f"tflite  median {t['median_ms']:.3f} ms  p90 {t['p90_ms']:.3f} ms  ({args.tflite})")
        print(f"ratio seprt/tflite: {res['ratio_seprt_over_tflite']:.2f}x")
    if args.per_layer:
        team = args.threads > 1 and args.batch < args.threads
        print(f"\n{'step':<44} {'path':<14} {'us':>9} {'GMAC/s':>8} {'share':>6}"
              + ("  busy us (busiest / idlest thread)" if team else ""))
        for r in res["layers"]:
            g = f"{r['gmacs']:.2f}" if r["gmacs"] else ""
            busy = f"  {r['busy_us']:>8.1f} / {r['busy_min_us']:.1f}" if team and "busy_us" in r else ""
            print(f"{r['name'][:44]:<44} {r['path']:<14} {r['us']:>9.1f} {g:>8} {r['share'] * 100:>5.1f}%{busy}")
    return 0


def per_layer(m: Model, x: np.ndarray, runs: int) -> list[dict]:
    """Median time per step: fast-engine instructions (after fusion; timed
    inside whole runs, with each thread's busy time), or reference nodes,
    with the compute path each ran."""
    from . import reference
    g = m.graph
    if m._fast is not None:
        rows = m._fast.profile(x, max(3, runs // 5))
    else:
        per = {}
        for _ in range(max(3, runs // 5)):
            timings: list = []
            reference.run(g, x, timings=timings)
            for n, t in timings:
                per.setdefault(n.name, (n, []))[1].append(t)
        rows = []
        for name, (n, ts) in per.items():
            path = f"ref-{n.wfmt}-{'int' if g.is_integer(n) else 'f32'}" if n.wfmt else "ref"
            out = g.values[n.output].shape
            macs = g.node_params(n) * (np.prod(out[:2]) if len(out) == 3 else 1) * len(x)
            rows.append({"name": name, "path": path, "macs": int(macs), "seconds": float(np.median(ts))})
    total = sum(r["seconds"] for r in rows)
    out = [{"name": r["name"], "path": r["path"], "us": r["seconds"] * 1e6,
            "gmacs": r["macs"] / r["seconds"] / 1e9 if r["macs"] else 0.0, "share": r["seconds"] / total}
           for r in rows]
    for o, r in zip(out, rows):            # fast engine: the busiest and the idlest thread's time on its share
        if "busy" in r:
            o["busy_us"], o["busy_min_us"] = r["busy"] * 1e6, r["busy_min"] * 1e6
    return out


def engine_paths(m: Model) -> str:
    """The engine's entry (aot: the compiled module, jit: numba's dispatchers) and the
    kernel paths a model runs, e.g. 'aot: dot-u8i8-vnni, dot-u8bin-vnni, f32'."""
    if m._fast is None:
        return "reference (numpy)"
    seen = []
    for p in m._fast.plan.paths:
        if p not in seen and not p.startswith(("quantize", "planes")):
            seen.append(p)
    return f"{m._fast.fns.path}: " + ", ".join(seen)


# ------------------------------------------------------------------ demo

def cmd_demo(args) -> int:
    path = demo_model_path()
    m = Model(path)
    src = m.meta.get("provenance.source", "")
    print(f"seprt {__version__} demo: {m.meta['arch']} {m.meta['variant']} ({m.nbytes:,} bytes) from package data")
    if "not trained" in src:
        print(f"NOTE: this demo model has {src}: the runtime works, the predictions are meaningless.")
    print("10 validation images drawn at random (seed 2026, files 4500-4999 of each class of the CIFAR-10 "
          "train archive; the file name is the true class):")
    right = 0
    for p in demo_images():
        r = m.predict(p, top_k=3)
        truth = os.path.basename(p).rsplit("-", 1)[0]
        right += r[0][0] == truth
        print(f"{os.path.basename(p):<22} {'ok ' if r[0][0] == truth else 'NO '}" +
              ", ".join(f"{l} {pr:.3f}" for l, pr in r))
    val, n = m.meta.get("provenance.val_top1"), m.meta.get("provenance.val_images")
    on = f" on {n:,} images" if n else ""
    print(f"{right}/10 correct" + (f" (validation top-1 of this model: {val:.2%}{on}; 10 images "
                                   f"vary by chance)" if val is not None else ""))
    return 0


# ------------------------------------------------------------------ main

def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="seprt", description="Run SEP-Net pattern-binarized models.")
    ap.add_argument("--version", action="version", version=f"seprt {__version__}")
    sub = ap.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("info", help="layers, parameters, bytes, preprocessing and provenance of a model")
    p.add_argument("model")
    p.add_argument("--json", action="store_true")
    p.set_defaults(fn=cmd_info)

    p = sub.add_parser("predict", help="top-k classes of images")
    p.add_argument("model")
    p.add_argument("images", nargs="+")
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--json", action="store_true")
    p.set_defaults(fn=cmd_predict)

    p = sub.add_parser("eval", help="top-1/top-5 on a labelled folder or tar (<class>/<image>)")
    p.add_argument("model")
    p.add_argument("data")
    p.add_argument("--limit", type=int, help="only this many images, spread evenly over the sorted files")
    p.add_argument("--json", action="store_true")
    p.set_defaults(fn=cmd_eval)

    p = sub.add_parser("bench", help="latency (median, p90), optionally against a TFLite model")
    p.add_argument("model")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--runs", type=int, default=50)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--engine", choices=("fast", "reference"), default="fast")
    p.add_argument("--per-layer", action="store_true")
    p.add_argument("--tflite", metavar="PATH")
    p.add_argument("--json", action="store_true")
    p.set_defaults(fn=cmd_bench)

    p = sub.add_parser("demo", help="run the packaged model on the packaged sample images")
    p.set_defaults(fn=cmd_demo)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for name in ("top_k", "limit", "runs", "batch", "threads"):
        v = getattr(args, name, None)
        if v is not None and v < 1:
            print(f"seprt: error: --{name.replace('_', '-')} must be >= 1, got {v}", file=sys.stderr)
            return 2
    try:
        return args.fn(args)
    except (FormatError, ImageError, UserError, ValueError, OSError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        if isinstance(e, OSError) and e.filename:
            msg = f"{e.filename}: {e.strerror}"
        print(f"seprt: error: {msg}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("seprt: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
