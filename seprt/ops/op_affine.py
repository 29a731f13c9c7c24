"""affine (code 12): per-channel scale and shift, y = x * weight[c] + bias[c]
(a batch norm that cannot be folded into a conv, e.g. DenseNet's
pre-activation BN). Input (H, W, C) or (C,), same output shape.

Weighted, always with the `f32` weight format: weight (C,) and bias (C,)
are exactly what f32 stores for a kernel shape (C,), so no new format is
needed and the tensors read as what they are. float32: one multiplication
then one addition per element (no fused multiply-add). The planner may fuse
a following residual add and relu into it, as into a conv.
"""
from ..errors import FormatError
from ..kernels.elementwise import OP_AFFINE, AffineRow
from .base import OpDef, register_op


def reference(g, n, xs):
    return xs[0] * n.weight + n.bias


def check(g, n):
    if n.wfmt != "f32":
        raise FormatError(f"node {n.name!r}: affine takes f32 weights (scale, shift), got {n.wfmt!r}")


def lower(pl, i):
    n = pl.g.nodes[i]
    h, w, c = pl.hwc(n.inputs[0])
    out = pl.float_out(i)
    res = pl.residual[i]
    pl.emit(OP_AFFINE, AffineRow, pl.label(i), "affine-f32", **{"in": pl.fbuf[n.inputs[0]]},
            wt=pl.wf32.add(n.weight), bias=pl.wf32.add(n.bias), out=out, res=pl.fbuf[res] if res >= 0 else -1,
            n_pix=h * w, c=c, relu=pl.relu[i])


AFFINE = register_op(OpDef(
    name="affine", code=12, inputs=(1, 1), attrs=(), weighted=True, shape=lambda a, ins, k: ins[0],
    kernel_shape=lambda n, cin, k: (k,), reference=reference, lower=lower, check=check,
    doc="y = x * weight[c] + bias[c]; weight, bias f32 (C,)"))
