"""The zoo checkpoint format (models/*.pt): weights only, loadable with weights_only=True.

This is the format the zoo's checkpoints were written in, when the built-in
architectures were trained through a layer-list interpreter; today every
run writes a module checkpoint (`training/modelckpt.py`) and a zoo
checkpoint is read as the `training.models` module it equals
(`modelckpt.read` -> `modelckpt.from_zoo`, exact). `export-zoo` still
writes one. A checkpoint is a dict saved with `torch.save`::

    {"format": "seprt-checkpoint", "version": 1,
     "arch": "resnet20",                      # a seprt.arch id
     "stage": "full" | "bipattern" | "refined",
     "binarize": None | "all" | "inner" | "prb",   # which convs are patterns
     "state_dict": {...},                     # per conv layer L (arch layer name, "." -> "__"):
                                              #   layers.L.weight (O, I/g, k, k), or for a pattern
                                              #   conv layers.L.pattern (±1) + layers.L.alpha (O,);
                                              #   layers.L.bn.{weight,bias,running_mean,running_var,
                                              #   num_batches_tracked}; per fc layers.L.{weight,bias}
     "labels": [...],
     "preprocess": {"size": [H, W], "resize": "stretch" | "center_crop", "mean": [r, g, b],
                    "std": [r, g, b], "channel_order": "RGB"},  # 0..1 scale
     "val_top1": float | None,
     "history": [ {per-epoch or per-step dict}, ... ],
     "train_config": {...}}
"""
from __future__ import annotations

import math
import os

import torch

from seprt import arch as arch_mod
from seprt import files, variants

FORMAT = "seprt-checkpoint"
VERSION = 1
KEYS = ("format", "version", "arch", "stage", "binarize", "state_dict", "labels",
        "preprocess", "val_top1", "history", "train_config")
STAGES = ("full", "bipattern", "refined")
PREPROCESS_KEYS = ("size", "resize", "mean", "std", "channel_order")


def _plain(x):
    """Tuples -> lists, numpy scalars -> python, recursively (weights_only safe)."""
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if hasattr(x, "item") and not isinstance(x, torch.Tensor):
        return x.item()
    return x


