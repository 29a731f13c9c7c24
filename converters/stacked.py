"""Stacked checkpoint (training/stacked.py) -> seprt .bin with `stack_packed` convs, checked.

    python -m converters.stacked CKPT -o OUT.bin [--variant {B,BQ}] [--calib DATA] [--check DATA]
                                 [--byte-index]

`stack_packed` stores each index in ceil(log2 m) bits; --byte-index writes the
same model as `stack` (a byte per index) for readers that predate it.

The module (its StackedConv2d convs are torch.fx leaves) is lowered like any
PyTorch model (converters/torch_import.py); BN is folded into each stacked
conv as into a pattern conv: with s = gamma / sqrt(var + eps), alpha' =
alpha * s (any sign: the `stack` format allows a negative alpha, so the bank
need not hold -B), b' = beta - mean * s; bank and index are taken as trained
(sign of the bank proxy, argmax of the selection proxy), never re-derived.
Before writing, the file is read back and compared with PyTorch: B (float
path) logits within REAL_REL_TOL, BQ top-1 agreement with PyTorch under the
same quantization simulated (TorchImport.simulate) >= BQ_TOP1_AGREEMENT.
Nothing is written if a check fails.
"""
from __future__ import annotations

import argparse
import os

import numpy as np
import torch

import seprt
from seprt import format as fmt, stacked as sk
from training import stacked as ts

from .convert import (BQ_TOP1_AGREEMENT, REAL_REL_TOL, ConvertError, accuracy, atomic_write, load_images,
                      preprocess_meta, refuse_overwrite, rel_diff, seprt_logits)
from .torch_import import from_torch


def convert(net: torch.nn.Module, ck: dict, variant: str, calib: np.ndarray | None, x: np.ndarray,
            classes=(), source: str = "", log=print, byte_index: bool = False) -> tuple[bytes, dict]:
    """-> (file bytes, report); raises ConvertError when the parity check fails."""
    from training.models import ARCH_TO_SPEC
    pre = ck["preprocess"]
    arch = {s: a for a, s in ARCH_TO_SPEC.items()}.get(ck["model"], ck["model"].rsplit(":", 1)[1])
    imp = from_torch(net, tuple(pre["size"]), labels=ck["labels"], preprocess={**pre, "arch": arch})
    meta = {**preprocess_meta(pre), "provenance.source": source, "provenance.stage": "stacked",
            "provenance.converter": f"seprt converters.stacked {seprt.__version__}"}
    g = imp.graph(variant, None, calib, meta=meta)
    data = fmt.to_bytes(sk.byte_index(g) if byte_index else g)
    g = fmt.from_bytes(data)
    kb = sk.kxk_bytes(g)
    log(f"k x k conv weights: {kb['bytes']:,} bytes (bank + index) vs {kb['float32_bytes']:,} float32: "
        f"{kb['ratio']:.1f}x")
    ours = seprt_logits(data, x)
    report = {"variant": variant, "bytes": len(data), "kxk": kb}
    if variant == "BQ":
        sim = imp.simulate(g, x)
        agree = float(np.mean(ours.argmax(1) == sim.argmax(1)))
        report.update(top1_agreement=agree, rel_diff=rel_diff(ours, sim))
        log(f"check: seprt BQ vs PyTorch with BQ quantization simulated: top-1 agreement {agree:.4f}, "
            f"max|dlogit|/max|logit| {report['rel_diff']:.2e}")
        if agree < BQ_TOP1_AGREEMENT and ck.get("val_top1") is not None:
            raise ConvertError(f"check failed: top-1 agreement {agree:.4f} < {BQ_TOP1_AGREEMENT}; nothing written")
    else:
        d = rel_diff(ours, imp.logits(x))
        report["rel_diff"] = d
        log(f"check: seprt B vs PyTorch: max|dlogit|/max|logit| {d:.2e} (target <= {REAL_REL_TOL:g})")
        if d > REAL_REL_TOL:
            raise ConvertError(f"check failed: relative logit difference {d:.2e} > {REAL_REL_TOL:g}; nothing written")
    acc = accuracy(ours, list(classes), g.meta["labels"])
    if acc is not None:
        report["val_top1"] = acc
        g.meta["provenance.val_top1"] = acc
        g.meta["provenance.val_images"] = len(classes)
        data = fmt.to_bytes(g)
        log(f"validation top-1 of the converted model ({len(classes):,} images): {acc:.4f}")
    return data, report


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m converters.stacked")
    p.add_argument("ckpt")
    p.add_argument("-o", "--out", required=True)
    p.add_argument("--force", action="store_true", help="replace an existing -o file (never the checkpoint)")
    p.add_argument("--variant", choices=("B", "BQ"), default="BQ")
    p.add_argument("--calib", help="images to calibrate activation ranges (BQ)")
    p.add_argument("--calib-limit", type=int, default=256, help="spread evenly over the sorted files")
    p.add_argument("--check", help="images for the parity check and validation top-1")
    p.add_argument("--check-limit", type=int, default=0, help="0: all; else spread evenly over the sorted files")
    p.add_argument("--byte-index", action="store_true",
                   help="write `stack` (a byte per index) instead of `stack_packed`, for readers that predate it")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    try:
        refuse_overwrite(args.out, args.force)
        net, ck = ts.load_checkpoint(args.ckpt)
        meta = preprocess_meta(ck["preprocess"])
        if args.variant == "BQ" and not args.calib:
            raise ConvertError("variant BQ needs --calib DATA")
        calib = load_images(args.calib, meta, "--calib", args.calib_limit)[0] if args.variant == "BQ" else None
        if args.check:
            x, classes = load_images(args.check, meta, "--check", args.check_limit or None)
        else:
            size = tuple(ck["preprocess"]["size"])
            x, classes = (calib if calib is not None else
                          np.random.default_rng(0).standard_normal((8,) + size + (3,)).astype(np.float32)), []
        data, rep = convert(net, ck, args.variant, calib, x, classes, os.path.basename(args.ckpt),
                            byte_index=args.byte_index)
        atomic_write(data, args.out, [args.ckpt])
    except (ConvertError, ValueError) as e:
        raise SystemExit(f"error: {e}")
    print(f"wrote {args.out}: {len(data):,} bytes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
