"""Validation accuracy and bytes of every model-zoo file, measured, as JSON;
and its rendering (markdown tables, accuracy-vs-bytes chart) for docs/results.md.

    python benchmarks/accuracy.py --val VAL_DIR --out benchmarks/accuracy.json resnet20:all sepnet-cifar:prb
    python benchmarks/accuracy.py --val VAL_DIR resnet56:all      # add/redo one arch, keep the rest
    python benchmarks/accuracy.py --render benchmarks/accuracy.json docs/results.md docs/results.svg

For each ARCH:MODE it reads from models/ (see models/README.md) and runs/:
  runs/ARCH-bipattern-MODE.pt (no BN re-estimation),
  ARCH-refined-MODE.pt                       -> stage accuracies from the checkpoints
  ARCH-R.bin, ARCH-B.bin, ARCH-BQ.bin         -> run in seprt (fast engine)
  ARCH-fp32.tflite, ARCH-int8.tflite          -> TFLite of the Full model (the baseline)
  ARCH-B-int8.tflite                          -> TFLite int8 of the Refined model (alpha*B weights),
                                                 the same checkpoint as ARCH-BQ.bin
and evaluates every runtime file on the validation split (VAL_DIR from
`python -m training export-val`: files 4500-4999 of each class of the CIFAR-10
train archive). It also counts parameters the paper's way (one number per
binarized k x k kernel) and records the BQ/TFLite-int8 top-1 agreement.
Needs the `train` and `tflite` extras; reads nothing else.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import seprt
from converters.convert import load_images
from converters.tflite import run_tflite
from seprt import arch as arch_mod
from seprt import variants
from training import modelckpt


def paper_params(arch_id: str, mode: str) -> dict:
    """Weights of the full network and of the pattern network counted as in the
    paper: a binarized k x k kernel (one input channel of one filter) is one
    number (its pattern index), every other weight one number each."""
    a = arch_mod.get(arch_id)
    binarized = {l.name for l in a.layers if l.op == "conv" and variants.binarized_by(l, mode)}
    full = pattern = 0
    for name, n in a.weight_counts().items():
        full += n
        layer = next(l for l in a.layers if l.name == name)
        pattern += n // (layer.kernel ** 2) if name in binarized else n
    return {"full": full, "pattern": pattern, "binarized_convs": len(binarized)}


def stages(arch_id: str, mode: str, models: str, work: str) -> dict:
    """Validation top-1 per training stage, read from the checkpoints' history
    (the plain BiPattern checkpoint from WORK, see training/run_zoo.sh)."""
    ref = modelckpt.read(os.path.join(models, f"{arch_id}-refined-{mode}.pt"))     # zoo or module checkpoints
    plain = modelckpt.read(os.path.join(work, f"{arch_id}-bipattern-{mode}.pt"))
    h = ref["history"]
    full = [r for r in h if r["stage"] == "full"]
    bip = [r for r in h if r["stage"] == "bipattern"][-1]
    refine = [r for r in h if r["stage"] == "refined"]
    return {"full": full[-1]["val_top1"], "full_epochs": len(full),
            "full_hours": sum(r["seconds"] for r in full) / 3600,
            "bipattern": plain["val_top1"], "bipattern_bn": bip["val_top1"] if bip["bn_reestimate"] else None,
            "refined": ref["val_top1"], "refine_epochs": len(refine),
            "refine_hours": sum(r["seconds"] for r in refine) / 3600,
            "refine_config": {k: ref["train_config"].get(k) for k in ("lr", "epochs", "kd_alpha", "kd_t", "teacher")},
            "quant_error": bip["quant_error"]}


def top1(logits: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(logits.argmax(1) == y))


def measure(arch_id: str, mode: str, models: str, work: str, val: str) -> dict:
    a = arch_mod.get(arch_id)
    meta = seprt.Model(os.path.join(models, f"{arch_id}-BQ.bin")).meta
    x, classes = load_images(val, meta, "--val")
    y = np.array([a.labels.index(c) for c in classes])
    res = {"images": len(y), "params": paper_params(arch_id, mode), "stages": stages(arch_id, mode, models, work),
           "files": {}}
    logits = {}
    for name in ("R.bin", "B.bin", "BQ.bin", "fp32.tflite", "int8.tflite", "B-int8.tflite"):
        path = os.path.join(models, f"{arch_id}-{name}")
        t0 = time.perf_counter()
        if name.endswith(".bin"):
            m = seprt.Model(path)
            z = np.concatenate([m.logits(x[i:i + 250]) for i in range(0, len(x), 250)])
        else:
            z = np.concatenate([run_tflite(path, x[i:i + 500]) for i in range(0, len(x), 500)])
        logits[name] = z
        res["files"][name] = {"bytes": os.path.getsize(path), "val_top1": top1(z, y)}
        print(f"{arch_id}-{name}: validation top-1 {top1(z, y):.4f}, {os.path.getsize(path):,} bytes "
              f"({time.perf_counter() - t0:.0f} s)", flush=True)
    agree = float(np.mean(logits["BQ.bin"].argmax(1) == logits["B-int8.tflite"].argmax(1)))
    res["bq_vs_tflite_int8_top1_agreement"] = agree
    print(f"{arch_id}: seprt BQ vs TFLite int8 of the same Refined checkpoint: top-1 agreement {agree:.4f}")
    return res


# ------------------------------------------------------------------ render

# (file, label, colour): what the chart and the bytes table show, in order
FILES = (("R.bin", "seprt R (fp32)", "#7f7f7f"), ("B.bin", "seprt B (patterns + fp32)", "#6fa8dc"),
         ("BQ.bin", "seprt BQ (patterns + int8)", "#1b6ca8"), ("fp32.tflite", "TFLite fp32 (Full)", "#bbbbbb"),
         ("int8.tflite", "TFLite int8 (Full)", "#cc6600"), ("B-int8.tflite", "TFLite int8 (Refined)", "#f1a340"))
PAPER = {"resnet20": (0.9118, 0.1546, 0.8649), "resnet56": (0.9375, 0.5382, 0.9302)}  # Table 2: Full, BiPattern, Refined


def tables(res: dict) -> str:
    pct = lambda v: "–" if v is None else f"{100 * v:.2f}"
    out = [f"All accuracies: top-1 on the {res['split']}, not the CIFAR-10 test split.\n",
           ("| model | Full | BiPattern | BiPattern + BN re-est. | Refined | B (seprt) | BQ (seprt) | Full → Refined "
            "| paper Full → Refined | weights full / pattern (paper count) |"),
           "|---|---|---|---|---|---|---|---|---|---|"]
    for aid, r in res["archs"].items():
        st, f, pp = r["stages"], r["files"], r["params"]
        paper = PAPER.get(aid)
        pg = f"{100 * (paper[2] - paper[0]):+.2f}" if paper else "–"
        out.append(f"| `{aid}` ({r['mode']}) | {pct(st['full'])} | {pct(st['bipattern'])} | {pct(st['bipattern_bn'])} "
                   f"| {pct(st['refined'])} | {pct(f['B.bin']['val_top1'])} | {pct(f['BQ.bin']['val_top1'])} "
                   f"| {100 * (st['refined'] - st['full']):+.2f} | {pg} | {pp['full']:,} / {pp['pattern']:,} |")
    out += ["", "| model | " + " | ".join(lbl for _, lbl, _ in FILES) + " | BQ vs TFLite int8 (Refined) top-1 agreement |",
            "|---" * (len(FILES) + 2) + "|"]
    for aid, r in res["archs"].items():
        cells = [f"{100 * r['files'][f]['val_top1']:.2f} % / {r['files'][f]['bytes']:,} B" for f, _, _ in FILES]
        out.append(f"| `{aid}` | " + " | ".join(cells) + f" | {100 * r['bq_vs_tflite_int8_top1_agreement']:.2f} % |")
    out += ["", "| model | Full: epochs, hours | Refine: epochs, hours, lr, distillation |", "|---|---|---|"]
    for aid, r in res["archs"].items():
        st, rc = r["stages"], r["stages"]["refine_config"]
        kd = f"α {rc['kd_alpha']}, T {rc['kd_t']}" if rc["teacher"] else "none"
        out.append(f"| `{aid}` | {st['full_epochs']}, {st['full_hours']:.1f} h | {st['refine_epochs']}, "
                   f"{st['refine_hours']:.1f} h, {rc['lr']}, {kd} |")
    return "\n".join(out) + "\n"


def marker(shape: str, cx: float, cy: float, fill: str, r: int = 6) -> str:
    """An SVG marker: circle, square or triangle centred at (cx, cy)."""
    if shape == "circle":
        return f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="{r}" fill="{fill}" stroke="black" stroke-width="0.5"/>'
    if shape == "square":
        return (f'<rect x="{cx - r:.1f}" y="{cy - r:.1f}" width="{2 * r}" height="{2 * r}" fill="{fill}" '
                f'stroke="black" stroke-width="0.5"/>')
    return (f'<polygon points="{cx:.1f},{cy - r - 1:.1f} {cx - r:.1f},{cy + r:.1f} {cx + r:.1f},{cy + r:.1f}" '
            f'fill="{fill}" stroke="black" stroke-width="0.5"/>')


def svg(res: dict) -> str:
    """Validation top-1 against file size (log scale), one marker shape per architecture."""
    pts = [(aid, f, r["files"][f]["bytes"], r["files"][f]["val_top1"]) for aid, r in res["archs"].items()
           for f, _, _ in FILES]
    import math
    left, top, w, h = 70, 40, 520, 300
    bmin, bmax = min(p[2] for p in pts) / 1.3, max(p[2] for p in pts) * 1.3
    amin = math.floor(min(p[3] for p in pts) * 100 - 1) / 100
    amax = math.ceil(max(p[3] for p in pts) * 100 + 0.5) / 100
    x = lambda b: left + (math.log(b) - math.log(bmin)) / (math.log(bmax) - math.log(bmin)) * w
    y = lambda a: top + h - (a - amin) / (amax - amin) * h
    colour = {f: c for f, _, c in FILES}
    shapes = ["circle", "square", "triangle"]
    arch_shape = {aid: shapes[i % 3] for i, aid in enumerate(res["archs"])}
    width = left + w + 250
    parts = [(f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{top + h + 50}" '
              f'font-family="sans-serif" font-size="12">'), '<rect width="100%" height="100%" fill="white"/>',
             f'<text x="{left}" y="20">Validation top-1 vs model file size (CIFAR-10, files 4500-4999 per class)</text>']
    for k in range(int(amin * 100), int(amax * 100) + 1):
        if k % (1 if amax - amin <= 0.08 else 2) == 0:
            parts.append(f'<line x1="{left}" x2="{left + w}" y1="{y(k / 100):.1f}" y2="{y(k / 100):.1f}" stroke="#e5e5e5"/>'
                         f'<text x="{left - 40}" y="{y(k / 100) + 4:.1f}">{k} %</text>')
    for b in (3e4, 1e5, 3e5, 1e6, 3e6):
        if bmin < b < bmax:
            lbl = f"{b / 1e6:g} MB" if b >= 1e6 else f"{b / 1e3:g} KB"
            parts.append(f'<line x1="{x(b):.1f}" x2="{x(b):.1f}" y1="{top}" y2="{top + h}" stroke="#e5e5e5"/>'
                         f'<text x="{x(b) - 15:.1f}" y="{top + h + 18}">{lbl}</text>')
    parts.append(f'<text x="{left + w / 2 - 60}" y="{top + h + 40}">file bytes (log scale)</text>')

    for aid, f, b, a in pts:
        parts.append(marker(arch_shape[aid], x(b), y(a), colour[f]) + f'<title>{aid} {f}: {100 * a:.2f} %, {b:,} bytes</title>')
    ly = top
    for f, lbl, c in FILES:
        parts.append(f'<rect x="{left + w + 20}" y="{ly}" width="12" height="12" fill="{c}"/>'
                     f'<text x="{left + w + 38}" y="{ly + 11}">{lbl}</text>')
        ly += 20
    for aid, shp in arch_shape.items():
        ly += 20
        parts.append(marker(shp, left + w + 26, ly + 6, "white") + f'<text x="{left + w + 38}" y="{ly + 11}">{aid}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


BEGIN, END = "<!-- BEGIN tables: benchmarks/accuracy.py --render -->", "<!-- END tables -->"


def render(src: str, md: str, svg_path: str) -> None:
    import shutil
    import subprocess
    with open(src) as f:
        res = json.load(f)
    text = tables(res)
    if os.path.exists(md):   # replace only the generated part of a hand-written page
        with open(md) as f:
            page = f.read()
        if BEGIN not in page or END not in page:
            raise SystemExit(f"{md} exists but has no {BEGIN} ... {END} section to replace")
        text = page[:page.index(BEGIN) + len(BEGIN)] + "\n" + text + page[page.index(END):]
    for path, content in ((md, text), (svg_path, svg(res))):
        with open(path, "w") as f:
            f.write(content)
    png = svg_path[:-4] + ".png"
    if shutil.which("rsvg-convert"):   # Debian librsvg2-bin; the PNG is what docs/results.md shows
        subprocess.run(["rsvg-convert", "-z", "1.5", "-o", png, svg_path], check=True)
    print(f"wrote {md}, {svg_path}" + (f", {png}" if os.path.exists(png) else ""))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="*", help="ARCH:MODE, e.g. resnet20:all")
    p.add_argument("--render", nargs=3, metavar=("JSON", "MD", "SVG"), help="render a results JSON and exit")
    p.add_argument("--val", help="validation split folder (python -m training export-val)")
    p.add_argument("--models", default="models")
    p.add_argument("--work", default="runs", help="where training/run_zoo.sh left the plain BiPattern checkpoints")
    p.add_argument("--out", default="benchmarks/accuracy.json",
                   help="results JSON; the runs given replace their entries, other entries are kept")
    args = p.parse_args(argv)
    if args.render:
        render(*args.render)
        return 0
    if not args.runs or not args.val:
        p.error("give ARCH:MODE runs and --val (or --render)")
    out = {"split": "validation split (files 4500-4999 of each class of the CIFAR-10 train archive)", "archs": {}}
    if os.path.exists(args.out):   # measure only the runs given, keep the others' records
        with open(args.out) as f:
            out["archs"] = json.load(f)["archs"]
    for run in args.runs:
        arch_id, mode = run.split(":")
        out["archs"][arch_id] = {"mode": mode, **measure(arch_id, mode, args.models, args.work, args.val)}
    out["archs"] = dict(sorted(out["archs"].items()))
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
