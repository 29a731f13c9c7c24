"""Module checkpoints: a plain state_dict of the user's own nn.Module plus what
a converter needs (labels, preprocessing, which convs are patterns).

The contract (docs/training.md has the full text): a dict saved with
`torch.save`, loadable with ``torch.load(path, weights_only=True)``::

    {"format": "seprt-module-checkpoint", "version": 1,
     "model": "pkg.mod:fn" | "path/file.py:fn",   # SPEC that builds the module
     "model_kwargs": {...},                       # keyword args for it (JSON-able)
     "state_dict": {...},                         # SPEC(**model_kwargs).load_state_dict(sd, strict=True)
     "binarized": ["layer1.0.conv1", ...],        # nn.Conv2d names whose weight is alpha[o] * sign
     "method": None | "refine" | "ste",
     "stage": "full" | "bipattern" | "pattern",
     "labels": ["cat", "dog", ...],               # logit order
     "preprocess": {"size": [H, W], "resize": "stretch" | "center_crop",
                    ["crop_fraction": f,] "mean": [r, g, b], "std": [r, g, b],
                    "channel_order": "RGB"},      # 0..1 scale
     "val_top1": float | None,
     "history": [...], "train_config": {...}}

For every name in ``binarized`` the conv's weight (O, I/g, kh, kw) has, in
each output filter o, all entries equal to +alpha[o] or -alpha[o]:
pattern = sign(W) (sign(0) = +1), alpha = |W[o]| (>= 0). A bias, if the conv
has one, stays real. Every other tensor is ordinary float32.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn

from . import checkpoint as zoo_ckpt
from . import models, pattern, spec as spec_mod

FORMAT = "seprt-module-checkpoint"
VERSION = 1
KEYS = ("format", "version", "model", "model_kwargs", "state_dict", "binarized", "method", "stage",
        "labels", "preprocess", "val_top1", "history", "train_config")
STAGES = ("full", "bipattern", "pattern")
PREPROCESS_KEYS = ("size", "resize", "mean", "std", "channel_order")


def make(model: nn.Module, *, spec: str, model_kwargs: dict, labels: list[str], preprocess: dict,
         stage: str, method: str | None = None, val_top1: float | None = None, history: list | None = None,
         train_config: dict | None = None) -> dict:
    """A checkpoint of `model` (PatternConv2d modules folded to alpha * sign(W))."""
    binarized = list(pattern.pattern_modules(model))
    ck = {"format": FORMAT, "version": VERSION, "model": spec, "model_kwargs": zoo_ckpt._plain(model_kwargs or {}),
          "state_dict": pattern.plain_state_dict(model), "binarized": binarized, "method": method,
          "stage": stage, "labels": list(labels), "preprocess": zoo_ckpt._plain(preprocess),
          "val_top1": None if val_top1 is None else float(val_top1), "history": zoo_ckpt._plain(history or []),
          "train_config": zoo_ckpt._plain(train_config or {})}
    validate(ck, "<new checkpoint>")
    return ck


def validate(ck, where: str = "checkpoint") -> None:
    """Raise a one-line ValueError saying what is wrong (structure only; the
    state_dict is checked against the module by `build_model`)."""
    def bad(msg):
        raise ValueError(f"{where}: {msg}")

    if not isinstance(ck, dict) or ck.get("format") != FORMAT:
        bad(f"not a seprt module checkpoint (format={ck.get('format') if isinstance(ck, dict) else None!r}, "
            f"expected {FORMAT!r})")
    missing = [k for k in KEYS if k not in ck]
    if missing:
        bad(f"missing keys: {', '.join(missing)}")
    extra = sorted(k for k in ck if k not in KEYS)
    if extra:
        bad(f"unexpected keys: {', '.join(extra)}")
    if ck["version"] != VERSION:
        bad(f"unsupported version {ck['version']!r} (this code reads version {VERSION})")
    if ck["stage"] not in STAGES:
        bad(f"unknown stage {ck['stage']!r}; known: {', '.join(STAGES)}")
    if ck["method"] not in (None,) + pattern.METHODS:
        bad(f"unknown method {ck['method']!r}")
    if (ck["stage"] == "full") != (not ck["binarized"]):
        bad(f"stage {ck['stage']!r} does not go with {len(ck['binarized'])} binarized convs")
    if not isinstance(ck["labels"], list) or len(ck["labels"]) < 2:
        bad("labels must be a list of at least 2 class names")
    pp = ck["preprocess"]
    if not isinstance(pp, dict) or not set(PREPROCESS_KEYS) <= set(pp) <= set(PREPROCESS_KEYS) | {"crop_fraction"}:
        bad(f"preprocess must have the keys {', '.join(PREPROCESS_KEYS)} (and optionally crop_fraction)")
    if len(pp["size"]) != 2 or any(int(v) < 1 for v in pp["size"]):
        bad(f"preprocess size {pp['size']} is not [H, W]")
    if len(pp["mean"]) != 3 or len(pp["std"]) != 3 or any(s <= 0 for s in pp["std"]):
        bad("preprocess mean/std must be 3 numbers each, std > 0")
    if pp["channel_order"] not in ("RGB", "BGR") or pp["resize"] not in ("stretch", "center_crop"):
        bad("preprocess channel_order must be 'RGB' or 'BGR' and resize 'stretch' or 'center_crop'")
    sd = ck["state_dict"]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        bad("state_dict must be a dict of tensors")
    for k, v in sd.items():
        if v.is_floating_point() and not bool(torch.isfinite(v).all()):
            bad(f"state_dict[{k!r}] contains NaN or infinite values")
    for n in ck["binarized"]:
        w = sd.get(n + ".weight")
        if w is None or w.dim() != 4:
            bad(f"binarized conv {n!r} has no 4-D weight {n}.weight in the state_dict")
        if not pattern.is_pattern_weight(w):
            bad(f"binarized conv {n!r}: weight is not alpha * (+-1) per filter")
    if ck["val_top1"] is not None and (math.isnan(ck["val_top1"]) or not 0 <= ck["val_top1"] <= 1):
        bad(f"val_top1 {ck['val_top1']} is not a fraction in [0, 1]")


def save(ck: dict, path: str) -> None:
    validate(ck, path)
    zoo_ckpt.atomic_save(ck, path)


def read(path: str) -> dict:
    """A module checkpoint; a zoo checkpoint (`training/checkpoint.py`) is
    converted on the fly (`from_zoo`). ValueError if neither."""
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ValueError(f"{path}: no such checkpoint file") from None
    except Exception as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"{path}: cannot read as a torch checkpoint ({first})") from None
    if isinstance(ck, dict) and ck.get("format") == zoo_ckpt.FORMAT:
        zoo_ckpt.validate(ck, path)
        return from_zoo(ck)
    validate(ck, path)
    return ck


def from_zoo(zk: dict) -> dict:
    """A zoo checkpoint dict (arch id, layer-list keys layers.<name>.*) -> module checkpoint of
    `training.models` (same weights; pattern convs as alpha * pattern)."""
    sd, binarized = models.from_zoo_state_dict(zk["arch"], zk["state_dict"])
    stage = {"full": "full", "bipattern": "bipattern", "refined": "pattern"}[zk["stage"]]
    tc = zk["train_config"]
    method = None if stage == "full" else ("ste" if tc.get("binary_from_start") else "refine")
    ck = {"format": FORMAT, "version": VERSION, "model": models.ARCH_TO_SPEC[zk["arch"]], "model_kwargs": {},
          "state_dict": sd, "binarized": binarized, "method": method, "stage": stage, "labels": list(zk["labels"]),
          "preprocess": dict(zk["preprocess"]), "val_top1": zk["val_top1"], "history": zk["history"],
          "train_config": dict(tc, converted_from_zoo_arch=zk["arch"], zoo_binarize=zk["binarize"])}
    validate(ck, "<converted zoo checkpoint>")
    return ck


def to_zoo(ck: dict) -> dict:
    """The inverse of `from_zoo` for a built-in model (the zoo's format,
    `training/checkpoint.py`): ValueError if the model is not one of training.models or its
    binarized convs are not one of the zoo's modes (all / inner / prb)."""
    arch_id = next((a for a, s in models.ARCH_TO_SPEC.items() if s == ck["model"]), None)
    if arch_id is None:
        raise ValueError(f"model {ck['model']!r} is not a built-in architecture (training.models)")
    n_cls = models.arch_mod.get(arch_id).num_classes
    if ck["model_kwargs"] not in ({}, {"num_classes": n_cls}) or len(ck["labels"]) != n_cls:
        raise ValueError(f"{arch_id} with {len(ck['labels'])} classes ({ck['model_kwargs']}): the zoo format "
                         f"holds {n_cls}-class {arch_id} only; convert it with the tracing converter instead")
    names = models.zoo_name_map(arch_id)
    sd = {}
    binarized = set(ck["binarized"])
    for layer, (mod, bn) in names.items():
        p = "layers." + layer.replace(".", "__") + "."
        w = ck["state_dict"][mod + ".weight"]
        if bn is None:
            sd[p + "weight"], sd[p + "bias"] = w, ck["state_dict"][mod + ".bias"]
            continue
        if mod in binarized:
            sd[p + "pattern"], sd[p + "alpha"] = pattern.sign_pm1(w), w.abs().flatten(1)[:, 0].clone()
        else:
            sd[p + "weight"] = w
        for k in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
            sd[f"{p}bn.{k}"] = ck["state_dict"][f"{bn}.{k}"]
    mode = None
    if binarized:
        net = models.build(arch_id)
        for m in ("all", "inner", "prb"):
            try:
                if set(pattern.select(net, m)) == binarized:
                    mode = m
                    break
            except ValueError:
                continue
        if mode is None:
            raise ValueError(f"binarized convs {sorted(binarized)[:4]}... are not one of the zoo modes all/inner/prb")
    zk = {"format": zoo_ckpt.FORMAT, "version": zoo_ckpt.VERSION, "arch": arch_id,
          "stage": "full" if mode is None else "refined", "binarize": mode, "state_dict": sd,
          "labels": list(ck["labels"]), "preprocess": ck["preprocess"], "val_top1": ck["val_top1"],
          "history": ck["history"], "train_config": dict(ck["train_config"], binary_from_start=(
              mode if ck["method"] == "ste" else None))}
    zoo_ckpt.validate(zk, "<zoo checkpoint>")
    return zk


def build_model(ck: dict, binarized_as_patterns: bool = False) -> nn.Module:
    """The user's module with the checkpoint's weights, eval mode. With
    `binarized_as_patterns`, its binarized convs come back as PatternConv2d
    (pattern = sign(W), alpha = |W|: the same effective weights)."""
    m = spec_mod.build(ck["model"], ck["model_kwargs"])
    try:
        m.load_state_dict(ck["state_dict"], strict=True)
    except RuntimeError as e:
        why = " ".join(str(e).split()).replace(f"Error(s) in loading state_dict for {type(m).__name__}: ", "")
        raise ValueError(f"checkpoint weights do not fit {ck['model']}({ck['model_kwargs']}): {why[:300]}") from None
    if binarized_as_patterns and ck["binarized"]:
        pattern.binarize_modules(m, ck["binarized"], ck["method"] or "refine")
    return m.eval()
