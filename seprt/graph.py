"""The runtime graph: values (activation tensors), nodes (ops) and weights.

A graph is what a model file holds (docs/format.md) and what executors run:
nodes are in topological order, each produces exactly one value, values are
NHWC without the batch axis ((H, W, C) or (C,)).

Weights per node, by weight format (`wfmt`):
    f32: weight (K, kh, kw, C/g) or (K, C) float32; bias (K,) float32
    i8:  weight (K, kh, kw, C/g) or (K, C) int8;  scale (K,) float32; bias (K,)
    bin: weight (K, ceil(kh*kw*(C/g)/8)) uint8 packed ±1 patterns (seprt.quant);
         scale = alpha (K,) float32; bias (K,)
A value may carry activation quantization parameters (q_bits 2, 4 or 8 with
q_scale, q_zero): i8 and bin nodes that read it quantize it first.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from . import arch as arch_mod
from .errors import FormatError
from .quant import pattern_nbytes

OPS = ("conv", "fc", "add", "relu", "maxpool", "avgpool", "gap", "shortcut_a")
WEIGHTED_OPS = ("conv", "fc")
WFMTS = ("f32", "i8", "bin")
VARIANTS = ("R", "B", "BQ")
ACT_BITS = (2, 4, 8)

# Limits (docs/format.md, "Limits").
MAX_VALUES = 65535
MAX_NODES = 65535
MAX_DIM = 1 << 16          # any single H, W or C
MAX_VALUE_ELEMS = 1 << 28  # elements of one activation value
MAX_KERNEL = 15
MAX_STRIDE = 8


@dataclass
class Value:
    """An activation tensor: shape without batch, optional quantization."""
    name: str
    shape: tuple[int, ...]
    q_scale: float = 0.0
    q_zero: int = 0
    q_bits: int = 0          # 0: float, else 2, 4 or 8

    @property
    def quantized(self) -> bool:
        return self.q_bits > 0


@dataclass
class Node:
    """One op. inputs/output are value indices."""
    name: str
    op: str
    inputs: tuple[int, ...]
    output: int
    kernel: int = 1
    stride: int = 1
    pad: int = 0
    groups: int = 1
    wfmt: str = ""                       # conv/fc: f32 | i8 | bin
    weight: np.ndarray | None = None
    scale: np.ndarray | None = None      # i8: per-channel scale; bin: alpha
    bias: np.ndarray | None = None

    def kernel_shape(self, cin: int) -> tuple[int, ...]:
        """Unpacked weight shape (K, kh, kw, C/g) for conv, (K, C) for fc."""
        k = self.bias.shape[0]
        if self.op == "fc":
            return (k, cin)
        return (k, self.kernel, self.kernel, cin // self.groups)


@dataclass
class Graph:
    values: list[Value]
    nodes: list[Node]
    input: int
    output: int
    embed: int
    meta: dict = field(default_factory=dict)

    # ------------------------------------------------------------ queries
    def node_params(self, n: Node) -> int:
        """Conv/FC weights of a node (biases not counted)."""
        if n.op not in WEIGHTED_OPS:
            return 0
        return math.prod(n.kernel_shape(self.values[n.inputs[0]].shape[-1]))

    def params(self) -> int:
        return sum(self.node_params(n) for n in self.nodes)

    def macs(self) -> int:
        total = 0
        for n in self.nodes:
            s = self.values[n.output].shape
            total += self.node_params(n) * (s[0] * s[1] if len(s) == 3 else 1)
        return total

    def is_integer(self, n: Node) -> bool:
        """True when the node runs on integers: i8/bin weights, quantized input."""
        return n.wfmt in ("i8", "bin") and self.values[n.inputs[0]].quantized

    # ------------------------------------------------------------ checks
    def validate(self) -> None:
        """Check structure, shapes, weights and metadata; raise FormatError."""
        nv = len(self.values)
        if not 1 <= nv <= MAX_VALUES or not 1 <= len(self.nodes) <= MAX_NODES:
            raise FormatError(f"graph has {nv} values and {len(self.nodes)} nodes; limits are 1..{MAX_VALUES}")
        for i in (self.input, self.output, self.embed):
            if not 0 <= i < nv:
                raise FormatError(f"graph references value {i}, but has only {nv}; re-export the model")
        for v in self.values:
            _check_value(v)
        in_shape = self.values[self.input].shape
        if len(in_shape) != 3 or in_shape[2] != 3:
            raise FormatError(f"input value must be (H, W, 3), got {in_shape}")
        produced = {self.input}
        names = set()
        for n in self.nodes:
            if n.name in names:
                raise FormatError(f"duplicate node name {n.name!r}")
            names.add(n.name)
            if n.op not in OPS:
                raise FormatError(f"node {n.name!r}: unknown op {n.op!r}; this seprt knows {', '.join(OPS)}")
            for i in n.inputs + (n.output,):
                if not 0 <= i < nv:
                    raise FormatError(f"node {n.name!r} references value {i}, but the graph has {nv}")
            for i in n.inputs:
                if i not in produced:
                    raise FormatError(f"node {n.name!r} reads value {i} ({self.values[i].name!r}) before it is "
                                      "produced: dangling or cyclic reference")
            if n.output in produced:
                raise FormatError(f"node {n.name!r} writes value {n.output}, which is already produced")
            produced.add(n.output)
            _check_node(self, n)
        for i in (self.output, self.embed):
            if i not in produced:
                raise FormatError(f"graph output value {i} is never produced")
        if len(self.values[self.output].shape) != 1 or len(self.values[self.embed].shape) != 1:
            raise FormatError("graph output (logits) and embed (features) must be flat (C,) values")
        _check_meta(self)

    def consumers(self) -> dict[int, list[int]]:
        """value index -> indices of nodes reading it."""
        out: dict[int, list[int]] = {}
        for i, n in enumerate(self.nodes):
            for v in n.inputs:
                out.setdefault(v, []).append(i)
        return out


def _finite_positive(a: np.ndarray) -> bool:
    return bool(np.all(np.isfinite(a)) and np.all(a > 0))


def _check_value(v: Value) -> None:
    if len(v.shape) not in (1, 3) or any(not 1 <= d <= MAX_DIM for d in v.shape):
        raise FormatError(f"value {v.name!r}: shape {v.shape} must be (H, W, C) or (C,) with dims in 1..{MAX_DIM}")
    if math.prod(v.shape) > MAX_VALUE_ELEMS:
        raise FormatError(f"value {v.name!r}: {math.prod(v.shape)} elements exceeds the limit {MAX_VALUE_ELEMS}")
    if not v.q_bits and (v.q_scale != 0 or v.q_zero != 0):
        raise FormatError(f"value {v.name!r}: a float value (q_bits 0) must have q_scale 0 and q_zero 0")
    if v.q_bits:
        if v.q_bits not in ACT_BITS:
            raise FormatError(f"value {v.name!r}: activation bits {v.q_bits} not in {ACT_BITS}")
        if not (math.isfinite(v.q_scale) and v.q_scale > 0):
            raise FormatError(f"value {v.name!r}: activation scale {v.q_scale} must be finite and > 0")
        if not 0 <= v.q_zero <= (1 << v.q_bits) - 1:
            raise FormatError(f"value {v.name!r}: zero point {v.q_zero} outside 0..{(1 << v.q_bits) - 1}")


def _expect(n: Node, what: str, a, shape, dtype) -> None:
    if a is None:
        raise FormatError(f"node {n.name!r}: missing {what}")
    if tuple(a.shape) != tuple(shape) or a.dtype != np.dtype(dtype):
        raise FormatError(f"node {n.name!r}: {what} is {a.dtype}{tuple(a.shape)}, expected {np.dtype(dtype)}{tuple(shape)}")


def _check_node(g: Graph, n: Node) -> None:
    ins = [g.values[i].shape for i in n.inputs]
    want_inputs = 2 if n.op == "add" else 1
    if len(n.inputs) != want_inputs:
        raise FormatError(f"node {n.name!r}: {n.op} takes {want_inputs} inputs, got {len(n.inputs)}")
    if n.op in ("conv", "maxpool", "avgpool"):
        if not (1 <= n.kernel <= MAX_KERNEL and 1 <= n.stride <= MAX_STRIDE and 0 <= n.pad < n.kernel):
            raise FormatError(f"node {n.name!r}: kernel {n.kernel}, stride {n.stride}, pad {n.pad} out of range "
                              f"(kernel 1..{MAX_KERNEL}, stride 1..{MAX_STRIDE}, pad < kernel)")
    if n.op == "shortcut_a" and not 1 <= n.stride <= MAX_STRIDE:
        raise FormatError(f"node {n.name!r}: stride {n.stride} out of range 1..{MAX_STRIDE}")
    out = g.values[n.output].shape
    if n.op in WEIGHTED_OPS:
        if n.wfmt not in WFMTS:
            raise FormatError(f"node {n.name!r}: unknown weight format {n.wfmt!r}")
        k = out[-1]
        if n.op == "conv":
            if len(ins[0]) != 3:
                raise FormatError(f"node {n.name!r}: conv needs an (H, W, C) input, got {ins[0]}")
            if n.groups < 1 or ins[0][2] % n.groups or k % n.groups:
                raise FormatError(f"node {n.name!r}: groups={n.groups} does not divide channels {ins[0][2]}->{k}")
        elif n.wfmt == "bin":
            raise FormatError(f"node {n.name!r}: fc cannot have binary patterns")
        _expect(n, "bias", n.bias, (k,), np.float32)
        if not np.all(np.isfinite(n.bias)):
            raise FormatError(f"node {n.name!r}: bias has NaN or Inf")
        kshape = n.kernel_shape(ins[0][-1])
        if n.wfmt == "f32":
            if n.scale is not None:
                raise FormatError(f"node {n.name!r}: float weights take no scale section")
            _expect(n, "weight", n.weight, kshape, np.float32)
            if not np.all(np.isfinite(n.weight)):
                raise FormatError(f"node {n.name!r}: weight has NaN or Inf")
        elif n.wfmt == "i8":
            _expect(n, "weight", n.weight, kshape, np.int8)
            _expect(n, "scale", n.scale, (k,), np.float32)
            if not _finite_positive(n.scale):
                raise FormatError(f"node {n.name!r}: weight scales must be finite and > 0")
        else:
            if n.kernel < 2:
                raise FormatError(f"node {n.name!r}: binary patterns need a k x k kernel with k > 1")
            nbytes = pattern_nbytes(n.kernel, n.kernel, kshape[3])
            _expect(n, "pattern", n.weight, (k, nbytes), np.uint8)
            _expect(n, "alpha", n.scale, (k,), np.float32)
            if not (np.all(np.isfinite(n.scale)) and np.all(n.scale >= 0)):
                raise FormatError(f"node {n.name!r}: alpha must be finite and >= 0")
            used = kshape[1] * kshape[2] * kshape[3] % 8
            if used and np.any(n.weight[:, -1] >> used):
                raise FormatError(f"node {n.name!r}: padding bits of packed patterns must be 0")
    elif n.weight is not None or n.scale is not None or n.bias is not None or n.wfmt:
        raise FormatError(f"node {n.name!r}: {n.op} takes no weights")
    uses = {"conv": "ksgp", "maxpool": "ksp", "avgpool": "ksp", "shortcut_a": "s"}.get(n.op, "")
    for attr, default in (("kernel", 1), ("stride", 1), ("pad", 0), ("groups", 1)):
        if attr[0] not in uses and getattr(n, attr) != default:
            raise FormatError(f"node {n.name!r}: {n.op} does not use {attr}; it must be {default}")
    layer = arch_mod.Layer(n.name, n.op, (), out_channels=out[-1], kernel=n.kernel, stride=n.stride,
                           pad=n.pad, groups=n.groups)
    try:
        want = arch_mod.layer_output_shape(layer, ins)
    except ValueError as e:
        raise FormatError(f"node {n.name!r}: {e}") from None
    if tuple(want) != tuple(out):
        raise FormatError(f"node {n.name!r}: output shape {out} does not match {n.op} of {ins} (expected {want})")


META_TYPES = {"arch": str, "variant": str, "labels": "str[]", "preprocess.size": "u32[]",
              "preprocess.resize": str, "preprocess.crop_fraction": float, "preprocess.mean": "f32[]",
              "preprocess.std": "f32[]", "preprocess.channel_order": str, "act_bits": int,
              "provenance.source": str, "provenance.converter": str, "provenance.stage": str,
              "provenance.binarize": str, "provenance.val_top1": float}


def _has_type(v, t) -> bool:
    if t == "str[]":
        return isinstance(v, list) and all(isinstance(x, str) for x in v)
    if t in ("u32[]", "f32[]"):
        item = int if t == "u32[]" else float
        return isinstance(v, list) and all(isinstance(x, item) and not isinstance(x, bool) for x in v)
    return isinstance(v, t) and not isinstance(v, bool)


def _check_meta(g: Graph) -> None:
    m = g.meta
    for key, t in META_TYPES.items():
        if key in m and not _has_type(m[key], t):
            name = t if isinstance(t, str) else {str: "str", int: "u32", float: "f32"}[t]
            raise FormatError(f"metadata {key!r} must be of type {name}")
    for key in ("arch", "variant", "labels", "preprocess.size", "preprocess.resize",
                "preprocess.mean", "preprocess.std"):
        if key not in m:
            raise FormatError(f"metadata key {key!r} is missing; re-export the model")
    if m["variant"] not in VARIANTS:
        raise FormatError(f"variant {m['variant']!r} not in {VARIANTS}")
    ncls = g.values[g.output].shape[0]
    if len(m["labels"]) != ncls:
        raise FormatError(f"{len(m['labels'])} labels for a classifier of width {ncls}")
    if list(m["preprocess.size"]) != list(g.values[g.input].shape[:2]):
        raise FormatError(f"preprocess.size {list(m['preprocess.size'])} does not match the input "
                          f"{list(g.values[g.input].shape[:2])}")
    if m["preprocess.resize"] not in ("stretch", "center_crop"):
        raise FormatError(f"preprocess.resize {m['preprocess.resize']!r} is not 'stretch' or 'center_crop'")
    for key in ("preprocess.mean", "preprocess.std"):
        a = np.asarray(m[key], np.float64)
        if a.shape != (3,) or not np.all(np.isfinite(a)):
            raise FormatError(f"{key} must be 3 finite numbers, got {m[key]}")
    if not np.all(np.asarray(m["preprocess.std"]) > 0):
        raise FormatError("preprocess.std must be > 0")
    if m.get("preprocess.channel_order", "RGB") not in ("RGB", "BGR"):
        raise FormatError(f"preprocess.channel_order {m['preprocess.channel_order']!r} is not RGB or BGR")
    if m.get("act_bits", 8) not in ACT_BITS:
        raise FormatError(f"act_bits {m['act_bits']} not in {ACT_BITS}")
    cf = m.get("preprocess.crop_fraction", 0.875)
    if not (math.isfinite(cf) and 0 < cf <= 1):
        raise FormatError(f"preprocess.crop_fraction {cf} must be in (0, 1]")


# ---------------------------------------------------------------- building

def from_arch(a: arch_mod.Arch, weights: dict[str, dict], meta: dict,
              act_quant: dict[str, tuple[float, int, int]] | None = None) -> Graph:
    """Build a graph from an architecture and per-layer weights.

    Args:
        a: the architecture (seprt.arch.get(id)).
        weights: layer name -> {"wfmt": "f32"|"i8"|"bin", "weight": ..., "scale": ..., "bias": ...}
            for every conv and fc layer (arrays as described in this module).
        meta: metadata keys (docs/format.md); labels default to the arch's.
        act_quant: value name ("input" or a layer name) -> (scale, zero, bits).
    Returns:
        a validated Graph whose value and node names are the layer names.
    """
    shapes = a.shapes()
    act_quant = act_quant or {}
    index = {"input": 0}
    values = [Value("input", a.input_shape, *act_quant.get("input", (0.0, 0, 0)))]
    nodes = []
    for l in a.layers:
        index[l.name] = len(values)
        values.append(Value(l.name, shapes[l.name], *act_quant.get(l.name, (0.0, 0, 0))))
        w = weights.get(l.name, {}) if l.op in WEIGHTED_OPS else {}
        if l.op in WEIGHTED_OPS and not w:
            raise ValueError(f"no weights given for layer {l.name!r}")
        nodes.append(Node(l.name, l.op, tuple(index[i] for i in l.inputs), index[l.name],
                          kernel=l.kernel, stride=l.stride, pad=l.pad, groups=l.groups,
                          wfmt=w.get("wfmt", ""), weight=w.get("weight"), scale=w.get("scale"), bias=w.get("bias")))
    meta = {"labels": list(a.labels) or [f"class_{i}" for i in range(a.num_classes)], **meta}
    meta.setdefault("arch", a.id)
    g = Graph(values, nodes, 0, index[a.output], index[a.embed], meta)
    g.validate()
    return g
