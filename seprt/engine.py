"""The fast engine: runs a Plan's instruction table in one numba call per batch.

    engine = FastEngine(graph, threads=1)
    logits, embed = engine.run(x)        # x (N, H, W, 3) float32
    rows = engine.profile(x)             # per instruction: wall time, each thread's busy time

Threads: see FastEngine. Read-only weights are shared; mutable memory is
per calling thread (threads = 1) or per team under a lock (threads > 1).
The numba functions release the GIL (nogil); a team's workers never run
Python between jobs (team_worker), so a job starts in a microsecond.
"""
from __future__ import annotations

import functools
import threading
import weakref

import numpy as np
from .kernels.jit import jit
from .kernels import aot

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
from .kernels.sync import atomic_add, atomic_load, barrier, now_ns, share, wait_generation

WORKER_SPIN_NS = 2_000_000    # a worker spins 2 ms for the next job before it sleeps
NO_TRACE = np.zeros(0, np.int64)


@jit
def run_program(prog, x, in_off, in_size, logits, logits_off, embed, embed_off,
                fbuf, abuf, pbuf, qbuf, wf32, wi8, wu64, wi32, aux, acc32, acc64, accf, part, nparts, sync, trace):
    """Run instructions prog (n, WIDTH) on each image x[i] (in_size,) f32;
    write logits[i] and embed[i]. Arenas: fbuf f32 activations, abuf u8
    quantized inputs, pbuf u64 bit planes, qbuf i32 plane sums; w*: weights;
    aux i64 offsets; acc*: this thread's scratch. Row columns are named by the
    kernels' IntEnums. Thread `part` of `nparts` computes its share of every
    instruction, then waits at the barrier on sync (kernels/sync.py).
    trace (n, nparts, 2) i64 or empty: image 0's start and end (now_ns) of this
    thread's share of each instruction (FastEngine.profile)."""
    k = 1
    for i in range(x.shape[0]):
        if part == 0:
            fbuf[in_off:in_off + in_size] = x[i]
        k = barrier(sync, nparts, k)
        tr = i == 0 and trace.shape[0] > 0
        for r in range(prog.shape[0]):
            if tr:
                trace[(r * nparts + part) * 2] = now_ns()
            a = prog[r]
            op = a[0]
            if op == kc.OP_CONV_DOT:
                lo, hi = share(a[CD.N_PIX], part, nparts, 8)
                conv_u8i8(abuf[a[CD.A]:], aux[a[CD.PIX]:a[CD.PIX] + a[CD.N_PIX]], aux[a[CD.KOFF]:a[CD.KOFF] + a[CD.NK]],
                          a[CD.NK], wi8[a[CD.B]:], a[CD.G], a[CD.CGP], a[CD.KG], a[CD.M], a[CD.ZERO],
                          wi32[a[CD.WSUM]:], wf32[a[E.MULT]:], wf32[a[E.BIAS]:], fbuf, a[E.OUT], a[E.RES], a[E.K],
                          a[E.RELU], abuf, a[E.Q_OFF:], wf32[a[E.Q_SCALE]], wi8[a[CD.B2]:],
                          aux[a[CD.KOFF2]:a[CD.KOFF2] + a[CD.NK2]], a[CD.NK2], wi32[a[CD.WSUM2]:],
                          wf32[a[CD.MULT2]:], wf32[a[CD.BIAS2]:], a[CD.PM1], lo, hi)
            elif op == kc.OP_CONV_DW:
                lo, hi = share(a[DW.N_PIX], part, nparts, 1)
                conv_dw_u8i8(abuf[a[DW.A]:], aux[a[DW.PIX]:a[DW.PIX] + a[DW.N_PIX]], aux[a[DW.TOFF]:a[DW.TOFF] + a[DW.T]],
                             wi8[a[DW.WT]:], a[DW.CP], a[DW.ZERO], wi32[a[DW.WSUM]:], wf32[a[E.MULT]:],
                             wf32[a[E.BIAS]:], fbuf, a[E.OUT], a[E.RES], a[E.K], a[E.RELU], abuf,
                             a[E.Q_OFF:], wf32[a[E.Q_SCALE]], lo, hi)
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
            if tr:
                trace[(r * nparts + part) * 2 + 1] = now_ns()
            k = barrier(sync, nparts, k)
        if part == 0:
            logits[i] = fbuf[logits_off:logits_off + logits.shape[1]]
            embed[i] = fbuf[embed_off:embed_off + embed.shape[1]]
        k = barrier(sync, nparts, k)


# A team's control block (int64): the job generation, its arguments, and the
# barrier counters of even and odd jobs (each on its own cache line).
GEN, CLOSED, N_IMG, TRACING, SYNC_EVEN, SYNC_ODD = 0, 1, 2, 3, 8, 16


