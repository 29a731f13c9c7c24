"""LLVM intrinsics exposed to numba, and the CPU check that guards them.

    popcount64(x)            llvm.ctpop.i64 (VPOPCNTQ when vectorized on AVX-512
                             VPOPCNTDQ, POPCNT or a bit trick elsewhere)
    roundeven32(x)           llvm.roundeven.f32: round half to even, as np.rint,
                             but inlined and vectorizable
    make_dot_tile(P, M)      an int8 GEMM tile: P pixels x (16*M) output channels,
                             u8 activations x i8 weights, int32 accumulation:
                             llvm.x86.avx512.vpdpbusd.512 on CPUs with AVX-512
                             VNNI, the same arithmetic in generic LLVM vector IR
                             (widen, multiply, add groups of 4) everywhere else
    has_vnni()               which of the two the tile compiles to
"""
from __future__ import annotations

import os

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

I32, I64 = ir.IntType(32), ir.IntType(64)
V16I32 = ir.VectorType(I32, 16)


@intrinsic
def popcount64(typingctx, x):
    """Number of set bits of a uint64."""
    sig = types.uint64(types.uint64)

    def codegen(context, builder, signature, args):
        return builder.ctpop(args[0])
    return sig, codegen


@intrinsic
def roundeven32(typingctx, x):
    """float32 rounded to the nearest integer, ties to even."""
    sig = types.float32(types.float32)

    def codegen(context, builder, signature, args):
        f = builder.module.declare_intrinsic("llvm.roundeven", [ir.FloatType()])
        return builder.call(f, [args[0]])
    return sig, codegen


def has_vnni() -> bool:
    """AVX-512 VNNI available to numba's target, and not disabled.

    Honours NUMBA_CPU_NAME / NUMBA_CPU_FEATURES, which numba also keys its
    on-disk cache by (NUMBA_CPU_NAME=generic compiles for a CPU without it).
    """
    name = os.environ.get("NUMBA_CPU_NAME", "host")
    feats = os.environ.get("NUMBA_CPU_FEATURES")
    if feats is not None:
        return "+avx512vnni" in feats.split(",") and "+avx512f" in feats.split(",")
    if name != "host":
        return False
    import llvmlite.binding as ll
    f = ll.get_host_cpu_features()
    return bool(f.get("avx512vnni") and f.get("avx512f") and f.get("avx512bw"))


def _i64(v: int) -> ir.Constant:
    return ir.Constant(I64, v)


def _dot_generic(builder, acc, a, b):
    """acc[l] += sum_{j<4} u8(a.byte[4l+j]) * i8(b.byte[4l+j]) in target-independent IR."""
    v64i8, v64i32 = ir.VectorType(ir.IntType(8), 64), ir.VectorType(I32, 64)
    prod = builder.mul(builder.zext(builder.bitcast(a, v64i8), v64i32),
                       builder.sext(builder.bitcast(b, v64i8), v64i32))
    undef = ir.Constant(v64i32, ir.Undefined)
    for j in range(4):
        part = builder.shuffle_vector(prod, undef, ir.Constant(V16I32, [4 * l + j for l in range(16)]))
        acc = builder.add(acc, part)
    return acc


def make_dot_tile(P: int, M: int):
    """An intrinsic tile(acc, A, a_add, pix, pix_start, B, b_off, koff, nk) -> None.

    acc  int32[P*M*16] accumulators, written at exit:
         acc[(p*M + j)*16 + l] = sum over kk < nk, b < 4 of
             A[a_add + pix[pix_start + p] + koff[kk] + b] * B[b_off + ((kk*M + j)*16 + l)*4 + b]
    A    uint8[]  quantized activations (padded NHWC buffer)
    pix  int64[]  per output pixel: offset of its window's first tap in A
    B    int8[]   weights packed [kk][M][16][4]
    koff int64[]  per k4 step: offset of those 4 channels from the window start
    Each k4 step is one vpdpbusd (or its generic equivalent) per (pixel,
    16-channel block), accumulators in registers from zero. They are stored
    lane by lane: the scalar epilogue that reads them back then hits store
    forwarding (a 64-byte vector store read as 4-byte loads stalls on x86).
    """
    vnni = has_vnni()
    @intrinsic
    def tile(typingctx, acc, A, a_add, pix, pix_start, B, b_off, koff, nk):
        sig = types.void(acc, A, a_add, pix, pix_start, B, b_off, koff, nk)

        def codegen(context, builder, signature, args):
            a_add_v, ps_v, b_off_v, nk_v = args[2], args[4], args[6], args[8]
            data = lambda i: cgutils.create_struct_proxy(signature.args[i])(context, builder, value=args[i]).data
            ap, pixp, bp, koffp = data(1), data(3), data(5), data(7)
            if vnni:
                fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(V16I32, [V16I32] * 3),
                                                    "llvm.x86.avx512.vpdpbusd.512")
                dot = lambda acc, a, b: builder.call(fn, [acc, a, b])
            else:
                dot = lambda acc, a, b: _dot_generic(builder, acc, a, b)
            acc0 = [ir.Constant(V16I32, None)] * (P * M)              # zeros
            rows = [builder.add(a_add_v, builder.load(builder.gep(pixp, [builder.add(ps_v, _i64(p))])))
                    for p in range(P)]
            pre = builder.block
            loop = builder.append_basic_block("vnni.loop")
            done = builder.append_basic_block("vnni.done")
            builder.cbranch(builder.icmp_signed(">", nk_v, _i64(0)), loop, done)

            builder.position_at_end(loop)
            kk = builder.phi(I64)
            kk.add_incoming(_i64(0), pre)
            phis = []
            for k in range(P * M):
                ph = builder.phi(V16I32)
                ph.add_incoming(acc0[k], pre)
                phis.append(ph)
            ko = builder.load(builder.gep(koffp, [kk]))
            bbase = builder.add(b_off_v, builder.mul(kk, _i64(64 * M)))
            bvec = [builder.load(builder.bitcast(builder.gep(bp, [builder.add(bbase, _i64(64 * j))]),
                                                 V16I32.as_pointer()), align=1) for j in range(M)]
            new = []
            for p in range(P):
                a32 = builder.load(builder.bitcast(builder.gep(ap, [builder.add(rows[p], ko)]), I32.as_pointer()),
                                   align=1)
                splat = builder.shuffle_vector(builder.insert_element(ir.Constant(V16I32, ir.Undefined), a32,
                                                                      ir.Constant(I32, 0)),
                                               ir.Constant(V16I32, ir.Undefined), ir.Constant(V16I32, [0] * 16))
                for j in range(M):
                    new.append(dot(phis[p * M + j], splat, bvec[j]))
            nxt = builder.add(kk, _i64(1))
            end = builder.block
            kk.add_incoming(nxt, end)
            for ph, v in zip(phis, new):
                ph.add_incoming(v, end)
            builder.cbranch(builder.icmp_signed("<", nxt, nk_v), loop, done)

            builder.position_at_end(done)
            outs = []
            for k in range(P * M):                     # phis first, then stores
                out = builder.phi(V16I32)
                out.add_incoming(acc0[k], pre)
                out.add_incoming(new[k], end)
                outs.append(out)
            accs = data(0)
            for k, out in enumerate(outs):
                for l in range(16):
                    builder.store(builder.extract_element(out, ir.Constant(I32, l)),
                                  builder.gep(accs, [_i64(16 * k + l)]), align=4)
            return context.get_dummy_value()
        return sig, codegen
    return tile
