"""LLVM intrinsics exposed to numba, and the CPU checks that guard them.

    popcount64(x)            llvm.ctpop.i64 (VPOPCNTQ when vectorized on AVX-512
                             VPOPCNTDQ, POPCNT / NEON CNT or a bit trick elsewhere)
    roundeven32(x)           llvm.roundeven.f32: round half to even, as np.rint,
                             but inlined and vectorizable
    make_dot_tile(P, M)      an int8 GEMM tile: P pixels x (16*M) output channels,
                             u8 activations x i8 weights, int32 accumulation, in
                             one of three paths, all bit-identical:
                               "vnni"    llvm.x86.avx512.vpdpbusd.512 (AVX-512 VNNI)
                               "udot"    llvm.aarch64.neon.udot.v4i32.v16i8 (Armv8.2
                                         dotprod: Cortex-A76 / Raspberry Pi 5, ...)
                               "avx2"    llvm.x86.avx2.pmadd.wd (vpmaddwd) on both operands
                                         widened to i16, pairs summed after the k loop
                                         (x86-64 without AVX-512 VNNI: Zen 2/3, Haswell..)
                               "generic" target-independent LLVM vector IR (widen,
                                         multiply, add groups of 4): any CPU
    make_dot_tile(P, M, epilogue=True)
                             the same tile finishing the conv in registers: scale,
                             bias, residual, relu/relu6, float and requantized u8
                             stores (masked for partial channel blocks), lane for
                             lane the float32 steps of the scalar epilogue
    make_dw_tile(P)          a depthwise tile: P pixels x 16 channels, u8 x i8 widened
                             to i32 lanes over the k*k taps, the same epilogue
    dot_isa()                which of the three the tiles compile to here
    has_vnni()               AVX-512 VNNI usable by numba's target
    hwcaps()                 Linux/aarch64: the kernel's AT_HWCAP/AT_HWCAP2 feature names

The choice follows the CPU's real features, not only what LLVM guesses: on
Linux/aarch64 `udot` needs the ASIMDDP bit of getauxval(AT_HWCAP). On
aarch64 this module also removes from numba's target every feature the
kernel says the CPU lacks (so NUMBA_CPU_NAME=cortex-a76 on a Cortex-A72
compiles no udot and no LSE atomics instead of dying with SIGILL).
SEPRT_DOT_ISA=vnni|avx2|udot|generic asks for a path; one the CPU cannot run
falls back to "generic" with a warning.
"""
from __future__ import annotations

import ctypes
import functools
import os
import platform
import sys
import warnings

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

I8, I32, I64 = ir.IntType(8), ir.IntType(32), ir.IntType(64)
V16I32 = ir.VectorType(I32, 16)
V4I32, V16I8, V64I8 = ir.VectorType(I32, 4), ir.VectorType(I8, 16), ir.VectorType(I8, 64)
V8I32, V16I16, V32I8 = ir.VectorType(I32, 8), ir.VectorType(ir.IntType(16), 16), ir.VectorType(I8, 32)
ISAS = ("vnni", "avx2", "udot", "generic")


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


def has_avx2() -> bool:
    """AVX2 available to numba's target (as has_vnni: NUMBA_CPU_NAME=generic has none)."""
    feats = os.environ.get("NUMBA_CPU_FEATURES")
    if feats is not None:
        return "+avx2" in feats.split(",")
    if os.environ.get("NUMBA_CPU_NAME", "host") != "host":
        return False
    import llvmlite.binding as ll
    return bool(ll.get_host_cpu_features().get("avx2"))


# ------------------------------------------------------------- aarch64 / Linux

# AT_HWCAP / AT_HWCAP2 bits (arch/arm64/include/uapi/asm/hwcap.h) of the
# features LLVM may use, by LLVM's name for them
_HWCAP_BITS = {"crc": (1, 7), "lse": (1, 8), "fullfp16": (1, 9), "rdm": (1, 12), "jsconv": (1, 13),
               "complxnum": (1, 14), "rcpc": (1, 15), "dotprod": (1, 20), "sve": (1, 22),
               "fp16fml": (1, 23), "sve2": (2, 1), "i8mm": (2, 13), "bf16": (2, 14)}
_AT_HWCAP, _AT_HWCAP2 = 16, 26


def is_aarch64_linux() -> bool:
    return sys.platform.startswith("linux") and platform.machine() in ("aarch64", "arm64")


def hwcaps() -> set[str] | None:
    """LLVM names of the features the Linux kernel reports for this CPU
    (getauxval(AT_HWCAP), AT_HWCAP2); None when not on Linux/aarch64.

    This is what the CPU can run: under qemu-user it follows QEMU_CPU, on a
    Raspberry Pi 4 (Cortex-A72) it lacks "dotprod", on a Pi 5 (Cortex-A76) it has it.
    """
    if not is_aarch64_linux():
        return None
    getauxval = ctypes.CDLL(None).getauxval
    getauxval.restype, getauxval.argtypes = ctypes.c_ulong, [ctypes.c_ulong]
    words = {1: getauxval(_AT_HWCAP), 2: getauxval(_AT_HWCAP2)}
    return {name for name, (w, bit) in _HWCAP_BITS.items() if words[w] >> bit & 1}


def _numba_features() -> str:
    """The feature string numba compiles with (its own rule: NUMBA_CPU_FEATURES or the host's)."""
    from numba.core import config
    from numba.core.codegen import get_host_cpu_features
    return config.CPU_FEATURES if config.CPU_FEATURES is not None else get_host_cpu_features()


def _feature_on(features: str, name: str) -> bool:
    flags = [f.strip() for f in features.split(",")]
    return "+" + name in flags and "-" + name not in flags


