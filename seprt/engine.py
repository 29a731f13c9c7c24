"""The fast engine: runs a Plan's instruction table in one numba call per batch.

    engine = FastEngine(graph)
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

from .graph import Graph
from .kernels import conv as kc, elementwise as ke
from .kernels.conv import (Epilogue as E, ConvBinRow as CB, ConvDotRow as CD, ConvDwRow as DW, ConvF32Row as CF,
                           PlanesRow as PL, conv_bin_popcount, conv_dw_u8i8, conv_f32, conv_u8i8, planes_from_u8)
from .kernels.elementwise import (AddRow, ConcatRow, GapRow, PoolRow, QuantRow as QR, ReluRow, ShortcutRow as SC,
                                  add_f32, concat_f32, gap_f32, pool_f32, quantize_u8, relu_f32, shortcut_a_f32,
                                  ActRow, AffineRow as AF, MulRow, ShuffleRow, SliceRow, act_f32, affine_f32,
                                  mul_f32, shuffle_f32, slice_f32)
from . import plan as P


@jit
def run_program(prog, x, in_off, in_size, logits, logits_off, embed, embed_off,
                fbuf, abuf, pbuf, qbuf, wf32, wi8, wu64, wi32, aux, acc32, acc64, accf):
    """Run instructions prog (n, WIDTH) on each image x[i] (in_size,) f32;
    write logits[i] and embed[i]. Arenas: fbuf f32 activations, abuf u8
    quantized inputs, pbuf u64 bit planes, qbuf i32 plane sums; w*: weights;
    aux i64 offsets; acc*: scratch. Row columns are named by the kernels' IntEnums."""
    for i in range(x.shape[0]):
        fbuf[in_off:in_off + in_size] = x[i]
        for r in range(prog.shape[0]):
            a = prog[r]
            op = a[0]
            if op == kc.OP_CONV_DOT:
                conv_u8i8(abuf[a[CD.A]:], aux[a[CD.PIX]:a[CD.PIX] + a[CD.N_PIX]], aux[a[CD.KOFF]:a[CD.KOFF] + a[CD.NK]],
                          a[CD.NK], wi8[a[CD.B]:], a[CD.G], a[CD.CGP], a[CD.KG], a[CD.M], a[CD.ZERO],
                          wi32[a[CD.WSUM]:], wf32[a[E.MULT]:], wf32[a[E.BIAS]:], fbuf, a[E.OUT], a[E.RES], a[E.K],
                          a[E.RELU], acc32, abuf, a[E.Q_OFF:], wf32[a[E.Q_SCALE]], accf)
            elif op == kc.OP_CONV_DW:
                conv_dw_u8i8(abuf[a[DW.A]:], aux[a[DW.PIX]:a[DW.PIX] + a[DW.N_PIX]], aux[a[DW.TOFF]:a[DW.TOFF] + a[DW.T]],
                             wi8[a[DW.WT]:], a[DW.CP], a[DW.ZERO], wi32[a[DW.WSUM]:], wf32[a[E.MULT]:],
                             wf32[a[E.BIAS]:], fbuf, a[E.OUT], a[E.RES], a[E.K], a[E.RELU], acc32, abuf,
                             a[E.Q_OFF:], wf32[a[E.Q_SCALE]], accf)
            elif op == kc.OP_CONV_BIN:
                conv_bin_popcount(pbuf[a[CB.PLANES]:], qbuf[a[CB.QSUM]:], aux[a[CB.PIX]:a[CB.PIX] + a[CB.N_PIX]],
                                  aux[a[CB.TOFF]:a[CB.TOFF] + a[CB.T]], a[CB.T], a[CB.G], a[CB.BITS], a[CB.NW],
                                  wu64[a[CB.PAT]:], a[CB.KG], a[CB.ZERO], wi32[a[CB.WSUM]:], wf32[a[E.MULT]:],
                                  wf32[a[E.BIAS]:], fbuf, a[E.OUT], a[E.RES], a[E.K], a[E.RELU], acc64, abuf,
                                  a[E.Q_OFF:], wf32[a[E.Q_SCALE]], accf)
            elif op == kc.OP_CONV_F32:
                conv_f32(fbuf, a[CF.IN], a[CF.H], a[CF.W], a[CF.C], wf32[a[CF.WT]:], a[CF.G], a[CF.KERNEL],
                         a[CF.STRIDE], a[CF.PAD], a[CF.HO], a[CF.WO], a[CF.KG], wf32[a[E.MULT]:], wf32[a[E.BIAS]:],
                         a[E.OUT], a[E.RES], a[E.K], a[E.RELU], accf, abuf, a[E.Q_OFF:], wf32[a[E.Q_SCALE]],
                         accf[accf.shape[0] // 2:])
            elif op == ke.OP_QUANT:
                quantize_u8(fbuf, a[QR.IN], a[QR.H], a[QR.W], a[QR.C], wf32[a[QR.SCALE]], a[QR.ZERO], a[QR.QMAX],
                            abuf[a[QR.OUT]:], a[QR.WP], a[QR.PAD], a[QR.G], a[QR.CGP], accf)
            elif op == kc.OP_PLANES:
                planes_from_u8(abuf[a[PL.A]:], a[PL.N_PIX], a[PL.G], a[PL.CG], a[PL.CGP], a[PL.BITS], a[PL.NW],
                               pbuf[a[PL.PLANES]:], qbuf[a[PL.QSUM]:])
            elif op == ke.OP_ADD:
                add_f32(fbuf, a[AddRow.A], a[AddRow.B], a[AddRow.OUT], a[AddRow.N], a[AddRow.RELU])
            elif op == ke.OP_RELU:
                relu_f32(fbuf, a[ReluRow.IN], a[ReluRow.OUT], a[ReluRow.N])
            elif op == ke.OP_POOL:
                pool_f32(fbuf, a[PoolRow.IN], a[PoolRow.H], a[PoolRow.W], a[PoolRow.C], a[PoolRow.KERNEL],
                         a[PoolRow.STRIDE], a[PoolRow.PAD], a[PoolRow.HO], a[PoolRow.WO], a[PoolRow.OUT],
                         a[PoolRow.IS_MAX], a[PoolRow.COUNT_PAD])
            elif op == ke.OP_GAP:
                gap_f32(fbuf, a[GapRow.IN], a[GapRow.N_PIX], a[GapRow.C], a[GapRow.OUT], accf)
            elif op == ke.OP_SHORTCUT:
                shortcut_a_f32(fbuf, a[SC.IN], a[SC.H], a[SC.W], a[SC.C], a[SC.STRIDE], a[SC.HO], a[SC.WO],
                               a[SC.COUT], a[SC.OUT])
            elif op == ke.OP_CONCAT:
                concat_f32(fbuf, a[ConcatRow.IN], a[ConcatRow.OUT], a[ConcatRow.N_PIX], a[ConcatRow.C_IN],
                           a[ConcatRow.C_OUT], a[ConcatRow.C0])
            elif op == ke.OP_ACT:
                act_f32(fbuf, a[ActRow.IN], a[ActRow.OUT], a[ActRow.N], a[ActRow.KIND], wf32[a[ActRow.SLOPE]])
            elif op == ke.OP_MUL:
                mul_f32(fbuf, a[MulRow.IN], a[MulRow.S], a[MulRow.OUT], a[MulRow.N_PIX], a[MulRow.C])
            elif op == ke.OP_AFFINE:
                affine_f32(fbuf, a[AF.IN], wf32[a[AF.WT]:], wf32[a[AF.BIAS]:], a[AF.OUT], a[AF.RES], a[AF.N_PIX],
                           a[AF.C], a[AF.RELU])
            elif op == ke.OP_SHUFFLE:
                shuffle_f32(fbuf, a[ShuffleRow.IN], a[ShuffleRow.OUT], a[ShuffleRow.N_PIX], a[ShuffleRow.C],
                            a[ShuffleRow.G])
            elif op == ke.OP_SLICE:
                slice_f32(fbuf, a[SliceRow.IN], a[SliceRow.OUT], a[SliceRow.N_PIX], a[SliceRow.C_IN],
                          a[SliceRow.C_OUT], a[SliceRow.C0])
        logits[i] = fbuf[logits_off:logits_off + logits.shape[1]]
        embed[i] = fbuf[embed_off:embed_off + embed.shape[1]]


class FastEngine:
    """Compiled plan + per-thread workspaces for one graph."""

    def __init__(self, graph: Graph):
        self.graph = graph
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
            n = max(p.scratch, 8 * 32)
            ws = (np.zeros(max(s["f32"], 1), np.float32), abuf, np.zeros(max(s["u64"], 1), np.uint64),
                  np.zeros(max(s["i32"], 1), np.int32), np.zeros(n, np.int32), np.zeros(n, np.int64),
                  np.zeros(2 * n, np.float32))
            self._local.ws = ws
        return ws

    def run(self, x: np.ndarray, prog: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """x (N, H, W, 3) float32 C-contiguous -> (logits (N, K), embed (N, D))."""
        fbuf, abuf, pbuf, qbuf, acc32, acc64, accf = self.workspace()
        n = x.shape[0]
        logits = np.empty((n, self.n_classes), np.float32)
        embed = np.empty((n, self.n_embed), np.float32)
        w, p = self.plan.weights, self.plan
        run_program(self.plan.prog if prog is None else prog, x.reshape(n, -1), p.input_off, p.input_size,
                    logits, p.logits_off, embed, p.embed_off, fbuf, abuf, pbuf, qbuf,
                    w["wf32"], w["wi8"], w["wu64"], w["wi32"], w["aux"], acc32, acc64, accf)
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
