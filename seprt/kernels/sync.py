"""Threads on one image: work shares and a spinning barrier for the engine.

The engine runs one numba call per thread (`threads` of a Model): every
thread walks the same instruction table, each computes its own share of
every instruction's outputs (`share`), and all meet at `barrier` before the
next instruction reads them. Each output element is computed by exactly one
thread with the same arithmetic as with one thread, so results are
bit-identical for any thread count. This is pthreadpool's model (XNNPACK):
a spin barrier costs well under a microsecond where waking threads per
layer costs tens. After SPINS spins a waiting thread yields its core, so an
oversubscribed machine (more busy threads than cores) degrades instead of
stalling a whole time slice per barrier.

    atomic_add(a, i, v) -> old     a[i] += v atomically (int64, seq_cst)
    atomic_load(a, i)              a[i] with acquire ordering
    now_ns()                       CLOCK_MONOTONIC in nanoseconds (the profile's stamps)
"""
from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from .jit import jit

SPINS = 2000                               # spins before yielding (~1-2 us)


def _ptr(context, builder, aryty, ary, idx):
    a = context.make_array(aryty)(context, builder, ary)
    return builder.gep(a.data, [idx])


@intrinsic
def atomic_add(typingctx, a, i, v):
    """a[i] += v atomically; returns the old value. a: int64[:]."""
    sig = types.int64(a, types.int64, types.int64)

    def codegen(context, builder, signature, args):
        return builder.atomic_rmw("add", _ptr(context, builder, signature.args[0], args[0], args[1]), args[2],
                                  "seq_cst")
    return sig, codegen


@intrinsic
def atomic_load(typingctx, a, i):
    """a[i] with acquire ordering (never hoisted out of a spin loop). a: int64[:]."""
    sig = types.int64(a, types.int64)

    def codegen(context, builder, signature, args):
        return builder.load_atomic(_ptr(context, builder, signature.args[0], args[0], args[1]), "acquire", 8)
    return sig, codegen


@intrinsic
def sched_yield(typingctx):
    """POSIX sched_yield(): give the core away while a teammate is descheduled
    (a call by symbol name, so the compiled code stays cacheable)."""
    sig = types.int32()

    def codegen(context, builder, signature, args):
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.IntType(32), []), "sched_yield")
        return builder.call(fn, [])
    return sig, codegen


@intrinsic
def now_ns(typingctx):
    """clock_gettime(CLOCK_MONOTONIC) in nanoseconds (vDSO: ~20 ns; called by symbol
    name like sched_yield, so cacheable; portable where a cycle counter is not:
    LLVM's readcyclecounter traps in user mode on aarch64)."""
    sig = types.int64()

    def codegen(context, builder, signature, args):
        i64 = ir.IntType(64)
        ts_t = ir.LiteralStructType([i64, i64])
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.IntType(32), [ir.IntType(32),
                                                                                             ts_t.as_pointer()]),
                                            "clock_gettime")
        ts = cgutils.alloca_once(builder, ts_t)
        builder.call(fn, [ir.Constant(ir.IntType(32), 1), ts])
        sec = builder.load(builder.gep(ts, [ir.Constant(ir.IntType(32), 0), ir.Constant(ir.IntType(32), 0)]))
        nsec = builder.load(builder.gep(ts, [ir.Constant(ir.IntType(32), 0), ir.Constant(ir.IntType(32), 1)]))
        return builder.add(builder.mul(sec, ir.Constant(i64, 1_000_000_000)), nsec)
    return sig, codegen


@jit(inline="always")
def share(n, part, nparts, align):
    """[lo, hi) of part `part` of range(n) cut into `nparts` near-equal shares,
    cut points at multiples of `align` (so dot tiles stay whole)."""
    blocks = (n + align - 1) // align
    lo = blocks * part // nparts * align
    hi = blocks * (part + 1) // nparts * align
    return min(lo, n), min(hi, n)


@jit(inline="always")
def barrier(sync, nparts, k):
    """The k-th barrier (k = 1, 2, ...) of a team of nparts threads; sync[0]
    counts arrivals and starts at 0. Returns k + 1."""
    if nparts > 1:
        atomic_add(sync, 0, 1)
        target = nparts * k
        spins = 0
        while atomic_load(sync, 0) < target:
            spins += 1
            if spins > SPINS:
                sched_yield()
    return k + 1



@jit
def wait_generation(ctl, last, wait_ns):
    """Spin up to wait_ns nanoseconds for ctl[0] != last; returns ctl[0] (== last on
    timeout). Yields the core every 256 polls: a thread that has work (another
    engine's, another runtime's) runs instead, while an idle core comes straight back."""
    deadline = now_ns() + wait_ns
    while True:
        for _ in range(256):
            g = atomic_load(ctl, 0)
            if g != last:
                return g
        sched_yield()
        if now_ns() > deadline:
            return atomic_load(ctl, 0)