def _guard_numba_target() -> list[str]:
    """On Linux/aarch64, make numba's target features say what the kernel
    reports: "-f" for each feature the CPU lacks (replacing any "+f"), so a
    CPU name that implies it (NUMBA_CPU_NAME=cortex-a76 on a Cortex-A72)
    cannot make LLVM emit it (SIGILL), and "+f" for each it has that the
    string does not mention (LLVM's /proc/cpuinfo parser misses most, e.g.
    dotprod). Sets NUMBA_CPU_FEATURES; returns the features it switched off.
    Must run before numba compiles anything (seprt imports this module first)."""
    caps = hwcaps()
    if caps is None:
        return []
    from numba.core import config
    feats = [f.strip() for f in _numba_features().split(",") if f.strip()]
    off = [f for f in _HWCAP_BITS if f not in caps]
    feats = [f for f in feats if f[1:] not in off]
    named = {f[1:] for f in feats}
    feats += ["-" + f for f in off] + ["+" + f for f in _HWCAP_BITS if f in caps and f not in named]
    os.environ["NUMBA_CPU_FEATURES"] = ",".join(feats)   # numba re-reads its config from the environment
    config.reload_config()
    return off


GUARDED = _guard_numba_target()


def runnable_isas() -> tuple[str, ...]:
    """The dot-tile paths this CPU and numba's target can run, best first
    (an AVX-512 VNNI CPU also runs "avx2"; every CPU runs "generic")."""
    out = []
    if has_vnni():
        out.append("vnni")
    if has_avx2():
        out.append("avx2")
    caps = hwcaps()
    if (caps is not None and "dotprod" in caps and os.environ.get("NUMBA_CPU_NAME", "host") != "generic"
            and _feature_on(_numba_features(), "dotprod")):
        out.append("udot")
    return tuple(out) + ("generic",)


def dot_isa() -> str:
    """The path the dot tiles compile to here: "vnni", "avx2", "udot" or "generic".

    The best the CPU and numba's target both support (x86: AVX-512 VNNI, else
    AVX2; Linux/aarch64: ASIMDDP in AT_HWCAP and +dotprod in numba's target), or
    SEPRT_DOT_ISA when the CPU can run it; NUMBA_CPU_NAME=generic gives "generic".

    >>> dot_isa() in ISAS
    True
    """
    env = os.environ
    return _choose(env.get("SEPRT_DOT_ISA", "").strip().lower(), env.get("NUMBA_CPU_NAME"),
                   env.get("NUMBA_CPU_FEATURES"))


@functools.lru_cache(maxsize=None)
def _choose(want: str, cpu_name, cpu_features) -> str:
    """dot_isa() for one setting of the environment (so it warns once)."""
    runnable = runnable_isas()
    best = runnable[0]
    if want in ("", "auto"):
        return best
    if want in runnable:
        return want
    if want not in ISAS:
        raise ValueError(f"SEPRT_DOT_ISA={want!r}: expected one of {', '.join(ISAS)} or auto")
    warnings.warn(f"SEPRT_DOT_ISA={want}: this CPU (or numba's target) lacks it, the dot tiles use "
                  f"'generic' (the CPU's best: '{best}')", RuntimeWarning, stacklevel=3)
    return "generic"


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


def _splat16(builder, x32, n):
    """An i32 broadcast to n lanes."""
    v = ir.VectorType(I32, n)
    return builder.shuffle_vector(builder.insert_element(ir.Constant(v, ir.Undefined), x32, ir.Constant(I32, 0)),
                                  ir.Constant(v, ir.Undefined), ir.Constant(v, [0] * n))


def _udot_quarters(builder, udot, acc, a16, b_quarters):
    """acc (16 x i32) += udot over 4 quarters: lanes 4q..4q+3 from a16 (16 x u8) . b_quarters[q]."""
    undef = ir.Constant(V16I32, ir.Undefined)
    q = [builder.call(udot, [builder.shuffle_vector(acc, undef, ir.Constant(V4I32, list(range(4 * i, 4 * i + 4)))),
                             a16, b_quarters[i]]) for i in range(4)]
    lo = builder.shuffle_vector(q[0], q[1], ir.Constant(ir.VectorType(I32, 8), list(range(8))))
    hi = builder.shuffle_vector(q[2], q[3], ir.Constant(ir.VectorType(I32, 8), list(range(8))))
    return builder.shuffle_vector(lo, hi, ir.Constant(V16I32, list(range(16))))


def _loop(builder, name, lo, hi, inits, step):
    """An IR counted loop: for j in [lo, hi) (i64): values = step(j, values); -> the
    final values (`inits` when hi <= lo). inits: the loop-carried IR values."""
    pre = builder.block
    loop = builder.append_basic_block(f"{name}.loop")
    done = builder.append_basic_block(f"{name}.done")
    builder.cbranch(builder.icmp_signed("<", lo, hi), loop, done)
    builder.position_at_end(loop)
    j = builder.phi(I64)
    j.add_incoming(lo, pre)
    phis = []
    for v in inits:
        ph = builder.phi(v.type)
        ph.add_incoming(v, pre)
        phis.append(ph)
    new = step(j, phis)
    nxt = builder.add(j, _i64(1))
    end = builder.block
    j.add_incoming(nxt, end)
    for ph, v in zip(phis, new):
        ph.add_incoming(v, end)
    builder.cbranch(builder.icmp_signed("<", nxt, hi), loop, done)
    builder.position_at_end(done)
    outs = []
    for v0, v in zip(inits, new):              # phis first, then any use
        out = builder.phi(v0.type)
        out.add_incoming(v0, pre)
        out.add_incoming(v, end)
        outs.append(out)
    return outs


