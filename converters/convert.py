"""Checkpoint -> seprt .bin (R / B / BQ) and -> TFLite (fp32 / int8), checked.

A checkpoint is a module checkpoint (`training/modelckpt.py`: what `python -m
training` writes) or a zoo checkpoint (`models/*.pt`, `training/checkpoint.py`,
read as the `training.models` module it equals). Either way the module is
converted like any PyTorch model (`converters/torch_convert.py`: traced with
torch.fx, BN folded, lowered); the checkpoint adds labels, preprocessing and
which convs are patterns (as trained: pattern = sign(W), alpha = |W|).

Every conversion prints what it writes, loads its output back and compares it
with the PyTorch model it came from; it writes the file (atomically) only when
the check passes, so a failure leaves nothing behind.

    python -m converters seprt CKPT -o OUT.bin --variant {R,B,BQ} [--binarize {prb,all,inner}]
                                    [--calib DATA] [--act-bits {8,4,2}] [--check DATA]
    python -m converters tflite CKPT -o OUT.tflite --quant {fp32,int8} [--calib DATA]
                                    [--binarized] [--check DATA]
    python -m converters init --arch ID -o CKPT [--seed N]
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

import seprt
from seprt import arch as arch_mod
from seprt import format as fmt
from seprt import files, image, variants
from seprt.folders import is_image_source, iter_labelled

# parity targets (issue 3)
REAL_REL_TOL = 1e-4          # max|dlogit| / max|logit| for float variants and TFLite fp32
BQ_TOP1_AGREEMENT = 0.99     # seprt BQ vs PyTorch with the same quantization simulated
RANDOM_BQ_REL_TOL = 0.25     # the same, for random-init checkpoints (near-tie logits): max|dlogit| / max|logit|


class ConvertError(ValueError):
    """A problem with the user's input: printed as one line."""


# ------------------------------------------------------------------ inputs

def load_images(data: str, meta: dict, what: str, limit: int | None = None) -> tuple[np.ndarray, list[str]]:
    """Preprocessed (N, H, W, 3) float32 images from a folder or tar, and
    their class folder names; with `limit`, that many spread evenly over the
    sorted files (seprt.folders.spread). Unreadable images are an error."""
    if not is_image_source(data):
        raise ConvertError(f"{what} {data}: not a folder or a .tar/.tar.gz archive")
    xs, classes = [], []
    for cls, name, src in iter_labelled(data, limit):
        try:
            xs.append(image.preprocess(src, meta))
        except seprt.ImageError as e:
            raise ConvertError(f"{what} image {name}: {e}") from None
        classes.append(cls)
    if not xs:
        raise ConvertError(f"{what} {data}: no images found (expected <class>/<image> files)")
    return np.stack(xs), classes


def preprocess_meta(pre: dict) -> dict:
    """Checkpoint preprocess dict -> seprt metadata keys."""
    meta = {"preprocess.size": [int(v) for v in pre["size"]], "preprocess.resize": pre["resize"],
            "preprocess.mean": [float(v) for v in pre["mean"]], "preprocess.std": [float(v) for v in pre["std"]],
            "preprocess.channel_order": pre.get("channel_order", "RGB")}
    if "crop_fraction" in pre:
        meta["preprocess.crop_fraction"] = float(pre["crop_fraction"])
    return meta


def seprt_logits(data: bytes, x: np.ndarray) -> np.ndarray:
    """Logits of the written bytes as the runtime runs them (fast engine)."""
    return seprt.Model.from_bytes(data).logits(np.ascontiguousarray(x, np.float32))


def rel_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12))


def refuse_overwrite(out: str, force: bool) -> None:
    """An existing file at `out` stays unless --force (checked before any work)."""
    if os.path.exists(out) and not force:
        raise ConvertError(f"{out} exists; refusing to overwrite it (use --force)")


def atomic_write(data: bytes, out: str, inputs: list[str]) -> None:
    """Write `data` to `out` via a temp file + rename; never over an input."""
    for p in inputs:
        if p and os.path.exists(out) and os.path.samefile(out, p):
            raise ConvertError(f"output {out} is one of the inputs; choose another path")
    files.atomic_write(out, data)


def describe(g, quant_err: dict) -> list[str]:
    """Per-tensor stats of a graph: format, shape, bytes, alpha range / int8 error."""
    lines = [f"{'layer':<26} {'fmt':<4} {'weight shape':<16} {'bytes':>8}  stats"]
    for n in g.nodes:
        if n.op not in ("conv", "fc"):
            continue
        nbytes = n.weight.nbytes + n.bias.nbytes + (n.scale.nbytes if n.scale is not None else 0)
        if n.wfmt == "bin":
            st = f"alpha [{n.scale.min():.4g}, {n.scale.max():.4g}]"
        elif n.wfmt == "i8":
            st = f"scale [{n.scale.min():.3g}, {n.scale.max():.3g}], |q| max {int(np.abs(n.weight).max())}"
        else:
            st = f"|w| max {np.abs(n.weight).max():.4g}"
        v = g.values[n.inputs[0]]
        if v.q_bits:
            st += f"; input u{v.q_bits} scale {v.q_scale:.4g} zero {v.q_zero}"
        lines.append(f"{n.name:<26} {n.wfmt:<4} {'x'.join(map(str, n.weight.shape)):<16} {nbytes:>8}  {st}")
    if quant_err:
        lines.append("Table 1 statistic (mean over filters of ||W - alpha B||^2 / (c k k), real weights before "
                     "binarizing; 1x1 as if binarized):")
        for k, d in quant_err.items():
            lines.append(f"  {k}: {d['error']:.3e} over {d['filters']} filters (mean W^2 {d['mean_sq_weight']:.3e})")
    return lines


