"""maxpool (code 5) and avgpool (code 6): k x k windows, symmetric padding.
maxpool: padding never wins (-inf). avgpool: divides by the number of
non-padding inputs in the window, or with count_include_pad = 1 by the
window clipped to the padded input (PyTorch's count_include_pad=True).
ceil_mode = 1: output sizes round up (conv_out), the last window may run
past the input (and its padding) and those positions are ignored.
Both attributes are minor-version additions: default 0 keeps old files identical."""
import numpy as np

from ..kernels.elementwise import OP_MAXPOOL_U8, OP_POOL, MaxPoolU8Row, PoolRow
from .base import Attr, OpDef, check_window, conv_out, need_hwc, register_op, window_attrs
from .numpy_ref import im2col


def out_hw(a, h, w):
    k, s, p, c = a["kernel"], a["stride"], a["pad"], a["ceil_mode"]
    return conv_out(h, k, s, p, c), conv_out(w, k, s, p, c)


def shape(a, ins, k):
    h, w, c = need_hwc("pool", ins[0])
    return out_hw(a, h, w) + (c,)


def maxpool(g, n, xs):
    x = xs[0]
    ho, wo = out_hw(n.attrs, x.shape[1], x.shape[2])
    return im2col(x, n.kernel, n.stride, n.pad, -np.inf, ho, wo).max(axis=(3, 4)).astype(x.dtype)


def avgpool(g, n, xs):
    x = xs[0]
    ho, wo = out_hw(n.attrs, x.shape[1], x.shape[2])
    sums = im2col(x, n.kernel, n.stride, n.pad, 0, ho, wo).sum(axis=(3, 4))
    if n.attrs["count_include_pad"]:
        k, s, p = n.kernel, n.stride, n.pad
        span = lambda o, size: np.minimum(np.arange(o) * s - p + k, size + p) - (np.arange(o) * s - p)
        count = (span(ho, x.shape[1])[:, None] * span(wo, x.shape[2])[None, :]).astype(np.float32)[None, :, :, None]
    else:
        ones = im2col(np.ones((1,) + x.shape[1:3] + (1,), x.dtype), n.kernel, n.stride, n.pad, 0, ho, wo)
        count = ones.sum(axis=(3, 4))
    return (sums / count).astype(x.dtype)


def lower(pl, i):
    n = pl.g.nodes[i]
    h, w, c = pl.hwc(n.inputs[0])
    ho, wo, _ = pl.hwc(n.output)
    if pl.u8_maxpool(i) or pl.shared_u8_maxpool(i):
        if pl.u8_maxpool(i):                          # its input's producer quantized it for the pool alone
            src = pl.pool_in[n.inputs[0]]
        else:                                         # the plain (H, W, C) u8 buffer its input's convs read
            conv = next(j for j in pl.cons[n.inputs[0]] if j != i)
            src = pl.qbuffer(n.inputs[0], pl.qgroups[conv])["off"]
        j = next(j for j in pl.cons[n.output] if not pl.shared_u8_maxpool(j))
        q = pl.qbuffer(n.output, pl.qgroups[j], fused=True)
        pl.emit(OP_MAXPOOL_U8, MaxPoolU8Row, pl.label(i), f"maxpool-u{pl.g.values[n.output].q_bits}",
                **{"in": src}, h=h, w=w, c=c, kernel=n.kernel, stride=n.stride, pad=n.pad,
                ho=ho, wo=wo, out=q["off"], wp=q["wp"], opad=q["pad"])
        return
    out = pl.float_out(i)
    q = pl.fused_quant(n.output)                      # its integer consumers' input, written here
    pl.scratch = max(pl.scratch, w * c)               # the max pool's row stage
    pl.emit(OP_POOL, PoolRow, pl.label(i), "f32", **{"in": pl.fbuf[n.inputs[0]]}, h=h, w=w, c=c,
            kernel=n.kernel, stride=n.stride, pad=n.pad, ho=ho, wo=wo, out=out, is_max=int(n.op == "maxpool"),
            count_pad=n.attrs.get("count_include_pad", 0), q_off=q["q_off"], q_pad=q["q_pad"], q_wp=q["q_wp"],
            q_zero=q["q_zero"], q_max=q["q_max"], q_scale=q["q_scale"])


CEIL = Attr("ceil_mode", 0, 0, 1)
MAXPOOL = register_op(OpDef(
    name="maxpool", code=5, inputs=(1, 1), attrs=window_attrs() + (CEIL,), shape=shape, reference=maxpool,
    lower=lower, check=lambda g, n: check_window(n), doc="max over each window; padding never wins"))
AVGPOOL = register_op(OpDef(
    name="avgpool", code=6, inputs=(1, 1), attrs=window_attrs() + (CEIL, Attr("count_include_pad", 0, 0, 1)),
    shape=shape, reference=avgpool, lower=lower, check=lambda g, n: check_window(n),
    doc="mean over the non-padding inputs of each window (count_include_pad: over the padded window)"))