def _emit_dot_loop(builder, isa, P, M, ap, rows, bp, b_off_v, koffp, nk_v, packed=False, pm1=False):
    """The tile's k4 loop: -> P*M accumulators (16 x i32) of sum_kk A[rows[p] + koff[kk] + b] *
    B[b_off + ((kk*M + j)*16 + l)*4 + b]; zeros when nk <= 0.
    packed: B holds ±1 weights as sign bits, 8 bytes per 64 weights (bit i of the
    little-endian u64 at b_off + (kk*M + j)*8 is weight byte i: 1 -> -1, 0 -> +1),
    expanded in registers: sext(<64 x i1>) | 1 (on AVX-512BW: kmovq, vpmovm2b, vporq)."""
    if isa == "avx2" and (pm1 or packed):
        return _emit_dot_loop_avx2_pm1(builder, P, M, ap, rows, bp, b_off_v, koffp, nk_v, packed)
    if isa == "avx2":
        return _emit_dot_loop_avx2(builder, P, M, ap, rows, bp, b_off_v, koffp, nk_v)
    udot = None
    if isa == "vnni":
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(V16I32, [V16I32] * 3),
                                            "llvm.x86.avx512.vpdpbusd.512")
        dot = lambda acc, a, b: builder.call(fn, [acc, a, b])
    elif isa == "udot":
        udot = cgutils.get_or_insert_function(builder.module, ir.FunctionType(V4I32, [V4I32, V16I8, V16I8]),
                                              "llvm.aarch64.neon.udot.v4i32.v16i8")
    else:
        dot = lambda acc, a, b: _dot_generic(builder, acc, a, b)
    n_sum = P if udot else 0                                 # udot: sum a per pixel
    acc0 = [ir.Constant(V16I32, None)] * (P * M)              # zeros
    sum0 = [ir.Constant(V4I32, None)] * n_sum

    def step(kk, vals):
        phis, sphis = vals[:P * M], vals[P * M:]
        ko = builder.load(builder.gep(koffp, [kk]))
        if packed:
            bbase = builder.add(b_off_v, builder.mul(kk, _i64(8 * M)))
            ones = ir.Constant(V64I8, [1] * 64)
            bits = [builder.load(builder.bitcast(builder.gep(bp, [builder.add(bbase, _i64(8 * j))]),
                                                 I64.as_pointer()), align=1) for j in range(M)]
            bvec = [builder.bitcast(builder.or_(builder.sext(builder.bitcast(b, ir.VectorType(ir.IntType(1), 64)),
                                                             V64I8), ones), V16I32) for b in bits]
        else:
            bbase = builder.add(b_off_v, builder.mul(kk, _i64(64 * M)))
            bvec = [builder.load(builder.bitcast(builder.gep(bp, [builder.add(bbase, _i64(64 * j))]),
                                                 V16I32.as_pointer()), align=1) for j in range(M)]
        if udot:                     # weights + 128 as u8, in quarters of 16 bytes (4 channels)
            flip = ir.Constant(V64I8, [0x80] * 64)
            bq = []
            for j in range(M):
                w8 = builder.xor(builder.bitcast(bvec[j], V64I8), flip)
                bq.append([builder.shuffle_vector(w8, ir.Constant(V64I8, ir.Undefined),
                                                  ir.Constant(ir.VectorType(I32, 16), list(range(16 * q, 16 * q + 16))))
                           for q in range(4)])
            ones = ir.Constant(V16I8, [1] * 16)
        new, snew = [], []
        for p in range(P):
            a32 = builder.load(builder.bitcast(builder.gep(ap, [builder.add(rows[p], ko)]), I32.as_pointer()),
                               align=1)
            if udot:
                a16 = builder.bitcast(_splat16(builder, a32, 4), V16I8)      # the 4 bytes, 4 times
                snew.append(builder.call(udot, [sphis[p], a16, ones]))
                for j in range(M):
                    new.append(_udot_quarters(builder, udot, phis[p * M + j], a16, bq[j]))
            else:
                splat = _splat16(builder, a32, 16)
                for j in range(M):
                    new.append(dot(phis[p * M + j], splat, bvec[j]))
        return new + snew

    vals = _loop(builder, "dot", _i64(0), nk_v, acc0 + sum0, step)
    outs, souts = vals[:P * M], vals[P * M:]
    if udot:                                   # acc -= 128 * sum a (every lane of souts[p] holds it)
        undef4 = ir.Constant(V4I32, ir.Undefined)
        for p in range(P):
            corr = builder.shl(builder.shuffle_vector(souts[p], undef4, ir.Constant(V16I32, [0] * 16)),
                               ir.Constant(V16I32, [7] * 16))
            for j in range(M):
                outs[p * M + j] = builder.sub(outs[p * M + j], corr)
    return outs


def _load_b64(builder, bp, off):
    """64 weight bytes at bp[off] as 64 x i8."""
    return builder.load(builder.bitcast(builder.gep(bp, [off]), V64I8.as_pointer()), align=1)


def _unpack_bits64(builder, bp, off):
    """8 bytes at bp[off] = 64 sign bits (1 -> -1, 0 -> +1) as 64 x i8 ±1."""
    bits = builder.load(builder.bitcast(builder.gep(bp, [off]), I64.as_pointer()), align=1)
    return builder.or_(builder.sext(builder.bitcast(bits, ir.VectorType(ir.IntType(1), 64)), V64I8),
                       ir.Constant(V64I8, [1] * 64))


def _emit_dot_loop_avx2(builder, P, M, ap, rows, bp, b_off_v, koffp, nk_v):
    """_emit_dot_loop on AVX2 (no u8 x i8 dot instruction that is exact: vpmaddubsw saturates):
    both operands widened to i16 and multiplied pairwise by vpmaddwd, exact
    (|u8 * i8| <= 32640, a pair <= 65280). Per k4 step and 16-channel block:
        w16[q] (16 x i16) = sext(B bytes 16q..16q+15)    channels 4q..4q+3, 4 k each
        a16    (16 x i16) = zext(the pixel's 4 bytes), 4 times
        part[q] (8 x i32) += vpmaddwd(a16, w16[q])    lane 2c+h: channel 4q+c, k pair h
    and after the loop acc[4q+c] = part[q][2c] + part[q][2c+1]: 4 accumulators
    (ymm) per pixel and block, so the caller keeps P*M small (AVX2 has 16 ymm)."""
    madd = cgutils.get_or_insert_function(builder.module, ir.FunctionType(V8I32, [V16I16, V16I16]),
                                          "llvm.x86.avx2.pmadd.wd")
    v4i8, v4i16, v4i64 = ir.VectorType(I8, 4), ir.VectorType(ir.IntType(16), 4), ir.VectorType(I64, 4)
    undef64, undef4 = ir.Constant(V64I8, ir.Undefined), ir.Constant(v4i64, ir.Undefined)

    def step(kk, phis):
        ko = builder.load(builder.gep(koffp, [kk]))
        w16 = []
        for j in range(M):
            b = _load_b64(builder, bp, builder.add(b_off_v, builder.add(builder.mul(kk, _i64(64 * M)), _i64(64 * j))))
            w16.append([builder.sext(builder.shuffle_vector(
                b, undef64, ir.Constant(V16I32, list(range(16 * q, 16 * q + 16)))), V16I16) for q in range(4)])
        new = []
        for p in range(P):
            a32 = builder.load(builder.bitcast(builder.gep(ap, [builder.add(rows[p], ko)]), I32.as_pointer()),
                               align=1)
            a64 = builder.bitcast(builder.zext(builder.bitcast(a32, v4i8), v4i16), I64)
            a16 = builder.bitcast(builder.shuffle_vector(builder.insert_element(undef4, a64, ir.Constant(I32, 0)),
                                                         undef4, ir.Constant(V4I32, [0] * 4)), V16I16)
            for j in range(M):
                for q in range(4):
                    new.append(builder.add(phis[(p * M + j) * 4 + q], builder.call(madd, [a16, w16[j][q]])))
        return new

    parts = _loop(builder, "dot", _i64(0), nk_v, [ir.Constant(V8I32, None)] * (4 * P * M), step)
    outs = []
    for t in range(P * M):
        q = parts[4 * t:4 * t + 4]
        lo = builder.shuffle_vector(q[0], q[1], ir.Constant(V16I32, list(range(16))))
        hi = builder.shuffle_vector(q[2], q[3], ir.Constant(V16I32, list(range(16))))
        even = builder.shuffle_vector(lo, hi, ir.Constant(V16I32, list(range(0, 32, 2))))
        odd = builder.shuffle_vector(lo, hi, ir.Constant(V16I32, list(range(1, 32, 2))))
        outs.append(builder.add(even, odd))
    return outs


