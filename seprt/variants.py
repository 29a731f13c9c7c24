"""Build R / B / BQ graphs from per-layer float weights (numpy only).

`build_graph` builds a built-in architecture's graph from plain arrays;
`random_layers` makes them with random weights for models that have no
trained weights (`random_graph`, the golden and test models). Trained
PyTorch models, the built-in architectures' included, are converted by
`converters/torch_import.py`, which folds BN and lowers the traced module.

Layer dict per conv/fc layer name:
    weight (K, kh, kw, C/g) or (K, C) float32, OHWI, BN folded
    bias   (K,) float32
    pattern (K, kh, kw, C/g) ±1 int8 and alpha (K,) float32 — only for
           binarized convs (the effective weight is then alpha * pattern)
"""
from __future__ import annotations

import numpy as np

from . import reference
from .arch import ROLE_PATTERN, Arch, Layer
from .graph import Graph, from_arch
from .ops import get_op
from .quant import ActRange, binarize, pack_pattern, quantize_weights_i8

CIFAR_PREPROCESS = {"preprocess.resize": "stretch",
                    "preprocess.mean": [0.4914, 0.4822, 0.4465], "preprocess.std": [0.2470, 0.2435, 0.2616]}
IMAGENET_PREPROCESS = {"preprocess.resize": "center_crop", "preprocess.crop_fraction": 0.875,
                       "preprocess.mean": [0.485, 0.456, 0.406], "preprocess.std": [0.229, 0.224, 0.225]}


def default_preprocess(a: Arch) -> dict:
    base = CIFAR_PREPROCESS if a.input_shape[0] <= 64 else IMAGENET_PREPROCESS
    return {**base, "preprocess.size": list(a.input_shape[:2]), "preprocess.channel_order": "RGB"}


BINARIZE_MODES = ("all", "prb", "inner")


def binarized_by(l: Layer, mode: str) -> bool:
    """Whether binarization `mode` turns layer `l` into a pattern conv:
    "all" = every conv with kernel > 1, "prb" = the pattern convs of PRBs,
    "inner" = "all" except the stem conv that reads the image."""
    if mode not in BINARIZE_MODES:
        raise ValueError(f"unknown binarize mode {mode!r}; known: {', '.join(BINARIZE_MODES)}")
    if not get_op(l.op).weighted or l.kernel == 1:
        return False
    return mode == "all" or (mode == "prb" and l.role == ROLE_PATTERN) or (mode == "inner" and l.inputs[0] != "input")


def binarize_layers(a: Arch, layers: dict[str, dict], mode: str) -> dict[str, dict]:
    """Add pattern/alpha (paper Eq. 1) to the convs that `mode` binarizes (`binarized_by`)."""
    out = dict(layers)
    for l in a.layers:
        if binarized_by(l, mode):
            p, alpha = binarize(layers[l.name]["weight"])
            out[l.name] = {**layers[l.name], "pattern": p, "alpha": alpha}
    return out


def _weights(layers: dict[str, dict], variant: str) -> dict[str, dict]:
    w = {}
    for name, d in layers.items():
        bias = np.asarray(d["bias"], np.float32)
        if variant != "R" and "bank" in d:           # stacked binary filters (seprt/stacked.py)
            from .stacked import stack_weights
            w[name] = stack_weights(d)
        elif variant != "R" and "pattern" in d:
            w[name] = {"wfmt": "bin", "weight": pack_pattern(d["pattern"]),
                       "scale": np.asarray(d["alpha"], np.float32), "bias": bias}
        elif variant == "BQ":
            q, s = quantize_weights_i8(d["weight"])
            w[name] = {"wfmt": "i8", "weight": q, "scale": s, "bias": bias}
        else:
            w[name] = {"wfmt": "f32", "weight": np.asarray(d["weight"], np.float32), "bias": bias}
    return w


