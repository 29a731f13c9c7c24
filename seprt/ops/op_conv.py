"""conv (code 1): 2-D convolution, square k x k kernel, symmetric zero
padding, groups (depthwise when groups = C = K). One input (H, W, C), output
(Ho, Wo, K). Weighted: f32, i8 or bin (see seprt/ops/wfmt_*.py)."""
from ..errors import FormatError
from .base import Attr, OpDef, check_window, conv_out, need_hwc, register_op, window_attrs
from .numpy_ref import conv2d, weighted


def shape(a, ins, k):
    h, w, c = need_hwc("conv", ins[0])
    if c % a["groups"] or k % a["groups"]:
        raise ValueError(f"groups={a['groups']} does not divide channels {c}->{k}")
    return (conv_out(h, a["kernel"], a["stride"], a["pad"]), conv_out(w, a["kernel"], a["stride"], a["pad"]), k)


def kernel_shape(n, cin, k):
    return (k, n.kernel, n.kernel, cin // n.groups)


def reference(g, n, xs):
    cin, k = g.values[n.inputs[0]].shape[-1], g.values[n.output].shape[-1]
    return weighted(g, n, xs[0], kernel_shape(n, cin, k),
                    lambda x, w: conv2d(x, w, n.stride, n.pad, n.groups))


def lower(pl, i):
    pl.weighted(i)


def check(g, n):
    check_window(n)


CONV = register_op(OpDef(
    name="conv", code=1, inputs=(1, 1), weighted=True,
    attrs=window_attrs() + (Attr("groups", 1, 1, 1 << 16),),
    shape=shape, reference=reference, lower=lower, check=check, kernel_shape=kernel_shape,
    doc="y = conv(x, W) + bias; W (K, k, k, C/groups) OHWI"))