PM1_STEPS = 64          # k4 steps summed in i16 by the ±1 AVX2 tile: 64 * 2 * 255 = 32640 < 2^15


def _emit_dot_loop_avx2_pm1(builder, P, M, ap, rows, bp, b_off_v, koffp, nk_v, packed):
    """_emit_dot_loop on AVX2 for weights in {-1, 0, 1} (binary patterns, stacked banks):
    vpmaddubsw (u8 x i8 pairs -> i16, saturating) is exact there, |a0*w0 + a1*w1| <= 510,
    and so is an i16 sum of PM1_STEPS of them. Per k4 step and 16-channel block:
        a8  (32 x u8) = the pixel's 4 bytes, 8 times
        s16[h] (16 x i16) += vpmaddubsw(a8, B bytes 32h..32h+31)   lane 2c+i: channel 8h+c, pair i
    and every PM1_STEPS steps (and at the end) acc[h] (8 x i32) += vpmaddwd(s16[h], 1): half
    the multiplies of the i8 tile and no weight widening."""
    maddubs = cgutils.get_or_insert_function(builder.module, ir.FunctionType(V16I16, [V32I8, V32I8]),
                                             "llvm.x86.avx2.pmadd.ub.sw")
    madd = cgutils.get_or_insert_function(builder.module, ir.FunctionType(V8I32, [V16I16, V16I16]),
                                          "llvm.x86.avx2.pmadd.wd")
    ones16 = ir.Constant(V16I16, [1] * 16)
    undef64 = ir.Constant(V64I8, ir.Undefined)
    n = 2 * P * M

    def step(kk, phis):
        ko = builder.load(builder.gep(koffp, [kk]))
        wh = []
        for j in range(M):
            if packed:
                b = _unpack_bits64(builder, bp, builder.add(b_off_v, builder.add(builder.mul(kk, _i64(8 * M)),
                                                                                    _i64(8 * j))))
            else:
                b = _load_b64(builder, bp, builder.add(b_off_v, builder.add(builder.mul(kk, _i64(64 * M)),
                                                                               _i64(64 * j))))
            wh.append([builder.shuffle_vector(b, undef64, ir.Constant(ir.VectorType(I32, 32),
                                                                      list(range(32 * h, 32 * h + 32))))
                       for h in range(2)])
        new = []
        for p in range(P):
            a32 = builder.load(builder.bitcast(builder.gep(ap, [builder.add(rows[p], ko)]), I32.as_pointer()),
                               align=1)
            a8 = builder.bitcast(_splat16(builder, a32, 8), V32I8)
            for j in range(M):
                for h in range(2):
                    new.append(builder.add(phis[(p * M + j) * 2 + h], builder.call(maddubs, [a8, wh[j][h]])))
        return new

    def chunk(ci, accs):                      # PM1_STEPS k4 steps summed in i16, then widened into accs
        lo = builder.mul(ci, _i64(PM1_STEPS))
        hi = builder.select(builder.icmp_signed("<", builder.add(lo, _i64(PM1_STEPS)), nk_v),
                            builder.add(lo, _i64(PM1_STEPS)), nk_v)
        s16 = _loop(builder, "dot", lo, hi, [ir.Constant(V16I16, None)] * n, step)
        return [builder.add(acc, builder.call(madd, [s, ones16])) for acc, s in zip(accs, s16)]

    nchunks = builder.sdiv(builder.add(nk_v, _i64(PM1_STEPS - 1)), _i64(PM1_STEPS))
    accs = _loop(builder, "chunk", _i64(0), nchunks, [ir.Constant(V8I32, None)] * n, chunk)
    return [builder.shuffle_vector(accs[2 * t], accs[2 * t + 1], ir.Constant(V16I32, list(range(16))))
            for t in range(P * M)]


def _if_else_values(builder, cond, then, otherwise):
    """IR values of then() when cond, else of otherwise() (same types), each built in its own block."""
    bb_t, bb_f = builder.append_basic_block("then"), builder.append_basic_block("else")
    merge = builder.append_basic_block("merge")
    builder.cbranch(cond, bb_t, bb_f)
    ends = []
    for bb, make in ((bb_t, then), (bb_f, otherwise)):
        builder.position_at_end(bb)
        vals = make()
        ends.append((builder.block, vals))
        builder.branch(merge)
    builder.position_at_end(merge)
    out = []
    for i, v in enumerate(ends[0][1]):
        ph = builder.phi(v.type)
        for end, vals in ends:
            ph.add_incoming(vals[i], end)
        out.append(ph)
    return out