def build_graph(a: Arch, layers: dict[str, dict], variant: str, meta: dict,
                calib: np.ndarray | None = None, act_bits: int = 8) -> Graph:
    """Graph of one variant.

    Args:
        a: architecture; layers: per-layer arrays (module docstring).
        variant: "R" (all float), "B" (patterns + float rest), "BQ" (patterns +
            int8 rest, activation quantization calibrated on `calib`).
        meta: metadata (preprocess, provenance, labels...); arch/variant are set here.
        calib: (N, H, W, 3) float32 preprocessed calibration inputs (BQ only).
        act_bits: bits of activations that feed binary convs (8, 4 or 2);
            values feeding only int8 layers, and the image input, use 8.
    """
    if variant not in ("R", "B", "BQ"):
        raise ValueError(f"variant {variant!r} is not R, B or BQ")
    meta = {**meta, "arch": a.id, "variant": variant}
    if variant != "BQ":
        return from_arch(a, _weights(layers, variant), meta)
    if calib is None or len(calib) == 0:
        raise ValueError("BQ needs calibration images")
    gb = from_arch(a, _weights(layers, "B"), {**meta, "variant": "B"})
    act_quant = calibrate(gb, calib, act_bits)
    return from_arch(a, _weights(layers, "BQ"), {**meta, "act_bits": act_bits}, act_quant)


LOW_BIT_FORMATS = ("bin", "stack", "stack_packed")      # weight formats whose input values take act_bits (others: 8)


def calibrate(gb: Graph, calib: np.ndarray, act_bits: int, reads=lambda n: bool(n.wfmt)) -> dict:
    """Activation quantization (value name -> (scale, zero, bits)) of every value
    a node selected by `reads` consumes, from its range over calib on the B graph
    gb: act_bits where a LOW_BIT_FORMATS node reads it (not the image), else 8;
    min/max at 8 bits, the least-squared-error clipped range below
    (seprt.quant.ActRange)."""
    feeds = {}
    for n in gb.nodes:
        if reads(n):
            feeds.setdefault(n.inputs[0], []).append(n.wfmt)
    ranges = {v: ActRange(act_bits if (any(w in LOW_BIT_FORMATS for w in wfmts) and v != gb.input) else 8)
              for v, wfmts in feeds.items()}
    for i in range(0, len(calib), 8):
        env = reference.run(gb, np.asarray(calib[i:i + 8], np.float32), outputs=tuple(feeds))
        for v, arr in env.items():
            ranges[v].add(arr)
    act_quant = {gb.values[v].name: r.qparams() + (r.bits,) for v, r in ranges.items()}
    # a max pool's output takes its input's quantization when both are quantized
    # with the same bits (its values are some of its input's, so nothing clips;
    # TFLite's rule too): the pool then runs on the u8 buffer its input's convs
    # read (plan.Planner.shared_u8_maxpool). In node order, so chains follow.
    for n in gb.nodes:
        if n.op == "maxpool" and n.inputs[0] in feeds and n.output in feeds:
            x, p = gb.values[n.inputs[0]].name, gb.values[n.output].name
            if act_quant[x][2] == act_quant[p][2]:
                act_quant[p] = act_quant[x]
    return act_quant


def random_layers(a: Arch, seed: int = 0) -> dict[str, dict]:
    """He-initialized float weights and small biases for every conv/fc layer,
    as if BN-folded from a freshly initialized network (the activations keep
    a stable scale through the net)."""
    rng = np.random.default_rng(seed)
    shapes = a.shapes()
    layers = {}
    for l in a.layers:
        op = get_op(l.op)
        if not op.weighted:
            continue
        shape = op.kernel_shape(l, shapes[l.inputs[0]][-1], l.out_channels)
        fan_in = int(np.prod(shape[1:]))
        w = rng.standard_normal(shape).astype(np.float32) * np.float32(np.sqrt(2.0 / fan_in))
        if l.name.endswith("svd2") or ".conv2" in l.name:
            w *= np.float32(0.5)   # residual branches start small, like BN gamma init < 1
        layers[l.name] = {"weight": w, "bias": (0.05 * rng.standard_normal(l.out_channels)).astype(np.float32)}
    return layers


def random_graph(a: Arch, variant: str = "BQ", binarize: str = "prb", seed: int = 0,
                 act_bits: int = 8, calib_n: int = 8) -> Graph:
    """A model with random weights (NOT trained), for demos, tests and speed
    measurements of architectures without trained weights."""
    layers = random_layers(a, seed)
    if variant != "R":
        layers = binarize_layers(a, layers, binarize)
    meta = {**default_preprocess(a), "provenance.source": f"random weights, seed {seed} (not trained)",
            "provenance.converter": "seprt.variants.random_graph"}
    calib = np.random.default_rng(seed + 1).standard_normal((calib_n,) + a.input_shape).astype(np.float32)
    return build_graph(a, layers, variant, meta, calib if variant == "BQ" else None, act_bits)
