"""Reference executor: the plain-numpy definition of every op.

Each op is one small function on batched NHWC arrays. Fast kernels
(seprt/kernels) must agree with these: integer paths bit-exact on the
accumulators, float results within rounding.

Semantics of conv and fc (docs/format.md, "Op semantics"):
    effective weight  W = weight          (f32)
                        = q * scale[k]    (i8)
                        = ±1 * alpha[k]   (bin)
    float path  (input value not quantized, or f32 weights):
        y = conv(x, W) + bias
    integer path (i8/bin weights and a quantized input value):
        q = clip(rint(x / s) + z, 0, 2^bits - 1)           (int)
        acc = conv(q - z, w_int)  with zero padding         (exact int)
        y = float32(acc) * float32(s * scale[k]) + bias[k]  (float32)
    where w_int is the int8 weight, or the ±1 pattern.
"""
from __future__ import annotations

import time

import numpy as np

from .graph import Graph, Node
from .quant import quantize_act, unpack_pattern


# ------------------------------------------------------------------- ops

def im2col(x: np.ndarray, k: int, stride: int, pad: int, pad_value=0) -> np.ndarray:
    """x (N,H,W,C) -> patches (N,Ho,Wo,k,k,C)."""
    n, h, w, c = x.shape
    xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), constant_values=pad_value)
    ho, wo = (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1
    cols = np.empty((n, ho, wo, k, k, c), x.dtype)
    for ky in range(k):
        for kx in range(k):
            cols[:, :, :, ky, kx, :] = xp[:, ky:ky + stride * ho:stride, kx:kx + stride * wo:stride, :]
    return cols


def conv2d(x: np.ndarray, w: np.ndarray, stride: int, pad: int, groups: int) -> np.ndarray:
    """x (N,H,W,C), w (K,k,k,C/g) -> (N,Ho,Wo,K), zero padding, same dtype
    arithmetic as the inputs (float32, or int64 for exact integer sums)."""
    k_out, k = w.shape[0], w.shape[1]
    cols = im2col(x, k, stride, pad)
    cg, kg = x.shape[3] // groups, k_out // groups
    outs = []
    for g in range(groups):
        xg = cols[..., g * cg:(g + 1) * cg].reshape(cols.shape[:3] + (-1,))
        wg = w[g * kg:(g + 1) * kg].reshape(kg, -1)
        outs.append(xg @ wg.T)
    return np.concatenate(outs, axis=-1)


def fc(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """x (N,C), w (K,C) -> (N,K)."""
    return x @ w.T


def add(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return a + b


def relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0)


def maxpool(x: np.ndarray, k: int, stride: int, pad: int) -> np.ndarray:
    """(N,H,W,C) -> (N,Ho,Wo,C); padding never wins (-inf)."""
    return im2col(x, k, stride, pad, -np.inf).max(axis=(3, 4)).astype(x.dtype)


def avgpool(x: np.ndarray, k: int, stride: int, pad: int) -> np.ndarray:
    """(N,H,W,C) -> (N,Ho,Wo,C); divides by the count of non-padding inputs."""
    sums = im2col(x, k, stride, pad).sum(axis=(3, 4))
    ones = im2col(np.ones((1,) + x.shape[1:3] + (1,), x.dtype), k, stride, pad)
    return (sums / ones.sum(axis=(3, 4))).astype(x.dtype)


def gap(x: np.ndarray) -> np.ndarray:
    """Global average pool (N,H,W,C) -> (N,C)."""
    return x.mean(axis=(1, 2), dtype=np.float32)


def shortcut_a(x: np.ndarray, stride: int, out_channels: int) -> np.ndarray:
    """ResNet option A: x[:, ::s, ::s, :], channels zero-padded equally on both sides."""
    p = (out_channels - x.shape[3]) // 2
    return np.pad(x[:, ::stride, ::stride, :], ((0, 0), (0, 0), (0, 0), (p, p)))


def softmax(z: np.ndarray) -> np.ndarray:
    """Row-wise softmax of (N,K) logits, computed stably."""
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


# ----------------------------------------------------------- weighted nodes

def int_weight(n: Node, cin: int) -> np.ndarray:
    """The integer weight of an i8/bin node: int8 q, or the ±1 pattern."""
    if n.wfmt == "i8":
        return n.weight
    return unpack_pattern(n.weight, n.kernel_shape(cin)[1:])


def float_weight(n: Node, cin: int) -> np.ndarray:
    """The effective float32 weight of a conv/fc node."""
    if n.wfmt == "f32":
        return n.weight
    w = int_weight(n, cin).astype(np.float32)
    return w * n.scale.reshape((-1,) + (1,) * (w.ndim - 1))


def run_weighted(g: Graph, n: Node, x: np.ndarray) -> np.ndarray:
    """conv or fc node on input x (float32), float or integer path."""
    v = g.values[n.inputs[0]]
    cin = v.shape[-1]
    if g.is_integer(n):
        q = quantize_act(x, v.q_scale, v.q_zero, v.q_bits).astype(np.int64) - v.q_zero
        w = int_weight(n, cin).astype(np.int64)
        acc = conv2d(q, w, n.stride, n.pad, n.groups) if n.op == "conv" else fc(q, w)
        mult = (np.float32(v.q_scale) * n.scale).astype(np.float32)
        return acc.astype(np.float32) * mult + n.bias
    w = float_weight(n, cin)
    y = conv2d(x, w, n.stride, n.pad, n.groups) if n.op == "conv" else fc(x, w)
    return (y + n.bias).astype(np.float32)


def run_node(g: Graph, n: Node, xs: list[np.ndarray]) -> np.ndarray:
    """Run one node on its input arrays."""
    if n.op in ("conv", "fc"):
        return run_weighted(g, n, xs[0])
    if n.op == "add":
        return add(xs[0], xs[1])
    if n.op == "relu":
        return relu(xs[0])
    if n.op == "maxpool":
        return maxpool(xs[0], n.kernel, n.stride, n.pad)
    if n.op == "avgpool":
        return avgpool(xs[0], n.kernel, n.stride, n.pad)
    if n.op == "gap":
        return gap(xs[0])
    if n.op == "shortcut_a":
        return shortcut_a(xs[0], n.stride, g.values[n.output].shape[-1])
    raise ValueError(f"unknown op {n.op}")


def run(g: Graph, x: np.ndarray, outputs: tuple[int, ...] | None = None, timings: list | None = None) -> dict[int, np.ndarray]:
    """Run the graph on x (N,H,W,3) float32; returns {value index: array}
    for `outputs` (default: logits). Values are freed after their last use.
    With `timings` (a list), appends (node, seconds) per node.
    """
    outputs = outputs or (g.output,)
    last_use = {}
    for i, n in enumerate(g.nodes):
        for v in n.inputs:
            last_use[v] = i
    env = {g.input: x}
    for i, n in enumerate(g.nodes):
        t0 = time.perf_counter()
        env[n.output] = run_node(g, n, [env[v] for v in n.inputs])
        if timings is not None:
            timings.append((n, time.perf_counter() - t0))
        for v in n.inputs:
            if last_use[v] == i and v not in outputs:
                del env[v]
    return {v: env[v] for v in outputs}
