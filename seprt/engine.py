"""The fast engine: runs a Plan's instruction table in one numba call per batch.

    engine = FastEngine(graph, threads=1)
    logits, embed = engine.run(x)        # x (N, H, W, 3) float32

Threads: see FastEngine. Read-only weights are shared; mutable memory is
per calling thread (threads = 1) or per team under a lock (threads > 1).
The numba function releases the GIL (nogil).
"""
from __future__ import annotations

import threading
import time
import weakref
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from .kernels.jit import jit

from .graph import Graph
from .kernels import conv as kc, elementwise as ke
from .kernels.conv import (Epilogue as E, ConvBinRow as CB, ConvDotRow as CD, ConvDwRow as DW, ConvF32Row as CF,
                           PlanesRow as PL, conv_bin_popcount, conv_dw_u8i8, conv_f32, conv_u8i8, planes_from_u8)
from .kernels.elementwise import (AddRow, ConcatRow, GapRow, PoolRow, QuantRow as QR, ReluRow, ShortcutRow as SC,
                                  add_f32, concat_f32, gap_f32, pool_f32, quantize_u8, relu_f32, shortcut_a_f32,
                                  ActRow, AffineRow as AF, MulRow, ShuffleRow, SliceRow, act_f32, affine_f32,
                                  mul_f32, shuffle_f32, slice_f32, MaxPoolU8Row as MP, maxpool_u8)
from . import plan as P
from .kernels.stack import OP_CONV_STACK, ConvStackRow as CS, conv_stack_u8
from .kernels.sync import barrier, share, wait_generation

WORKER_SPINS = 300_000     # a worker spins ~0.3 ms for the next job before it sleeps


class _Team:
    """threads - 1 persistent workers for one engine. A job is announced by
    bumping ctl[0]; a worker that finished the last job spins for the next one
    (no thread wake-up between back-to-back inferences, as pthreadpool), then
    sleeps on a condition variable."""

    def __init__(self, n_workers: int):
        self.ctl = np.zeros(8, np.int64)
        self.cv = threading.Condition()
        self.job, self.closed = None, False
        for j in range(1, n_workers + 1):
            threading.Thread(target=self._work, args=(j,), name=f"seprt-{j}", daemon=True).start()

    def _work(self, part: int) -> None:
        last = 0
        while True:
            gen = int(wait_generation(self.ctl, last, WORKER_SPINS))
            if gen == last:
                with self.cv:
                    while int(self.ctl[0]) == last and not self.closed:
                        self.cv.wait()
                    if self.closed:
                        return
                    gen = int(self.ctl[0])
            last = gen
            fn, args = self.job
            fn(*args, part)

    def run(self, fn, args: tuple) -> None:
        """fn(*args, part) on every member, the caller as part 0."""
        self.job = (fn, args)
        with self.cv:
            self.ctl[0] += 1
            self.cv.notify_all()
        fn(*args, 0)

    def close(self) -> None:
        with self.cv:
            self.closed = True
            self.cv.notify_all()