def make_dot_tile(P: int, M: int, isa: str | None = None, epilogue: bool = False, packed: bool = False,
                  pm1: bool = False):
    """An intrinsic tile(acc, A, a_add, pix, pix_start, B, b_off, koff, nk) -> None.

    acc  int32[P*M*16] accumulators, written at exit:
         acc[(p*M + j)*16 + l] = sum over kk < nk, b < 4 of
             A[a_add + pix[pix_start + p] + koff[kk] + b] * B[b_off + ((kk*M + j)*16 + l)*4 + b]
    A    uint8[]  quantized activations (padded NHWC buffer)
    pix  int64[]  per output pixel: offset of its window's first tap in A
    B    int8[]   weights packed [kk][M][16][4]
    koff int64[]  per k4 step: offset of those 4 channels from the window start
    isa  "vnni" | "udot" | "generic"; default dot_isa()

    Each k4 step is one vpdpbusd (or its generic equivalent) per (pixel,
    16-channel block), accumulators in registers from zero. They are stored
    lane by lane: the scalar epilogue that reads them back then hits store
    forwarding (a 64-byte vector store read as 4-byte loads stalls on x86).

    "udot" (u8 x u8 only: Armv8.2 has no u8 x i8 dot before i8mm's usdot)
    offsets the weights into u8 and subtracts the offset's share:
        w' = w XOR 0x80 = w + 128 as u8, in [0, 255]
        sum a*w' = sum a*w + 128 * sum a
        sum a    = udot(a, 1...1), one per pixel and k4 step
        acc      = sum a*w' - (sum a << 7)       (int32, exact mod 2^32)
    so one 16-channel block is 4 udot (v4i32 += v16i8 . v16i8) on the
    same 4 activation bytes and 16x4 weight bytes as one vpdpbusd. The
    result is exactly sum a*w whenever that fits int32, as VNNI's.

    epilogue=True: tile(A, a_add, pix, pix_start, B, b_off, koff, nk,
    n, wsum, mult, bias, oc0, z, fbuf, out_off, res_off, K, relu, qbuf, qspec, qscale,
    B2, b_off2, koff2, nk2, wsum2, mult2, bias2, pm1) (no acc) applies the conv epilogue to
    the accumulators in registers and writes the outputs itself: channels
    oc0..oc0+n-1, n <= 16*M (_emit_epilogue). nk2 > 0: a second conv of the same
    pixels (B2/koff2/nk2 as B/koff/nk: a PRB's 1x1 branch) is accumulated too and
    its output, with its own scale and bias, is the residual.

    packed=True: B holds ±1 weights as bits (_emit_dot_loop), 1/8 of the bytes;
    b_off counts bytes of that bit array (B2 stays int8).

    pm1: B's weights are all in {-1, 0, 1} (B2 any int8): on "avx2" a loop with
    half the multiplies (_emit_dot_loop_avx2_pm1); elsewhere ignored. A plain
    tile takes it as this parameter; an epilogue tile takes it at run time, as
    its last argument (0 or 1: a conv's weights are known only when it is planned).
    """
    isa = dot_isa() if isa is None else isa
    if isa not in ISAS:
        raise ValueError(f"isa {isa!r}: expected one of {ISAS}")

    def typer(typingctx, *a):
        return types.void(*a), codegen

    def codegen(context, builder, signature, args):
        if epilogue:                               # the same argument numbers as without: acc = None
            args, signature = [None] + list(args), types.void(types.none, *signature.args)
        a_add_v, ps_v = args[2], args[4]
        data = lambda i: cgutils.create_struct_proxy(signature.args[i])(context, builder, value=args[i]).data
        i64 = lambda i: context.cast(builder, args[i], signature.args[i], types.int64)
        ap, pixp = data(1), data(3)
        rows = [builder.add(a_add_v, builder.load(builder.gep(pixp, [builder.add(ps_v, _i64(p))])))
                for p in range(P)]
        loop = lambda b_pm1: _emit_dot_loop(builder, isa, P, M, ap, rows, data(5), i64(6), data(7), i64(8),
                                            packed, b_pm1)
        if not epilogue:
            outs = loop(pm1)
        elif isa == "avx2" and not packed:       # pm1 chosen at run time
            outs = _if_else_values(builder, builder.icmp_signed("!=", i64(30), _i64(0)),
                                   lambda: loop(True), lambda: loop(False))
        else:
            outs = loop(packed)
        if not epilogue:
            accs = data(0)
            for k, out in enumerate(outs):
                for l in range(16):
                    builder.store(builder.extract_element(out, ir.Constant(I32, l)),
                                  builder.gep(accs, [_i64(16 * k + l)]), align=4)
            return context.get_dummy_value()
        # the paired 1x1 conv (a PRB's other branch): the same pixels, its own weights and steps
        outs2 = _emit_dot_loop(builder, isa, P, M, ap, rows, data(23), i64(24), data(25), i64(26))
        e = dict(zip(("wsum", "mult", "bias", "fbuf", "qbuf", "qspec", "wsum2", "mult2", "bias2"),
                     map(data, (10, 11, 12, 15, 20, 21, 27, 28, 29))))
        e.update(zip(("oc0", "z", "out_off", "res_off", "K", "relu", "nk2"), map(i64, (13, 14, 16, 17, 18, 19, 26))))
        e["qscale"] = context.cast(builder, args[22], signature.args[22], types.float32)
        n = i64(9)
        with builder.if_else(builder.icmp_signed("==", n, _i64(16 * M))) as (then, otherwise):
            with then:                             # a whole block: plain vector loads and stores
                _emit_epilogue(builder, isa, outs, outs2, P, M, ps_v, e, None)
            with otherwise:                        # channels n..16M-1 masked off
                _emit_epilogue(builder, isa, outs, outs2, P, M, ps_v, e, n)
        return context.get_dummy_value()

    if epilogue:
        @intrinsic
        def tile(typingctx, A, a_add, pix, pix_start, B, b_off, koff, nk, n, wsum, mult, bias, oc0, z, fbuf,
                 out_off, res_off, K, relu, qbuf, qspec, qscale, B2, b_off2, koff2, nk2, wsum2, mult2, bias2, pm1):
            return typer(typingctx, A, a_add, pix, pix_start, B, b_off, koff, nk, n, wsum, mult, bias, oc0, z,
                         fbuf, out_off, res_off, K, relu, qbuf, qspec, qscale, B2, b_off2, koff2, nk2, wsum2,
                         mult2, bias2, pm1)
    else:
        @intrinsic
        def tile(typingctx, acc, A, a_add, pix, pix_start, B, b_off, koff, nk):
            return typer(typingctx, acc, A, a_add, pix, pix_start, B, b_off, koff, nk)
    tile.isa = isa
    return tile


