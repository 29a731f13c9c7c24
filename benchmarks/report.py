"""Render benchmarks/results.json (from benchmarks/run.py) as tables and an SVG chart.

    python benchmarks/report.py benchmarks/results.json docs/performance-results.md docs/performance.svg
"""
from __future__ import annotations

import json
import sys

MODELS = ("seprt BQ u8", "seprt BQ u4", "tflite fp32", "tflite int8")
COLORS = {"seprt BQ u8": "#1b6ca8", "seprt BQ u4": "#6fa8dc", "tflite fp32": "#999999", "tflite int8": "#cc6600"}


def tables(res: dict) -> str:
    out = [f"CPU: {res['cpu']} ({res['cores']} cores), Python {res['python']}, numpy {res['numpy']}, "
           f"seprt {res['seprt']}.\n"]
    for aid, r in res["archs"].items():
        out.append(f"### `{aid}` ({r['macs'] / 1e6:.1f}M MACs)\n")
        out.append("Files: " + ", ".join(f"{k} {v:,} bytes" for k, v in r["bytes"].items()) + ".  ")
        out.append("Kernel paths: " + "; ".join(f"{k}: {v}" for k, v in r["paths"].items()) + ".\n")
        out.append("| threads, batch | " + " | ".join(MODELS) + " | BQ u8 / fp32 | BQ u8 / int8 | BQ u4 / int8 |")
        out.append("|---" * (len(MODELS) + 4) + "|")
        for key, lat in r["latency"].items():
            cells = [f"{lat[m]['median_ms']:.3f} ({lat[m]['p90_ms']:.3f})" for m in MODELS]
            f32, i8 = lat["tflite fp32"]["median_ms"], lat["tflite int8"]["median_ms"]
            u8, u4 = lat["seprt BQ u8"]["median_ms"], lat["seprt BQ u4"]["median_ms"]
            out.append(f"| {key} | " + " | ".join(cells) + f" | {u8 / f32:.2f}x | {u8 / i8:.2f}x | {u4 / i8:.2f}x |")
        out.append("\nms, median (p90). Cold start (import + load + first predict): " +
                   ", ".join(f"{k} {v:.2f} s" for k, v in r["cold_start_s"].items()) +
                   ". Peak RSS of that process: " + ", ".join(f"{k} {v:.1f} MB" for k, v in r["peak_rss_mb"].items())
                   + ".\n")
        out.append("Slowest steps of seprt BQ u8 (1 thread, batch 1, each step timed alone):\n")
        out.append("| step | path | µs | GMAC/s | share |\n|---|---|---|---|---|")
        for l in sorted(r["per_layer"], key=lambda l: -l["us"])[:10]:
            g = f"{l['gmacs']:.1f}" if l["gmacs"] else ""
            out.append(f"| {l['name']} | {l['path']} | {l['us']:.1f} | {g} | {l['share'] * 100:.1f}% |")
        out.append("")
    return "\n".join(out)


def svg(res: dict) -> str:
    """Grouped bars: latency relative to TFLite fp32 (1 thread, batch 1), per architecture."""
    archs = list(res["archs"])
    bw, gap, h, top, left = 22, 30, 260, 30, 60
    width = left + len(archs) * (len(MODELS) * bw + gap) + 180
    vals = {a: {m: res["archs"][a]["latency"]["threads=1 batch=1"][m]["median_ms"] /
                res["archs"][a]["latency"]["threads=1 batch=1"]["tflite fp32"]["median_ms"] for m in MODELS}
            for a in archs}
    vmax = max(max(v.values()) for v in vals.values()) * 1.1
    y = lambda v: top + h - v / vmax * h
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{h + top + 60}" '
             f'font-family="sans-serif" font-size="12">',
             f'<text x="{left}" y="18">Latency relative to TFLite fp32 (1 thread, batch 1; lower is better)</text>']
    for t in (0.5, 1.0, 1.5, 2.0, 3.0):
        if t < vmax:
            parts.append(f'<line x1="{left}" x2="{width - 180}" y1="{y(t):.1f}" y2="{y(t):.1f}" stroke="#ddd"/>'
                         f'<text x="{left - 35}" y="{y(t) + 4:.1f}">{t:.1f}x</text>')
    x = left + 10
    for a in archs:
        for m in MODELS:
            v = vals[a][m]
            parts.append(f'<rect x="{x}" y="{y(v):.1f}" width="{bw - 2}" height="{top + h - y(v):.1f}" '
                         f'fill="{COLORS[m]}"><title>{a} {m}: {v:.2f}x</title></rect>')
            x += bw
        parts.append(f'<text x="{x - len(MODELS) * bw}" y="{top + h + 18}">{a}</text>')
        x += gap
    for i, m in enumerate(MODELS):
        parts.append(f'<rect x="{width - 170}" y="{top + 20 * i}" width="12" height="12" fill="{COLORS[m]}"/>'
                     f'<text x="{width - 152}" y="{top + 20 * i + 11}">{m}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


if __name__ == "__main__":
    res = json.load(open(sys.argv[1]))
    open(sys.argv[2], "w").write(tables(res))
    open(sys.argv[3], "w").write(svg(res))
