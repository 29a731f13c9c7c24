"""Checkpoint -> seprt .bin (R / B / BQ) and -> TFLite (fp32 / int8), checked.

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
from training import checkpoint, nets

from . import fold

# parity targets (issue 3)
REAL_REL_TOL = 1e-4          # max|dlogit| / max|logit| for float variants and TFLite fp32
BQ_TOP1_AGREEMENT = 0.99     # seprt BQ vs PyTorch with the same quantization simulated
RANDOM_BQ_REL_TOL = 0.25     # the same, for random-init checkpoints (near-tie logits): max|dlogit| / max|logit|


class ConvertError(ValueError):
    """A problem with the user's input: printed as one line."""


# ------------------------------------------------------------------ inputs

def load_images(data: str, meta: dict, what: str, limit: int | None = None) -> tuple[np.ndarray, list[str]]:
    """Preprocessed (N, H, W, 3) float32 images from a folder or tar, and
    their class folder names. Unreadable images are an error."""
    if not is_image_source(data):
        raise ConvertError(f"{what} {data}: not a folder or a .tar/.tar.gz archive")
    xs, classes = [], []
    for cls, name, src in iter_labelled(data):
        if limit and len(xs) >= limit:
            break
        try:
            xs.append(image.preprocess(src, meta))
        except seprt.ImageError as e:
            raise ConvertError(f"{what} image {name}: {e}") from None
        classes.append(cls)
    if not xs:
        raise ConvertError(f"{what} {data}: no images found (expected <class>/<image> files)")
    return np.stack(xs), classes


def nchw(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def torch_logits(net: nets.Net, x: np.ndarray, batch: int = 64) -> np.ndarray:
    with torch.no_grad():
        return np.concatenate([net(nchw(x[i:i + batch])).numpy() for i in range(0, len(x), batch)])


def seprt_logits(data: bytes, x: np.ndarray) -> np.ndarray:
    """Logits of the written bytes as the runtime runs them (fast engine)."""
    return seprt.Model.from_bytes(data).logits(np.ascontiguousarray(x, np.float32))


def rel_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12))


def atomic_write(data: bytes, out: str, inputs: list[str]) -> None:
    """Write `data` to `out` via a temp file + rename; never over an input."""
    for p in inputs:
        if p and os.path.exists(out) and os.path.samefile(out, p):
            raise ConvertError(f"output {out} is one of the inputs; choose another path")
    files.atomic_write(out, data)


def load_checkpoint(path: str) -> tuple[nets.Net, dict]:
    try:
        net, ckpt = checkpoint.load_model(path)
    except FileNotFoundError:
        raise ConvertError(f"{path}: no such checkpoint") from None
    net.eval()
    return net, ckpt


def default_binarize(arch_id: str) -> str:
    """SEP-Nets binarize their PRB pattern convs; ResNets have none, so all 3x3."""
    return "prb" if arch_id.startswith("sepnet") else "all"


def prepare(net: nets.Net, ckpt: dict, variant: str, binarize: str | None) -> tuple[str | None, dict]:
    """Put the net in the form the variant needs; returns (binarize mode, Table 1 stats)."""
    if variant == "R":
        if ckpt["binarize"]:
            raise ConvertError(f"variant R needs a full checkpoint; this one is {ckpt['stage']} "
                               f"(binarize={ckpt['binarize']})")
        return None, {}
    if ckpt["binarize"]:
        if binarize and binarize != ckpt["binarize"]:
            raise ConvertError(f"checkpoint was binarized with {ckpt['binarize']!r}, not {binarize!r}")
        return ckpt["binarize"], nets.quantization_error(net)
    mode = binarize or default_binarize(ckpt["arch"])
    stats = nets.quantization_error(net)        # on the real weights, before binarizing
    if not nets.binarize(net, mode):
        raise ConvertError(f"--binarize {mode} selects no conv in {ckpt['arch']}; use --binarize all")
    return mode, stats


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


