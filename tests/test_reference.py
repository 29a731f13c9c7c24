"""Every op's numpy reference (seprt/ops) against PyTorch (one line per case)."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from seprt import reference as ref
from seprt.quant import binarize, pack_pattern, quantize_act, quantize_weights_i8, unpack_pattern

from helpers import run_op

rng = np.random.default_rng(0)


def nchw(x):
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def nhwc(t):
    return t.numpy().transpose(0, 2, 3, 1)


def compare(ours, theirs, *arrays, atol=1e-5, rtol=1e-5):
    """One-line op check: ours(*arrays) vs theirs(*torch tensors), NHWC in and out."""
    got = ours(*arrays)
    want = theirs(*[nchw(a) if a.ndim == 4 else torch.from_numpy(a) for a in arrays])
    want = nhwc(want) if want.ndim == 4 else want.numpy()
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=atol, rtol=rtol)


def x4(n=2, h=7, w=5, c=6):
    return rng.standard_normal((n, h, w, c)).astype(np.float32)


@pytest.mark.parametrize("k,stride,pad,groups,h,w,cin,cout", [
    (3, 1, 1, 1, 7, 5, 6, 4), (3, 2, 1, 1, 7, 5, 6, 4), (3, 2, 1, 3, 11, 13, 6, 9), (5, 2, 1, 1, 13, 11, 3, 5),
    (1, 1, 0, 2, 5, 3, 6, 4), (1, 2, 0, 1, 7, 7, 5, 3), (3, 1, 0, 6, 5, 5, 6, 6), (3, 1, 2, 1, 3, 3, 2, 2)])
def test_conv2d(k, stride, pad, groups, h, w, cin, cout):
    wt = rng.standard_normal((cout, k, k, cin // groups)).astype(np.float32)   # OHWI
    compare(lambda x: ref.conv2d(x, wt, stride, pad, groups),
            lambda x: F.conv2d(x, torch.from_numpy(wt.transpose(0, 3, 1, 2).copy()), None, stride, pad, 1, groups),
            x4(2, h, w, cin), atol=1e-4)


def test_fc():
    wt = rng.standard_normal((7, 13)).astype(np.float32)
    b = rng.standard_normal(7).astype(np.float32)
    compare(lambda x: run_op("fc", [x], k=7, weights={"wfmt": "f32", "weight": wt, "bias": b}),
            lambda x: F.linear(x, torch.from_numpy(wt), torch.from_numpy(b)),
            rng.standard_normal((3, 13)).astype(np.float32))


@pytest.mark.parametrize("k,stride,pad,c", [(3, 1, 1, 6), (3, 2, 1, 5), (5, 2, 2, 7), (3, 1, 0, 1)])
def test_depthwise_conv(k, stride, pad, c):
    wt = rng.standard_normal((c, k, k, 1)).astype(np.float32)
    b = rng.standard_normal(c).astype(np.float32)
    compare(lambda x: run_op("conv", [x], weights={"wfmt": "f32", "weight": wt, "bias": b}, kernel=k,
                             stride=stride, pad=pad, groups=c),
            lambda x: F.conv2d(x, torch.from_numpy(wt.transpose(0, 3, 1, 2).copy()), torch.from_numpy(b),
                               stride, pad, 1, c), x4(2, 9, 7, c), atol=1e-4)


@pytest.mark.parametrize("cs", [(3, 5), (1, 2, 7), (4, 4, 4, 4)])
def test_concat(cs):
    xs = [x4(2, 5, 3, c) for c in cs]
    compare(lambda *a: run_op("concat", list(a)), lambda *a: torch.cat(a, dim=1), *xs)


@pytest.mark.parametrize("k,stride,pad", [(3, 2, 0), (3, 2, 1), (2, 2, 0), (3, 1, 1)])
def test_maxpool(k, stride, pad):
    compare(lambda x: run_op("maxpool", [x], kernel=k, stride=stride, pad=pad),
            lambda x: F.max_pool2d(x, k, stride, pad), x4(2, 11, 9, 3))


@pytest.mark.parametrize("k,stride,pad", [(3, 2, 0), (3, 2, 1), (2, 2, 0)])
def test_avgpool(k, stride, pad):
    compare(lambda x: run_op("avgpool", [x], kernel=k, stride=stride, pad=pad),
            lambda x: F.avg_pool2d(x, k, stride, pad, count_include_pad=False), x4(2, 11, 9, 3))


def test_gap_add_relu_softmax():
    compare(lambda x: run_op("gap", [x]), lambda x: x.mean(dim=(2, 3)), x4())
    compare(lambda a, b: run_op("add", [a, b]), torch.add, x4(), x4())
    compare(lambda x: run_op("relu", [x]), F.relu, x4())
    compare(ref.softmax, lambda z: F.softmax(z, dim=-1), rng.standard_normal((4, 10)).astype(np.float32) * 20)


def test_shortcut_a():
    # the usual PyTorch CIFAR ResNet option-A lambda
    compare(lambda x: run_op("shortcut_a", [x], k=12, stride=2),
            lambda x: F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, 3, 3)), x4(2, 7, 8, 6))


def test_binarize_matches_paper_eq1():
    w = np.array([[[[0.3, -0.1], [0.0, -0.6]]]], np.float32).reshape(1, 2, 2, 1)
    p, a = binarize(w)
    assert p.ravel().tolist() == [1, -1, 1, -1] and a.tolist() == [np.float32(0.25)]
    # alpha*B is the least-squares optimum among scales for B = sign(W)
    err = lambda s: np.sum((w - s * p) ** 2)
    assert err(a[0]) <= min(err(a[0] * 1.01), err(a[0] * 0.99))


@pytest.mark.parametrize("shape", [(5, 3, 3, 7), (4, 3, 3, 8), (3, 5, 5, 1), (2, 3, 3, 13)])
def test_pack_unpack_patterns(shape):
    p, _ = binarize(rng.standard_normal(shape).astype(np.float32))
    packed = pack_pattern(p)
    assert packed.shape == (shape[0], (np.prod(shape[1:]) + 7) // 8)
    assert np.array_equal(unpack_pattern(packed, shape[1:]), p)


def test_packed_pattern_spec_example():
    signs = np.array([1, -1, 1, 1, 1, 1, -1, -1, 1], np.int8).reshape(1, 3, 3, 1)
    assert pack_pattern(signs).tolist() == [[0x3D, 0x01]]


def test_int8_weight_round_trip_bound():
    w = rng.standard_normal((16, 3, 3, 8)).astype(np.float32)
    q, s = quantize_weights_i8(w)
    assert q.dtype == np.int8 and np.abs(q).max() <= 127
    assert np.all(np.abs(q * s[:, None, None, None] - w) <= s[:, None, None, None] / 2 + 1e-7)


def test_quantize_act_rounds_half_to_even_and_clips():
    q = quantize_act(np.array([0.5, 1.5, 2.5, -3.0, 1000.0], np.float32), 1.0, 0, 8)
    assert q.tolist() == [0, 2, 2, 0, 255]
    assert quantize_act(np.array([0.0], np.float32), 0.1, 7, 4).tolist() == [7]


def test_integer_path_equals_float_math_on_dequantized_values():
    """The integer conv is exact: same result as float conv of (q - z) * s and w_int * scale."""
    x = np.abs(x4(1, 6, 6, 8))
    s, z = 0.02, 3
    wt = rng.standard_normal((4, 3, 3, 4)).astype(np.float32)
    p, alpha = binarize(wt)
    y = run_op("conv", [x], k=4, qin=(s, z, 8), kernel=3, pad=1, groups=2,
               weights={"wfmt": "bin", "pattern": pack_pattern(p), "alpha": alpha, "bias": np.zeros(4, np.float32)})
    xq = (quantize_act(x, s, z, 8) - z).astype(np.float32) * np.float32(s)
    want = ref.conv2d(xq, p.astype(np.float32) * alpha[:, None, None, None], 1, 1, 2)
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5)


def test_gap_is_float32_sums_in_pixel_order():
    """gap's definition is exact: f32 sums over pixels in order, then / f32(n).
    These values round differently in float64 or in another order."""
    x = np.zeros((1, 1, 5, 2), np.float32)
    x[0, 0, :, 0] = [1.0, 2.0 ** -24, 2.0 ** -24, 2.0 ** -24, 2.0 ** -24]   # f32: 1 + tiny = 1 each time
    x[0, 0, :, 1] = [2.0 ** -24, 2.0 ** -24, 2.0 ** -24, 2.0 ** -24, 1.0]   # tiny sums first: exact
    got = run_op("gap", [x])
    assert got[0, 0] == np.float32(1.0) / np.float32(5)
    assert got[0, 1] == (np.float32(4 * 2.0 ** -24) + np.float32(1.0)) / np.float32(5)
    assert got[0, 0] != np.float32(np.float64(x[0, 0, :, 0]).sum() / 5)     # float64 would differ


# ------------------------------------------------ ops added for the torch.fx import

@pytest.mark.parametrize("kind,attrs,theirs", [
    (1, {}, F.relu6), (2, {"slope": 0.2}, lambda x: F.leaky_relu(x, 0.2)), (3, {}, F.silu),
    (4, {}, F.hardswish), (5, {}, torch.sigmoid), (6, {}, F.hardsigmoid)])
def test_act(kind, attrs, theirs):
    compare(lambda x: run_op("act", [x], kind=kind, **attrs), theirs, x4() * 4, atol=1e-6)


def test_mul_affine_shuffle_flatten():
    s = rng.standard_normal((2, 6)).astype(np.float32)
    compare(lambda x: run_op("mul", [x, s]), lambda x: x * torch.from_numpy(s)[:, :, None, None], x4())
    w, b = rng.standard_normal(6).astype(np.float32), rng.standard_normal(6).astype(np.float32)
    compare(lambda x: run_op("affine", [x], weights={"wfmt": "f32", "weight": w, "bias": b}),
            lambda x: x * torch.from_numpy(w)[:, None, None] + torch.from_numpy(b)[:, None, None], x4())
    compare(lambda x: run_op("shuffle", [x], groups=3),
            lambda x: x.view(2, 3, 2, 7, 5).transpose(1, 2).reshape(2, 6, 7, 5), x4())
    x = x4()
    np.testing.assert_array_equal(run_op("flatten", [x], k=7 * 5 * 6), nchw(x).permute(0, 2, 3, 1).reshape(2, -1))
    compare(lambda x: run_op("slice", [x], k=4, start=2), lambda x: x[:, 2:6], x4())


@pytest.mark.parametrize("k,stride,pad,ceil,cip,h,w", [
    (3, 2, 0, 1, 0, 7, 8), (3, 2, 1, 1, 1, 7, 5), (3, 2, 1, 0, 1, 7, 5), (2, 2, 0, 1, 0, 5, 7), (5, 3, 2, 1, 1, 11, 9),
    (3, 1, 1, 1, 1, 4, 4)])
def test_pools_ceil_mode_and_count_include_pad(k, stride, pad, ceil, cip, h, w):
    x = x4(2, h, w, 3)
    compare(lambda x: run_op("maxpool", [x], kernel=k, stride=stride, pad=pad, ceil_mode=ceil),
            lambda x: F.max_pool2d(x, k, stride, pad, ceil_mode=bool(ceil)), x)
    compare(lambda x: run_op("avgpool", [x], kernel=k, stride=stride, pad=pad, ceil_mode=ceil, count_include_pad=cip),
            lambda x: F.avg_pool2d(x, k, stride, pad, ceil_mode=bool(ceil), count_include_pad=bool(cip)), x)
