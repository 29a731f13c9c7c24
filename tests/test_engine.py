"""Fast engine: every kernel bit-exact against its numpy reference (odd and
prime sizes), whole models against the reference executor."""
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

import seprt
from seprt import reference
from seprt.engine import FastEngine
from seprt.kernels.conv import (conv_bin_popcount, conv_dw_u8i8, conv_int_ref, conv_u8i8, pack_bin, pack_dw,
                                pack_u8i8, planes_from_u8, window_offsets)
from seprt.kernels.elementwise import quantize_u8
from seprt.quant import binarize, quantize_act

from helpers import run_op, small_graph

rng = np.random.default_rng(0)


def padded_u8(q, z, pad, groups):
    """q (H,W,C) -> the kernels' padded input (Hp,Wp,G,Cgp) flat, and Cgp."""
    h, w, c = q.shape
    cg = c // groups
    cgp = -(-cg // 4) * 4
    a = np.zeros((h + 2 * pad, w + 2 * pad, groups, cgp), np.uint8)
    a[:, :, :, :cg] = z
    a[pad:pad + h, pad:pad + w, :, :cg] = q.reshape(h, w, groups, cg)
    return a.reshape(-1), cgp


def epilogue_ref(acc, mult, bias, res, relu, requant):
    """The conv epilogue in numpy: v = f32(acc) * mult + bias (+ res) (relu);
    q = clip(rint(v / qs) + qz, 0, qmax) (seprt.quant.quantize_act)."""
    v = acc.astype(np.float32) * mult + bias
    if res is not None:
        v = v + res
    if relu:
        v = np.maximum(v, np.float32(0))
    if relu == 2:                                   # relu6 (act kind 1) fused
        v = np.minimum(v, np.float32(6))
    q = None if requant is None else quantize_act(v, requant[0], requant[1], 8).astype(np.uint8)
    return v.astype(np.float32), q


# conv_u8i8's paired-conv arguments when there is none: B2, koff2, nk2, wsum2, mult2, bias2
NO_PAIR = (np.zeros(64, np.int8), np.zeros(0, np.int64), 0, np.zeros(1, np.int32), np.zeros(1, np.float32),
           np.zeros(1, np.float32))


def pm1(w_int) -> int:
    """ConvDotRow.PM1 as the planner sets it: 1 when every weight is -1, 0 or 1."""
    return int(np.abs(w_int).max(initial=0) <= 1)


def int_conv(kernel, q, z, w_int, stride, pad, groups, bits=8, mult=None, bias=None, res=None, relu=False,
             requant=None):
    """Run an integer conv kernel with its fused epilogue: returns (float out (Ho,Wo,K), quantized out or None).
    Default epilogue: mult 1, bias 0, no residual, no relu, no requantization (so out = f32(acc))."""
    h, w, c = q.shape
    k_out, k = w_int.shape[0], w_int.shape[1]
    kg = k_out // groups
    ho, wo = (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1
    n_out = ho * wo * k_out
    A, cgp = padded_u8(q, z, pad, 1 if kernel == "dw" else groups)
    mult = np.ones(k_out, np.float32) if mult is None else mult
    bias = np.zeros(k_out, np.float32) if bias is None else bias
    fbuf = np.zeros(2 * n_out, np.float32)               # [out | residual]
    res_off = -1
    if res is not None:
        fbuf[n_out:] = res.reshape(-1)
        res_off = n_out
    qbuf = np.zeros(n_out, np.uint8)
    qspec = np.array([-1, 0, 0, 0, 0, 0, 0, 0], np.int64) if requant is None else \
        np.array([0, wo, 0, wo, requant[1], 255, 0, k_out], np.int64)     # Epilogue.Q_OFF.. Q_K
    qs = np.float32(1 if requant is None else requant[0])
    epi = (mult, bias, fbuf, 0, res_off, k_out, relu)
    tail = (qbuf, qspec, qs, np.zeros(max(256, k_out), np.float32))
    if kernel == "dot":
        M = 2 if kg > 16 else 1
        B, wsum = pack_u8i8(w_int, groups, cgp, M)
        pix, koff = window_offsets(ho, wo, stride, 0, w + 2 * pad, groups * cgp, k, cgp)
        conv_u8i8(A, pix, koff, len(koff), B, groups, cgp, kg, M, z, wsum, *epi, *tail[:3], *NO_PAIR, pm1(w_int),
                  0, ho * wo)
    elif kernel == "dot-rows":                     # row-packed: unpadded channels, slack after the buffer
        from seprt.kernels.conv import pack_u8i8_rows, window_offsets_rows
        M = 2 if kg > 16 else 1
        A = np.concatenate([np.pad(q.astype(np.uint8), ((pad, pad), (pad, pad), (0, 0)), constant_values=z)
                            .reshape(-1), np.full(3, 255, np.uint8)])
        B, wsum = pack_u8i8_rows(w_int, M)
        pix, koff = window_offsets_rows(ho, wo, stride, 0, w + 2 * pad, c, k)
        conv_u8i8(A, pix, koff, len(koff), B, 1, c, kg, M, z, wsum, *epi, *tail[:3], *NO_PAIR, pm1(w_int), 0, ho * wo)
    elif kernel == "dw":
        wt, wsum = pack_dw(w_int, cgp)
        pix, _ = window_offsets(ho, wo, stride, 0, w + 2 * pad, cgp, 1, 4)
        toff = ((np.arange(k)[:, None] * (w + 2 * pad) + np.arange(k)[None, :]) * cgp).reshape(-1)
        conv_dw_u8i8(A, pix, toff, wt, cgp, z, wsum, *epi, *tail[:3], 0, ho * wo)
    else:
        hp, wp = h + 2 * pad, w + 2 * pad
        nw = -(-(c // groups) // 64)
        planes = np.zeros(hp * wp * groups * bits * nw, np.uint64)
        qsum = np.zeros(hp * wp * groups, np.int32)
        planes_from_u8(A, hp * wp, groups, c // groups, cgp, bits, nw, planes, qsum, 0, hp * wp)
        words, wsum = pack_bin(w_int, groups)
        pix, _ = window_offsets(ho, wo, stride, 0, wp, 1, 1, 4)
        toff = (np.arange(k)[:, None] * wp + np.arange(k)[None, :]).reshape(-1)
        conv_bin_popcount(planes, qsum, pix, toff, k * k, groups, bits, nw, words, kg, z, wsum, *epi,
                          np.zeros(kg, np.int64), *tail, 0, ho * wo)
    return fbuf[:n_out].reshape(ho, wo, k_out), (None if requant is None else qbuf.reshape(ho, wo, k_out))


CASES = [  # k, stride, pad, groups, H, W, Cin, Cout
    (3, 1, 1, 1, 7, 5, 3, 5), (3, 2, 1, 1, 11, 13, 6, 17), (3, 1, 1, 4, 9, 7, 28, 44), (1, 1, 0, 1, 5, 3, 13, 37),
    (5, 2, 1, 1, 13, 11, 3, 7), (3, 2, 0, 2, 7, 7, 10, 6), (1, 2, 0, 4, 9, 9, 20, 68), (3, 1, 1, 1, 3, 3, 67, 3),
    (3, 1, 2, 1, 5, 4, 130, 2)]


@pytest.mark.parametrize("k,stride,pad,groups,h,w,cin,cout", CASES)
@pytest.mark.parametrize("z", [0, 3])
def test_dot_u8i8_bit_exact(k, stride, pad, groups, h, w, cin, cout, z):
    q = rng.integers(0, 256, (h, w, cin)).astype(np.uint8)
    w_int = rng.integers(-127, 128, (cout, k, k, cin // groups)).astype(np.int8)
    want = conv_int_ref(q, z, w_int, stride, pad, groups)
    assert np.array_equal(int_conv("dot", q, z, w_int, stride, pad, groups)[0], want.astype(np.float32))


@pytest.mark.parametrize("k,stride,pad,groups,h,w,cin,cout", CASES)
@pytest.mark.parametrize("z", [0, 3])
def test_dot_pm1_bit_exact(k, stride, pad, groups, h, w, cin, cout, z):
    """Weights in {-1, 0, 1} (binary patterns): ConvDotRow.PM1 = 1, AVX2's i16-summing tile."""
    q = rng.integers(0, 256, (h, w, cin)).astype(np.uint8)
    w_int = rng.integers(-1, 2, (cout, k, k, cin // groups)).astype(np.int8)
    assert pm1(w_int) == 1
    want = conv_int_ref(q, z, w_int, stride, pad, groups)
    assert np.array_equal(int_conv("dot", q, z, w_int, stride, pad, groups)[0], want.astype(np.float32))


@pytest.mark.parametrize("sign", [-1, 1])
@pytest.mark.parametrize("cin", [64, 130])
def test_dot_pm1_extremes_bit_exact(sign, cin):
    """Every activation 255 and every weight the same sign over 144 and 297 k4 steps:
    the AVX2 tile's i16 partial sums (64 steps of 2 * 255 each) at their bound."""
    q = np.full((4, 5, cin), 255, np.uint8)
    w_int = np.full((20, 3, 3, cin), sign, np.int8)
    want = conv_int_ref(q, 0, w_int, 1, 1, 1)
    assert want.max() == sign * 255 * 9 * cin or want.min() == sign * 255 * 9 * cin
    assert np.array_equal(int_conv("dot", q, 0, w_int, 1, 1, 1)[0], want.astype(np.float32))


@pytest.mark.parametrize("k,stride,pad,h,w,cin,cout", [(5, 2, 2, 13, 11, 3, 64), (7, 2, 3, 9, 12, 3, 20),
                                                         (5, 1, 0, 7, 9, 1, 8), (3, 1, 1, 6, 5, 6, 33),
                                                         (5, 2, 1, 8, 8, 3, 3)])
@pytest.mark.parametrize("z", [0, 9])
def test_dot_rows_bit_exact(k, stride, pad, h, w, cin, cout, z):
    """Row-packed dot conv (RGB stems): a window row's k*Cin bytes in ceil(k*Cin/4)
    steps; the bytes past a row (the next pixel's, the slack) meet zero weights."""
    from seprt.kernels.conv import use_rows
    assert use_rows(k, cin, 1)
    q = rng.integers(0, 256, (h, w, cin)).astype(np.uint8)
    w_int = rng.integers(-128, 128, (cout, k, k, cin)).astype(np.int8)
    want = conv_int_ref(q, z, w_int, stride, pad, 1)
    assert np.array_equal(int_conv("dot-rows", q, z, w_int, stride, pad, 1)[0], want.astype(np.float32))


@pytest.mark.parametrize("k,stride,pad,h,w,c", [(3, 1, 1, 7, 5, 6), (3, 2, 1, 11, 13, 17), (5, 2, 2, 9, 7, 3),
                                                 (3, 1, 0, 5, 5, 64), (3, 2, 1, 6, 6, 1)])
@pytest.mark.parametrize("z", [0, 7])
def test_depthwise_u8i8_bit_exact(k, stride, pad, h, w, c, z):
    """Depthwise (groups = C = K): one filter per channel, int8 weights incl. -128."""
    q = rng.integers(0, 256, (h, w, c)).astype(np.uint8)
    w_int = rng.integers(-128, 128, (c, k, k, 1)).astype(np.int8)
    w_int[0, 0, 0, 0] = -128
    want = conv_int_ref(q, z, w_int, stride, pad, c)
    assert np.array_equal(int_conv("dw", q, z, w_int, stride, pad, c)[0], want.astype(np.float32))


@pytest.mark.parametrize("kernel,groups,cout", [("dot", 2, 20), ("dot", 1, 48), ("dot", 1, 16), ("dot", 1, 64),
                                                ("dw", 12, 12), ("popcount", 2, 20)])
@pytest.mark.parametrize("res,relu,requant", [(False, 1, None), (True, 0, None), (True, 1, (0.043, 0)),
                                              (False, 0, (0.11, 131)), (True, 2, (0.043, 0)), (False, 2, None)])
def test_fused_epilogue_bit_exact(kernel, groups, cout, res, relu, requant):
    """Each kernel's fused epilogue (scale, bias, residual, relu or relu6, requantization
    into the next layer's buffer) against numpy, on real scales and biases. The dot
    tiles: blocks of 10 channels (scalar epilogue), 48 = a whole 32-channel block
    (epilogue in registers, 4- and 1-pixel tiles) and a partial 16, 16 and 64 (whole
    16- and 32-channel blocks, 8- and 1-pixel tiles)."""
    h, w, c, k, stride, pad, z = 6, 5, 12, 3, 1, 1, 4
    q = rng.integers(0, 256, (h, w, c)).astype(np.uint8)
    if kernel == "dot":
        w_int = rng.integers(-128, 128, (cout, k, k, c // groups)).astype(np.int8)
    else:
        w_int = binarize(rng.standard_normal((cout, k, k, c // groups)).astype(np.float32))[0]
    mult = (rng.random(cout) * 0.01 + 1e-4).astype(np.float32)
    bias = rng.standard_normal(cout).astype(np.float32)
    r = rng.standard_normal((h, w, cout)).astype(np.float32) if res else None
    acc = conv_int_ref(q, z, w_int, stride, pad, groups)
    want, want_q = epilogue_ref(acc, mult, bias, r, relu, requant)
    got, got_q = int_conv(kernel, q, z, w_int, stride, pad, groups, mult=mult, bias=bias, res=r, relu=relu,
                          requant=requant)
    assert np.array_equal(got, want)
    if requant is not None:
        assert np.array_equal(got_q, want_q)


@pytest.mark.parametrize("k,stride,pad,groups,h,w,cin,cout", [c for c in CASES if c[0] > 1])
@pytest.mark.parametrize("bits,z", [(8, 0), (8, 5), (4, 0), (4, 2), (2, 0), (2, 1)])
def test_popcount_bit_exact(k, stride, pad, groups, h, w, cin, cout, bits, z):
    q = rng.integers(0, 1 << bits, (h, w, cin)).astype(np.uint8)
    pattern, _ = binarize(rng.standard_normal((cout, k, k, cin // groups)).astype(np.float32))
    want = conv_int_ref(q, z, pattern, stride, pad, groups)
    assert np.array_equal(int_conv("popcount", q, z, pattern, stride, pad, groups, bits)[0], want.astype(np.float32))
    assert np.array_equal(int_conv("dot", q, z, pattern, stride, pad, groups)[0], want.astype(np.float32))


@pytest.mark.parametrize("bits,z,scale", [(8, 0, 0.05), (8, 131, 0.0173), (4, 0, 0.3), (2, 1, 0.7)])
def test_quantize_kernel_matches_reference(bits, z, scale):
    h, w, c, pad, groups = 5, 7, 6, 1, 2
    x = (rng.standard_normal((h, w, c)) * 3).astype(np.float32)
    x[0, 0, 0] = scale * 2.5                           # a rounding tie: half to even
    A, cgp = padded_u8(np.zeros((h, w, c), np.uint8), z, pad, groups)
    quantize_u8(x.reshape(-1), 0, h, w, c, np.float32(scale), z, (1 << bits) - 1, A, w + 2 * pad, pad, groups, cgp,
                np.zeros(w * c, np.float32), 0, h)
    want, _ = padded_u8(quantize_act(x, scale, z, bits).astype(np.uint8), z, pad, groups)
    assert np.array_equal(A, want)


# ------------------------------------------------------------ whole models

X = np.random.default_rng(7).standard_normal((3, 32, 32, 3)).astype(np.float32)


@pytest.mark.parametrize("variant", ["R", "B", "BQ"])
@pytest.mark.parametrize("arch_id", ["resnet20", "sepnet-cifar"])
def test_models_match_reference(arch_id, variant):
    g = small_graph(variant, arch_id, seed=2)
    logits, embed = FastEngine(g).run(X)
    want = reference.run(g, X, (g.output, g.embed))
    if variant == "BQ":      # integer path: the same accumulators, the same float epilogue
        np.testing.assert_array_equal(logits, want[g.output])
    np.testing.assert_allclose(logits, want[g.output], rtol=1e-4, atol=1e-4 * np.abs(want[g.output]).max())
    np.testing.assert_allclose(embed, want[g.embed], rtol=1e-4, atol=1e-5)


def branchy_arch():
    """Inception-style net with depthwise convs and channel concat (MobileNet, GoogLeNet)."""
    from seprt.arch import Arch, Layer
    c = lambda name, x, k, kernel=1, groups=1, stride=1: Layer(name, "conv", (x,), out_channels=k, kernel=kernel,
                                                              pad=kernel // 2, groups=groups, stride=stride)
    layers = (
        c("stem", "input", 16, 3), Layer("stem.relu", "relu", ("stem",)),
        c("dw", "stem.relu", 16, 3, groups=16), Layer("dw.relu", "relu", ("dw",)),
        c("b1", "dw.relu", 12), c("b2", "dw.relu", 20, 3), Layer("b3", "maxpool", ("dw.relu",), kernel=3, pad=1),
        Layer("cat", "concat", ("b1", "b2", "b3")), Layer("cat.relu", "relu", ("cat",)),
        c("dw2", "cat.relu", 48, 3, groups=48, stride=2), Layer("dw2.relu", "relu", ("dw2",)),
        c("pw", "dw2.relu", 24), Layer("pool", "gap", ("pw",)), Layer("fc", "fc", ("pool",), out_channels=10))
    from seprt.arch import CIFAR10_LABELS
    return Arch("branchy", (17, 19, 3), 10, layers, CIFAR10_LABELS)


@pytest.mark.parametrize("variant", ["R", "B", "BQ"])
def test_concat_and_depthwise_models_match_reference(variant):
    from seprt import variants
    a = branchy_arch()
    layers = variants.random_layers(a, seed=5)
    if variant != "R":
        layers = variants.binarize_layers(a, layers, "all")
    calib = np.random.default_rng(6).standard_normal((8,) + a.input_shape).astype(np.float32)
    g = variants.build_graph(a, layers, variant, variants.default_preprocess(a), calib if variant == "BQ" else None)
    e = FastEngine(g)
    x = np.random.default_rng(8).standard_normal((3,) + a.input_shape).astype(np.float32)
    logits, embed = e.run(x)
    want = reference.run(g, x, (g.output, g.embed))
    if variant == "BQ":
        assert any(p.startswith("dw-u8") for p in e.plan.paths)      # the depthwise kernel ran, not a dense tile
        np.testing.assert_array_equal(logits, want[g.output])
        np.testing.assert_array_equal(embed, want[g.embed])
    np.testing.assert_allclose(logits, want[g.output], rtol=1e-4, atol=1e-4 * np.abs(want[g.output]).max())


def _matches_reference(e, g, exact: bool) -> None:
    """Logits (and embedding, when exact) of two random images as the reference computes them."""
    x = np.random.default_rng(5).standard_normal((2,) + g.values[g.input].shape).astype(np.float32)
    logits, embed = e.run(x)
    want = reference.run(g, x, (g.output, g.embed))
    if exact:
        np.testing.assert_array_equal(logits, want[g.output])
        np.testing.assert_array_equal(embed, want[g.embed])
    np.testing.assert_allclose(logits, want[g.output], rtol=1e-4, atol=1e-4 * np.abs(want[g.output]).max())


def fire_arch():
    """SqueezeNet-style: two convs concatenated and read only by integer convs
    (the concat runs no step: its producers write the consumers' u8 buffer),
    a concat read by a max pool (the producers write the pool's u8 input),
    then a concat read by a float op (a plain concat step)."""
    from seprt.arch import Arch, Layer, CIFAR10_LABELS
    c = lambda name, x, k, kernel=1: Layer(name, "conv", (x,), out_channels=k, kernel=kernel, pad=kernel // 2)
    r = lambda name: Layer(name + ".relu", "relu", (name,))
    layers = (c("stem", "input", 16, 3), r("stem"),
              c("e1", "stem.relu", 12), r("e1"), c("e3", "stem.relu", 20, 3), r("e3"),
              Layer("cat", "concat", ("e1.relu", "e3.relu")),
              c("s3", "cat", 24, 3), r("s3"), c("s1", "cat", 8), r("s1"),
              Layer("cat2", "concat", ("s3.relu", "s1.relu")),
              Layer("mp", "maxpool", ("cat2",), kernel=3, stride=2), c("p", "mp", 16), r("p"),
              c("x1", "p.relu", 8), r("x1"), c("x3", "p.relu", 12, 3), r("x3"),
              Layer("cat3", "concat", ("x1.relu", "x3.relu")),
              Layer("pool", "gap", ("cat3",)), Layer("fc", "fc", ("pool",), out_channels=10))
    return Arch("fire", (13, 11, 3), 10, layers, CIFAR10_LABELS)


@pytest.mark.parametrize("variant", ["B", "BQ"])
def test_fused_concat_and_its_producers_match_reference(variant):
    from seprt import variants
    a = fire_arch()
    layers = variants.binarize_layers(a, variants.random_layers(a, seed=3), "all")
    calib = np.random.default_rng(4).standard_normal((8,) + a.input_shape).astype(np.float32)
    g = variants.build_graph(a, layers, variant, variants.default_preprocess(a), calib if variant == "BQ" else None)
    for threads in (1, 2):
        e = FastEngine(g, threads=threads)
        names = list(e.plan.names)
        if variant == "BQ":
            assert not {"cat", "quantize cat", "cat2"} & set(names) and "cat3" in names
            assert e.plan.paths[names.index("mp")].startswith("maxpool-u8")
        _matches_reference(e, g, variant == "BQ")


def inception_arch():
    """GoogLeNet-style blocks: each block's input is read by 1x1 convs and by a
    3x3 stride-1 max pool (whose output a 1x1 conv reads), and the block's
    branches are concatenated; then a stride-2 max pool read by a conv and by
    another stride-1 pool."""
    from seprt.arch import Arch, Layer, CIFAR10_LABELS
    c = lambda name, x, k, kernel=1: Layer(name, "conv", (x,), out_channels=k, kernel=kernel, pad=kernel // 2)
    r = lambda name: Layer(name + ".relu", "relu", (name,))
    mp = lambda name, x, stride=1: Layer(name, "maxpool", (x,), kernel=3, stride=stride, pad=1 if stride == 1 else 0)

    def block(p, x):
        return (c(p + "1", x, 8), r(p + "1"), c(p + "3r", x, 8), r(p + "3r"), c(p + "3", p + "3r.relu", 12, 3),
                r(p + "3"), mp(p + "mp", x), c(p + "p", p + "mp", 8), r(p + "p"),
                Layer(p + "cat", "concat", (p + "1.relu", p + "3.relu", p + "p.relu")))
    layers = ((c("stem", "input", 16, 3), r("stem")) + block("a", "stem.relu") + block("b", "acat")
              + (mp("down", "bcat", 2), c("c1", "down", 8), r("c1"), mp("cmp", "down"), c("cp", "cmp", 8), r("cp"),
                 Layer("ccat", "concat", ("c1.relu", "cp.relu")),
                 Layer("pool", "gap", ("ccat",)), Layer("fc", "fc", ("pool",), out_channels=10)))
    return Arch("inception", (11, 13, 3), 10, layers, CIFAR10_LABELS)


@pytest.mark.parametrize("variant", ["B", "BQ"])
def test_max_pools_on_shared_u8_buffers_match_reference(variant):
    """A max pool whose input integer convs also read runs on their u8 buffer
    when its output has its input's quantization (calibrate gives it that), so
    an Inception block runs no float step and no concat step."""
    from seprt import variants
    a = inception_arch()
    layers = variants.binarize_layers(a, variants.random_layers(a, seed=3), "all")
    calib = np.random.default_rng(4).standard_normal((8,) + a.input_shape).astype(np.float32)
    g = variants.build_graph(a, layers, variant, variants.default_preprocess(a), calib if variant == "BQ" else None)
    if variant == "BQ":
        q = {v.name: (v.q_scale, v.q_zero, v.q_bits) for v in g.values}
        assert q["amp"] == q["stem.relu"] and q["bmp"] == q["acat"] and q["cmp"] == q["down"]
        assert q["down"] != q["bcat"]                       # the pool's input is not quantized: its own
    for threads in (1, 2):
        e = FastEngine(g, threads=threads)
        names, paths = list(e.plan.names), list(e.plan.paths)
        if variant == "BQ":
            assert {paths[names.index(p)][:10] for p in ("amp", "bmp", "down", "cmp")} == {"maxpool-u8"}
            assert not {"acat", "bcat"} & set(names)            # ccat: the float gap reads it
            assert [n for n, p in zip(names, paths) if p == "f32" or p.startswith("quantize")] == \
                ["quantize input", "ccat", "ccat", "pool", "quantize pool"]
        _matches_reference(e, g, variant == "BQ")


def test_depthwise_cost_follows_its_macs():
    """A depthwise conv's MACs are k*k per output, and its instruction is one dw kernel."""
    from seprt import variants
    a = branchy_arch()
    calib = np.random.default_rng(6).standard_normal((4,) + a.input_shape).astype(np.float32)
    g = variants.build_graph(a, variants.random_layers(a, seed=5), "BQ", variants.default_preprocess(a), calib)
    p = FastEngine(g).plan
    row = next(i for i, n in enumerate(p.names) if n.startswith("dw2"))
    assert p.paths[row] == "dw-u8i8-vec16" and p.macs[row] == 48 * 9 * 9 * 10


def test_int8_weight_minus_128_bit_exact():
    """The spec's MUST: readers compute int8 -128 exactly (writers never write it)."""
    g = small_graph("BQ", "resnet20", seed=4)
    for n in g.nodes:
        if n.wfmt == "i8":
            w = n.weight.copy()
            w.reshape(-1)[::7] = -128
            n.tensors = (w,) + n.tensors[1:]
    x = X[:2]
    np.testing.assert_array_equal(FastEngine(g).run(x)[0], reference.run(g, x)[g.output])


@pytest.mark.parametrize("bits", [4, 2])
@pytest.mark.parametrize("kernel", ["dot", "popcount"])
def test_low_bit_models_match_reference(bits, kernel, monkeypatch):
    monkeypatch.setenv("SEPRT_BIN_KERNEL", kernel)
    g = small_graph("BQ", "sepnet-cifar", seed=3, act_bits=bits)
    e = FastEngine(g)
    assert any(p.startswith("popcount" if kernel == "popcount" else "dot-u" + str(bits)) for p in e.plan.paths)
    np.testing.assert_array_equal(e.run(X)[0], reference.run(g, X)[g.output])


def test_same_top1_on_every_sample_image():
    m_ref = seprt.Model(seprt.demo_model_path(), engine="reference")
    m_fast = seprt.Model(seprt.demo_model_path(), engine="fast")
    for p in seprt.demo_images():
        x = m_ref.preprocess(p)
        assert np.argmax(m_fast.logits(x)) == np.argmax(m_ref.logits(x))
        assert m_fast.predict(p, top_k=1)[0][0] == m_ref.predict(p, top_k=1)[0][0]


def test_threads_and_concurrent_calls_are_identical():
    g = small_graph("BQ", "resnet20", seed=4)
    e = FastEngine(g)
    x = np.random.default_rng(1).standard_normal((8, 32, 32, 3)).astype(np.float32)
    want = e.run(x)[0]
    out = {}

    def work(i):
        out[i] = e.run(x)[0]
    ts = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    [t.start() for t in ts]
    [t.join() for t in ts]
    assert all(np.array_equal(v, want) for v in out.values())
    m = seprt.Model.from_bytes(__import__("seprt.format", fromlist=["x"]).to_bytes(g), threads=3)
    assert np.array_equal(m.logits(x), want)


@pytest.mark.parametrize("arch_id,variant", [("sepnet-cifar", "BQ"), ("resnet20", "BQ"), ("resnet20", "R")])
def test_threads_on_one_image_bit_identical(arch_id, variant):
    """threads = 2, 3, 4 split every layer of one image: the same bits as 1 thread;
    two engines with different counts run side by side from concurrent Python threads."""
    g = small_graph(variant, arch_id, seed=6)
    x = X[:1]
    want = FastEngine(g).run(x)
    for t in (2, 3, 4):
        e = FastEngine(g, threads=t)
        got = e.run(x)
        assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1])
        assert np.array_equal(e.run(X)[0], FastEngine(g).run(X)[0])          # batch >= threads: split by image
    e2, e3 = FastEngine(g, threads=2), FastEngine(g, threads=3)
    out = {}

    def work(i):
        out[i] = (e2 if i % 2 else e3).run(x)[0]
    ts = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    [t.start() for t in ts]
    [t.join() for t in ts]
    assert len(out) == 6 and all(np.array_equal(v, want[0]) for v in out.values())


def test_branchy_model_threads_bit_identical():
    from seprt import variants
    a = branchy_arch()
    calib = np.random.default_rng(6).standard_normal((4,) + a.input_shape).astype(np.float32)
    g = variants.build_graph(a, variants.binarize_layers(a, variants.random_layers(a, seed=5), "all"), "BQ",
                             variants.default_preprocess(a), calib)
    x = calib[:1]
    assert np.array_equal(FastEngine(g, threads=3).run(x)[0], reference.run(g, x)[g.output])


@pytest.mark.parametrize("threads", [1, 2])
def test_profile_covers_every_instruction(threads):
    """Stamps taken inside one whole run: every instruction has a wall time and
    each thread's busy time, which its wall time covers (threads wait in it)."""
    g = small_graph("BQ", "sepnet-cifar", seed=5)
    e = FastEngine(g, threads=threads)
    rows = e.profile(X[:3], runs=3)
    assert len(rows) == len(e.plan.prog) and all(r["seconds"] > 0 for r in rows)
    assert all(0 < r["busy_min"] <= r["busy"] for r in rows)
    assert sum(r["busy"] for r in rows) <= sum(r["seconds"] for r in rows) * 1.05   # medians of each
    assert sum(r["macs"] for r in rows) == g.macs()
    assert np.array_equal(e.run(X[:1])[0], FastEngine(g).run(X[:1])[0])              # tracing changed nothing


def test_team_sleeps_wakes_and_closes():
    """A team worker that found no job for WORKER_SPIN_NS sleeps and is woken by
    the next job; an engine that is collected stops its workers."""
    import gc
    import time
    from seprt import engine as eng
    g = small_graph("BQ", "resnet20", seed=4)
    want = FastEngine(g).run(X[:1])[0]
    e = FastEngine(g, threads=2)
    for _ in range(3):
        assert np.array_equal(e.run(X[:1])[0], want)
        time.sleep(3 * eng.WORKER_SPIN_NS * 1e-9)
    team = e._team
    del e
    gc.collect()
    assert team.ctl[eng.CLOSED] == 1
    for w in team.workers:
        w.join(timeout=10)
        assert not w.is_alive()


def _avx2_but_not_its_run() -> bool:
    from seprt.kernels.intrinsics import dot_isa, runnable_isas
    return "avx2" in runnable_isas() and dot_isa() != "avx2"


@pytest.mark.parametrize("env", [
    pytest.param({"NUMBA_CPU_NAME": "generic"}, id="generic", marks=pytest.mark.skipif(
        os.environ.get("NUMBA_CPU_NAME") == "generic", reason="already the generic run")),
    pytest.param({"SEPRT_DOT_ISA": "avx2"}, id="avx2", marks=pytest.mark.skipif(
        not _avx2_but_not_its_run(), reason="needs an x86 CPU with AVX2 (and not already its run)"))])
def test_engine_is_correct_on_another_path(env):
    """The same kernel and model tests on the other paths this CPU can take:
    compiled for a CPU without AVX-512 (NUMBA_CPU_NAME=generic), as on a Raspberry
    Pi-class CPU, and on the AVX2 tiles (what a VNNI CPU would not pick itself)."""
    env = {**os.environ, **env}
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", __file__,
                        "-k", "bit_exact or match_reference or top1"],
                       capture_output=True, text=True, env=env, cwd=os.path.dirname(os.path.dirname(__file__)))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert " passed" in r.stdout


@pytest.mark.parametrize("k,stride,pad,is_max,ceil,cip", [
    (3, 2, 0, 1, 0, 0), (3, 2, 1, 1, 0, 0), (3, 2, 1, 0, 0, 0), (2, 2, 0, 0, 0, 0), (3, 1, 1, 1, 0, 0),
    (3, 2, 0, 1, 1, 0), (3, 2, 1, 0, 1, 1), (3, 2, 1, 0, 0, 1), (2, 2, 0, 0, 1, 0), (5, 3, 2, 0, 1, 1)])
@pytest.mark.parametrize("c", [5, 37])
def test_pool_kernel_matches_reference(k, stride, pad, is_max, ceil, cip, c):
    """Max pool bit-exact, average pool to float rounding; the fused quantization
    of the output into a padded u8 buffer equals seprt.quant.quantize_act of it.
    c = 37: two 16-channel register blocks (max16_cols) and a scalar tail."""
    from seprt.kernels.elementwise import pool_f32
    from seprt.ops import conv_out
    from seprt.quant import quantize_act
    h, w, qpad, scale, zero = 11, 9, 2, np.float32(0.01), 7
    x = rng.standard_normal((1, h, w, c)).astype(np.float32)
    ho, wo = conv_out(h, k, stride, pad, ceil), conv_out(w, k, stride, pad, ceil)
    buf = np.concatenate([x.reshape(-1), np.zeros(ho * wo * c, np.float32)])
    qbuf = np.full((ho + 2 * qpad, wo + 2 * qpad + 1, c), 3, np.uint8)
    stage = np.full(w * c, np.nan, np.float32)
    pool_f32(buf, 0, h, w, c, k, stride, pad, ho, wo, x.size, is_max, cip,
             qbuf.reshape(-1), 0, qpad, qbuf.shape[1], zero, 255, scale, stage, 0, ho)
    extra = {"ceil_mode": ceil} if is_max else {"ceil_mode": ceil, "count_include_pad": cip}
    want = run_op("maxpool" if is_max else "avgpool", [x], kernel=k, stride=stride, pad=pad, **extra)
    got = buf[x.size:].reshape(want.shape)
    if is_max:
        np.testing.assert_array_equal(got, want)
    else:
        np.testing.assert_allclose(got, want, rtol=1e-6)
    np.testing.assert_array_equal(qbuf[qpad:qpad + ho, qpad:qpad + wo], quantize_act(got[0], scale, zero, 8))
    inner = np.zeros(qbuf.shape[:2], bool)
    inner[qpad:qpad + ho, qpad:qpad + wo] = True
    assert (qbuf[~inner] == 3).all()                                  # the border is left alone


@pytest.mark.parametrize("k,stride,pad,ceil", [(3, 2, 0, 0), (3, 2, 1, 0), (3, 2, 0, 1), (2, 2, 0, 1), (3, 1, 1, 0)])
def test_maxpool_u8_kernel_matches_reference(k, stride, pad, ceil):
    """The quantized max pool equals the float max pool of the dequantized
    input (max commutes with the monotonic quantization), into a padded buffer."""
    from seprt.kernels.elementwise import maxpool_u8
    from seprt.ops import conv_out
    h, w, c, opad = 11, 9, 8, 1
    q = rng.integers(0, 256, (1, h, w, c)).astype(np.uint8)
    ho, wo = conv_out(h, k, stride, pad, ceil), conv_out(w, k, stride, pad, ceil)
    wp = wo + 2 * opad
    buf = np.concatenate([q.reshape(-1), np.full((ho + 2 * opad) * wp * c, 7, np.uint8)])
    maxpool_u8(buf, 0, h, w, c, k, stride, pad, ho, wo, q.size, wp, opad, 0, ho)
    want = run_op("maxpool", [q.astype(np.float32)], kernel=k, stride=stride, pad=pad, ceil_mode=ceil)
    out = buf[q.size:].reshape(ho + 2 * opad, wp, c)
    np.testing.assert_array_equal(out[opad:opad + ho, opad:opad + wo], want[0])
    assert (out[0] == 7).all() and (out[:, 0] == 7).all()             # the border is left alone


def test_maxpool_between_convs_runs_quantized():
    """conv -> relu -> max pool -> conv only (VGG, SqueezeNet): the pool runs on
    u8 values, the conv before it quantizes with the pool's scale; bit-exact."""
    from seprt import variants
    from seprt.arch import CIFAR10_LABELS, Arch, Layer
    layers = (Layer("c1", "conv", ("input",), out_channels=16, kernel=3, pad=1), Layer("c1.relu", "relu", ("c1",)),
              Layer("p1", "maxpool", ("c1.relu",), kernel=3, stride=2, pad=1),
              Layer("c2", "conv", ("p1",), out_channels=24, kernel=3, pad=1), Layer("c2.relu", "relu", ("c2",)),
              Layer("p2", "maxpool", ("c2.relu",), kernel=2, stride=2),
              Layer("c3", "conv", ("p2",), out_channels=8, kernel=1), Layer("pool", "gap", ("c3",)),
              Layer("fc", "fc", ("pool",), out_channels=10))
    a = Arch("vggish", (18, 15, 3), 10, layers, CIFAR10_LABELS)
    calib = np.random.default_rng(6).standard_normal((8,) + a.input_shape).astype(np.float32)
    g = variants.build_graph(a, variants.random_layers(a, seed=5), "BQ", variants.default_preprocess(a), calib)
    e = FastEngine(g)
    assert e.plan.paths.count("maxpool-u8") == 2 and not {"quantize p1", "quantize p2"} & set(e.plan.names)
    x = np.random.default_rng(8).standard_normal((3,) + a.input_shape).astype(np.float32)
    np.testing.assert_array_equal(e.run(x)[0], reference.run(g, x)[g.output])
    np.testing.assert_array_equal(FastEngine(g, threads=3).run(x[:1])[0], e.run(x[:1])[0])


@pytest.mark.parametrize("variant", ["R", "BQ"])
def test_relu6_fuses_into_convs(variant):
    """MobileNetV2's conv -> relu6 (act kind 1), depthwise included: the clamp
    runs in the conv's epilogue (no act step); the integer path bit-exact against the reference."""
    from seprt.graph import Graph, Value, make_node
    from seprt.quant import quantize_weights_i8
    f = lambda *s: rng.standard_normal(s).astype(np.float32)
    q = variant == "BQ"

    def w(*s):
        wt = f(*s) * 2
        if not q:
            return {"wfmt": "f32", "weight": wt, "bias": f(s[0])}
        wq, sc = quantize_weights_i8(wt)
        return {"wfmt": "i8", "weight": wq, "scale": sc, "bias": f(s[0])}
    qp = lambda s, z: dict(q_scale=s, q_zero=z, q_bits=8) if q else {}
    vals = [Value("input", (9, 7, 3), **qp(0.02, 128)), Value("pw", (9, 7, 16)), Value("pw.r6", (9, 7, 16), **qp(0.025, 0)),
            Value("dw", (9, 7, 16)), Value("dw.r6", (9, 7, 16)), Value("pool", (16,), **qp(0.025, 0)), Value("fc", (3,))]
    nodes = [make_node("pw", "conv", [0], 1, {}, w(16, 1, 1, 3)), make_node("pw.r6", "act", [1], 2, {"kind": 1}),
             make_node("dw", "conv", [2], 3, {"kernel": 3, "pad": 1, "groups": 16}, w(16, 3, 3, 1)),
             make_node("dw.r6", "act", [3], 4, {"kind": 1}), make_node("pool", "gap", [4], 5),
             make_node("fc", "fc", [5], 6, {}, w(3, 16))]
    meta = {"arch": "t", "variant": variant, "labels": ["a", "b", "c"], "preprocess.size": [9, 7],
            "preprocess.resize": "stretch", "preprocess.mean": [0.5] * 3, "preprocess.std": [0.25] * 3}
    g = Graph(vals, nodes, 0, 6, 5, meta)
    g.validate()
    e = FastEngine(g)
    assert not any(p.startswith("act") for p in e.plan.paths) and "pw (+pw.r6)" in e.plan.names
    x = f(3, 9, 7, 3) * 2
    want = reference.run(g, x, outputs=(g.output, g.embed, 2))
    logits, embed = e.run(x)
    check = np.testing.assert_array_equal if q else \
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)  # float convs sum in another order
    check(embed, want[g.embed])
    check(logits, want[g.output])
    assert (want[2] == 6).any() and (want[2] == 0).any()             # both ends of the clamp were hit


def _elementwise_graph(op, attrs, shape=(7, 5, 6), weights=None, second=None):
    """input (H, W, 3) -> 1x1 conv to `shape` channels -> op [-> gap] -> fc (3): runs one new op in the engine."""
    from seprt.graph import Graph, Value, make_node
    h, w, c = shape
    f = lambda *s: rng.standard_normal(s).astype(np.float32)
    vals = [Value("input", (h, w, 3)), Value("conv", shape)]
    nodes = [make_node("conv", "conv", [0], 1, {}, {"wfmt": "f32", "weight": f(c, 1, 1, 3), "bias": f(c)})]
    inputs = [1]
    if second == "gates":
        vals.append(Value("gates", (c,)))
        nodes.append(make_node("gates", "gap", [1], 2))
        inputs = [1, 2]
    vals.append(Value("op", shape))
    nodes.append(make_node("op", op, inputs, len(vals) - 1, attrs, weights))
    out = len(vals) - 1
    vals += [Value("pool", (c,)), Value("fc", (3,))]
    nodes += [make_node("pool", "gap", [out], out + 1),
              make_node("fc", "fc", [out + 1], out + 2, {}, {"wfmt": "f32", "weight": f(3, c), "bias": f(3)})]
    meta = {"arch": "t", "variant": "R", "labels": ["a", "b", "c"], "preprocess.size": [h, w],
            "preprocess.resize": "stretch", "preprocess.mean": [0.5] * 3, "preprocess.std": [0.25] * 3}
    g = Graph(vals, nodes, 0, out + 2, out + 1, meta)
    g.validate()
    return g


@pytest.mark.parametrize("op,attrs,exact", [
    ("act", {"kind": 1}, True), ("act", {"kind": 2, "slope": 0.1}, True), ("act", {"kind": 3}, False),
    ("act", {"kind": 4}, True), ("act", {"kind": 5}, False), ("act", {"kind": 6}, True),
    ("shuffle", {"groups": 3}, True), ("affine", {}, True), ("mul", {}, True)])
def test_new_elementwise_kernels_match_reference(op, attrs, exact):
    """act, shuffle, affine, mul: each kernel on its own bit-exact against the op table's
    numpy reference (silu/sigmoid within float32 exp rounding), and in a graph run by the engine."""
    from seprt.kernels.elementwise import act_f32, affine_f32, mul_f32, shuffle_f32
    x = rng.standard_normal((1, 7, 5, 6)).astype(np.float32) * 4
    n = x.size
    buf = np.concatenate([x.reshape(-1), np.zeros(n, np.float32), rng.standard_normal(6).astype(np.float32)])
    s = buf[2 * n:].copy()
    w, b = rng.standard_normal(6).astype(np.float32), rng.standard_normal(6).astype(np.float32)
    if op == "act":
        act_f32(buf, 0, n, n, attrs["kind"], np.float32(attrs.get("slope", 0.01)), 0, n)
        want = run_op("act", [x], **attrs)
    elif op == "shuffle":
        shuffle_f32(buf, 0, n, 35, 6, 3, 0, 35)
        want = run_op("shuffle", [x], groups=3)
    elif op == "affine":
        affine_f32(buf, 0, w, b, n, -1, 35, 6, 0, 0, 35)
        want = run_op("affine", [x], weights={"wfmt": "f32", "weight": w, "bias": b})
    else:
        mul_f32(buf, 0, 2 * n, n, 35, 6, 0, 35)
        want = run_op("mul", [x, s[None]])
    got = buf[n:2 * n].reshape(want.shape)
    if exact:
        np.testing.assert_array_equal(got, want)
    else:
        np.testing.assert_allclose(got, want, rtol=2e-6, atol=1e-7)
    weights = {"wfmt": "f32", "weight": rng.standard_normal(6).astype(np.float32),
               "bias": rng.standard_normal(6).astype(np.float32)} if op == "affine" else None
    g = _elementwise_graph(op, attrs, weights=weights, second="gates" if op == "mul" else None)
    x = rng.standard_normal((3, 7, 5, 3)).astype(np.float32) * 4
    env_ref = reference.run(g, x, outputs=(g.embed,))[g.embed]
    _, embed = FastEngine(g).run(x)
    np.testing.assert_allclose(embed, env_ref, rtol=1e-5, atol=1e-5)     # float convs: summation order


def test_flatten_and_fused_affine_match_reference():
    """flatten (a copy) before an fc; an affine with a fused residual add and relu."""
    from seprt.graph import Graph, Value, make_node
    f = lambda *s: rng.standard_normal(s).astype(np.float32)
    vals = [Value("input", (4, 3, 3)), Value("conv", (4, 3, 5)), Value("bn", (4, 3, 5)), Value("sum", (4, 3, 5)),
            Value("relu", (4, 3, 5)), Value("flat", (60,)), Value("fc", (2,))]
    nodes = [make_node("conv", "conv", [0], 1, {"kernel": 3, "pad": 1}, {"wfmt": "f32", "weight": f(5, 3, 3, 3),
                                                                         "bias": f(5)}),
             make_node("bn", "affine", [1], 2, {}, {"wfmt": "f32", "weight": f(5), "bias": f(5)}),
             make_node("sum", "add", [2, 1], 3), make_node("relu", "relu", [3], 4),
             make_node("flat", "flatten", [4], 5),
             make_node("fc", "fc", [5], 6, {}, {"wfmt": "f32", "weight": f(2, 60), "bias": f(2)})]
    meta = {"arch": "t", "variant": "R", "labels": ["a", "b"], "preprocess.size": [4, 3],
            "preprocess.resize": "stretch", "preprocess.mean": [0.5] * 3, "preprocess.std": [0.25] * 3}
    g = Graph(vals, nodes, 0, 6, 5, meta)
    g.validate()
    eng = FastEngine(g)
    assert any("(+" in name for name in eng.plan.names)             # add and relu fused into the affine
    x = f(2, 4, 3, 3)
    logits, embed = eng.run(x)
    np.testing.assert_allclose(embed, reference.run(g, x, outputs=(g.embed,))[g.embed], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(logits, reference.run(g, x)[g.output], rtol=1e-5, atol=1e-5)


def test_sepnet_t8_bq_matches_reference():
    """224x224, 5x5 stride-2 conv1, max-pool, 1000 classes: bit-exact logits."""
    from seprt import arch, variants
    g = variants.random_graph(arch.get("sepnet-t8"), "BQ", "prb", seed=1, calib_n=1)
    x = np.random.default_rng(3).standard_normal((1, 224, 224, 3)).astype(np.float32)
    np.testing.assert_array_equal(FastEngine(g).run(x)[0], reference.run(g, x)[g.output])


def test_jit_cache_is_keyed_by_kernel_sources():
    """numba keys a cached function by its own bytecode; ours also by every
    kernel source, so an edited kernel is never run from a stale cache."""
    from seprt.kernels import jit
    from seprt.engine import run_program
    names = {p.name for p in jit._SOURCES}
    assert {"conv.py", "elementwise.py", "intrinsics.py", "engine.py", "plan.py"} <= names
    m = seprt.Model(seprt.demo_model_path())
    m.logits(m.preprocess(seprt.demo_images()[0]))          # compiled (or loaded) now
    assert isinstance(run_program._cache, jit._KernelCache)
    key = run_program._cache._index_key(run_program.signatures[0], run_program.targetctx.codegen())
    assert key[-1] == jit.SOURCE_HASH


def test_info_names_the_kernels():
    m = seprt.Model(seprt.demo_model_path())
    assert m.info()["engine"] == "fast" and any(k.startswith("dot-u8") for k in m.info()["kernels"])


def test_slice_kernel_bit_exact():
    from seprt.kernels.elementwise import slice_f32
    x = rng.standard_normal((1, 7, 5, 6)).astype(np.float32)
    buf = np.concatenate([x.reshape(-1), np.zeros(7 * 5 * 3, np.float32)])
    slice_f32(buf, 0, x.size, 35, 6, 3, 2, 0, 35)
    want = run_op("slice", [x], k=3, start=2)
    np.testing.assert_array_equal(buf[x.size:].reshape(want.shape), want)


@pytest.mark.parametrize("groups", [1, 4])
def test_prb_runs_as_one_dot_instruction(groups):
    """A pattern residual block (3x3 binary + 1x1 int8 of the same input, summed,
    relu) runs as one dot instruction, the 1x1 in the same tiles, bit-exact against
    the reference, on 1 and 3 threads. A 1x1 whose output is also read elsewhere
    keeps its own instruction."""
    from seprt import variants
    from seprt.arch import CIFAR10_LABELS, Arch, Layer
    layers = (Layer("stem", "conv", ("input",), out_channels=32, kernel=3, pad=1), Layer("r0", "relu", ("stem",)),
              Layer("a1", "conv", ("r0",), out_channels=48, kernel=1, groups=groups),
              Layer("a3", "conv", ("r0",), out_channels=48, kernel=3, pad=1, groups=groups),
              Layer("s1", "add", ("a3", "a1")), Layer("r1", "relu", ("s1",)),
              Layer("b1", "conv", ("r1",), out_channels=48, kernel=1, stride=2),     # read twice: not paired
              Layer("b3", "conv", ("r1",), out_channels=48, kernel=3, pad=1, stride=2),
              Layer("s2", "add", ("b3", "b1")), Layer("s3", "add", ("s2", "b1")), Layer("r2", "relu", ("s3",)),
              Layer("pool", "gap", ("r2",)), Layer("fc", "fc", ("pool",), out_channels=10))
    a = Arch("prb", (12, 10, 3), 10, layers, CIFAR10_LABELS)
    ws = variants.binarize_layers(a, variants.random_layers(a, seed=3), "all")
    calib = np.random.default_rng(4).standard_normal((8,) + a.input_shape).astype(np.float32)
    g = variants.build_graph(a, ws, "BQ", variants.default_preprocess(a), calib)
    e = FastEngine(g)
    paired = [n for n, p in zip(e.plan.names, e.plan.paths) if p.endswith("+1x1")]
    assert len(paired) == 1 and paired[0].startswith("a3") and paired[0].endswith("+ a1")
    assert not any(n.startswith("a1") for n in e.plan.names) and any(n.startswith("b1") for n in e.plan.names)
    x = np.random.default_rng(5).standard_normal((3,) + a.input_shape).astype(np.float32)
    np.testing.assert_array_equal(e.run(x)[0], reference.run(g, x)[g.output])
    np.testing.assert_array_equal(FastEngine(g, threads=3).run(x[:1])[0], e.run(x[:1])[0])


def test_share_f32_never_overlaps_live_buffers():
    """Greedy placement: buffers live at the same instruction get disjoint memory;
    ones that are not may share it."""
    from seprt.plan import share_f32
    rng = np.random.default_rng(3)
    sizes = {v: int(rng.integers(1, 500)) for v in range(60)}
    first = {v: int(rng.integers(0, 40)) for v in sizes}
    last = {v: first[v] + int(rng.integers(0, 8)) for v in sizes}
    off, total = share_f32(sizes, first, last)
    for u in sizes:
        assert off[u] % 16 == 0 and off[u] + sizes[u] <= total
        for v in sizes:
            if u < v and first[u] <= last[v] and first[v] <= last[u]:
                assert off[u] + sizes[u] <= off[v] or off[v] + sizes[v] <= off[u], (u, v)
    assert total < sum(sizes.values())


@pytest.mark.parametrize("arch_id", ["resnet20", "sepnet-cifar"])
def test_plan_reuses_float_memory(arch_id):
    """A residual network's float buffers share memory (the whole arena is a few
    live tensors, not one per value), and the results stay the reference's."""
    g = small_graph("BQ", arch_id, seed=2)
    e = FastEngine(g)
    per_value = sum(int(np.prod(v.shape)) for v in g.values if len(v.shape) == 3)    # every feature map
    assert e.plan.sizes["f32"] < per_value / 3
    np.testing.assert_array_equal(e.run(X)[0], reference.run(g, X)[g.output])


def test_grouped_dot_convs_join_groups_by_tile_work():
    """Grouped dot convs run as qg super-groups of neighbouring groups, each one
    block-diagonal conv (plan.Planner.choose_dot_layouts): qg = 1 (dense), a divisor
    in between, or the conv's own groups, whichever has the least tile work.
    Each layout bit-exact against the reference, on 1 and 3 threads."""
    from seprt import variants
    from seprt.arch import CIFAR10_LABELS, Arch, Layer
    from seprt.plan import Planner

    def prb(name, x, k, groups):
        return (Layer(name + ".1x1", "conv", (x,), out_channels=k, kernel=1, groups=groups),
                Layer(name + ".3x3", "conv", (x,), out_channels=k, kernel=3, pad=1, groups=groups),
                Layer(name + ".sum", "add", (name + ".3x3", name + ".1x1")), Layer(name, "relu", (name + ".sum",)))
    layers = ((Layer("stem", "conv", ("input",), out_channels=32, kernel=3, pad=1), Layer("r0", "relu", ("stem",)))
              + prb("a", "r0", 16, 4)       # 4 outputs per group: one dense 16-wide tile
              + prb("b", "a", 32, 4)        # 8 per group: two groups per tile
              + prb("c", "b", 80, 4)        # 20 per group: its own groups
              + (Layer("pool", "gap", ("c",)), Layer("fc", "fc", ("pool",), out_channels=10)))
    a = Arch("grouped", (11, 9, 3), 10, layers, CIFAR10_LABELS)
    ws = variants.binarize_layers(a, variants.random_layers(a, seed=3), "all")
    calib = np.random.default_rng(4).standard_normal((8,) + a.input_shape).astype(np.float32)
    g = variants.build_graph(a, ws, "BQ", variants.default_preprocess(a), calib)
    pl = Planner(g)
    layout = {g.nodes[i].name: q for i, q in pl.qgroups.items() if g.nodes[i].groups > 1}
    assert layout == {"a.1x1": 1, "a.3x3": 1, "b.1x1": 2, "b.3x3": 2, "c.1x1": 4, "c.3x3": 4}
    e = FastEngine(g)
    assert sum(p.endswith("+1x1") for p in e.plan.paths) == 3
    x = np.random.default_rng(5).standard_normal((3,) + a.input_shape).astype(np.float32)
    np.testing.assert_array_equal(e.run(x)[0], reference.run(g, x)[g.output])
    np.testing.assert_array_equal(FastEngine(g, threads=3).run(x[:1])[0], e.run(x[:1])[0])


def test_dense_joins_groups_block_diagonally():
    """Planner._dense: a conv of `groups` groups = the conv of qg groups with the
    block-diagonal weights it returns, for every qg dividing groups."""
    from seprt.plan import Planner
    q = rng.integers(0, 256, (5, 6, 24)).astype(np.uint8)
    w = rng.integers(-128, 128, (24, 3, 3, 24 // 6)).astype(np.int8)
    want = conv_int_ref(q, 7, w, 1, 1, 6)
    for qg in (1, 2, 3, 6):
        np.testing.assert_array_equal(conv_int_ref(q, 7, Planner._dense(w, 6, qg, 24), 1, 1, qg), want)