@jit
def post_job(ctl, n, tracing):
    """Announce a job of n images to the team (the caller runs part 0 next).
    The job's barrier counter was last used two jobs ago, which every member
    has left (it left the last job's final barrier after it): reset it. The
    seq_cst add publishes everything written before it (the input copy)."""
    ctl[N_IMG] = n
    ctl[TRACING] = tracing
    gen = ctl[GEN] + 1
    ctl[SYNC_ODD if gen % 2 else SYNC_EVEN] = 0
    atomic_add(ctl, GEN, 1)


@jit
def close_team(ctl):
    """Mark the team closed and bump the generation, so spinning workers leave."""
    ctl[CLOSED] = 1
    atomic_add(ctl, GEN, 1)


@jit
def team_worker(ctl, last, spin_ns, prog, x, in_off, in_size, logits, logits_off, embed, embed_off,
                fbuf, abuf, pbuf, qbuf, wf32, wi8, wu64, wi32, aux, acc32, acc64, accf, part, nparts, trace):
    """A team member's loop, without the GIL: wait (spinning up to spin_ns) for
    a new job generation, run part `part` of it, repeat. Returns the last job
    it ran when it timed out (the caller then sleeps) or the team is closed.
    x, logits, embed: the team's buffers of the largest batch (only part 0
    reads the input and writes the outputs; the others need the image count)."""
    while True:
        gen = wait_generation(ctl, last, spin_ns)
        if gen == last or atomic_load(ctl, CLOSED):
            return gen
        last = gen
        n = ctl[N_IMG]
        sync = ctl[SYNC_ODD:SYNC_ODD + 8] if gen % 2 else ctl[SYNC_EVEN:SYNC_EVEN + 8]
        run_program(prog, x[:n], in_off, in_size, logits[:n], logits_off, embed[:n], embed_off, fbuf, abuf, pbuf,
                    qbuf, wf32, wi8, wu64, wi32, aux, acc32, acc64, accf, part, nparts, sync,
                    trace if ctl[TRACING] else trace[:0])


class _Team:
    """threads - 1 persistent workers sharing one engine's team workspace. A
    worker runs jobs inside team_worker (no Python, no GIL between jobs: as
    pthreadpool's, a spinning worker starts a job within a microsecond); after
    WORKER_SPIN_NS without a job it returns and sleeps on a condition variable."""

    def __init__(self, engine: "FastEngine", threads: int):
        self.threads = threads
        self.fns = engine.fns
        self.ctl = np.zeros(24, np.int64)
        self.cv = threading.Condition()
        p = engine.plan
        self.arenas = engine._arenas()
        self.scratch = [engine._scratch() for _ in range(threads)]
        self.trace = np.zeros(len(p.prog) * threads * 2, np.int64)
        cap = threads - 1                     # larger batches are split by image, not by team
        self.x = np.zeros((cap, p.input_size), np.float32)
        self.logits = np.zeros((cap, engine.n_classes), np.float32)
        self.embed = np.zeros((cap, engine.n_embed), np.float32)
        w = p.weights
        self.static = (p.prog, self.x, p.input_off, p.input_size, self.logits, p.logits_off, self.embed,
                       p.embed_off, *self.arenas, w["wf32"], w["wi8"], w["wu64"], w["wi32"], w["aux"])
        self.workers = [threading.Thread(target=self._work, args=(part,), name=f"seprt-{part}", daemon=True)
                        for part in range(1, threads)]
        for w in self.workers:
            w.start()

    def _work(self, part: int) -> None:
        last = 0
        while True:
            last = int(self.fns.team_worker(self.ctl, last, WORKER_SPIN_NS, *self.static, *self.scratch[part], part,
                                   self.threads, self.trace))
            with self.cv:
                while int(self.ctl[GEN]) == last and not self.ctl[CLOSED]:
                    self.cv.wait()
                if self.ctl[CLOSED]:
                    return

    def run(self, engine: "FastEngine", x, logits, embed, tracing: bool) -> None:
        """One job: x (n < threads images) -> logits, embed; the caller is part 0."""
        with self.cv:
            self.fns.post_job(self.ctl, len(x), int(tracing))
            self.cv.notify_all()
        gen = int(self.ctl[GEN])
        sync = self.ctl[SYNC_ODD:SYNC_ODD + 8] if gen % 2 else self.ctl[SYNC_EVEN:SYNC_EVEN + 8]
        engine._call(x, logits, embed, self.arenas, self.scratch[0], self.threads, sync, 0,
                     self.trace if tracing else NO_TRACE)

    def close(self) -> None:
        with self.cv:
            self.fns.close_team(self.ctl)
            self.cv.notify_all()


