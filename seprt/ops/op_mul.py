"""mul (code 11): channel-wise multiply, x (H, W, C) * s (C,) -> (H, W, C)
(squeeze-and-excitation: s is the gated pooled branch). float32, one
multiplication per element."""
from ..kernels.elementwise import OP_MUL, MulRow
from .base import OpDef, need_hwc, register_op


def shape(a, ins, k):
    h, w, c = need_hwc("mul", ins[0])
    if tuple(ins[1]) != (c,):
        raise ValueError(f"mul scales an (H, W, C) value by a (C,) value, got {ins[0]} and {ins[1]}")
    return ins[0]


def lower(pl, i):
    n = pl.g.nodes[i]
    h, w, c = pl.hwc(n.inputs[0])
    out = pl.float_out(i)
    pl.emit(OP_MUL, MulRow, pl.label(i), "mul-f32", **{"in": pl.fbuf[n.inputs[0]]}, s=pl.fbuf[n.inputs[1]], out=out,
            n_pix=h * w, c=c)


MUL = register_op(OpDef(
    name="mul", code=11, inputs=(2, 2), attrs=(), shape=shape,
    reference=lambda g, n, xs: xs[0] * xs[1][:, None, None, :], lower=lower, doc="y[h, w, c] = x[h, w, c] * s[c]"))
