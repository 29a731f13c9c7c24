"""shortcut_a (code 8): ResNet option-A shortcut: x[::s, ::s, :], then
(K - C) / 2 zero channels before and after. Output (ceil(H/s), ceil(W/s), K)."""
import numpy as np

from ..kernels.elementwise import OP_SHORTCUT, ShortcutRow
from .base import Attr, OpDef, need_hwc, register_op


def shape(a, ins, k):
    h, w, c = need_hwc("shortcut_a", ins[0])
    if k < c or (k - c) % 2:
        raise ValueError(f"shortcut_a cannot pad {c} channels to {k}")
    s = a["stride"]
    return (-(-h // s), -(-w // s), k)


def reference(g, n, xs):
    x, s = xs[0], n.stride
    p = (g.values[n.output].shape[-1] - x.shape[3]) // 2
    return np.pad(x[:, ::s, ::s, :], ((0, 0), (0, 0), (0, 0), (p, p)))


def lower(pl, i):
    n = pl.g.nodes[i]
    h, w, c = pl.hwc(n.inputs[0])
    ho, wo, k = pl.hwc(n.output)
    out = pl.float_out(i)
    pl.emit(OP_SHORTCUT, ShortcutRow, pl.label(i), "f32", **{"in": pl.fbuf[n.inputs[0]]}, h=h, w=w, c=c,
            stride=n.stride, ho=ho, wo=wo, cout=k, out=out)


SHORTCUT_A = register_op(OpDef(
    name="shortcut_a", code=8, inputs=(1, 1), attrs=(Attr("stride", 1, 1, 8),), shape=shape,
    reference=reference, lower=lower, doc="x[::s, ::s], channels zero-padded equally on both sides"))