def check_inputs(args, meta: dict, a: arch_mod.Arch, calib: np.ndarray | None) -> tuple[np.ndarray, list[str], str]:
    """Inputs for the parity check: --check images, else calibration images, else random."""
    if args.check:
        x, cls = load_images(args.check, meta, "--check", args.check_limit)
        return x, cls, f"{len(x)} images from {args.check}"
    if calib is not None:
        return calib, [], f"{len(calib)} calibration images (give --check DATA for validation images)"
    x = np.random.default_rng(0).standard_normal((8,) + a.input_shape).astype(np.float32)
    return x, [], "8 random inputs"


def write_checked(g, data: bytes, logits, classes, what: str, report: dict, out: str, inputs: list, log) -> bytes:
    """Record the checked model's validation top-1 in its metadata when the check
    images are labelled, then write the file atomically (never over an input)."""
    acc = accuracy(logits, classes, g.meta["labels"])
    if acc is not None:
        report["val_top1"] = acc
        log(f"validation top-1 of the converted model on {what}: {acc:.4f}")
        g.meta["provenance.val_top1"] = acc
        data = fmt.to_bytes(g)
    atomic_write(data, out, inputs)
    return data


def accuracy(logits: np.ndarray, classes: list[str], labels: list[str]) -> float | None:
    if not classes or any(c not in labels for c in classes):
        return None
    y = np.array([labels.index(c) for c in classes])
    return float(np.mean(logits.argmax(1) == y))


# ---------------------------------------------------------------- commands

def to_seprt(args, log=print) -> dict:
    net, ckpt = load_checkpoint(args.ckpt)
    a = net.arch
    meta = {**fold.preprocess_meta(ckpt["preprocess"]), "labels": list(ckpt["labels"]),
            "provenance.source": os.path.basename(args.ckpt), "provenance.stage": ckpt["stage"],
            "provenance.converter": f"seprt converters {seprt.__version__}"}
    mode, qerr = prepare(net, ckpt, args.variant, args.binarize)
    if mode:
        meta["provenance.binarize"] = mode
    calib = None
    if args.variant == "BQ":
        if not args.calib:
            raise ConvertError("variant BQ needs --calib DATA (images to calibrate activation ranges)")
        calib, _ = load_images(args.calib, meta, "--calib", args.calib_limit)
    elif args.act_bits != 8:
        raise ConvertError("--act-bits applies to BQ only")
    layers = fold.fold_net(net)
    g = variants.build_graph(a, layers, args.variant, meta, calib, args.act_bits)
    data = fmt.to_bytes(g)
    g = fmt.from_bytes(data)                    # check what will be written, as read back
    for line in describe(g, qerr):
        log(line)
    x, classes, what = check_inputs(args, meta, a, calib)
    ours = seprt_logits(data, x)
    report = {"variant": args.variant, "binarize": mode, "bytes": len(data), "check_inputs": what}
    if args.variant == "BQ":
        act_quant = {g.values[i].name: (v.q_scale, v.q_zero, v.q_bits)
                     for i, v in enumerate(g.values) if v.q_bits}
        with torch.no_grad():
            sim = np.concatenate([fold.simulate(net, act_quant, nchw(x[i:i + 64])).numpy()
                                  for i in range(0, len(x), 64)])
        agree = float(np.mean(ours.argmax(1) == sim.argmax(1)))
        report.update(top1_agreement=agree, rel_diff=rel_diff(ours, sim))
        log(f"check: seprt BQ vs PyTorch with BQ quantization simulated on {what}: "
            f"top-1 agreement {agree:.4f}, max|dlogit|/max|logit| {report['rel_diff']:.2e}")
        if ckpt["train_config"].get("init") == "random":
            # untrained: logits are near-ties, so top-1 flips on rounding; check the logits instead
            if report["rel_diff"] > RANDOM_BQ_REL_TOL:
                raise ConvertError(f"check failed: relative logit difference {report['rel_diff']:.2e} > "
                                   f"{RANDOM_BQ_REL_TOL:g}; nothing written")
        elif agree < BQ_TOP1_AGREEMENT:
            raise ConvertError(f"check failed: top-1 agreement {agree:.4f} < {BQ_TOP1_AGREEMENT}; nothing written")
    else:
        d = rel_diff(ours, torch_logits(net, x))
        report["rel_diff"] = d
        log(f"check: seprt {args.variant} vs PyTorch on {what}: max|dlogit|/max|logit| {d:.2e} "
            f"(target <= {REAL_REL_TOL:g})")
        if d > REAL_REL_TOL:
            raise ConvertError(f"check failed: relative logit difference {d:.2e} > {REAL_REL_TOL:g}; nothing written")
    data = write_checked(g, data, ours, classes, what, report, args.out, [args.ckpt, args.calib, args.check], log)
    sections = seprt.Model.from_bytes(data).info()["sections"]
    log("bytes per section: " + ", ".join(f"{k} {v:,}" for k, v in sections.items()))
    log(f"wrote {args.out}: {len(data):,} bytes ({len(data) / 1e6:.3f} MB), {g.params():,} weights")
    return report