def atomic_save(obj, path: str) -> None:
    """torch.save to a temp file in the same folder, then rename over `path`."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    files.atomic_write(path, lambda tmp: torch.save(obj, tmp))


def save(ckpt: dict, path: str) -> None:
    """Validate and save a checkpoint atomically."""
    validate(ckpt, path)
    atomic_save(ckpt, path)


def expected_state(arch_id: str, binarize: str | None) -> dict[str, tuple]:
    """{state_dict key: shape} of a zoo checkpoint of `arch_id` whose convs
    chosen by `binarize` (seprt.variants.binarized_by) are patterns."""
    from . import models
    ref = models.build(arch_id).state_dict()
    layers = {l.name: l for l in arch_mod.get(arch_id).layers}
    out = {}
    for name, (mod, bn) in models.zoo_name_map(arch_id).items():
        p = "layers." + name.replace(".", "__") + "."
        w = tuple(ref[mod + ".weight"].shape)
        if bn is None:
            out[p + "weight"], out[p + "bias"] = w, tuple(ref[mod + ".bias"].shape)
            continue
        if binarize and variants.binarized_by(layers[name], binarize):
            out[p + "pattern"], out[p + "alpha"] = w, w[:1]
        else:
            out[p + "weight"] = w
        for k in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
            out[f"{p}bn.{k}"] = tuple(ref[f"{bn}.{k}"].shape)
    return out


def validate(ckpt, where: str = "checkpoint") -> None:
    """Raise a one-line ValueError saying what is wrong with `ckpt`."""
    def bad(msg):
        raise ValueError(f"{where}: {msg}")

    if not isinstance(ckpt, dict):
        bad(f"not a seprt checkpoint (a {type(ckpt).__name__}, expected a dict)")
    if ckpt.get("format") != FORMAT:
        bad(f"not a seprt checkpoint (format={ckpt.get('format')!r}, expected {FORMAT!r})")
    missing = [k for k in KEYS if k not in ckpt]
    extra = sorted(k for k in ckpt if k not in KEYS)
    if missing:
        bad(f"missing keys: {', '.join(missing)}")
    if extra:
        bad(f"unexpected keys: {', '.join(map(str, extra))}")
    if ckpt["version"] != VERSION:
        bad(f"unsupported version {ckpt['version']!r} (this code reads version {VERSION})")
    try:
        a = arch_mod.get(ckpt["arch"])
    except ValueError as e:
        bad(str(e))
    if ckpt["stage"] not in STAGES:
        bad(f"unknown stage {ckpt['stage']!r}; known: {', '.join(STAGES)}")
    if ckpt["binarize"] not in (None,) + variants.BINARIZE_MODES:
        bad(f"unknown binarize {ckpt['binarize']!r}; known: None, {', '.join(variants.BINARIZE_MODES)}")
    if (ckpt["stage"] == "full") != (ckpt["binarize"] is None):
        bad(f"stage {ckpt['stage']!r} does not go with binarize={ckpt['binarize']!r}")
    if len(ckpt["labels"]) != a.num_classes:
        bad(f"{len(ckpt['labels'])} labels for a {a.num_classes}-class architecture")
    pp = ckpt["preprocess"]
    if not isinstance(pp, dict) or not set(PREPROCESS_KEYS) <= set(pp) <= set(PREPROCESS_KEYS) | {"crop_fraction"}:
        bad(f"preprocess must have the keys {', '.join(PREPROCESS_KEYS)} (and optionally crop_fraction)")
    if list(pp["size"]) != list(a.input_shape[:2]):
        bad(f"preprocess size {pp['size']} does not match the architecture input {list(a.input_shape[:2])}")
    if len(pp["mean"]) != 3 or len(pp["std"]) != 3 or any(s <= 0 for s in pp["std"]):
        bad("preprocess mean/std must be 3 numbers each, std > 0")
    if pp["channel_order"] not in ("RGB", "BGR") or pp["resize"] not in ("stretch", "center_crop"):
        bad("preprocess channel_order must be 'RGB' or 'BGR' and resize 'stretch' or 'center_crop'")
    if not 0 < pp.get("crop_fraction", 0.875) <= 1:
        bad("preprocess crop_fraction must be in (0, 1]")
    if ckpt["val_top1"] is not None and not isinstance(ckpt["val_top1"], float):
        bad("val_top1 must be a float or None")
    if not isinstance(ckpt["history"], list) or not isinstance(ckpt["train_config"], dict):
        bad("history must be a list and train_config a dict")
    sd = ckpt["state_dict"]
    if not isinstance(sd, dict):
        bad("state_dict is not a dict")
    ref = expected_state(a.id, ckpt["binarize"])
    missing = [k for k in ref if k not in sd]
    extra = [k for k in sd if k not in ref]
    if missing:
        bad(f"state_dict for {a.id} (binarize={ckpt['binarize']}) is missing {len(missing)} keys, e.g. {', '.join(missing[:3])}")
    if extra:
        bad(f"state_dict for {a.id} (binarize={ckpt['binarize']}) has {len(extra)} unexpected keys, e.g. {', '.join(extra[:3])}")
    for k, v in ref.items():
        t = sd[k]
        if not isinstance(t, torch.Tensor):
            bad(f"state_dict[{k!r}] is a {type(t).__name__}, not a tensor")
        if tuple(t.shape) != v:
            bad(f"state_dict[{k!r}] has shape {list(t.shape)}, expected {list(v)}")
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            bad(f"state_dict[{k!r}] contains NaN or infinite values")
        if k.endswith(".pattern") and not bool(((t == 1) | (t == -1)).all()):
            bad(f"state_dict[{k!r}] has entries other than +1/-1")
    if ckpt["val_top1"] is not None and (math.isnan(ckpt["val_top1"]) or not 0 <= ckpt["val_top1"] <= 1):
        bad(f"val_top1 {ckpt['val_top1']} is not a fraction in [0, 1]")


def load(path: str) -> dict:
    """Load and validate a checkpoint (weights_only=True); ValueError if bad."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ValueError(f"{path}: no such checkpoint file") from None
    except Exception as e:  # pickle errors, truncated files, non-weights content
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"{path}: cannot read as a torch checkpoint ({first})") from None
    validate(ckpt, path)
    return ckpt
