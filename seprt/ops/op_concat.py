"""concat (code 9): channel concatenation of 2..64 values of equal H, W
(GoogLeNet, DenseNet, SqueezeNet). (H, W, C_1) ... (H, W, C_n) -> (H, W, sum C_i)."""
import numpy as np

from ..kernels.elementwise import OP_CONCAT, ConcatRow
from .base import OpDef, register_op


def shape(a, ins, k):
    if any(len(s) != 3 for s in ins) or len({s[:2] for s in ins}) != 1:
        raise ValueError(f"concat needs (H, W, C) inputs of equal H and W, got {list(ins)}")
    return ins[0][:2] + (sum(s[2] for s in ins),)


def lower(pl, i):
    if pl.fused_concat(i):              # its producers wrote the consumers' u8 buffer (Planner.concat_slot)
        return
    n = pl.g.nodes[i]
    ho, wo, k = pl.hwc(n.output)
    out = pl.float_out(i)
    c0 = 0
    for v in n.inputs:
        c = pl.hwc(v)[2]
        pl.emit(OP_CONCAT, ConcatRow, pl.label(i), "f32", **{"in": pl.fbuf[v]}, out=out, n_pix=ho * wo,
                c_in=c, c_out=k, c0=c0)
        c0 += c


CONCAT = register_op(OpDef(
    name="concat", code=9, inputs=(2, 64), attrs=(), shape=shape,
    reference=lambda g, n, xs: np.concatenate(xs, axis=-1), lower=lower, doc="channel concatenation"))
