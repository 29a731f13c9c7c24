"""shuffle (code 13): ShuffleNet's channel shuffle, (H, W, C) -> (H, W, C):
y[h, w, i*G + g] = x[h, w, g*(C/G) + i] for g < G, i < C/G (PyTorch's
x.view(N, G, C/G, H, W).transpose(1, 2).reshape(N, C, H, W)). A copy: exact."""
import numpy as np

from ..kernels.elementwise import OP_SHUFFLE, ShuffleRow
from .base import Attr, OpDef, need_hwc, register_op


def shape(a, ins, k):
    h, w, c = need_hwc("shuffle", ins[0])
    if c % a["groups"]:
        raise ValueError(f"shuffle groups={a['groups']} does not divide {c} channels")
    return ins[0]


def reference(g, n, xs):
    x, gr = xs[0], n.attrs["groups"]
    s = x.shape
    return x.reshape(s[:3] + (gr, s[3] // gr)).swapaxes(3, 4).reshape(s)


def lower(pl, i):
    n = pl.g.nodes[i]
    h, w, c = pl.hwc(n.inputs[0])
    out = pl.float_out(i)
    pl.emit(OP_SHUFFLE, ShuffleRow, pl.label(i), "shuffle-f32", **{"in": pl.fbuf[n.inputs[0]]}, out=out,
            n_pix=h * w, c=c, g=n.attrs["groups"])


SHUFFLE = register_op(OpDef(
    name="shuffle", code=13, inputs=(1, 1), attrs=(Attr("groups", 1, 1, 1 << 16),), shape=shape,
    reference=reference, lower=lower, doc="channel shuffle: y[.., i*G + g] = x[.., g*(C/G) + i]"))
