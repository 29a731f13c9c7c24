"""act (code 10): one elementwise activation, chosen by `kind`, float32.

    kind 1 relu6        y = min(max(x, 0), 6)
    kind 2 leaky        y = x if x > 0 else x * slope
    kind 3 silu         y = x / (1 + exp(-x))
    kind 4 hardswish    y = x * min(max(x + 3, 0), 6) / 6     ((x * r) / 6, in that order)
    kind 5 sigmoid      y = 1 / (1 + exp(-x))
    kind 6 hardsigmoid  y = min(max(x + 3, 0), 6) / 6

Every step is one float32 operation in the order written, so relu6, leaky,
hardswish and hardsigmoid are bit-exact across executors; silu and sigmoid
depend on the platform's float32 exp (within a few ulp).
(relu stays its own op, code 4, which the planner fuses into convs; relu6
is fused into the conv, fc or affine that produces its input, as the same
two float32 steps.)
"""
import numpy as np

from ..kernels.elementwise import (ACT_HARDSIGMOID, ACT_HARDSWISH, ACT_LEAKY, ACT_RELU6, ACT_SIGMOID, ACT_SILU,
                                   OP_ACT, ActRow)
from .base import Attr, OpDef, register_op

KINDS = {"relu6": ACT_RELU6, "leaky": ACT_LEAKY, "silu": ACT_SILU, "hardswish": ACT_HARDSWISH,
         "sigmoid": ACT_SIGMOID, "hardsigmoid": ACT_HARDSIGMOID}
KIND_NAMES = {v: k for k, v in KINDS.items()}


def apply(x: np.ndarray, kind: int, slope: float) -> np.ndarray:
    """The definition, on a float32 array."""
    f = np.float32
    x = x.astype(np.float32, copy=False)
    if kind == ACT_RELU6:
        return np.minimum(np.maximum(x, f(0)), f(6))
    if kind == ACT_LEAKY:
        return np.where(x > 0, x, x * f(slope)).astype(np.float32)
    if kind == ACT_SILU:
        return x / (f(1) + np.exp(-x))
    if kind == ACT_HARDSWISH:
        return x * np.minimum(np.maximum(x + f(3), f(0)), f(6)) / f(6)
    if kind == ACT_SIGMOID:
        return f(1) / (f(1) + np.exp(-x))
    return np.minimum(np.maximum(x + f(3), f(0)), f(6)) / f(6)


def lower(pl, i):
    n = pl.g.nodes[i]
    out = pl.float_out(i)
    pl.emit(OP_ACT, ActRow, pl.label(i), f"act-{KIND_NAMES[n.attrs['kind']]}-f32", **{"in": pl.fbuf[n.inputs[0]]},
            out=out, n=pl.size(n.output), kind=n.attrs["kind"], slope=pl.wf32.add([n.attrs["slope"]]))


ACT = register_op(OpDef(
    name="act", code=10, inputs=(1, 1),
    attrs=(Attr("kind", ACT_RELU6, 1, 6), Attr("slope", 0.01, -1e6, 1e6, float)),
    shape=lambda a, ins, k: ins[0],
    reference=lambda g, n, xs: apply(xs[0], n.attrs["kind"], n.attrs["slope"]), lower=lower,
    fusion=lambda n: "relu6" if n.attrs["kind"] == ACT_RELU6 else "",
    doc="elementwise activation: kind 1 relu6, 2 leaky (slope), 3 silu, 4 hardswish, 5 sigmoid, 6 hardsigmoid"))
