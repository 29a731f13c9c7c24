"""What an op and a weight format declare, and the two registries.

An op module (seprt/ops/op_*.py) builds one `OpDef` and registers it; a
weight format module (seprt/ops/wfmt_*.py) builds one `WeightFormat`. Codes
are the on-disk numbers of docs/format.md, written here as literals: they
never change, and a new op or format takes the next free code.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..errors import FormatError

OPS: dict[str, "OpDef"] = {}
OP_CODES: dict[int, "OpDef"] = {}
WFMTS: dict[str, "WeightFormat"] = {}
WFMT_CODES: dict[int, "WeightFormat"] = {}


@dataclass(frozen=True)
class Attr:
    """An op attribute: an int (or float) with a default and an inclusive range.
    Writers omit attributes that hold their default (docs/format.md)."""
    name: str
    default: int | float
    lo: int | float
    hi: int | float
    kind: type = int

    def check(self, node: str, v) -> None:
        ok = isinstance(v, self.kind) and not isinstance(v, bool) or (self.kind is float and isinstance(v, int))
        if not ok or not (self.lo <= v <= self.hi) or (self.kind is float and not math.isfinite(v)):
            raise FormatError(f"node {node!r}: attribute {self.name}={v!r} out of range "
                              f"{self.lo}..{self.hi} ({self.kind.__name__})")


@dataclass(frozen=True)
class OpDef:
    """One op, declared once.

    shape(attrs, in_shapes, out_channels) -> output shape; raises ValueError.
        out_channels: the declared output width (conv, fc, shortcut_a read it).
    check(g, n): extra graph-level rules beyond arity, attributes and shape.
    reference(g, n, xs) -> numpy output (the op's definition; batched NHWC).
    lower(pl, i): emit the fast engine's instructions for node i (seprt.plan).
    fusion: how the planner may fold the op into the kernel that produces its
        input: "residual" (y = a + b), "relu" or "relu6" (min(max(x, 0), 6));
        a callable (node) -> one of those (or "") when it depends on attributes.
    weighted: the node carries a weight format (conv, fc); kernel_shape gives
        its unpacked weight shape (K, kh, kw, C/g) or (K, C).
    """
    name: str
    code: int
    inputs: tuple[int, int]                      # (min, max) number of inputs
    attrs: tuple[Attr, ...]
    shape: Callable
    reference: Callable
    lower: Callable
    check: Callable | None = None
    weighted: bool = False
    kernel_shape: Callable | None = None         # weighted: (n, cin, k) -> unpacked weight shape
    fusion: str | Callable = ""                  # "residual" (add) / "relu" / "relu6": fused into the producer
    doc: str = ""

    def fusion_of(self, n) -> str:
        """This op's fusion kind for node n."""
        return self.fusion(n) if callable(self.fusion) else self.fusion

    def attr(self, name: str) -> Attr:
        for a in self.attrs:
            if a.name == name:
                return a
        raise KeyError(name)

    def with_defaults(self, attrs: dict) -> dict:
        """attrs completed with the defaults of the attributes not given."""
        return {**{a.name: a.default for a in self.attrs}, **attrs}

    def non_default(self, attrs: dict) -> dict:
        """The attributes a writer stores: those that differ from their default."""
        return {a.name: attrs[a.name] for a in self.attrs if attrs.get(a.name, a.default) != a.default}


@dataclass(frozen=True)
class Tensor:
    """One tensor a weight format carries: dtype and shape rule.
    shape(kshape) -> shape, where kshape is the unpacked weight shape
    (K, kh, kw, Cg) or (K, C); a None dim is any size, derived and checked
    by the format's `check` (stack: bank rows m, slices Cg/d)."""
    name: str
    dtype: np.dtype
    shape: Callable


@dataclass(frozen=True)
class WeightFormat:
    """One weight format, declared once.

    tensors: what a node of this format stores, in file order.
    integer: runs on the integer path when its input value is quantized.
    check(node, kernel, kshape): value rules beyond dtype and shape.
    int_weight(node, kshape) -> integer weight (K, kh, kw, Cg) or (K, C) (integer formats).
    float_weight(node, kshape) -> effective float32 weight.
    scale_name: the per-output-channel multiplier of the integer path (weight scale or alpha).
    """
    name: str
    code: int
    tensors: tuple[Tensor, ...]
    integer: bool
    check: Callable
    float_weight: Callable
    int_weight: Callable | None = None
    scale_name: str = ""
    min_kernel: int = 1
    doc: str = ""
    extra: dict = field(default_factory=dict)

    def index(self, tensor: str) -> int:
        return [t.name for t in self.tensors].index(tensor)


def register_op(op: OpDef) -> OpDef:
    if op.name in OPS or op.code in OP_CODES:
        raise RuntimeError(f"op {op.name!r} / code {op.code} declared twice")
    OPS[op.name] = OP_CODES[op.code] = op
    return op


def register_wfmt(w: WeightFormat) -> WeightFormat:
    if w.name in WFMTS or w.code in WFMT_CODES:
        raise RuntimeError(f"weight format {w.name!r} / code {w.code} declared twice")
    WFMTS[w.name] = WFMT_CODES[w.code] = w
    return w


def get_op(name: str) -> OpDef:
    try:
        return OPS[name]
    except KeyError:
        raise FormatError(f"unknown op {name!r}; this seprt knows {', '.join(OPS)}") from None


def get_wfmt(name: str) -> WeightFormat:
    try:
        return WFMTS[name]
    except KeyError:
        raise FormatError(f"unknown weight format {name!r}; this seprt knows {', '.join(WFMTS)}") from None


# ------------------------------------------------------------ shape helpers

def conv_out(size: int, kernel: int, stride: int, pad: int, ceil_mode: int = 0) -> int:
    """Output length of a conv/pool along one axis (floor mode, or ceil mode
    where the last window must start inside the input or its left padding)."""
    if ceil_mode:
        n = -(-(size + 2 * pad - kernel) // stride) + 1
        return n - 1 if (n - 1) * stride >= size + pad else n
    return (size + 2 * pad - kernel) // stride + 1


def need_hwc(op: str, x: tuple) -> tuple[int, int, int]:
    if len(x) != 3:
        raise ValueError(f"{op} needs an (H, W, C) input, got {x}")
    return x


def window_attrs(max_kernel: int = 15, max_stride: int = 8) -> tuple[Attr, ...]:
    """kernel / stride / pad of a square window (conv, pools)."""
    return (Attr("kernel", 1, 1, max_kernel), Attr("stride", 1, 1, max_stride), Attr("pad", 0, 0, max_kernel - 1))


def check_window(n) -> None:
    if n.attrs["pad"] >= n.attrs["kernel"]:
        raise FormatError(f"node {n.name!r}: pad {n.attrs['pad']} must be < kernel {n.attrs['kernel']}")
