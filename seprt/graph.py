"""The runtime graph: values (activation tensors), nodes (ops) and weights.

A graph is what a model file holds (docs/format.md) and what executors run:
nodes are in topological order, each produces exactly one value, values are
NHWC without the batch axis ((H, W, C) or (C,)). What each op and weight
format means, takes and checks is declared once in the op table (seprt/ops);
this module validates a graph against it.

A value may carry activation quantization parameters (q_bits 2, 4 or 8 with
q_scale, q_zero): integer-format nodes (i8, bin) that read it quantize it first.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from . import arch as arch_mod
from .errors import FormatError
from .ops import OPS, WFMTS, get_op, get_wfmt

VARIANTS = ("R", "B", "BQ")
ACT_BITS = (2, 4, 8)

# Limits (docs/format.md, "Limits").
MAX_VALUES = 65535
MAX_NODES = 65535
MAX_DIM = 1 << 16          # any single H, W or C
MAX_VALUE_ELEMS = 1 << 28  # elements of one activation value
MAX_ABS_PARAM = 1e12       # |weight|, |scale|, |alpha|, |bias|, activation scale
# Activation memory a model may need (5 bytes per element of every value: its
# float32 copy and its quantized copy). Raise it to load larger models, as
# Pillow's Image.MAX_IMAGE_PIXELS: seprt.graph.MAX_ACTIVATION_BYTES = 4 << 30.
MAX_ACTIVATION_BYTES = 1 << 30


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
    """One op. inputs/output are value indices; attrs holds every attribute of
    the op (defaults filled in); tensors are the weight format's tensors in
    its declared order (seprt/ops/wfmt_*.py)."""
    name: str
    op: str
    inputs: tuple[int, ...]
    output: int
    attrs: dict = field(default_factory=dict)
    wfmt: str = ""
    tensors: tuple = ()

    def __post_init__(self):
        if self.op in OPS:
            self.attrs = OPS[self.op].with_defaults(self.attrs)

    # attributes of the window ops, by name (their defaults for other ops)
    kernel = property(lambda self: self.attrs.get("kernel", 1))
    stride = property(lambda self: self.attrs.get("stride", 1))
    pad = property(lambda self: self.attrs.get("pad", 0))
    groups = property(lambda self: self.attrs.get("groups", 1))

    def tensor(self, name: str):
        """The weight tensor `name` of this node's format, or None."""
        wf = WFMTS.get(self.wfmt)
        if wf is None or name not in [t.name for t in wf.tensors]:
            return None
        return self.tensors[wf.index(name)]

    @property
    def weight(self):
        """The first tensor (float or int8 weights, packed patterns)."""
        return self.tensors[0] if self.tensors else None

    @property
    def scale(self):
        """The integer path's per-channel multiplier (int8 scale or alpha), or None."""
        wf = WFMTS.get(self.wfmt)
        return self.tensor(wf.scale_name) if wf and wf.scale_name else None

    @property
    def bias(self):
        return self.tensor("bias")


def make_node(name: str, op: str, inputs, output: int, attrs: dict | None = None, weights: dict | None = None) -> Node:
    """A Node from a weights dict {"wfmt", and the format's tensors by name}; the
    first tensor may be given as "weight" and the per-channel multiplier as "scale"."""
    weights = weights or {}
    wfmt = weights.get("wfmt", "")
    tensors = ()
    if wfmt:
        wf = get_wfmt(wfmt)
        alias = lambda j, t: t.name if t.name in weights else "weight" if j == 0 else \
            "scale" if t.name == wf.scale_name else t.name
        tensors = tuple(weights.get(alias(j, t)) for j, t in enumerate(wf.tensors))
    return Node(name, op, tuple(inputs), output, dict(attrs or {}), wfmt, tensors)


@dataclass
class Graph:
    values: list[Value]
    nodes: list[Node]
    input: int
    output: int
    embed: int
    meta: dict = field(default_factory=dict)

    # ------------------------------------------------------------ queries
    def kernel_shape(self, n: Node) -> tuple[int, ...]:
        """Unpacked weight shape of a weighted node: (K, kh, kw, C/g) or (K, C)."""
        return get_op(n.op).kernel_shape(n, self.values[n.inputs[0]].shape[-1], self.values[n.output].shape[-1])

    def float_weight(self, n: Node) -> np.ndarray:
        """The effective float32 weight of a weighted node, unpacked: (K, kh, kw, C/g) or (K, C)."""
        return get_wfmt(n.wfmt).float_weight(n, self.kernel_shape(n))

    def int_weight(self, n: Node) -> np.ndarray:
        """The integer weight of an integer-format node (int8 q, or the ±1 pattern)."""
        return get_wfmt(n.wfmt).int_weight(n, self.kernel_shape(n))

    def node_params(self, n: Node) -> int:
        """Conv/FC weights of a node (biases, and affine's per-channel batch-norm scales, not counted)."""
        return math.prod(self.kernel_shape(n)) if n.op in OPS and OPS[n.op].weighted and n.op != "affine" else 0

    def params(self) -> int:
        return sum(self.node_params(n) for n in self.nodes)

    def macs(self) -> int:
        total = 0
        for n in self.nodes:
            s = self.values[n.output].shape
            total += self.node_params(n) * (s[0] * s[1] if len(s) == 3 else 1)
        return total

    def is_integer(self, n: Node) -> bool:
        """True when the node runs on integers: integer weights, quantized input."""
        return n.wfmt in WFMTS and WFMTS[n.wfmt].integer and self.values[n.inputs[0]].quantized

    def activation_bytes(self) -> int:
        """Activation memory an executor may need: 5 bytes per element of every value."""
        return sum(5 * math.prod(v.shape) for v in self.values)

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
        need = self.activation_bytes()
        if need > MAX_ACTIVATION_BYTES:
            raise FormatError(f"model needs {need / 2**30:.2f} GiB of activation memory, over the limit of "
                              f"{MAX_ACTIVATION_BYTES / 2**30:.2f} GiB; if you trust this model, raise "
                              "seprt.graph.MAX_ACTIVATION_BYTES")
        in_shape = self.values[self.input].shape
        if len(in_shape) != 3 or in_shape[2] != 3:
            raise FormatError(f"input value must be (H, W, 3), got {in_shape}")
        produced = {self.input}
        names = set()
        for n in self.nodes:
            if n.name in names:
                raise FormatError(f"duplicate node name {n.name!r}")
            names.add(n.name)
            get_op(n.op)
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
        if not (math.isfinite(v.q_scale) and 0 < v.q_scale <= MAX_ABS_PARAM):
            raise FormatError(f"value {v.name!r}: activation scale {v.q_scale} must be in (0, {MAX_ABS_PARAM:g}]")
        if not 0 <= v.q_zero <= (1 << v.q_bits) - 1:
            raise FormatError(f"value {v.name!r}: zero point {v.q_zero} outside 0..{(1 << v.q_bits) - 1}")


