"""`--model SPEC`: any PyTorch classifier -> seprt .bin (R / B / BQ) or TFLite, checked.

    python -m converters seprt  --model SPEC [--weights SD.pt] --input-size H W -o OUT.bin --variant {R,B,BQ}
                                [--binarize MODE] [--calib DATA] [--labels FILE] [--mean R G B] [--std R G B]
                                [--resize {stretch,center_crop}] [--channel-order {RGB,BGR}]
    python -m converters tflite --model SPEC ... -o OUT.tflite --quant {fp32,int8} [--binarized]

SPEC is `package.module:callable` or `path/to/file.py:callable`; the
callable, called with no arguments, returns the nn.Module. The module is
traced and lowered once (converters/torch_import.py); seprt and TFLite are
written from the same lowered graph. Checks before anything is written:
    R, B:  seprt (fast engine, the bytes to be written) vs PyTorch -- for B,
           PyTorch running the binarized weights (TorchImport.simulate) --
           max|dlogit| / max|logit| <= 1e-4
    BQ:    seprt vs the same quantization simulated in torch: <= 0.25, and
           top-1 agreement >= 0.99 on --check images when given
    TFLite fp32 vs PyTorch (or the binarized simulation) <= 1e-4; int8: top-1 agreement printed
BQ's binarize default is "all" (every k x k conv); also "inner", "none",
or kernel sizes "3x3", "5x5", "3x3,5x5".
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import sys

import numpy as np
import torch

import seprt
from seprt import format as fmt

from .convert import (BQ_TOP1_AGREEMENT, RANDOM_BQ_REL_TOL, REAL_REL_TOL, ConvertError, accuracy, atomic_write,
                      write_checked, describe, load_images, rel_diff, seprt_logits)
from .torch_import import ImportError_, from_torch


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())[:400] or type(e).__name__


def load_model(spec: str, weights: str | None = None, kwargs: dict | None = None) -> torch.nn.Module:
    """The nn.Module of a SPEC (module docstring), with a state dict loaded (strict)."""
    if ":" not in spec:
        raise ConvertError(f"--model {spec!r}: expected package.module:callable or path/to/file.py:callable")
    where, name = spec.rsplit(":", 1)
    try:
        if where.endswith(".py") or os.sep in where:
            if not os.path.isfile(where):
                raise ConvertError(f"--model {spec}: no such file {where}")
            mod_name = "_seprt_user_" + os.path.splitext(os.path.basename(where))[0]
            s = importlib.util.spec_from_file_location(mod_name, where)
            mod = importlib.util.module_from_spec(s)
            sys.modules[mod_name] = mod
            s.loader.exec_module(mod)
        else:
            mod = importlib.import_module(where)
    except ConvertError:
        raise
    except Exception as e:   # noqa: BLE001 -- the user's module failed to import: say so in one line
        raise ConvertError(f"--model {spec}: cannot import {where} ({type(e).__name__}: {_one_line(e)})") from None
    fn = getattr(mod, name, None)
    if not callable(fn):
        raise ConvertError(f"--model {spec}: {where} has no callable {name!r}")
    try:
        net = fn(**(kwargs or {}))
    except Exception as e:   # noqa: BLE001
        raise ConvertError(f"--model {spec}: {name}() failed ({type(e).__name__}: {_one_line(e)})") from None
    if not isinstance(net, torch.nn.Module):
        raise ConvertError(f"--model {spec}: {name}() returned a {type(net).__name__}, not a torch.nn.Module")
    if weights:
        load_state_dict(net, weights)
    return net.eval()


def load_state_dict(net: torch.nn.Module, path: str) -> None:
    """Load a state dict file (a plain dict, or one under "state_dict" / "model"); every key must match."""
    if not os.path.isfile(path):
        raise ConvertError(f"--weights {path}: no such file")
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:   # noqa: BLE001
        raise ConvertError(f"--weights {path}: not a PyTorch state dict ({type(e).__name__}: {_one_line(e)})") from None
    for key in ("state_dict", "model"):
        if isinstance(sd, dict) and isinstance(sd.get(key), dict):
            sd = sd[key]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise ConvertError(f"--weights {path}: not a state dict of tensors")
    if sd and all(k.startswith("module.") for k in sd):          # saved from DistributedDataParallel
        sd = {k[len("module."):]: v for k, v in sd.items()}
    own = net.state_dict()
    missing = [k for k in own if k not in sd]
    extra = [k for k in sd if k not in own]
    shape = [f"{k} {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}" for k in own
             if k in sd and tuple(sd[k].shape) != tuple(own[k].shape)]
    if missing or extra or shape:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (first: {', '.join(missing[:3])})")
        if extra:
            parts.append(f"{len(extra)} unexpected (first: {', '.join(extra[:3])})")
        if shape:
            parts.append(f"{len(shape)} of another shape (first: {shape[0]})")
        raise ConvertError(f"--weights {path} does not match the model: keys " + "; ".join(parts))
    net.load_state_dict(sd, strict=True)


def module_checkpoint(path: str | None) -> dict:
    """The metadata of a training module checkpoint (docs/training.md: format
    "seprt-module-checkpoint": labels, preprocess, binarized), or {} for a plain state dict."""
    if not path or not os.path.isfile(path):
        return {}
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:   # noqa: BLE001 -- load_state_dict reports it
        return {}
    return ck if isinstance(ck, dict) and ck.get("format") == "seprt-module-checkpoint" else {}


def _import(args):
    """Trace and lower the module: `--model SPEC [--weights W]`, or a checkpoint
    that `convert.read_checkpoint` read (args.ckpt_dict, args.ckpt_module)."""
    from_ckpt = getattr(args, "ckpt_dict", None) is not None
    ck = args.ckpt_dict if from_ckpt else module_checkpoint(args.weights)
    pre_ck = ck.get("preprocess") or {}
    if not args.input_size and pre_ck.get("size"):
        args.input_size = list(pre_ck["size"])
    for key in ("mean", "std", "resize", "channel_order"):
        if getattr(args, key, None) is None and pre_ck.get(key) is not None:
            setattr(args, key, pre_ck[key])
    if getattr(args, "binarize", None) is None and ck.get("binarized") and getattr(args, "variant", "B") != "R":
        args.binarize = ",".join(ck["binarized"])        # the convs training binarized
    if not args.input_size:
        raise ConvertError("--model needs --input-size H W")
    if from_ckpt:
        net = args.ckpt_module
    else:
        net = load_model(args.model, args.weights, ck.get("model_kwargs"))       # e.g. num_classes from training
    labels = list(ck["labels"]) if ck.get("labels") and not args.labels else None
    if args.labels:
        try:
            with open(args.labels, encoding="utf-8") as f:
                labels = [ln.strip() for ln in f if ln.strip()]
        except OSError as e:
            raise ConvertError(f"--labels {args.labels}: {e.strerror}") from None
    from training.models import ARCH_TO_SPEC
    arch = {spec: a for a, spec in ARCH_TO_SPEC.items()}.get(args.model, args.model.rsplit(":", 1)[1])
    pre = {k: v for k, v in {"mean": args.mean, "std": args.std, "resize": args.resize, "crop_fraction":
                             pre_ck.get("crop_fraction"), "channel_order": args.channel_order, "arch": arch}.items() if v}
    try:
        imp = from_torch(net, tuple(args.input_size), labels=labels, preprocess=pre)
    except ImportError_ as e:
        raise ConvertError(str(e)) from None
    if from_ckpt:
        imp.meta["provenance.source"] = os.path.basename(args.ckpt)
        imp.meta["provenance.stage"] = ck["stage"]
        if args.binarize_label:
            imp.meta["provenance.binarize"] = args.binarize_label
    else:
        imp.meta["provenance.source"] = args.model + (f" + {os.path.basename(args.weights)}" if args.weights
                                                      else " (weights as the callable built them)")
    imp.meta["provenance.converter"] = f"seprt converters {seprt.__version__} (torch.fx import)"
    return imp


def _inputs(args) -> list[str]:
    """Files the conversion reads (never overwritten)."""
    paths = [args.weights, getattr(args, "ckpt", None), args.calib, args.check, args.labels,
             args.model.rsplit(":", 1)[0]]
    return [p for p in paths if p and os.path.exists(p)]


def _check_x(args, imp, calib):
    if args.check:
        x, cls = load_images(args.check, imp.meta, "--check", args.check_limit)
        return x, cls, f"{len(x)} images from {args.check}"
    if calib is not None:
        return calib, [], f"{len(calib)} calibration images (give --check DATA for validation images)"
    x = np.random.default_rng(0).standard_normal((4, imp.h, imp.w, 3)).astype(np.float32)
    return x, [], "4 random inputs"


def _graph(imp, variant, binarize, calib, act_bits):
    try:
        return imp.graph(variant, binarize, calib, act_bits)
    except ImportError_ as e:
        raise ConvertError(str(e)) from None


def to_seprt(args, log=print) -> dict:
    imp = _import(args)
    mode = None if args.variant == "R" else (args.binarize or "all")
    if args.variant == "R" and args.binarize:
        raise ConvertError("--binarize applies to variants B and BQ")
    calib = None
    if args.variant == "BQ":
        if not args.calib:
            raise ConvertError("variant BQ needs --calib DATA (images to calibrate activation ranges)")
        calib, _ = load_images(args.calib, imp.meta, "--calib", args.calib_limit)
    elif args.act_bits != 8:
        raise ConvertError("--act-bits applies to BQ only")
    if mode and not imp.binarized(mode):
        log(f"note: --binarize {mode} selects no conv of this model; every conv stays real")
    g = _graph(imp, args.variant, mode, calib, args.act_bits)
    data = fmt.to_bytes(g)
    g = fmt.from_bytes(data)
    for line in describe(g, getattr(args, "qerr", {})):
        log(line)
    p = imp.params(mode)
    log(f"weights: {p['full']:,} conv/fc, {p['pattern']:,} of them 1-bit patterns "
        f"({getattr(args, 'binarize_label', None) or mode or 'none'}), "
        f"{p['real']:,} real")
    x, classes, what = _check_x(args, imp, calib)
    ours = seprt_logits(data, x)
    report = {"variant": args.variant, "binarize": mode, "bytes": len(data), "check_inputs": what, "params": p}
    if args.variant == "BQ":
        sim = imp.simulate(g, x)
        agree = float(np.mean(ours.argmax(1) == sim.argmax(1)))
        report.update(top1_agreement=agree, rel_diff=rel_diff(ours, sim))
        log(f"check: seprt BQ vs PyTorch with BQ quantization simulated on {what}: "
            f"top-1 agreement {agree:.4f}, max|dlogit|/max|logit| {report['rel_diff']:.2e}")
        if report["rel_diff"] > RANDOM_BQ_REL_TOL:
            raise ConvertError(f"check failed: relative logit difference {report['rel_diff']:.2e} > "
                               f"{RANDOM_BQ_REL_TOL:g}; nothing written")
        random_init = (getattr(args, "ckpt_dict", None) or {}).get("train_config", {}).get("init") == "random"
        if args.check and agree < BQ_TOP1_AGREEMENT and not random_init:    # random init: near-tied logits
            raise ConvertError(f"check failed: top-1 agreement {agree:.4f} < {BQ_TOP1_AGREEMENT}; nothing written")
    else:
        want = imp.logits(x) if args.variant == "R" else imp.simulate(g, x)
        d = rel_diff(ours, want)
        report["rel_diff"] = d
        against = "PyTorch" if args.variant == "R" else "PyTorch with the binarized weights"
        log(f"check: seprt {args.variant} vs {against} on {what}: max|dlogit|/max|logit| {d:.2e} "
            f"(target <= {REAL_REL_TOL:g})")
        if d > REAL_REL_TOL:
            raise ConvertError(f"check failed: relative logit difference {d:.2e} > {REAL_REL_TOL:g}; nothing written")
        if args.variant == "B":
            d0 = rel_diff(imp.simulate(_graph(imp, "R", None, None, 8), x), imp.logits(x))
            log(f"check: the lowered graph's float weights vs PyTorch: {d0:.2e}")
            if d0 > REAL_REL_TOL:
                raise ConvertError(f"check failed: lowered graph differs from PyTorch by {d0:.2e}; nothing written")
    data = write_checked(g, data, ours, classes, what, report, args.out, _inputs(args), log)
    sections = seprt.Model.from_bytes(data).info()["sections"]
    log("bytes per section: " + ", ".join(f"{k} {v:,}" for k, v in sections.items()))
    log(f"wrote {args.out}: {len(data):,} bytes ({len(data) / 1e6:.3f} MB), {g.params():,} weights")
    return report


def to_tflite(args, log=print) -> dict:
    from . import tflite
    imp = _import(args)
    variant = "B" if args.binarized else "R"
    mode = (args.binarize or "all") if args.binarized else None
    g = _graph(imp, variant, mode, None, 8)
    fp32 = tflite.graph_to_tflite(g)
    calib = None
    if args.quant == "int8":
        if not args.calib:
            raise ConvertError("--quant int8 needs --calib DATA (the same images as for seprt BQ)")
        calib, _ = load_images(args.calib, imp.meta, "--calib", args.calib_limit)
    x, classes, what = _check_x(args, imp, calib)
    want = imp.logits(x) if variant == "R" else imp.simulate(g, x)
    got32 = tflite.run_tflite_checked(fp32, x, "the fp32 model")
    d = rel_diff(got32, want)
    log(f"check: TFLite fp32 vs PyTorch{' (binarized weights)' if args.binarized else ''} on {what}: "
        f"max|dlogit|/max|logit| {d:.2e} (target <= {REAL_REL_TOL:g})")
    if d > REAL_REL_TOL:
        raise ConvertError(f"check failed: relative logit difference {d:.2e} > {REAL_REL_TOL:g}; nothing written")
    data, report, got = fp32, {"quant": args.quant, "rel_diff": d, "check_inputs": what}, got32
    if args.quant == "int8":
        try:
            data = tflite.quantize_int8(fp32, calib)
        except ValueError as e:
            raise ConvertError(f"{e}; nothing written") from None
        got = tflite.run_tflite_checked(data, x, "the int8 model")
        agree = float(np.mean(got.argmax(1) == want.argmax(1)))
        report["top1_agreement_with_pytorch"] = agree
        log(f"TFLite int8 vs PyTorch float on {what}: top-1 agreement {agree:.4f}")
    acc = accuracy(got, classes, imp.labels)
    if acc is not None:
        report["val_top1"] = acc
    atomic_write(data, args.out, _inputs(args))
    report["bytes"] = len(data)
    log(f"wrote {args.out}: {len(data):,} bytes ({len(data) / 1e6:.3f} MB)")
    return report