@jit
def run_program(prog, x, in_off, in_size, logits, logits_off, embed, embed_off,
                fbuf, abuf, pbuf, qbuf, wf32, wi8, wu64, wi32, aux, acc32, acc64, accf, part, nparts, sync):
    """Run instructions prog (n, WIDTH) on each image x[i] (in_size,) f32;
    write logits[i] and embed[i]. Arenas: fbuf f32 activations, abuf u8
    quantized inputs, pbuf u64 bit planes, qbuf i32 plane sums; w*: weights;
    aux i64 offsets; acc*: this thread's scratch. Row columns are named by the
    kernels' IntEnums. Thread `part` of `nparts` computes its share of every
    instruction, then waits at the barrier on sync (kernels/sync.py)."""
    k = 1
    for i in range(x.shape[0]):
        if part == 0:
            fbuf[in_off:in_off + in_size] = x[i]
        k = barrier(sync, nparts, k)
        for r in range(prog.shape[0]):
            a = prog[r]
            op = a[0]
            if op == kc.OP_CONV_DOT:
                lo, hi = share(a[CD.N_PIX], part, nparts, 8)
                conv_u8i8(abuf[a[CD.A]:], aux[a[CD.PIX]:a[CD.PIX] + a[CD.N_PIX]], aux[a[CD.KOFF]:a[CD.KOFF] + a[CD.NK]],
                          a[CD.NK], wi8[a[CD.B]:], a[CD.G], a[CD.CGP], a[CD.KG], a[CD.M], a[CD.ZERO],
                          wi32[a[CD.WSUM]:], wf32[a[E.MULT]:], wf32[a[E.BIAS]:], fbuf, a[E.OUT], a[E.RES], a[E.K],
                          a[E.RELU], abuf, a[E.Q_OFF:], wf32[a[E.Q_SCALE]], wi8[a[CD.B2]:],
                          aux[a[CD.KOFF2]:a[CD.KOFF2] + a[CD.NK2]], a[CD.NK2], wi32[a[CD.WSUM2]:],
                          wf32[a[CD.MULT2]:], wf32[a[CD.BIAS2]:], lo, hi)
            elif op == kc.OP_CONV_DW:
                lo, hi = share(a[DW.N_PIX], part, nparts, 1)
                conv_dw_u8i8(abuf[a[DW.A]:], aux[a[DW.PIX]:a[DW.PIX] + a[DW.N_PIX]], aux[a[DW.TOFF]:a[DW.TOFF] + a[DW.T]],
                             wi8[a[DW.WT]:], a[DW.CP], a[DW.ZERO], wi32[a[DW.WSUM]:], wf32[a[E.MULT]:],
                             wf32[a[E.BIAS]:], fbuf, a[E.OUT], a[E.RES], a[E.K], a[E.RELU], acc32, abuf,
                             a[E.Q_OFF:], wf32[a[E.Q_SCALE]], accf, lo, hi)
            elif op == kc.OP_CONV_BIN:
                lo, hi = share(a[CB.N_PIX], part, nparts, 1)
                conv_bin_popcount(pbuf[a[CB.PLANES]:], qbuf[a[CB.QSUM]:], aux[a[CB.PIX]:a[CB.PIX] + a[CB.N_PIX]],
                                  aux[a[CB.TOFF]:a[CB.TOFF] + a[CB.T]], a[CB.T], a[CB.G], a[CB.BITS], a[CB.NW],
                                  wu64[a[CB.PAT]:], a[CB.KG], a[CB.ZERO], wi32[a[CB.WSUM]:], wf32[a[E.MULT]:],
                                  wf32[a[E.BIAS]:], fbuf, a[E.OUT], a[E.RES], a[E.K], a[E.RELU], acc64, abuf,
                                  a[E.Q_OFF:], wf32[a[E.Q_SCALE]], accf, lo, hi)
            elif op == OP_CONV_STACK:
                lo, hi = share(a[CS.N_PIX], part, nparts, 8)
                conv_stack_u8(abuf[a[CS.A]:], aux[a[CS.PIX]:a[CS.PIX] + a[CS.N_PIX]],
                              aux[a[CS.KOFF]:a[CS.KOFF] + a[CS.NK]], a[CS.NK], wi8[a[CS.B]:], a[CS.MP], a[CS.S],
                              a[CS.D], a[CS.G], a[CS.CGP], a[CS.KG], wi32[a[CS.IDX]:], a[CS.ZERO], wi32[a[CS.WSUM]:],
                              wf32[a[E.MULT]:], wf32[a[E.BIAS]:], fbuf, a[E.OUT], a[E.RES], a[E.K], a[E.RELU],
                              acc32, abuf, a[E.Q_OFF:], wf32[a[E.Q_SCALE]], accf, lo, hi)
            elif op == kc.OP_CONV_F32:
                lo, hi = share(a[CF.HO] * a[CF.WO], part, nparts, 1)
                conv_f32(fbuf, a[CF.IN], a[CF.H], a[CF.W], a[CF.C], wf32[a[CF.WT]:], a[CF.G], a[CF.KERNEL],
                         a[CF.STRIDE], a[CF.PAD], a[CF.HO], a[CF.WO], a[CF.KG], wf32[a[E.MULT]:], wf32[a[E.BIAS]:],
                         a[E.OUT], a[E.RES], a[E.K], a[E.RELU], accf, abuf, a[E.Q_OFF:], wf32[a[E.Q_SCALE]],
                         accf[accf.shape[0] // 2:], lo, hi)
            elif op == ke.OP_QUANT:
                lo, hi = share(a[QR.H], part, nparts, 1)
                quantize_u8(fbuf, a[QR.IN], a[QR.H], a[QR.W], a[QR.C], wf32[a[QR.SCALE]], a[QR.ZERO], a[QR.QMAX],
                            abuf[a[QR.OUT]:], a[QR.WP], a[QR.PAD], a[QR.G], a[QR.CGP], accf, lo, hi)
            elif op == kc.OP_PLANES:
                lo, hi = share(a[PL.N_PIX], part, nparts, 1)
                planes_from_u8(abuf[a[PL.A]:], a[PL.N_PIX], a[PL.G], a[PL.CG], a[PL.CGP], a[PL.BITS], a[PL.NW],
                               pbuf[a[PL.PLANES]:], qbuf[a[PL.QSUM]:], lo, hi)
            elif op == ke.OP_ADD:
                lo, hi = share(a[AddRow.N], part, nparts, 16)
                add_f32(fbuf, a[AddRow.A], a[AddRow.B], a[AddRow.OUT], a[AddRow.N], a[AddRow.RELU], lo, hi)
            elif op == ke.OP_RELU:
                lo, hi = share(a[ReluRow.N], part, nparts, 16)
                relu_f32(fbuf, a[ReluRow.IN], a[ReluRow.OUT], a[ReluRow.N], lo, hi)
            elif op == ke.OP_POOL:
                lo, hi = share(a[PoolRow.HO], part, nparts, 1)
                pool_f32(fbuf, a[PoolRow.IN], a[PoolRow.H], a[PoolRow.W], a[PoolRow.C], a[PoolRow.KERNEL],
                         a[PoolRow.STRIDE], a[PoolRow.PAD], a[PoolRow.HO], a[PoolRow.WO], a[PoolRow.OUT],
                         a[PoolRow.IS_MAX], a[PoolRow.COUNT_PAD], abuf, a[PoolRow.Q_OFF], a[PoolRow.Q_PAD],
                         a[PoolRow.Q_WP], a[PoolRow.Q_ZERO], a[PoolRow.Q_MAX], wf32[a[PoolRow.Q_SCALE]], accf, lo, hi)
            elif op == ke.OP_MAXPOOL_U8:
                lo, hi = share(a[MP.HO], part, nparts, 1)
                maxpool_u8(abuf, a[MP.IN], a[MP.H], a[MP.W], a[MP.C], a[MP.KERNEL], a[MP.STRIDE], a[MP.PAD],
                           a[MP.HO], a[MP.WO], a[MP.OUT], a[MP.WP], a[MP.OPAD], lo, hi)
            elif op == ke.OP_GAP:
                lo, hi = share(a[GapRow.C], part, nparts, 16)
                gap_f32(fbuf, a[GapRow.IN], a[GapRow.N_PIX], a[GapRow.C], a[GapRow.OUT], accf, lo, hi)
            elif op == ke.OP_SHORTCUT:
                lo, hi = share(a[SC.HO], part, nparts, 1)
                shortcut_a_f32(fbuf, a[SC.IN], a[SC.H], a[SC.W], a[SC.C], a[SC.STRIDE], a[SC.HO], a[SC.WO],
                               a[SC.COUT], a[SC.OUT], lo, hi)
            elif op == ke.OP_CONCAT:
                lo, hi = share(a[ConcatRow.N_PIX], part, nparts, 1)
                concat_f32(fbuf, a[ConcatRow.IN], a[ConcatRow.OUT], a[ConcatRow.N_PIX], a[ConcatRow.C_IN],
                           a[ConcatRow.C_OUT], a[ConcatRow.C0], lo, hi)
            elif op == ke.OP_ACT:
                lo, hi = share(a[ActRow.N], part, nparts, 16)
                act_f32(fbuf, a[ActRow.IN], a[ActRow.OUT], a[ActRow.N], a[ActRow.KIND], wf32[a[ActRow.SLOPE]], lo, hi)
            elif op == ke.OP_MUL:
                lo, hi = share(a[MulRow.N_PIX], part, nparts, 1)
                mul_f32(fbuf, a[MulRow.IN], a[MulRow.S], a[MulRow.OUT], a[MulRow.N_PIX], a[MulRow.C], lo, hi)
            elif op == ke.OP_AFFINE:
                lo, hi = share(a[AF.N_PIX], part, nparts, 1)
                affine_f32(fbuf, a[AF.IN], wf32[a[AF.WT]:], wf32[a[AF.BIAS]:], a[AF.OUT], a[AF.RES], a[AF.N_PIX],
                           a[AF.C], a[AF.RELU], lo, hi)
            elif op == ke.OP_SHUFFLE:
                lo, hi = share(a[ShuffleRow.N_PIX], part, nparts, 1)
                shuffle_f32(fbuf, a[ShuffleRow.IN], a[ShuffleRow.OUT], a[ShuffleRow.N_PIX], a[ShuffleRow.C],
                            a[ShuffleRow.G], lo, hi)
            elif op == ke.OP_SLICE:
                lo, hi = share(a[SliceRow.N_PIX], part, nparts, 1)
                slice_f32(fbuf, a[SliceRow.IN], a[SliceRow.OUT], a[SliceRow.N_PIX], a[SliceRow.C_IN],
                          a[SliceRow.C_OUT], a[SliceRow.C0], lo, hi)
            k = barrier(sync, nparts, k)
        if part == 0:
            logits[i] = fbuf[logits_off:logits_off + logits.shape[1]]
            embed[i] = fbuf[embed_off:embed_off + embed.shape[1]]
        k = barrier(sync, nparts, k)


class FastEngine:
    """Compiled plan + workspaces for one graph, run on `threads` threads.

    threads = 1: each calling Python thread gets its own workspace (concurrent
    calls run in parallel). threads > 1: a team of `threads` (the caller and
    threads - 1 persistent workers) splits every layer of each image; results
    are bit-identical to 1 thread. A batch of at least `threads` images is
    split by image instead (no barriers). Team runs of one engine are
    serialized by a lock, so concurrent calls stay safe.
    """

    def __init__(self, graph: Graph, threads: int = 1):
        if not isinstance(threads, int) or threads < 1:
            raise ValueError(f"threads must be an integer >= 1, got {threads!r}")
        self.graph, self.threads = graph, threads
        self.plan = P.build(graph)
        self._local = threading.local()
        self.n_classes = graph.values[graph.output].shape[0]
        self.n_embed = graph.values[graph.embed].shape[0]
        self._pool = None                    # threads - 1 workers per mode, created on first use
        self._team = None
        self._team_lock = threading.Lock()
        self._team_ws = None

    def _scratch(self):
        n = max(self.plan.scratch, 8 * 32)
        return np.zeros(n, np.int32), np.zeros(n, np.int64), np.zeros(2 * n, np.float32)

    def _arenas(self):
        s, p = self.plan.sizes, self.plan
        abuf = np.zeros(max(s["u8"], 1), np.uint8)
        for off, border in p.borders:
            abuf[off:off + border.size] = border
        return (np.zeros(max(s["f32"], 1), np.float32), abuf, np.zeros(max(s["u64"], 1), np.uint64),
                np.zeros(max(s["i32"], 1), np.int32))

    def workspace(self):
        """This Python thread's arenas and scratch (created on first use, borders pre-filled)."""
        ws = getattr(self._local, "ws", None)
        if ws is None:
            ws = self._local.ws = self._arenas() + self._scratch()
        return ws

    def _call(self, prog, x, logits, embed, arenas, scratch, nparts, sync, part):
        w, p = self.plan.weights, self.plan
        run_program(prog, x, p.input_off, p.input_size, logits, p.logits_off, embed, p.embed_off, *arenas,
                    w["wf32"], w["wi8"], w["wu64"], w["wi32"], w["aux"], *scratch[part], part, nparts, sync)

    def run(self, x: np.ndarray, prog: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """x (N, H, W, 3) float32 C-contiguous -> (logits (N, K), embed (N, D))."""
        prog = self.plan.prog if prog is None else prog
        n, t = x.shape[0], self.threads
        logits = np.empty((n, self.n_classes), np.float32)
        embed = np.empty((n, self.n_embed), np.float32)
        flat = x.reshape(n, -1)
        if t == 1 or n >= t:                  # one thread, or whole images per thread
            def one(rows):
                ws = self.workspace()
                self._call(prog, flat[rows], logits[rows], embed[rows], ws[:4], [ws[4:]], 1, np.zeros(1, np.int64), 0)
            if t == 1:
                one(slice(0, n))
                return logits, embed
            if self._pool is None:
                self._pool = ThreadPoolExecutor(t - 1, thread_name_prefix="seprt-batch")
            parts = [slice(n * j // t, n * (j + 1) // t) for j in range(t)]
            futures = [self._pool.submit(one, r) for r in parts[1:]]
            one(parts[0])
            for f in futures:
                f.result()
            return logits, embed
        with self._team_lock:                 # the team splits every layer of each image
            if self._team is None:
                self._team_ws = (self._arenas(), [self._scratch() for _ in range(t)])
                self._team = _Team(t - 1)
                weakref.finalize(self, self._team.close)
            arenas, scratch = self._team_ws
            self._team.run(self._call, (prog, flat, logits, embed, arenas, scratch, t, np.zeros(8, np.int64)))
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
