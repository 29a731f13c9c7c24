"""TFLite baselines built from a seprt Graph (no TensorFlow).

    graph_to_tflite(g) -> bytes            fp32 .tflite with the graph's effective weights
    quantize_int8(fp32_tflite, calib) -> bytes   full-integer per-channel int8 .tflite
    run_tflite(model, x, threads=1) -> logits (N, K)
    run_tflite_isolated(model, x)  -> the same in a child process (LiteRT may abort)
    run_tflite_checked(model, x)   -> run_tflite after a child process ran 4 inputs

Both models come from the same seprt graph, so seprt and TFLite run exactly the
same weights: f32 as is, i8 dequantized (q * scale), bin as alpha * (±1 pattern).
Activation quantization of the seprt graph is ignored: the fp32 model of a
"B" graph is the binarized float baseline (alpha * B as float weights).

Mapping (seprt op -> TFLite ops), input [1,H,W,3] float32, output [1,K] float32:
    conv        CONV_2D, filter OHWI (K, kh, kw, C/groups): grouped convs are
                plain CONV_2D with I = C/groups
    fc          FULLY_CONNECTED, weights (K, C)
    relu, relu6 fused into the producing CONV_2D / ADD / FULLY_CONNECTED when
                it is that value's only consumer, else RELU
    add         ADD
    maxpool     MAX_POOL_2D        avgpool   AVERAGE_POOL_2D
    gap         MEAN over axes [1, 2], keep_dims false
    shortcut_a  STRIDED_SLICE (stride s on H and W) + PAD on channels
    affine      DEPTHWISE_CONV_2D 1x1 (weight as the filter, bias), not MUL + ADD
Padding: seprt (like PyTorch) pads `pad` pixels on every side; TFLite SAME puts
the odd pixel at the end. A padded conv/pool uses SAME only where SAME gives
exactly seprt's windows, otherwise an explicit pad op before a VALID op:
    conv     PAD with 0
    maxpool  PAD with 0 when the input is a relu output (>= 0, and every window
             holds a real pixel since pad < kernel, so 0 never changes the max);
             else PADV2 with the lowest float32, so padding never wins (seprt:
             -inf). The int8 quantizer leaves PADV2's pad value float32, which
             the int8 kernel rejects, so quantize_int8 refuses such models.
    avgpool  PAD with 0, then MUL by kh*kw / (non-padding count) per output
             pixel, since seprt (and TFLite SAME) divide by that count
Tensors are named after seprt values (= node names); a fused conv+relu output
carries the relu's name; constants are "<node>.weight", "<node>.bias", ...
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from seprt import reference
from seprt.ops import conv_out, get_op
from seprt.ops.op_act import KINDS
from seprt.graph import Graph, Node

try:  # exporter and quantizer need the full package (pip install 'seprt[tflite]')
    import flatbuffers
    from ai_edge_litert import schema_py_generated as tfl
    from ai_edge_litert.interpreter import Interpreter
except ImportError:  # running models only: the older runtime-only package
    tfl = None
    from tflite_runtime.interpreter import Interpreter


# ====================================================================== export

class _Builder:
    """Collects tensors, buffers, operator codes and operators of one subgraph."""

    def __init__(self):
        self.tensors: list = []
        self.buffers = [tfl.BufferT()]      # buffer 0: the empty buffer of activations
        self.opcodes: dict[int, int] = {}   # builtin code -> index in operatorCodes
        self.ops: list = []

    def tensor(self, name: str, shape, data: np.ndarray | None = None) -> int:
        """An activation (data None) or a constant float32 / int32 tensor; returns its index."""
        t = tfl.TensorT()
        t.name, t.shape = name, list(shape)
        t.type = tfl.TensorType.INT32 if data is not None and data.dtype == np.int32 else tfl.TensorType.FLOAT32
        if data is not None:
            buf = tfl.BufferT()
            buf.data = np.ascontiguousarray(data).view(np.uint8).ravel()
            t.buffer = len(self.buffers)
            self.buffers.append(buf)
        self.tensors.append(t)
        return len(self.tensors) - 1

    def const(self, name: str, a: np.ndarray) -> int:
        return self.tensor(name, a.shape, a)

    def op(self, code: int, inputs: list[int], outputs: list[int], options_type: int = 0, options=None) -> None:
        op = tfl.OperatorT()
        op.opcodeIndex = self.opcodes.setdefault(code, len(self.opcodes))
        op.inputs, op.outputs = inputs, outputs
        op.builtinOptionsType, op.builtinOptions = options_type, options
        self.ops.append(op)

    def finish(self, inputs: list[int], outputs: list[int], description: str) -> bytes:
        sg = tfl.SubGraphT()
        sg.tensors, sg.operators, sg.inputs, sg.outputs, sg.name = self.tensors, self.ops, inputs, outputs, "main"
        model = tfl.ModelT()
        model.version, model.description, model.subgraphs, model.buffers = 3, description, [sg], self.buffers
        model.operatorCodes = []
        for code in sorted(self.opcodes, key=self.opcodes.get):
            oc = tfl.OperatorCodeT()
            # codes > 127 live only in builtinCode; the deprecated byte holds
            # PLACEHOLDER_FOR_GREATER_OP_CODES (127) then
            oc.builtinCode, oc.deprecatedBuiltinCode, oc.version = code, min(code, 127), 1
            model.operatorCodes.append(oc)
        fb = flatbuffers.Builder(1024)
        fb.Finish(model.Pack(fb), file_identifier=b"TFL3")
        return bytes(fb.Output())


def _options(cls, **fields):
    """A schema options object (e.g. tfl.Conv2DOptionsT) with the given fields set."""
    o = cls()
    for k, v in fields.items():
        setattr(o, k, v)
    return o


def _same_matches(size: int, k: int, s: int, p: int) -> bool:
    """True when TFLite SAME padding gives exactly seprt's windows along one axis:
    the same output length and `p` pixels before (SAME puts the odd one after)."""
    out = -(-size // s)
    total = max((out - 1) * s + k - size, 0)
    return out == conv_out(size, k, s, p) and total // 2 == p


def _spatial_pad(b: _Builder, n: Node, x: int, shape: tuple, pad_value: float) -> tuple[int, int]:
    """Padding for a k x k op of node n on tensor x of shape (H, W, C).

    Returns (input tensor, tfl.Padding): x with VALID or SAME when that is
    exact, else a new [1, H+2p, W+2p, C] tensor (PAD / PADV2 of x) with VALID.
    """
    h, w, c = shape
    if n.pad == 0:
        return x, tfl.Padding.VALID
    if all(_same_matches(d, n.kernel, n.stride, n.pad) for d in (h, w)):
        return x, tfl.Padding.SAME
    p = n.pad
    paddings = b.const(f"{n.name}.paddings", np.array([[0, 0], [p, p], [p, p], [0, 0]], np.int32))
    y = b.tensor(f"{n.name}.padded", (1, h + 2 * p, w + 2 * p, c))
    if pad_value == 0:
        b.op(tfl.BuiltinOperator.PAD, [x, paddings], [y], tfl.BuiltinOptions.PadOptions, tfl.PadOptionsT())
    else:
        value = b.const(f"{n.name}.pad_value", np.array([pad_value], np.float32))
        b.op(tfl.BuiltinOperator.PADV2, [x, paddings, value], [y], tfl.BuiltinOptions.PadV2Options, tfl.PadV2OptionsT())
    return y, tfl.Padding.VALID


def _fused_relus(g: Graph) -> dict[int, int]:
    """producer node index -> index of the relu node fused into it (a node with a
    fused-activation TFLite op, whose output is read by that relu only and is
    not a graph output)."""
    consumers = g.consumers()
    producer = {n.output: i for i, n in enumerate(g.nodes)}
    fused = {}
    for i, r in enumerate(g.nodes):
        v = r.inputs[0]
        relu6 = r.op == "act" and r.attrs["kind"] == KINDS["relu6"]
        if ((r.op == "relu" or relu6) and v in producer and g.nodes[producer[v]].op in FUSES_RELU
                and len(consumers[v]) == 1 and v not in (g.output, g.embed)):
            fused[producer[v]] = i
    return fused


# One function per seprt op: (builder, graph, node, input tensors, output tensor, fused activation).

def _conv(b: _Builder, g: Graph, n: Node, xs: list[int], y: int, act: int) -> None:
    shape = g.values[n.inputs[0]].shape                         # (H, W, C)
    w = g.float_weight(n)                                       # (K, kh, kw, C/groups) OHWI
    x, padding = _spatial_pad(b, n, xs[0], shape, 0.0)
    if n.groups > 1 and n.groups == shape[-1] == w.shape[0]:    # depthwise: filter (1, kh, kw, C)
        inputs = [x, b.const(f"{n.name}.weight", w.transpose(3, 1, 2, 0).copy()), b.const(f"{n.name}.bias", n.bias)]
        b.op(tfl.BuiltinOperator.DEPTHWISE_CONV_2D, inputs, [y], tfl.BuiltinOptions.DepthwiseConv2DOptions,
             _options(tfl.DepthwiseConv2DOptionsT, padding=padding, strideH=n.stride, strideW=n.stride,
                      depthMultiplier=1, fusedActivationFunction=act))
        return
    inputs = [x, b.const(f"{n.name}.weight", w), b.const(f"{n.name}.bias", n.bias)]
    b.op(tfl.BuiltinOperator.CONV_2D, inputs, [y], tfl.BuiltinOptions.Conv2DOptions,
         _options(tfl.Conv2DOptionsT, padding=padding, strideH=n.stride, strideW=n.stride,
                  fusedActivationFunction=act))


def _fc(b, g, n, xs, y, act):
    inputs = [xs[0], b.const(f"{n.name}.weight", g.float_weight(n)), b.const(f"{n.name}.bias", n.bias)]  # (K, C)
    b.op(tfl.BuiltinOperator.FULLY_CONNECTED, inputs, [y], tfl.BuiltinOptions.FullyConnectedOptions,
         _options(tfl.FullyConnectedOptionsT, fusedActivationFunction=act))


def _add(b, g, n, xs, y, act):
    b.op(tfl.BuiltinOperator.ADD, xs, [y], tfl.BuiltinOptions.AddOptions,
         _options(tfl.AddOptionsT, fusedActivationFunction=act))


def _relu(b, g, n, xs, y, act):
    b.op(tfl.BuiltinOperator.RELU, xs, [y])


def _nonneg(g: Graph, v: int) -> bool:
    """Is value v >= 0 by construction (relu, relu6, sigmoids, and pools, concats,
    sums, products and shuffles of such values)?"""
    producer = {m.output: m for m in g.nodes}
    m = producer.get(v)
    if m is None:
        return False
    if m.op == "relu" or (m.op == "act" and m.attrs["kind"] in (KINDS["relu6"], KINDS["sigmoid"],
                                                                 KINDS["hardsigmoid"])):
        return True
    if m.op in ("maxpool", "avgpool", "gap", "concat", "add", "mul", "shuffle", "flatten"):
        return all(_nonneg(g, i) for i in m.inputs)
    return False


def _pool(b, g, n, xs, y, act):
    shape = g.values[n.inputs[0]].shape
    ho, wo, _ = g.values[n.output].shape
    is_max = n.op == "maxpool"
    nonneg = _nonneg(g, n.inputs[0])
    pad_value = float(np.finfo(np.float32).min) if is_max and not nonneg else 0.0
    ceil = n.attrs.get("ceil_mode", 0)
    count_pad = n.attrs.get("count_include_pad", 0)
    if ceil:    # explicit padding: p before, p plus the ceil-mode overhang after (past the input: ignored)
        h, w, c = shape
        eh, ew = ((ho - 1) * n.stride + n.kernel - h - n.pad, (wo - 1) * n.stride + n.kernel - w - n.pad)
        x, padding = xs[0], tfl.Padding.VALID
        if n.pad or eh > 0 or ew > 0:
            pads = np.array([[0, 0], [n.pad, max(eh, 0)], [n.pad, max(ew, 0)], [0, 0]], np.int32)
            x = b.tensor(f"{n.name}.padded", (1, h + n.pad + max(eh, 0), w + n.pad + max(ew, 0), c))
            paddings = b.const(f"{n.name}.paddings", pads)
            if pad_value == 0:
                b.op(tfl.BuiltinOperator.PAD, [xs[0], paddings], [x], tfl.BuiltinOptions.PadOptions, tfl.PadOptionsT())
            else:
                value = b.const(f"{n.name}.pad_value", np.array([pad_value], np.float32))
                b.op(tfl.BuiltinOperator.PADV2, [xs[0], paddings, value], [x], tfl.BuiltinOptions.PadV2Options,
                     tfl.PadV2OptionsT())
    else:
        x, padding = _spatial_pad(b, n, xs[0], shape, pad_value)
    explicit_avg = not is_max and (x != xs[0] or count_pad)
    pooled = b.tensor(f"{n.name}.sum_avg", b.tensors[y].shape) if explicit_avg else y
    b.op(tfl.BuiltinOperator.MAX_POOL_2D if is_max else tfl.BuiltinOperator.AVERAGE_POOL_2D, [x], [pooled],
         tfl.BuiltinOptions.Pool2DOptions,
         _options(tfl.Pool2DOptionsT, padding=padding, strideH=n.stride, strideW=n.stride,
                  filterHeight=n.kernel, filterWidth=n.kernel))
    if explicit_avg:
        # pooling of the zero-padded input divides by k*k (VALID) or by the real pixels
        # (SAME); seprt divides by its own count (op_pool): rescale per output pixel
        ones = np.ones((1,) + shape[:2] + (1,), np.float32)
        ref_n = Node("count", "avgpool", (0,), 1, dict(n.attrs))
        want = reference.im2col(ones, n.kernel, n.stride, n.pad, 0, ho, wo).sum(axis=(3, 4))       # seprt sums
        mean = get_op("avgpool").reference(None, ref_n, [ones])                                   # sums / count
        count = want / mean                                                                        # seprt's divisor
        if padding == tfl.Padding.VALID:
            tfl_div = np.full_like(count, n.kernel * n.kernel)
        else:
            tfl_div = want
        fix = b.const(f"{n.name}.count_fix", (tfl_div / count).astype(np.float32))
        b.op(tfl.BuiltinOperator.MUL, [pooled, fix], [y], tfl.BuiltinOptions.MulOptions, tfl.MulOptionsT())


def _gap(b, g, n, xs, y, act):
    axes = b.const(f"{n.name}.axes", np.array([1, 2], np.int32))
    b.op(tfl.BuiltinOperator.MEAN, [xs[0], axes], [y], tfl.BuiltinOptions.ReducerOptions,
         _options(tfl.ReducerOptionsT, keepDims=False))


def _shortcut_a(b, g, n, xs, y, act):
    h, w, c = g.values[n.inputs[0]].shape
    k = g.values[n.output].shape[-1]
    s = n.stride
    zeros = np.zeros(4, np.int32)
    sliced = b.tensor(f"{n.name}.subsampled", (1, -(-h // s), -(-w // s), c)) if k > c else y
    inputs = [xs[0], b.const(f"{n.name}.begin", zeros), b.const(f"{n.name}.end", zeros),
              b.const(f"{n.name}.strides", np.array([1, s, s, 1], np.int32))]
    b.op(tfl.BuiltinOperator.STRIDED_SLICE, inputs, [sliced], tfl.BuiltinOptions.StridedSliceOptions,
         _options(tfl.StridedSliceOptionsT, beginMask=0b1111, endMask=0b1111))   # masks: all of every axis
    if k > c:
        p = (k - c) // 2
        paddings = b.const(f"{n.name}.paddings", np.array([[0, 0], [0, 0], [0, 0], [p, p]], np.int32))
        b.op(tfl.BuiltinOperator.PAD, [sliced, paddings], [y], tfl.BuiltinOptions.PadOptions, tfl.PadOptionsT())


def _concat(b, g, n, xs, y, act):
    b.op(tfl.BuiltinOperator.CONCATENATION, xs, [y], tfl.BuiltinOptions.ConcatenationOptions,
         _options(tfl.ConcatenationOptionsT, axis=3, fusedActivationFunction=act))


def _reshape(b, name, x, shape, y=None):
    """RESHAPE x to shape (a new tensor, or y); the batch dimension stays free (-1)."""
    y = b.tensor(name, shape) if y is None else y
    new = [-1] + list(shape[1:])
    b.op(tfl.BuiltinOperator.RESHAPE, [x, b.const(f"{name}.shape", np.array(new, np.int32))], [y],
         tfl.BuiltinOptions.ReshapeOptions, _options(tfl.ReshapeOptionsT, newShape=new))
    return y


def _mul(b, x, s, y):
    b.op(tfl.BuiltinOperator.MUL, [x, s], [y], tfl.BuiltinOptions.MulOptions, tfl.MulOptionsT())


def _act(b, g, n, xs, y, act):
    """relu6 RELU6, leaky LEAKY_RELU, sigmoid LOGISTIC, hardswish HARD_SWISH,
    silu x * LOGISTIC(x), hardsigmoid RELU6(x + 3) * (1/6)."""
    kind, x, shape = n.attrs["kind"], xs[0], b.tensors[y].shape
    if kind == KINDS["relu6"]:
        b.op(tfl.BuiltinOperator.RELU6, [x], [y])
    elif kind == KINDS["leaky"]:
        b.op(tfl.BuiltinOperator.LEAKY_RELU, [x], [y], tfl.BuiltinOptions.LeakyReluOptions,
             _options(tfl.LeakyReluOptionsT, alpha=float(n.attrs["slope"])))
    elif kind == KINDS["sigmoid"]:
        b.op(tfl.BuiltinOperator.LOGISTIC, [x], [y])
    elif kind == KINDS["hardswish"]:
        b.op(tfl.BuiltinOperator.HARD_SWISH, [x], [y])
    elif kind == KINDS["silu"]:
        sig = b.tensor(f"{n.name}.sigmoid", shape)
        b.op(tfl.BuiltinOperator.LOGISTIC, [x], [sig])
        _mul(b, x, sig, y)
    else:
        t = b.tensor(f"{n.name}.plus3", shape)
        b.op(tfl.BuiltinOperator.ADD, [x, b.const(f"{n.name}.three", np.array([3], np.float32))], [t],
             tfl.BuiltinOptions.AddOptions, _options(tfl.AddOptionsT, fusedActivationFunction=tfl.ActivationFunctionType.RELU6))
        _mul(b, t, b.const(f"{n.name}.sixth", np.array([1 / 6], np.float32)), y)


def _chanmul(b, g, n, xs, y, act):
    c = g.values[n.inputs[1]].shape[0]
    s4 = _reshape(b, f"{n.name}.gates", xs[1], (1, 1, 1, c))
    _mul(b, xs[0], s4, y)


def _affine(b, g, n, xs, y, act):
    """DEPTHWISE_CONV_2D 1x1: filter (1, 1, 1, C) = weight, bias (C,) = bias.
    Not MUL + ADD: the int8 quantizer gives an all-zero bias constant (a fresh
    batch norm's) scale 1.0, and LiteRT's int8 ADD aborts the process when
    2 * max(input scales) >= 2^20 * output scale (see _check_int8_add), which
    small activations then break; a conv's int32 bias has no such rule.
    A (C,) vector is reshaped to (1, 1, 1, C) and back."""
    c = n.weight.shape[0]
    shape = b.tensors[y].shape
    x, out = xs[0], y
    if len(shape) == 2:
        x = _reshape(b, f"{n.name}.map", xs[0], (1, 1, 1, c))
        out = b.tensor(f"{n.name}.map_out", (1, 1, 1, c))
    inputs = [x, b.const(f"{n.name}.weight", n.weight.reshape(1, 1, 1, c).astype(np.float32)),
              b.const(f"{n.name}.bias", n.bias.astype(np.float32))]
    b.op(tfl.BuiltinOperator.DEPTHWISE_CONV_2D, inputs, [out], tfl.BuiltinOptions.DepthwiseConv2DOptions,
         _options(tfl.DepthwiseConv2DOptionsT, padding=tfl.Padding.VALID, strideH=1, strideW=1,
                  depthMultiplier=1, fusedActivationFunction=act))
    if out != y:
        _reshape(b, f"{n.name}.vec", out, (1, c), y)


def _shuffle(b, g, n, xs, y, act):
    h, w, c = g.values[n.output].shape
    gr = n.attrs["groups"]
    t = _reshape(b, f"{n.name}.split", xs[0], (1, h, w, gr, c // gr))
    tt = b.tensor(f"{n.name}.transposed", (1, h, w, c // gr, gr))
    b.op(tfl.BuiltinOperator.TRANSPOSE, [t, b.const(f"{n.name}.perm", np.array([0, 1, 2, 4, 3], np.int32))], [tt],
         tfl.BuiltinOptions.TransposeOptions, tfl.TransposeOptionsT())
    _reshape(b, f"{n.name}.joined", tt, (1, h, w, c), y)


def _slice(b, g, n, xs, y, act):
    """STRIDED_SLICE of channels c0..c0+k (masks: all of batch, H and W)."""
    k, c0 = g.values[n.output].shape[-1], n.attrs["start"]
    inputs = [xs[0], b.const(f"{n.name}.begin", np.array([0, 0, 0, c0], np.int32)),
              b.const(f"{n.name}.end", np.array([0, 0, 0, c0 + k], np.int32)),
              b.const(f"{n.name}.strides", np.array([1, 1, 1, 1], np.int32))]
    b.op(tfl.BuiltinOperator.STRIDED_SLICE, inputs, [y], tfl.BuiltinOptions.StridedSliceOptions,
         _options(tfl.StridedSliceOptionsT, beginMask=0b0111, endMask=0b0111))


def _flatten(b, g, n, xs, y, act):
    _reshape(b, f"{n.name}.flat", xs[0], (1, g.values[n.output].shape[0]), y)


# seprt op -> its TFLite lowering; ops whose TFLite op takes a fused relu
EMIT = {"conv": _conv, "fc": _fc, "add": _add, "relu": _relu, "maxpool": _pool, "avgpool": _pool, "gap": _gap,
        "shortcut_a": _shortcut_a, "concat": _concat, "act": _act, "mul": _chanmul, "affine": _affine,
        "shuffle": _shuffle, "flatten": _flatten, "slice": _slice}
FUSES_RELU = ("conv", "fc", "add", "affine")     # not CONCATENATION: with a fused relu it did not match (measured)


def _emit(b: _Builder, g: Graph, n: Node, xs: list[int], y: int, act: int) -> None:
    """TFLite ops of seprt node n: inputs tensors xs, output tensor y, fused activation act."""
    if n.op not in EMIT:
        raise ValueError(f"node {n.name!r}: op {n.op!r} has no TFLite mapping (converters/tflite.py EMIT)")
    EMIT[n.op](b, g, n, xs, y, act)


def graph_to_tflite(g: Graph) -> bytes:
    """An fp32 .tflite flatbuffer of graph g (see the module docstring).

    Input float32 [1, H, W, 3] NHWC (resizable batch), output float32 logits [1, K].
    """
    if tfl is None:
        raise ImportError("graph_to_tflite needs ai-edge-litert and flatbuffers: pip install 'seprt[tflite]'")
    b = _Builder()
    fused = _fused_relus(g)
    skip = set(fused.values())
    tensor = {g.input: b.tensor(g.values[g.input].name, (1,) + g.values[g.input].shape)}   # value -> tensor
    for i, n in enumerate(g.nodes):
        if i in skip:
            continue
        out = g.nodes[fused[i]].output if i in fused else n.output
        v = g.values[out]
        tensor[out] = b.tensor(v.name, (1,) + v.shape)
        act = tfl.ActivationFunctionType.NONE
        if i in fused:
            act = tfl.ActivationFunctionType.RELU if g.nodes[fused[i]].op == "relu" else tfl.ActivationFunctionType.RELU6
        _emit(b, g, n, [tensor[j] for j in n.inputs], tensor[out], act)
    desc = f"seprt {g.meta.get('arch', '?')} {g.meta.get('variant', '?')} fp32 (converters.tflite)"
    return b.finish([tensor[g.input]], [tensor[g.output]], desc)


# ==================================================================== quantize

def quantize_int8(fp32_tflite: bytes, calib: np.ndarray) -> bytes:
    """Full-integer int8 model of an fp32 .tflite: per-channel int8 weights,
    int8 activations, int32 biases; input and output stay float32 (QUANTIZE /
    DEQUANTIZE at the ends). Activation ranges come from running the float
    model on calib (N, H, W, 3) float32, one sample at a time. Raises
    ValueError for a model LiteRT would abort on that we can tell from its
    scales (_check_int8_add) or ops (PADV2).
    """
    from ai_edge_litert import _pywrap_tensorflow_lite_calibration_wrapper as calibration

    model = tfl.ModelT.InitFromPackedBuf(fp32_tflite, 0)
    if any(oc.builtinCode == tfl.BuiltinOperator.PADV2 for oc in model.operatorCodes):
        raise ValueError("cannot quantize a model with PADV2 (a padded maxpool on an input that is not a relu "
                         "output): the quantizer keeps its pad value float32 and the int8 model would not load")
    calib = np.asarray(calib, np.float32)
    # args: model bytes, custom-op registerers by name, by function (none)
    c = calibration.CalibrationWrapper(fp32_tflite, [], [])
    c.Prepare([[1, *calib.shape[1:]]])                   # input shapes, one per model input
    for x in calib:
        c.FeedTensor([x[None]])                          # one [1, H, W, 3] sample per call
    # QuantizeModel(input_type, output_type, allow_float, activations_type,
    #   bias_type, disable_per_channel, disable_per_channel_quantization_for_dense_layers)
    # with types as numpy type numbers (LiteRT calibration_wrapper.cc):
    # float32 in/out, no float fallback, int8 activations, int32 bias, per-channel
    # convs and FULLY_CONNECTED.
    f32, i8, i32 = (np.dtype(t).num for t in (np.float32, np.int8, np.int32))
    int8 = bytes(c.QuantizeModel(f32, f32, False, i8, i32, False, False))
    _check_int8_add(int8)
    return int8


# int8 ADD (tensorflow/lite/kernels/add.cc, Prepare): inputs are rescaled to
# 2 * max(input scales) with a left shift of 20 bits, and the output multiplier
#     2 * max(s1, s2) / (2^20 * s_out)
# goes to QuantizeMultiplierSmallerThanOneExp, whose TFLITE_CHECK_LT(m, 1)
# aborts the whole process (no error status) when the rule is broken.
ADD_LEFT_SHIFT = 20


def _check_int8_add(int8_tflite: bytes) -> None:
    """Raise ValueError naming the first int8 ADD whose scales break LiteRT's rule
    above, before anything loads the model (LiteRT would abort the process)."""
    model = tfl.ModelT.InitFromPackedBuf(int8_tflite, 0)
    sg = model.subgraphs[0]
    scale = lambda i: float(sg.tensors[i].quantization.scale[0])
    for op in sg.operators:
        if model.operatorCodes[op.opcodeIndex].builtinCode != tfl.BuiltinOperator.ADD:
            continue
        ts = [sg.tensors[i] for i in (*op.inputs, op.outputs[0])]
        if any(t.type != tfl.TensorType.INT8 for t in ts):
            continue
        (s1, s2), s_out = (scale(i) for i in op.inputs), scale(op.outputs[0])
        if 2 * max(s1, s2) >= (1 << ADD_LEFT_SHIFT) * s_out:
            name = ts[-1].name.decode()
            raise ValueError(f"int8 ADD {name!r}: input scales {s1:.3g}, {s2:.3g} and output scale {s_out:.3g} "
                             f"break LiteRT's rule 2*max(input scales) < 2^{ADD_LEFT_SHIFT}*output scale "
                             "(tensorflow/lite/kernels/add.cc), and LiteRT would abort loading it")


# ======================================================================== run

# The child of run_tflite_isolated: the steps of run_tflite, numpy and the interpreter only.
_CHILD = """
import sys
import numpy as np
try:
    from ai_edge_litert.interpreter import Interpreter
except ImportError:
    from tflite_runtime.interpreter import Interpreter
model, x_path, out_path, threads = sys.argv[1:]
interp = Interpreter(model_path=model, num_threads=int(threads))
x = np.load(x_path)
inp = interp.get_input_details()[0]
interp.resize_tensor_input(inp["index"], list(x.shape))
interp.allocate_tensors()
interp.set_tensor(inp["index"], x)
interp.invoke()
np.save(out_path, interp.get_tensor(interp.get_output_details()[0]["index"]))
"""


def run_tflite_isolated(model: bytes, x: np.ndarray, threads: int = 1, what: str = "the TFLite model") -> np.ndarray:
    """run_tflite in a child process: LiteRT aborts the process on some models
    (a failed TFLITE_CHECK in an op's Prepare, e.g. int8 ADD's scale rule), and
    that must not take the caller with it. Returns the (N, K) logits of
    x (N, H, W, 3); raises ValueError with one line when the child dies or fails.
    Costs a process start (~1 s) and writes model and x to a temporary folder.

    Example: run_tflite_isolated(int8_bytes, x[:4], what="the int8 model")
    """
    import signal
    import subprocess
    import sys
    import tempfile

    with tempfile.TemporaryDirectory(prefix="seprt-tflite-") as d:
        paths = [os.path.join(d, f) for f in ("model.tflite", "x.npy", "y.npy")]
        Path(paths[0]).write_bytes(bytes(model))
        np.save(paths[1], np.ascontiguousarray(x, np.float32))
        r = subprocess.run([sys.executable, "-c", _CHILD, *paths, str(threads)], capture_output=True, text=True)
        if r.returncode < 0:
            sig = signal.Signals(-r.returncode).name
            raise ValueError(f"LiteRT killed the process ({sig}) loading or running {what}: a TFLite op rejected "
                             "its tensors without an error status; nothing written")
        if r.returncode:
            last = (r.stderr.strip().splitlines() or ["no message"])[-1]
            raise ValueError(f"LiteRT failed on {what}: {last}")
        return np.load(paths[2])


def run_tflite_checked(model: bytes, x: np.ndarray, what: str = "the TFLite model") -> np.ndarray:
    """run_tflite(model, x) once the first 4 inputs of x have loaded and run in a
    child process (run_tflite_isolated), so a model LiteRT aborts on is a
    ValueError, not the end of the converter. The converters check with this."""
    run_tflite_isolated(model, x[:4], what=what)
    return run_tflite(model, x)


def run_tflite(model: bytes | str | Path, x: np.ndarray, threads: int = 1) -> np.ndarray:
    """Run a .tflite (bytes or path) on x (N, H, W, 3) float32 in one batch;
    returns the first output (N, K) float32. Uses the interpreter's default
    delegates (XNNPACK)."""
    if isinstance(model, (bytes, bytearray)):
        interp = Interpreter(model_content=bytes(model), num_threads=threads)
    else:
        interp = Interpreter(model_path=str(model), num_threads=threads)
    inp = interp.get_input_details()[0]
    x = np.ascontiguousarray(x, np.float32)
    interp.resize_tensor_input(inp["index"], list(x.shape))
    interp.allocate_tensors()
    interp.set_tensor(inp["index"], x)
    interp.invoke()
    return interp.get_tensor(interp.get_output_details()[0]["index"]).copy()
