"""gap (code 7): global average pool (H, W, C) -> (C,).

Defined exactly (so every executor gives the same bits): float32 sums over
the pixels in row-major order, then one float32 division by H*W."""
import numpy as np

from ..kernels.elementwise import OP_GAP, GapRow
from .base import OpDef, need_hwc, register_op


def reference(g, n, xs):
    x = xs[0]
    flat = x.reshape(x.shape[0], -1, x.shape[3])
    acc = np.zeros((x.shape[0], x.shape[3]), np.float32)
    for p in range(flat.shape[1]):
        acc += flat[:, p, :]
    return acc / np.float32(flat.shape[1])


def lower(pl, i):
    n = pl.g.nodes[i]
    h, w, c = pl.hwc(n.inputs[0])
    pl.scratch = max(pl.scratch, c)
    out = pl.float_out(i)
    pl.emit(OP_GAP, GapRow, pl.label(i), "f32", **{"in": pl.fbuf[n.inputs[0]]}, n_pix=h * w, c=c, out=out)


GAP = register_op(OpDef(
    name="gap", code=7, inputs=(1, 1), attrs=(), shape=lambda a, ins, k: (need_hwc("gap", ins[0])[2],),
    reference=reference, lower=lower, doc="mean over H and W (float32, pixels in order)"))
