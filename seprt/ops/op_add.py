"""add (code 3): elementwise sum of two values of the same shape."""
from ..kernels.elementwise import OP_ADD, AddRow
from .base import OpDef, register_op


def shape(a, ins, k):
    if ins[0] != ins[1]:
        raise ValueError(f"add of different shapes {ins[0]} and {ins[1]}")
    return ins[0]


def lower(pl, i):
    n = pl.g.nodes[i]
    out = pl.float_out(i)
    pl.emit(OP_ADD, AddRow, pl.label(i), "f32", a=pl.fbuf[n.inputs[0]], b=pl.fbuf[n.inputs[1]], out=out,
            n=pl.size(n.output), relu=pl.relu[i])


ADD = register_op(OpDef(
    name="add", code=3, inputs=(2, 2), attrs=(), fusion="residual", shape=shape,
    reference=lambda g, n, xs: xs[0] + xs[1], lower=lower, doc="y = a + b"))