def write_checked(g, data: bytes, logits, classes, what: str, report: dict, out: str, inputs: list, log) -> bytes:
    """Record the checked model's validation top-1 in its metadata when the check
    images are labelled, then write the file atomically (never over an input)."""
    acc = accuracy(logits, classes, g.meta["labels"])
    if acc is not None:
        report["val_top1"] = acc
        log(f"validation top-1 of the converted model on {what} ({len(classes):,} images): {acc:.4f}")
        g.meta["provenance.val_top1"] = acc
        g.meta["provenance.val_images"] = len(classes)
        data = fmt.to_bytes(g)
    atomic_write(data, out, inputs)
    return data


def accuracy(logits: np.ndarray, classes: list[str], labels: list[str]) -> float | None:
    if not classes or any(c not in labels for c in classes):
        return None
    y = np.array([labels.index(c) for c in classes])
    return float(np.mean(logits.argmax(1) == y))


# ---------------------------------------------------------------- commands

def read_checkpoint(args, binarized_variant: bool) -> None:
    """Read args.ckpt (module or zoo checkpoint) and set up `args` for the
    module converter (`torch_convert`): the module, and which convs become
    patterns -- the checkpoint's own binarized convs as trained, or for a Full
    checkpoint `--binarize` (default: the model's `prb` preset if it has one,
    i.e. the SEP-Nets' pattern residual blocks, else every k x k conv)."""
    from training import modelckpt, pattern
    ck = modelckpt.read(args.ckpt)               # ValueError: missing, unreadable, invalid
    net = modelckpt.build_model(ck)
    presets = getattr(net, "binarize_presets", {}) or {}
    label, names, qerr = None, [], {}
    if ck["binarized"]:
        if not binarized_variant:
            raise ConvertError(f"{args.ckpt} is a {ck['stage']} checkpoint ({len(ck['binarized'])} pattern convs): "
                               "variant R / TFLite without --binarized need a Full checkpoint")
        names = list(ck["binarized"])
        label = ck["train_config"].get("zoo_binarize") or ck["train_config"].get("binarize") or "checkpoint"
        if args.binarize:
            try:
                asked = pattern.select(net, args.binarize)
            except ValueError as e:
                raise ConvertError(str(e)) from None
            if set(asked) != set(names):
                raise ConvertError(f"checkpoint was binarized as {label!r} ({len(names)} convs), not "
                                   f"{args.binarize!r} ({len(asked)} convs)")
        qerr = pattern.quantization_error(net, skip=names)
    elif binarized_variant:
        label = args.binarize or ("prb" if "prb" in presets else "all")
        try:
            names = pattern.select(net, label)
        except ValueError as e:
            raise ConvertError(str(e)) from None
        qerr = pattern.quantization_error(net)      # on the real weights, before binarizing
    args.ckpt_dict, args.ckpt_module = ck, net
    args.model, args.weights = ck["model"], None
    args.binarize = ",".join(names) or None
    args.binarize_label, args.qerr = label, qerr


def to_seprt(args, log=print) -> dict:
    from . import torch_convert
    read_checkpoint(args, args.variant != "R")
    return torch_convert.to_seprt(args, log)


def to_tflite(args, log=print) -> dict:
    from . import torch_convert
    read_checkpoint(args, args.binarized)
    return torch_convert.to_tflite(args, log)


@torch.no_grad()
def init(args, log=print) -> dict:
    """Random-init module checkpoint of a built-in architecture with realistic
    BN statistics: running mean/var estimated from forward passes (train mode)
    on random normal images."""
    from training import modelckpt, models
    try:
        a = arch_mod.get(args.arch)
    except ValueError as e:
        raise ConvertError(str(e)) from None
    if os.path.exists(args.out):
        raise ConvertError(f"{args.out} exists; init never overwrites a file")
    torch.manual_seed(args.seed)
    net = models.build(args.arch)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None                     # cumulative average over the passes
            m.reset_running_stats()
    net.train()
    gen = torch.Generator().manual_seed(args.seed)
    n = 4 if a.input_shape[0] > 64 else 32
    for _ in range(4):
        net(torch.randn((n, 3) + a.input_shape[:2], generator=gen))
    net.eval()
    pre = variants.default_preprocess(a)
    preprocess = {"size": pre["preprocess.size"], "resize": pre["preprocess.resize"],
                  "mean": pre["preprocess.mean"], "std": pre["preprocess.std"], "channel_order": "RGB"}
    if "preprocess.crop_fraction" in pre:
        preprocess["crop_fraction"] = pre["preprocess.crop_fraction"]
    ck = modelckpt.make(net, spec=models.ARCH_TO_SPEC[a.id], model_kwargs={}, labels=list(a.labels),
                        preprocess=preprocess, stage="full",
                        train_config={"init": "random", "seed": args.seed, "arch": a.id})
    modelckpt.save(ck, args.out)
    log(f"wrote {args.out}: {args.arch} random init (seed {args.seed}), {a.params():,} weights, "
        f"{Path(args.out).stat().st_size:,} bytes")
    return {"arch": args.arch}