def _check_node(g: Graph, n: Node) -> None:
    op = get_op(n.op)
    ins = [g.values[i].shape for i in n.inputs]
    lo, hi = op.inputs
    if not lo <= len(n.inputs) <= hi:
        want = lo if lo == hi else f"{lo}..{hi}"
        raise FormatError(f"node {n.name!r}: {n.op} takes {want} inputs, got {len(n.inputs)}")
    known = {a.name for a in op.attrs}
    for key in n.attrs:
        if key not in known:
            raise FormatError(f"node {n.name!r}: {n.op} has no attribute {key!r}; this file may need a newer seprt")
    for a in op.attrs:
        a.check(n.name, n.attrs[a.name])
    if op.check:
        op.check(g, n)
    out = g.values[n.output].shape
    try:
        want = tuple(op.shape(n.attrs, ins, out[-1]))
    except ValueError as e:
        raise FormatError(f"node {n.name!r}: {e}") from None
    if want != tuple(out):
        raise FormatError(f"node {n.name!r}: output shape {out} does not match {n.op} of {ins} (expected {want})")
    if not op.weighted:
        if n.wfmt or n.tensors:
            raise FormatError(f"node {n.name!r}: {n.op} takes no weights")
        return
    wf = get_wfmt(n.wfmt) if n.wfmt else None
    if wf is None:
        raise FormatError(f"node {n.name!r}: {n.op} needs a weight format ({', '.join(WFMTS)})")
    if len(n.tensors) != len(wf.tensors):
        raise FormatError(f"node {n.name!r}: weight format {wf.name} has {len(wf.tensors)} tensors, "
                          f"got {len(n.tensors)}")
    kshape = g.kernel_shape(n)
    if n.kernel < wf.min_kernel:
        raise FormatError(f"node {n.name!r}: {wf.name} weights need a k x k conv with k >= {wf.min_kernel}")
    for t, a in zip(wf.tensors, n.tensors):
        shape = tuple(t.shape(kshape))
        if a is None:
            raise FormatError(f"node {n.name!r}: missing {t.name}")
        if (a.ndim != len(shape) or any(s is not None and s != d for s, d in zip(shape, a.shape))
                or a.dtype != t.dtype):    # None: a size the format's check derives
            raise FormatError(f"node {n.name!r}: {t.name} is {a.dtype}{tuple(a.shape)}, "
                              f"expected {t.dtype}{shape}")
        if a.dtype.kind == "f" and not (np.all(np.isfinite(a)) and np.all(np.abs(a) <= MAX_ABS_PARAM)):
            raise FormatError(f"node {n.name!r}: {t.name} has NaN, Inf or a magnitude over {MAX_ABS_PARAM:g}")
    wf.check(n, n.kernel, kshape)


META_TYPES = {"arch": str, "variant": str, "labels": "str[]", "preprocess.size": "u32[]",
              "preprocess.resize": str, "preprocess.crop_fraction": float, "preprocess.mean": "f32[]",
              "preprocess.std": "f32[]", "preprocess.channel_order": str, "act_bits": int,
              "provenance.source": str, "provenance.converter": str, "provenance.stage": str,
              "provenance.binarize": str, "provenance.val_top1": float, "provenance.val_images": int}


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
            for every weighted layer (arrays as the weight formats in seprt/ops declare them).
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
        op = get_op(l.op)
        w = weights.get(l.name, {}) if op.weighted else {}
        if op.weighted and not w:
            raise ValueError(f"no weights given for layer {l.name!r}")
        nodes.append(make_node(l.name, l.op, [index[i] for i in l.inputs], index[l.name], arch_mod.layer_attrs(l), w))
    meta = {"labels": list(a.labels) or [f"class_{i}" for i in range(a.num_classes)], **meta}
    meta.setdefault("arch", a.id)
    g = Graph(values, nodes, 0, index[a.output], index[a.embed], meta)
    g.validate()
    return g