F32 = ir.FloatType()
V16F = ir.VectorType(F32, 16)
V16I1 = ir.VectorType(ir.IntType(1), 16)


_LLVM_SUFFIX = {V16I32: "v16i32", V16F: "v16f32", V16I8: "v16i8"}


class _Lanes:
    """Which lanes of a 16-lane block exist: all (None), or the first `count` (i64).
    Where the ISA has masked loads and stores for the lane type (AVX-512: all;
    AVX2: 32-bit lanes, vpmaskmovd/vmaskmovps) they take a mask (16 x i1); else
    (where LLVM would expand each masked lane into a branch: slow to compile) a
    loop over `count` elements goes through a 16-lane stack buffer."""

    def __init__(self, builder, count, isa: str):
        self.count, self.mask, self.buf = count, None, {}
        self.mask_bits = {"vnni": (8, 32), "avx2": (32,)}.get(isa, ())    # lane widths with masked moves
        if count is not None and self.mask_bits:
            V16I64 = ir.VectorType(I64, 16)
            cv = builder.shuffle_vector(builder.insert_element(ir.Constant(V16I64, ir.Undefined), count,
                                                               ir.Constant(I32, 0)),
                                        ir.Constant(V16I64, ir.Undefined), ir.Constant(V16I32, [0] * 16))
            self.mask = builder.icmp_signed("<", ir.Constant(V16I64, list(range(16))), cv)

    def masked(self, vty) -> bool:
        """Do loads/stores of vty take the mask?"""
        return self.mask is not None and (8 if vty.element == I8 else 32) in self.mask_bits

    def tmp(self, builder, vty):
        if vty not in self.buf:
            self.buf[vty] = cgutils.alloca_once(builder, vty)
        return self.buf[vty]


def _vload(builder, base, off, vty, lanes=None):
    """16 lanes from base[off:]; with `lanes` (_Lanes) only the existing ones are read (others 0)."""
    ptr = builder.bitcast(builder.gep(base, [off]), vty.as_pointer())
    if lanes is None or lanes.count is None:
        return builder.load(ptr, align=1)
    if lanes.masked(vty):
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vty, [vty.as_pointer(), I32, V16I1, vty]),
                                            f"llvm.masked.load.{_LLVM_SUFFIX[vty]}.p0")
        return builder.call(fn, [ptr, ir.Constant(I32, 1), lanes.mask, ir.Constant(vty, None)])
    tmp = lanes.tmp(builder, vty)
    builder.store(ir.Constant(vty, None), tmp)
    elt = builder.bitcast(tmp, vty.element.as_pointer())
    with cgutils.for_range(builder, lanes.count) as loop:
        builder.store(builder.load(builder.gep(base, [builder.add(off, loop.index)])), builder.gep(elt, [loop.index]))
    return builder.load(tmp)


def _vstore(builder, v, base, off, lanes=None):
    """v (16 lanes) to base[off:]; with `lanes` only the existing lanes are written."""
    ptr = builder.bitcast(builder.gep(base, [off]), v.type.as_pointer())
    if lanes is None or lanes.count is None:
        builder.store(v, ptr, align=1)
        return
    if lanes.masked(v.type):
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), [v.type, v.type.as_pointer(),
                                                                                              I32, V16I1]),
                                            f"llvm.masked.store.{_LLVM_SUFFIX[v.type]}.p0")
        builder.call(fn, [v, ptr, ir.Constant(I32, 1), lanes.mask])
        return
    if v.type == V16I8:             # count (0..16) bytes as at most 5 scalar stores: 16, 8, 4, 2, 1 bytes
        i128 = ir.IntType(128)
        x, pos = builder.bitcast(v, i128), _i64(0)
        for k in (16, 8, 4, 2, 1):
            part = builder.and_(lanes.count, _i64(k))
            with builder.if_then(builder.icmp_signed("!=", part, _i64(0))):
                piece = builder.trunc(builder.lshr(x, builder.zext(builder.mul(pos, _i64(8)), i128)), ir.IntType(8 * k))
                at = builder.bitcast(builder.gep(base, [builder.add(off, pos)]), ir.IntType(8 * k).as_pointer())
                builder.store(piece, at, align=1)
            pos = builder.add(pos, part)
        return
    tmp = lanes.tmp(builder, v.type)
    builder.store(v, tmp)
    elt = builder.bitcast(tmp, v.type.element.as_pointer())
    with cgutils.for_range(builder, lanes.count) as loop:
        builder.store(builder.load(builder.gep(elt, [loop.index])), builder.gep(base, [builder.add(off, loop.index)]))


def _max(builder, v, c):
    """numba's max(v, c) on float32 lanes: select(c > v, c, v) (NaN stays v)."""
    return builder.select(builder.fcmp_ordered(">", c, v), c, v)


def _min(builder, v, c):
    """numba's min(v, c): select(c < v, c, v)."""
    return builder.select(builder.fcmp_ordered("<", c, v), c, v)


