"""relu (code 4): max(x, 0)."""
import numpy as np

from ..kernels.elementwise import OP_RELU, ReluRow
from .base import OpDef, register_op


def lower(pl, i):
    n = pl.g.nodes[i]
    out = pl.float_out(i)
    pl.emit(OP_RELU, ReluRow, pl.label(i), "f32", **{"in": pl.fbuf[n.inputs[0]]}, out=out, n=pl.size(n.output))


RELU = register_op(OpDef(
    name="relu", code=4, inputs=(1, 1), attrs=(), fusion="relu", shape=lambda a, ins, k: ins[0],
    reference=lambda g, n, xs: np.maximum(xs[0], 0), lower=lower, doc="y = max(x, 0)"))
