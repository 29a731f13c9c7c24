"""The fast engine: runs a Plan's instruction table in one numba call per batch.

    engine = FastEngine(graph, threads=1)
    logits, embed = engine.run(x)        # x (N, H, W, 3) float32

Thread safety: read-only weights are shared; each Python thread gets its own
workspace (activation arenas and scratch) on first use, so concurrent calls
never share mutable memory. The numba function releases the GIL (nogil).
"""
from __future__ import annotations

import threading
import time

import numpy as np
from .kernels.jit import jit

from . import plan as P
from .graph import Graph
from .kernels.conv import conv_bin_popcount, conv_f32, conv_u8i8, planes_from_u8
from .kernels.elementwise import add_f32, gap_f32, pool_f32, quantize_u8, relu_f32, shortcut_a_f32


@jit
def run_program(prog, x, in_off, in_size, logits, logits_off, embed, embed_off,
                fbuf, abuf, pbuf, qbuf, wf32, wi8, wu64, wi32, aux, acc32, acc64, accf, accd):
    """Run instructions prog (n, WIDTH) on each image x[i] (in_size,) f32;
    write logits[i] and embed[i]. Arenas: fbuf f32 activations, abuf u8
    quantized inputs, pbuf u64 bit planes, qbuf i32 plane sums; w*: weights;
    aux i64 offsets; acc*: scratch."""
    for i in range(x.shape[0]):
        fbuf[in_off:in_off + in_size] = x[i]
        for r in range(prog.shape[0]):
            a = prog[r]
            op = a[0]
            if op == P.OP_QUANT:
                quantize_u8(fbuf, a[1], a[2], a[3], a[4], wf32[a[5]], a[6], a[7], abuf[a[8]:], a[9], a[10],
                            a[11], a[12], accf)
            elif op == P.OP_PLANES:
                planes_from_u8(abuf[a[1]:], a[2], a[3], a[4], a[5], a[6], a[7], pbuf[a[8]:], qbuf[a[9]:])
            elif op == P.OP_CONV_DOT:
                conv_u8i8(abuf[a[1]:], aux[a[2]:a[2] + a[3]], aux[a[4]:a[4] + a[5]], a[5], wi8[a[6]:], a[7], a[8],
                          a[9], a[10], a[11], wi32[a[12]:], wf32[a[13]:], wf32[a[14]:], fbuf, a[15], a[16], a[17],
                          a[18], acc32, abuf, a[P.QSPEC:], wf32[a[P.QSPEC + 6]], accf)
            elif op == P.OP_CONV_BIN:
                conv_bin_popcount(pbuf[a[1]:], qbuf[a[2]:], aux[a[3]:a[3] + a[4]], aux[a[5]:a[5] + a[6]], a[6],
                                  a[7], a[8], a[9], wu64[a[10]:], a[11], a[12], wi32[a[13]:], wf32[a[14]:],
                                  wf32[a[15]:], fbuf, a[16], a[17], a[18], a[19], acc64, abuf, a[P.QSPEC:],
                                  wf32[a[P.QSPEC + 6]], accf)
            elif op == P.OP_CONV_F32:
                conv_f32(fbuf, a[1], a[2], a[3], a[4], wf32[a[5]:], a[6], a[7], a[8], a[9], a[10], a[11], a[12],
                         wf32[a[13]:], wf32[a[14]:], a[15], a[16], a[17], a[18], accf, abuf, a[P.QSPEC:],
                         wf32[a[P.QSPEC + 6]], accd.view(np.float32))
            elif op == P.OP_ADD:
                add_f32(fbuf, a[1], a[2], a[3], a[4], a[5])
            elif op == P.OP_RELU:
                relu_f32(fbuf, a[1], a[2], a[3])
            elif op == P.OP_POOL:
                pool_f32(fbuf, a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9], a[10], a[11])
            elif op == P.OP_GAP:
                gap_f32(fbuf, a[1], a[2], a[3], a[4], accd)
            elif op == P.OP_SHORTCUT:
                shortcut_a_f32(fbuf, a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9])
        logits[i] = fbuf[logits_off:logits_off + logits.shape[1]]
        embed[i] = fbuf[embed_off:embed_off + embed.shape[1]]


class FastEngine:
    """Compiled plan + per-thread workspaces for one graph."""

    def __init__(self, graph: Graph, threads: int = 1):
        self.graph, self.threads = graph, threads
        self.plan = P.build(graph)
        self._local = threading.local()
        self.n_classes = graph.values[graph.output].shape[0]
        self.n_embed = graph.values[graph.embed].shape[0]

    def workspace(self):
        """This thread's arenas (created on first use, borders pre-filled)."""
        ws = getattr(self._local, "ws", None)
        if ws is None:
            s, p = self.plan.sizes, self.plan
            abuf = np.zeros(max(s["u8"], 1), np.uint8)
            for off, border in p.borders:
                abuf[off:off + border.size] = border
            ws = (np.zeros(max(s["f32"], 1), np.float32), abuf, np.zeros(max(s["u64"], 1), np.uint64),
                  np.zeros(max(s["i32"], 1), np.int32), np.zeros(8 * 32, np.int32), np.zeros(p.scratch, np.int64),
                  np.zeros(max(p.scratch, 8 * 32), np.float32), np.zeros(max(p.scratch, 8 * 32), np.float64))
            self._local.ws = ws
        return ws

    def run(self, x: np.ndarray, prog: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """x (N, H, W, 3) float32 C-contiguous -> (logits (N, K), embed (N, D))."""
        fbuf, abuf, pbuf, qbuf, acc32, acc64, accf, accd = self.workspace()
        n = x.shape[0]
        logits = np.empty((n, self.n_classes), np.float32)
        embed = np.empty((n, self.n_embed), np.float32)
        w, p = self.plan.weights, self.plan
        run_program(self.plan.prog if prog is None else prog, x.reshape(n, -1), p.input_off, p.input_size,
                    logits, p.logits_off, embed, p.embed_off, fbuf, abuf, pbuf, qbuf,
                    w["wf32"], w["wi8"], w["wu64"], w["wi32"], w["aux"], acc32, acc64, accf, accd)
        return logits, embed

    def profile(self, x: np.ndarray, runs: int = 5) -> list[dict]:
        """Median time of each instruction on x (one instruction per call; the
        activations it reads were left by a full run first)."""
        self.run(x)
        rows = []
        for r in range(len(self.plan.prog)):
            one = self.plan.prog[r:r + 1]
            ts = []
            for _ in range(runs):
                t = time.perf_counter()
                self.run(x, one)
                ts.append(time.perf_counter() - t)
            rows.append({"name": self.plan.names[r], "path": self.plan.paths[r], "macs": self.plan.macs[r] * len(x),
                         "seconds": float(np.median(ts))})
        return rows
