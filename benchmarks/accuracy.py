"""Validation accuracy and bytes of every model-zoo file, measured, as JSON.

    python benchmarks/accuracy.py --val VAL_DIR --out benchmarks/accuracy.json resnet20:all sepnet-cifar:prb

For each ARCH:MODE it reads from models/ (see models/README.md):
  ARCH-full.pt, ARCH-bipattern-MODE.pt (no BN re-estimation),
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

import seprt  # noqa: E402
from converters.convert import load_images  # noqa: E402
from converters.tflite import run_tflite  # noqa: E402
from seprt import arch as arch_mod  # noqa: E402
from training import checkpoint, nets  # noqa: E402


def paper_params(arch_id: str, mode: str) -> dict:
    """Weights of the full network and of the pattern network counted as in the
    paper: a binarized k x k kernel (one input channel of one filter) is one
    number (its pattern index), every other weight one number each."""
    a = arch_mod.get(arch_id)
    model = nets.build(arch_id)
    binarized = {n for n, c in nets.conv_layers(model) if nets.selected_for_binarize(c, mode)}
    full = pattern = 0
    for name, n in a.weight_counts().items():
        full += n
        layer = next(l for l in a.layers if l.name == name)
        pattern += n // (layer.kernel ** 2) if name in binarized else n
    return {"full": full, "pattern": pattern, "binarized_convs": len(binarized)}


def stages(arch_id: str, mode: str, models: str) -> dict:
    """Validation top-1 per training stage, read from the checkpoints' history."""
    ref = checkpoint.load(os.path.join(models, f"{arch_id}-refined-{mode}.pt"))
    plain = checkpoint.load(os.path.join(models, f"{arch_id}-bipattern-{mode}.pt"))
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


def measure(arch_id: str, mode: str, models: str, val: str) -> dict:
    a = arch_mod.get(arch_id)
    meta = seprt.Model(os.path.join(models, f"{arch_id}-BQ.bin")).meta
    x, classes = load_images(val, meta, "--val")
    y = np.array([a.labels.index(c) for c in classes])
    res = {"images": len(y), "params": paper_params(arch_id, mode), "stages": stages(arch_id, mode, models),
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


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", help="ARCH:MODE, e.g. resnet20:all")
    p.add_argument("--val", required=True, help="validation split folder (python -m training export-val)")
    p.add_argument("--models", default="models")
    p.add_argument("--out", default="benchmarks/accuracy.json")
    args = p.parse_args(argv)
    out = {"split": "validation: files 4500-4999 of each class of the CIFAR-10 train archive", "archs": {}}
    for run in args.runs:
        arch_id, mode = run.split(":")
        out["archs"][arch_id] = {"mode": mode, **measure(arch_id, mode, args.models, args.val)}
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
