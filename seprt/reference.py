"""Reference executor: runs a graph with the numpy definition of every op.

Each op's definition lives with its declaration in the op table
(seprt/ops/op_*.py, `reference`); this module only walks the graph. Fast
kernels (seprt/kernels) must agree with it: integer paths bit-exact on the
accumulators (and so on the logits of integer models), float results within
rounding. The shared numpy helpers (im2col, conv2d) are re-exported here.
"""
from __future__ import annotations

import time

import numpy as np

from .graph import Graph, Node
from .ops import get_op
from .ops.numpy_ref import conv2d, im2col  # noqa: F401  (re-exported)


def softmax(z: np.ndarray) -> np.ndarray:
    """Row-wise softmax of (N,K) logits, computed stably."""
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def run_node(g: Graph, n: Node, xs: list[np.ndarray]) -> np.ndarray:
    """Run one node on its input arrays (batched NHWC float32)."""
    return get_op(n.op).reference(g, n, xs)


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
