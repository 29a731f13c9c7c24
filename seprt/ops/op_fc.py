"""fc (code 2): fully connected layer on a flat (C,) value -> (K,).
Weighted: f32 or i8."""
from .base import OpDef, register_op
from .numpy_ref import weighted


def shape(a, ins, k):
    if len(ins[0]) != 1:
        raise ValueError(f"fc needs a flat (C,) input, got {ins[0]}")
    return (k,)


def reference(g, n, xs):
    cin, k = g.values[n.inputs[0]].shape[-1], g.values[n.output].shape[-1]
    return weighted(g, n, xs[0], (k, cin), lambda x, w: x @ w.T)


def lower(pl, i):
    pl.weighted(i)


FC = register_op(OpDef(
    name="fc", code=2, inputs=(1, 1), weighted=True, attrs=(),
    shape=shape, reference=reference, lower=lower, kernel_shape=lambda n, cin, k: (k, cin),
    doc="y = x @ W.T + bias; W (K, C)"))