def _emit_epilogue(builder, isa, outs, outs2, P, M, p0, e, n):
    """The conv epilogue of a whole tile in registers, lane for lane the float32
    steps of conv.py's scalar epilogue (so bit-identical to it):

        v = f32(acc - z*wsum[oc]) * mult[oc] + bias[oc]  (+ fbuf[res])  (relu: max(v, 0); relu6: min(v, 6))
        fbuf[out] = v;  qbuf[q] = u8(min(max(roundeven(v / qscale) + qz, 0), qmax))

    with nk2 > 0 (a paired 1x1 conv, outs2) the residual is that conv's output, in
    registers: v += f32(acc2 - z*wsum2[oc]) * mult2[oc] + bias2[oc], the value it would
    have written to fbuf[res].

    outs[p*M + j]: 16 x i32 accumulators of pixel p0+p, channels oc0+16j..+16.
    out = out_off + pix*K + oc (out_off < 0: none), likewise res; the quantized
    copy goes to the consumer's padded buffer, qspec = [q_off (< 0: none), Wo, pad, Wp, zero, qmax,
    (scale), q_k]: q_k channels per pixel there (K, or a concat's total channels).
    (acc - z*wsum is taken mod 2^32, which is the exact value whenever it fits int32.)
    n (i64, or None for all 16M): only channels oc0..oc0+n-1 are read and written
    (_Lanes: AVX-512 masked loads and stores, a short copy loop elsewhere).
    """
    masks = []                      # per 16-channel block j: its lanes (channels 16j.. that exist)
    for j in range(M):
        count = None
        if n is not None:
            left = builder.sub(n, _i64(16 * j))
            count = builder.select(builder.icmp_signed("<", left, _i64(0)), _i64(0),
                                   builder.select(builder.icmp_signed(">", left, _i64(16)), _i64(16), left))
        masks.append(_Lanes(builder, count, isa))
    z32 = builder.trunc(e["z"], I32)
    zv = builder.shuffle_vector(builder.insert_element(ir.Constant(V16I32, ir.Undefined), z32, ir.Constant(I32, 0)),
                                ir.Constant(V16I32, ir.Undefined), ir.Constant(V16I32, [0] * 16))
    splatf = lambda x: builder.shuffle_vector(builder.insert_element(ir.Constant(V16F, ir.Undefined), x,
                                                                     ir.Constant(I32, 0)),
                                              ir.Constant(V16F, ir.Undefined), ir.Constant(V16I32, [0] * 16))
    q_off = builder.load(builder.gep(e["qspec"], [_i64(0)]))
    q_wo, q_pad, q_wp, q_k = (builder.load(builder.gep(e["qspec"], [_i64(i)])) for i in (1, 2, 3, 7))
    qz = splatf(builder.sitofp(builder.load(builder.gep(e["qspec"], [_i64(4)])), F32))
    qmax = splatf(builder.sitofp(builder.load(builder.gep(e["qspec"], [_i64(5)])), F32))
    qscale = splatf(e["qscale"])
    zero, six = ir.Constant(V16F, [0.0] * 16), ir.Constant(V16F, [6.0] * 16)
    relu = builder.icmp_signed(">=", e["relu"], _i64(1))
    relu6 = builder.icmp_signed("==", e["relu"], _i64(2))
    has_out = builder.icmp_signed(">=", e["out_off"], _i64(0))
    has_res = builder.icmp_signed(">=", e["res_off"], _i64(0))
    has2 = builder.icmp_signed(">", e["nk2"], _i64(0))
    has_q = builder.icmp_signed(">=", q_off, _i64(0))
    K = e["K"]
    # the quantized copy's padded row of each pixel: one division for the tile, then
    # stepping through the P consecutive pixels (wrapping at the row end, wo >= 1)
    wo_ok = builder.select(builder.icmp_signed(">", q_wo, _i64(0)), q_wo, _i64(1))
    oy = builder.sdiv(p0, wo_ok)
    ox = builder.sub(p0, builder.mul(oy, wo_ok))
    qrows = []
    for p in range(P):
        if p:
            ox = builder.add(ox, _i64(1))
            wrap = builder.icmp_signed(">=", ox, wo_ok)
            ox = builder.select(wrap, _i64(0), ox)
            oy = builder.add(oy, builder.zext(wrap, I64))
        qrows.append(builder.add(builder.mul(builder.add(oy, q_pad), q_wp), builder.add(ox, q_pad)))
    # per 16-channel block: z*wsum, mult and bias, loaded once for the tile's pixels
    # (before any store: LLVM cannot know the stores leave the weights alone)
    ocs = [builder.add(e["oc0"], _i64(16 * j)) for j in range(M)]
    zw = [builder.mul(_vload(builder, e["wsum"], ocs[j], V16I32, masks[j]), zv) for j in range(M)]
    mults = [_vload(builder, e["mult"], ocs[j], V16F, masks[j]) for j in range(M)]
    biases = [_vload(builder, e["bias"], ocs[j], V16F, masks[j]) for j in range(M)]

    def pixels(pair):
        """The tile's pixels; pair: per block the paired conv's (z*wsum2, mult2, bias2), or None."""
        for p in range(P):
            pix = builder.add(p0, _i64(p))
            base = builder.add(builder.mul(pix, K), e["oc0"])           # pix*K + oc0
            for j in range(M):
                oc = ocs[j]
                mk = masks[j]
                a = builder.sub(outs[p * M + j], zw[j])
                v = builder.fadd(builder.fmul(builder.sitofp(a, V16F), mults[j]), biases[j])
                at = builder.add(base, _i64(16 * j))
                cur = builder.block
                with builder.if_then(has_res, likely=True):
                    vr = builder.fadd(v, _vload(builder, e["fbuf"], builder.add(e["res_off"], at), V16F, mk))
                    res_end = builder.block
                ph = builder.phi(V16F)
                ph.add_incoming(v, cur)
                ph.add_incoming(vr, res_end)
                v = ph
                if pair is not None:
                    zw2, mult2, bias2 = pair[j]
                    a2 = builder.sub(outs2[p * M + j], zw2)
                    v = builder.fadd(v, builder.fadd(builder.fmul(builder.sitofp(a2, V16F), mult2), bias2))
                v = builder.select(relu, _max(builder, v, zero), v)
                v = builder.select(relu6, _min(builder, v, six), v)
                with builder.if_then(has_out):
                    _vstore(builder, v, e["fbuf"], builder.add(e["out_off"], at), mk)
                with builder.if_then(has_q, likely=True):
                    qat = builder.add(builder.add(q_off, builder.mul(qrows[p], q_k)), oc)
                    rnd = cgutils.get_or_insert_function(builder.module, ir.FunctionType(V16F, [V16F]),
                                                         "llvm.roundeven.v16f32")
                    t = builder.fadd(builder.call(rnd, [builder.fdiv(v, qscale)]), qz)
                    t = _min(builder, _max(builder, t, zero), qmax)
                    _vstore(builder, builder.trunc(builder.fptosi(t, V16I32), V16I8), e["qbuf"], qat, mk)

    # two copies of the pixel loop: with a paired conv (its per-channel vectors loaded
    # once here) and without (no registers held for it)
    with builder.if_else(has2) as (then, otherwise):
        with then:
            pixels([(builder.mul(_vload(builder, e["wsum2"], ocs[j], V16I32, masks[j]), zv),
                     _vload(builder, e["mult2"], ocs[j], V16F, masks[j]),
                     _vload(builder, e["bias2"], ocs[j], V16F, masks[j])) for j in range(M)])
        with otherwise:
            pixels(None)


