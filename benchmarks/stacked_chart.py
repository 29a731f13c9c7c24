"""Bytes vs accuracy of the zoo's three weight families: Full, pattern, stacked.

    python benchmarks/stacked_chart.py [--models models] [--md docs/results.md] [--svg docs/stacked.svg]

Reads every models/<arch>-*.bin of the CIFAR archs (the Full `-R.bin`, the
pattern and stacked BQ files): x = bytes of the k x k conv weight tensors
(seprt.stacked.kxk_bytes: bank + index, patterns or float32; alpha and bias
excluded), y = the validation top-1 the converter's check wrote into the
file (provenance.val_top1, files 4500-4999 of each class). Writes the table
between the markers of docs/results.md and the chart (SVG, and PNG when
rsvg-convert is installed).
"""
from __future__ import annotations

import argparse
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from accuracy import marker  # noqa: E402

import seprt  # noqa: E402
from seprt.stacked import kxk_bytes  # noqa: E402

ARCHS = ("resnet20", "resnet56", "sepnet-cifar")
FAMILIES = (("Full", "#999999"), ("pattern", "#1f77b4"), ("stacked", "#d62728"))
BEGIN, END = "<!-- BEGIN stacked: benchmarks/stacked_chart.py -->", "<!-- END stacked -->"


def family(g) -> str:
    """Full (every k x k conv float), stacked (any `stack` or `stack_packed` conv) or pattern."""
    kinds = {n.wfmt for n in g.nodes if n.wfmt and n.kernel > 1}
    return "stacked" if kinds & {"stack", "stack_packed"} else "Full" if kinds <= {"f32"} else "pattern"


def collect(models: str) -> list[dict]:
    rows = []
    for name in sorted(os.listdir(models)):
        if not name.endswith(".bin") or not name.endswith(("-R.bin", "-BQ.bin")):
            continue
        m = seprt.Model(os.path.join(models, name))
        if m.meta.get("arch") not in ARCHS or "provenance.val_top1" not in m.meta:
            continue
        kb = kxk_bytes(m.graph)
        rows.append({"file": name, "arch": m.meta["arch"], "family": family(m.graph),
                     "top1": float(m.meta["provenance.val_top1"]), "kxk_bytes": kb["bytes"],
                     "ratio": kb["ratio"], "file_bytes": os.path.getsize(os.path.join(models, name))})
    order = {f: i for i, (f, _) in enumerate(FAMILIES)}
    return sorted(rows, key=lambda r: (ARCHS.index(r["arch"]), order[r["family"]], -r["kxk_bytes"]))


def table(rows: list[dict]) -> str:
    out = ["| arch | family | file | validation top-1 | k×k weight bytes | k×k vs float32 | file bytes |",
           "|---|---|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| `{r['arch']}` | {r['family']} | `{r['file']}` | {100 * r['top1']:.2f} % | "
                   f"{r['kxk_bytes']:,} | {r['ratio']:.1f}× | {r['file_bytes']:,} |")
    return "\n".join(out) + "\n"


def svg(rows: list[dict]) -> str:
    left, top, w, h = 70, 40, 520, 300
    bmin, bmax = min(r["kxk_bytes"] for r in rows) / 1.5, max(r["kxk_bytes"] for r in rows) * 1.5
    amin = math.floor(min(r["top1"] for r in rows) * 20) / 20
    amax = math.ceil(max(r["top1"] for r in rows) * 50 + 0.25) / 50
    x = lambda b: left + (math.log(b) - math.log(bmin)) / (math.log(bmax) - math.log(bmin)) * w
    y = lambda a: top + h - (a - amin) / (amax - amin) * h
    colour = dict(FAMILIES)
    shape = {a: s for a, s in zip(ARCHS, ("circle", "square", "triangle"))}
    parts = [(f'<svg xmlns="http://www.w3.org/2000/svg" width="{left + w + 200}" height="{top + h + 50}" '
              f'font-family="sans-serif" font-size="12">'), '<rect width="100%" height="100%" fill="white"/>',
             f'<text x="{left}" y="20">Validation top-1 vs k×k conv weight bytes (CIFAR-10, files 4500-4999 '
             f'per class)</text>']
    for k in range(int(round(amin * 100)), int(round(amax * 100)) + 1, 5):
        parts.append(f'<line x1="{left}" x2="{left + w}" y1="{y(k / 100):.1f}" y2="{y(k / 100):.1f}" '
                     f'stroke="#e5e5e5"/><text x="{left - 40}" y="{y(k / 100) + 4:.1f}">{k} %</text>')
    for b in (1e4, 3e4, 1e5, 3e5, 1e6, 3e6):
        if bmin < b < bmax:
            lbl = f"{b / 1e6:g} MB" if b >= 1e6 else f"{b / 1e3:g} KB"
            parts.append(f'<line x1="{x(b):.1f}" x2="{x(b):.1f}" y1="{top}" y2="{top + h}" stroke="#e5e5e5"/>'
                         f'<text x="{x(b) - 15:.1f}" y="{top + h + 18}">{lbl}</text>')
    parts.append(f'<text x="{left + w / 2 - 110}" y="{top + h + 40}">k×k conv weight bytes (log scale)</text>')
    for r in rows:
        parts.append(marker(shape[r["arch"]], x(r["kxk_bytes"]), y(r["top1"]), colour[r["family"]])
                     + f'<title>{r["file"]}: {100 * r["top1"]:.2f} %, {r["kxk_bytes"]:,} bytes</title>')
    ly = top
    for f, c in FAMILIES:
        parts.append(f'<rect x="{left + w + 20}" y="{ly}" width="12" height="12" fill="{c}"/>'
                     f'<text x="{left + w + 38}" y="{ly + 11}">{f}</text>')
        ly += 20
    for a in ARCHS:
        ly += 20
        parts.append(marker(shape[a], left + w + 26, ly + 6, "white") + f'<text x="{left + w + 38}" y="{ly + 11}">{a}</text>')
    return "\n".join(parts + ["</svg>"])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="models")
    p.add_argument("--md", default="docs/results.md")
    p.add_argument("--svg", default="docs/stacked.svg")
    args = p.parse_args(argv)
    rows = collect(args.models)
    with open(args.md) as f:
        page = f.read()
    if BEGIN not in page or END not in page:
        raise SystemExit(f"{args.md} has no {BEGIN} ... {END} section to replace")
    page = page[:page.index(BEGIN) + len(BEGIN)] + "\n" + table(rows) + page[page.index(END):]
    with open(args.md, "w") as f:
        f.write(page)
    with open(args.svg, "w") as f:
        f.write(svg(rows))
    png = args.svg[:-4] + ".png"
    if shutil.which("rsvg-convert"):
        subprocess.run(["rsvg-convert", "-z", "1.5", "-o", png, args.svg], check=True)
    print(table(rows) + f"wrote {args.md}, {args.svg}" + (f", {png}" if os.path.exists(png) else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
