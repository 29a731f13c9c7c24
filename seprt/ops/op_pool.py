"""maxpool (code 5) and avgpool (code 6): k x k windows, symmetric padding.
maxpool: padding never wins (-inf). avgpool: divides by the number of
non-padding inputs in the window."""
import numpy as np

from ..kernels.elementwise import OP_POOL, PoolRow
from .base import OpDef, check_window, conv_out, need_hwc, register_op, window_attrs
from .numpy_ref import im2col


def shape(a, ins, k):
    h, w, c = need_hwc("pool", ins[0])
    return (conv_out(h, a["kernel"], a["stride"], a["pad"]), conv_out(w, a["kernel"], a["stride"], a["pad"]), c)


def maxpool(g, n, xs):
    x = xs[0]
    return im2col(x, n.kernel, n.stride, n.pad, -np.inf).max(axis=(3, 4)).astype(x.dtype)


def avgpool(g, n, xs):
    x = xs[0]
    sums = im2col(x, n.kernel, n.stride, n.pad).sum(axis=(3, 4))
    ones = im2col(np.ones((1,) + x.shape[1:3] + (1,), x.dtype), n.kernel, n.stride, n.pad)
    return (sums / ones.sum(axis=(3, 4))).astype(x.dtype)


def lower(pl, i):
    n = pl.g.nodes[i]
    h, w, c = pl.hwc(n.inputs[0])
    ho, wo, _ = pl.hwc(n.output)
    out = pl.float_out(i)
    pl.emit(OP_POOL, PoolRow, pl.label(i), "f32", **{"in": pl.fbuf[n.inputs[0]]}, h=h, w=w, c=c,
            kernel=n.kernel, stride=n.stride, pad=n.pad, ho=ho, wo=wo, out=out, is_max=int(n.op == "maxpool"))


MAXPOOL = register_op(OpDef(
    name="maxpool", code=5, inputs=(1, 1), attrs=window_attrs(), shape=shape, reference=maxpool, lower=lower,
    check=lambda g, n: check_window(n), doc="max over each window; padding never wins"))
AVGPOOL = register_op(OpDef(
    name="avgpool", code=6, inputs=(1, 1), attrs=window_attrs(), shape=shape, reference=avgpool, lower=lower,
    check=lambda g, n: check_window(n), doc="mean over the non-padding inputs of each window"))
