"""The op table: every op and weight format seprt knows, declared once.

One module per op (op_*.py) and per weight format (wfmt_*.py), as ONNX's
reference ops: each states its stable on-disk code, its attributes (defaults
and limits), its shape rule, its validation, its numpy reference semantics
and how the planner lowers it to kernels. Graph validation (seprt.graph),
the file format (seprt.format), the reference executor (seprt.reference),
the planner (seprt.plan), `seprt info` and the docs read this table.

    >>> from seprt import ops
    >>> ops.OPS["conv"].code, [a.name for a in ops.OPS["conv"].attrs]
    (1, ['kernel', 'stride', 'pad', 'groups'])
    >>> ops.WFMTS["bin"].code, [t.name for t in ops.WFMTS["bin"].tensors]
    (3, ['pattern', 'alpha', 'bias'])
"""
from .base import (OP_CODES, OPS, WFMT_CODES, WFMTS, Attr, OpDef, Tensor, WeightFormat, conv_out, get_op,
                   get_wfmt)
from . import wfmt_f32, wfmt_i8, wfmt_bin, wfmt_stack              # noqa: F401  (registers)
from . import op_conv, op_fc, op_add, op_relu, op_pool, op_gap, op_shortcut_a, op_concat  # noqa: F401
from . import op_act, op_mul, op_affine, op_shuffle, op_flatten, op_slice  # noqa: F401

__all__ = ["OPS", "OP_CODES", "WFMTS", "WFMT_CODES", "Attr", "OpDef", "Tensor", "WeightFormat", "get_op",
           "get_wfmt", "conv_out"]