class FastEngine:
    """Compiled plan + workspaces for one graph, run on `threads` threads.

    threads = 1: each calling Python thread gets its own workspace (concurrent
    calls run in parallel). threads > 1: a team of `threads` (the caller and
    threads - 1 persistent workers) splits every layer of each image; results
    are bit-identical to 1 thread. A batch of at least `threads` images is
    split by image instead (no barriers). Team runs of one engine are
    serialized by a lock, so concurrent calls stay safe.

    The entry points (run_program, team_worker, post_job, close_team) come
    from kernels.aot: the module compiled ahead of time, or these numba
    dispatchers (`fns.path` says which; the same bits either way).
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

    @functools.cached_property
    def fns(self):
        """The entry points: the compiled module ("aot") or numba's dispatchers
        ("jit"), resolved on first use (where a cold cache builds or compiles)."""
        return aot.engine_functions()

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

    def _call(self, x, logits, embed, arenas, scratch, nparts, sync, part, trace=NO_TRACE):
        w, p = self.plan.weights, self.plan
        self.fns.run_program(p.prog, x, p.input_off, p.input_size, logits, p.logits_off, embed, p.embed_off, *arenas,
                    w["wf32"], w["wi8"], w["wu64"], w["wi32"], w["aux"], *scratch, part, nparts, sync, trace)

    def run(self, x: np.ndarray, trace: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """x (N, H, W, 3) float32 C-contiguous -> (logits (N, K), embed (N, D)).
        trace: filled with image 0's per-instruction stamps (profile)."""
        if (not isinstance(x, np.ndarray) or x.dtype != np.float32 or not x.flags.c_contiguous or x.ndim != 4
                or x.shape[0] < 1 or x[0].size != self.plan.input_size):    # the compiled module trusts its types
            raise ValueError(f"FastEngine.run takes (N >= 1, H, W, 3) float32 C-contiguous with H*W*3 = "
                             f"{self.plan.input_size}, got {getattr(x, 'dtype', type(x))} {getattr(x, 'shape', '')}")
        n, t = x.shape[0], self.threads
        logits = np.empty((n, self.n_classes), np.float32)
        embed = np.empty((n, self.n_embed), np.float32)
        flat = x.reshape(n, -1)
        if t == 1 or n >= t:                  # one thread, or whole images per thread
            def one(rows, tr=NO_TRACE):
                ws = self.workspace()
                self._call(flat[rows], logits[rows], embed[rows], ws[:4], ws[4:], 1, np.zeros(1, np.int64), 0, tr)
            if t == 1:
                one(slice(0, n), NO_TRACE if trace is None else trace)
                return logits, embed
            if self._pool is None:
                from concurrent.futures import ThreadPoolExecutor      # on first use: 5-14 ms of import
                self._pool = ThreadPoolExecutor(t - 1, thread_name_prefix="seprt-batch")
            parts = [slice(n * j // t, n * (j + 1) // t) for j in range(t)]
            futures = [self._pool.submit(one, r) for r in parts[1:]]
            one(parts[0], NO_TRACE if trace is None else trace)
            for f in futures:
                f.result()
            return logits, embed
        with self._team_lock:                 # the team splits every layer of each image
            if self._team is None:
                self._team = _Team(self, t)
                weakref.finalize(self, self._team.close)
            self._team.run(self, flat, logits, embed, trace is not None)
            if trace is not None:
                trace[:] = self._team.trace
        return logits, embed

    def profile(self, x: np.ndarray, runs: int = 5) -> list[dict]:
        """Per instruction, from stamps taken inside whole runs on x[:1] (no
        per-call overhead): "seconds" = median wall time (from its start to the
        next one's; threads wait at the barrier in between), "busy" = median of
        the busiest thread's time on its share, "busy_min" = the idlest's."""
        x = x[:1]
        nr, t = len(self.plan.prog), 1 if len(x) >= self.threads else self.threads
        trace = np.zeros(nr * t * 2, np.int64)
        self.run(x)
        walls, busy, idle = [], [], []
        for _ in range(runs):
            self.run(x, trace)
            st = trace.reshape(nr, t, 2)
            start, end = st[:, :, 0].min(axis=1), st[:, :, 1].max(axis=1)
            walls.append(np.append(start[1:], end[-1]) - start)
            work = st[:, :, 1] - st[:, :, 0]
            busy.append(work.max(axis=1))
            idle.append(work.min(axis=1))
        med = lambda a: np.median(np.array(a), axis=0) * 1e-9
        wall, bmax, bmin = med(walls), med(busy), med(idle)
        return [{"name": self.plan.names[r], "path": self.plan.paths[r], "macs": self.plan.macs[r],
                 "seconds": float(wall[r]), "busy": float(bmax[r]), "busy_min": float(bmin[r])}
                for r in range(nr)]