def to_tflite(args, log=print) -> dict:
    from . import tflite
    net, ckpt = load_checkpoint(args.ckpt)
    a = net.arch
    meta = {**fold.preprocess_meta(ckpt["preprocess"]), "labels": list(ckpt["labels"]),
            "provenance.source": os.path.basename(args.ckpt)}
    variant = "B" if args.binarized else "R"
    if not args.binarized and ckpt["binarize"]:
        raise ConvertError(f"checkpoint is {ckpt['stage']} (binarized); add --binarized")
    prepare(net, ckpt, variant, args.binarize)
    g = variants.build_graph(a, fold.fold_net(net), variant, meta)
    fp32 = tflite.graph_to_tflite(g)
    calib = None
    if args.quant == "int8":
        if not args.calib:
            raise ConvertError("--quant int8 needs --calib DATA (the same images as for seprt BQ)")
        calib, _ = load_images(args.calib, meta, "--calib", args.calib_limit)
    x, classes, what = check_inputs(args, meta, a, calib)
    want = torch_logits(net, x)
    got32 = tflite.run_tflite_checked(fp32, x, "the fp32 model")
    d = rel_diff(got32, want)
    log(f"check: TFLite fp32 vs PyTorch on {what}: max|dlogit|/max|logit| {d:.2e} (target <= {REAL_REL_TOL:g})")
    if d > REAL_REL_TOL:
        raise ConvertError(f"check failed: relative logit difference {d:.2e} > {REAL_REL_TOL:g}; nothing written")
    data, report = fp32, {"quant": args.quant, "rel_diff": d, "check_inputs": what}
    if args.quant == "int8":
        try:
            data = tflite.quantize_int8(fp32, calib)
        except ValueError as e:
            raise ConvertError(f"{e}; nothing written") from None
        got8 = tflite.run_tflite_checked(data, x, "the int8 model")
        agree = float(np.mean(got8.argmax(1) == want.argmax(1)))
        report["top1_agreement_with_pytorch"] = agree
        log(f"TFLite int8 vs PyTorch float on {what}: top-1 agreement {agree:.4f}")
        got = got8
    else:
        got = got32
    acc = accuracy(got, classes, meta["labels"])
    if acc is not None:
        report["val_top1"] = acc
        log(f"validation top-1 of the TFLite {args.quant} model on {what}: {acc:.4f}")
    atomic_write(data, args.out, [args.ckpt, args.calib, args.check])
    report["bytes"] = len(data)
    log(f"wrote {args.out}: {len(data):,} bytes ({len(data) / 1e6:.3f} MB)")
    return report


@torch.no_grad()
def init(args, log=print) -> dict:
    """Random-init checkpoint with realistic BN statistics: running mean/var
    estimated from forward passes (train mode) on random normal images."""
    try:
        a = arch_mod.get(args.arch)
    except ValueError as e:
        raise ConvertError(str(e)) from None
    torch.manual_seed(args.seed)
    net = nets.build(args.arch)
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
    ckpt = checkpoint.make(net, stage="full", binarize=None, preprocess=preprocess, val_top1=None,
                           history=[], train_config={"init": "random", "seed": args.seed})
    if os.path.exists(args.out):
        raise ConvertError(f"{args.out} exists; init never overwrites a file")
    checkpoint.save(ckpt, args.out)
    log(f"wrote {args.out}: {args.arch} random init (seed {args.seed}), {a.params():,} weights, "
        f"{Path(args.out).stat().st_size:,} bytes")
    return {"arch": args.arch}
