"""slice (code 15): channels start..start+K-1 of an (H, W, C) value -> (H, W, K)
(ShuffleNetV2's channel split, `x.chunk(2, dim=1)`). K is the output's last
dim; start + K MUST be <= C. A copy: exact."""
from ..kernels.elementwise import OP_SLICE, SliceRow
from .base import Attr, OpDef, need_hwc, register_op


def shape(a, ins, k):
    h, w, c = need_hwc("slice", ins[0])
    if a["start"] + k > c:
        raise ValueError(f"slice of channels {a['start']}..{a['start'] + k - 1} from {c} channels")
    return (h, w, k)


def reference(g, n, xs):
    k = g.values[n.output].shape[-1]
    return xs[0][..., n.attrs["start"]:n.attrs["start"] + k]


def lower(pl, i):
    n = pl.g.nodes[i]
    h, w, c = pl.hwc(n.inputs[0])
    k = pl.hwc(n.output)[2]
    out = pl.float_out(i)
    pl.emit(OP_SLICE, SliceRow, pl.label(i), "slice-f32", **{"in": pl.fbuf[n.inputs[0]]}, out=out, n_pix=h * w,
            c_in=c, c_out=k, c0=n.attrs["start"])


SLICE = register_op(OpDef(
    name="slice", code=15, inputs=(1, 1), attrs=(Attr("start", 0, 0, (1 << 16) - 1),), shape=shape,
    reference=reference, lower=lower, doc="y = x[:, :, start:start + K]"))