def make_dw_tile(P: int, isa: str | None = None):
    """An intrinsic tile(A, pix, p0, Wt, cp, toff, T, c0, n, wsum, mult, bias, z, fbuf, out_off,
    res_off, K, relu, qbuf, qspec, qscale) -> None: a depthwise conv of output pixels
    p0..p0+P-1 x channels c0..c0+n-1 (n <= 16), accumulated in registers and finished
    by _emit_epilogue (the same epilogue, lane for lane, as the dot tiles):

        acc[p][l] = sum_{t < T} u8 A[pix[p0+p] + toff[t] + c0 + l] * i8 Wt[t*cp + c0 + l]

    A    uint8[]  padded quantized input (Hp, Wp, cp), pix/toff its window and tap offsets
    Wt   int8[]   weights tap-major (T, cp)
    Per tap: one 16-byte weight load (sign-extended once) and per pixel a 16-byte
    activation load, zero-extended, multiplied and added in 16 x i32 lanes: target-
    independent vector IR (AVX-512: vpmovzxbd / vpmulld / vpaddd; NEON: widening
    multiply-adds), exact integers on every path. n < 16: lanes >= n are neither
    read nor written (_Lanes: masked on AVX-512, a short copy loop elsewhere).
    """
    isa = dot_isa() if isa is None else isa
    if isa not in ISAS:
        raise ValueError(f"isa {isa!r}: expected one of {ISAS}")

    def body(builder, ap, rows, wp, cp, toffp, T, c0, lanes):
        """The tap loop -> P accumulators (16 x i32); zeros when T <= 0."""
        def step(t, accs):
            to = builder.add(builder.load(builder.gep(toffp, [t])), c0)
            w = builder.sext(_vload(builder, wp, builder.add(builder.mul(t, cp), c0), V16I8, lanes), V16I32)
            return [builder.add(accs[p], builder.mul(builder.zext(_vload(builder, ap, builder.add(rows[p], to), V16I8,
                                                                         lanes), V16I32), w))
                    for p in range(P)]
        return _loop(builder, "dw", _i64(0), T, [ir.Constant(V16I32, None)] * P, step)

    def codegen(context, builder, signature, args):
        data = lambda i: cgutils.create_struct_proxy(signature.args[i])(context, builder, value=args[i]).data
        i64 = lambda i: context.cast(builder, args[i], signature.args[i], types.int64)
        ap, pixp, p0, wp, cp, toffp, T, c0, n = data(0), data(1), i64(2), data(3), i64(4), data(5), i64(6), i64(7), i64(8)
        rows = [builder.load(builder.gep(pixp, [builder.add(p0, _i64(p))])) for p in range(P)]
        e = dict(zip(("wsum", "mult", "bias", "fbuf", "qbuf", "qspec"), map(data, (9, 10, 11, 13, 18, 19))))
        e.update(zip(("z", "out_off", "res_off", "K", "relu"), map(i64, (12, 14, 15, 16, 17))))
        e.update(oc0=c0, nk2=_i64(0), wsum2=e["wsum"], mult2=e["mult"], bias2=e["bias"])   # no paired conv
        e["qscale"] = context.cast(builder, args[20], signature.args[20], types.float32)
        with builder.if_else(builder.icmp_signed("==", n, _i64(16))) as (then, otherwise):
            with then:                             # a whole block: plain vector loads and stores
                outs = body(builder, ap, rows, wp, cp, toffp, T, c0, None)
                _emit_epilogue(builder, isa, outs, outs, P, 1, p0, e, None)
            with otherwise:                        # channels n..15 masked off
                outs = body(builder, ap, rows, wp, cp, toffp, T, c0, _Lanes(builder, n, isa))
                _emit_epilogue(builder, isa, outs, outs, P, 1, p0, e, n)
        return context.get_dummy_value()

    @intrinsic
    def tile(typingctx, A, pix, p0, Wt, cp, toff, T, c0, n, wsum, mult, bias, z, fbuf, out_off, res_off, K, relu,
             qbuf, qspec, qscale):
        sig = types.void(A, pix, p0, Wt, cp, toff, T, c0, n, wsum, mult, bias, z, fbuf, out_off, res_off, K, relu,
                         qbuf, qspec, qscale)
        return sig, codegen
    tile.isa = isa
    return tile


@intrinsic
def max16_cols(typingctx, y, d, x, r, n, step):
    """y[d:d+16] = max over j < n (n >= 1) of x[r + j*step : +16], float32 lanes, numba's
    max order: m = select(w > m, w, m) (a max pool's columns; `max` per element in a
    numba loop is not vectorized by LLVM)."""
    def codegen(context, builder, signature, args):
        data = lambda i: cgutils.create_struct_proxy(signature.args[i])(context, builder, value=args[i]).data
        i64 = lambda i: context.cast(builder, args[i], signature.args[i], types.int64)
        yp, xp, d_v, r_v, n_v, s_v = data(0), data(2), i64(1), i64(3), i64(4), i64(5)
        first = _vload(builder, xp, r_v, V16F)
        step = lambda j, m: [_max(builder, m[0], _vload(builder, xp, builder.add(r_v, builder.mul(j, s_v)), V16F))]
        out, = _loop(builder, "max16", _i64(1), n_v, [first], step)
        _vstore(builder, out, yp, d_v)
        return context.get_dummy_value()
    return types.void(y, d, x, r, n, step), codegen
