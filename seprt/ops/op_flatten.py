"""flatten (code 14): (H, W, C) -> (H*W*C,) in NHWC order (C fastest), for a
classifier fc over a whole feature map (VGG, AlexNet, LeNet). Converters
permute such an fc's weights from PyTorch's C, H, W order. A copy: exact."""
import numpy as np

from ..kernels.elementwise import OP_CONCAT, ConcatRow
from .base import OpDef, need_hwc, register_op


def lower(pl, i):
    n = pl.g.nodes[i]
    size = pl.size(n.output)
    out = pl.float_out(i)
    # a flat copy is a one-pixel, one-input concat
    pl.emit(OP_CONCAT, ConcatRow, pl.label(i), "flatten-f32", **{"in": pl.fbuf[n.inputs[0]]}, out=out, n_pix=1,
            c_in=size, c_out=size, c0=0)


FLATTEN = register_op(OpDef(
    name="flatten", code=14, inputs=(1, 1), attrs=(),
    shape=lambda a, ins, k: (int(np.prod(need_hwc("flatten", ins[0]))),),
    reference=lambda g, n, xs: xs[0].reshape(xs[0].shape[0], -1), lower=lower, doc="y = x.reshape(-1) (NHWC order)"))
