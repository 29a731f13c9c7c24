"""Weight format `stack` (stacked low-dimensional binary filters): layout,
numpy reference against PyTorch, validation of bad input, fuzzing, and the
fast engine (expanded dot path and the bank kernel) bit-exact vs the reference."""
import struct

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings, strategies as st

from seprt import arch, format as fmt, reference, stacked, variants
from seprt.errors import FormatError
from seprt.ops.wfmt_stack import expand
from seprt.quant import pack_pattern, quantize_act

from helpers import refresh_crcs, run_op, section_entries

rng = np.random.default_rng(0)


def stack_tensors(k_out, k, cg, d, m, seed=0):
    r = np.random.default_rng(seed)
    bank = np.where(r.random((m, k, k, d)) < 0.5, -1, 1).astype(np.int8)
    index = r.integers(0, m, (k_out, cg // d)).astype(np.uint8)
    return bank, index, r.random(k_out).astype(np.float32) + 0.1, r.standard_normal(k_out).astype(np.float32)


def test_expand_is_the_documented_layout():
    """docs/format.md's example: bank rows 0x05 (+-+), 0x02 (-+-); index [0,1], [1,1]."""
    w = expand(np.array([[5], [2]], np.uint8), np.array([[0, 1], [1, 1]], np.uint8), (2, 1, 1, 6))
    assert w[:, 0, 0].tolist() == [[1, -1, 1, -1, 1, -1], [-1, 1, -1, -1, 1, -1]]
    bank, index, _, _ = stack_tensors(5, 3, 12, 4, 7)
    w = expand(pack_pattern(bank), index, (5, 3, 3, 12))
    for o in range(5):
        for s in range(3):
            assert np.array_equal(w[o, :, :, 4 * s:4 * s + 4], bank[index[o, s]])


@pytest.mark.parametrize("k,stride,pad,groups,cin,cout,d,m", [
    (3, 1, 1, 1, 8, 5, 4, 3), (3, 2, 1, 1, 6, 7, 3, 11), (5, 2, 2, 2, 8, 4, 2, 5), (1, 1, 0, 1, 9, 3, 9, 2),
    (3, 1, 0, 3, 9, 6, 1, 4)])
def test_reference_float_and_integer_paths_vs_torch(k, stride, pad, groups, cin, cout, d, m):
    bank, index, alpha, bias = stack_tensors(cout, k, cin // groups, d, m)
    wts = {"wfmt": "stack", "bank": pack_pattern(bank), "index": index, "alpha": alpha, "bias": bias}
    x = rng.standard_normal((2, 9, 7, cin)).astype(np.float32)
    w = expand(pack_pattern(bank), index, (cout, k, k, cin // groups)).astype(np.float32)
    tw = torch.from_numpy(w.transpose(0, 3, 1, 2) * alpha[:, None, None, None])
    want = F.conv2d(torch.from_numpy(x.transpose(0, 3, 1, 2)), tw, torch.from_numpy(bias), stride, pad, 1,
                    groups).numpy().transpose(0, 2, 3, 1)
    got = run_op("conv", [x], cout, wts, kernel=k, stride=stride, pad=pad, groups=groups)
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4)
    # integer path: exact int accumulators of the quantized input against the ±1 filters
    s, z = 0.05, 7
    got = run_op("conv", [x], cout, wts, qin=(s, z, 8), kernel=k, stride=stride, pad=pad, groups=groups)
    q = (quantize_act(x, s, z, 8) - z).astype(np.float64)
    acc = F.conv2d(torch.from_numpy(q.transpose(0, 3, 1, 2)), torch.from_numpy(w.transpose(0, 3, 1, 2)).double(),
                   None, stride, pad, 1, groups).numpy().transpose(0, 2, 3, 1)
    np.testing.assert_array_equal(got, acc.astype(np.float32) * (np.float32(s) * alpha) + bias)


def stacked_graph(variant="BQ", arch_id="resnet20", d=4, m=8, seed=0):
    a = arch.get(arch_id)
    layers = stacked.stack_layers(a, variants.random_layers(a, seed), d, m, iters=3)
    meta = {**variants.default_preprocess(a), "provenance.source": "random weights (not trained)"}
    calib = np.random.default_rng(seed + 1).standard_normal((4,) + a.input_shape).astype(np.float32)
    return variants.build_graph(a, layers, variant, meta, calib if variant == "BQ" else None)


STACKED = stacked_graph()
VALID = fmt.to_bytes(STACKED)


def test_round_trip_and_info():
    g = fmt.from_bytes(VALID)
    convs = [n for n in g.nodes if n.op == "conv" and n.kernel > 1]
    assert convs and all(n.wfmt == "stack" for n in convs)
    for a, b in zip(STACKED.nodes, g.nodes):
        assert a.wfmt == b.wfmt and all(np.array_equal(x, y) for x, y in zip(a.tensors, b.tensors))
    stem = next(n for n in g.nodes if n.inputs == (g.input,))
    assert stem.tensor("index").shape == (16, 1) and stem.tensor("bank").shape == (8, 4)   # d = 3, m = 8
    import seprt
    info = seprt.Model.from_bytes(VALID, engine="reference").info()
    row = next(r for r in info["layers"] if r["name"] == stem.name)
    assert row["weights"] == "stack" and row["op"] == "conv" and row["kernel"] == 3 and row["params"] == 432
    assert row["weight_bytes"] == 8 * 4 + 16 and info["arch"] == "resnet20"
    assert stacked.kxk_bytes(g)["ratio"] > 64


def node_with(g, fn):
    n = next(n for n in g.nodes if n.wfmt == "stack" and n.kernel == 3 and n.tensor("index").shape[1] > 1)
    fn(n)
    return g


def bad(fn, match):
    g = fmt.from_bytes(VALID)
    node_with(g, fn)
    with pytest.raises(FormatError, match=match):
        g.validate()
    with pytest.raises(FormatError, match=match):
        fmt.to_bytes(g)


def _set(n, name, a):
    from seprt.ops import get_wfmt
    t = list(n.tensors)
    t[get_wfmt("stack").index(name)] = a
    n.tensors = tuple(t)


def test_bad_stacked_layers_are_format_errors():
    def index_ge_m(n):
        i = n.tensor("index").copy()
        i[0, 0] = n.tensor("bank").shape[0]
        _set(n, "index", i)
    bad(index_ge_m, "out of range for a bank of")

    def d_not_dividing(n):                           # Cg = 16: 3 slices
        _set(n, "index", np.zeros((n.tensor("index").shape[0], 3), np.uint8))
    bad(d_not_dividing, "do not divide")

    def stray_bits(n):                               # k*k*d = 36 bits: 4 padding bits in byte 4
        b = n.tensor("bank").copy()
        b[0, -1] |= 0x80
        _set(n, "bank", b)
    bad(stray_bits, "padding bits")

    def wrong_row_bytes(n):
        _set(n, "bank", np.zeros((n.tensor("bank").shape[0], 6), np.uint8))
    bad(wrong_row_bytes, "bank rows are 6 bytes")

    def wrong_index_rows(n):
        _set(n, "index", n.tensor("index")[:-1].copy())
    bad(wrong_index_rows, "index is uint8")

    def too_big_bank(n):
        _set(n, "bank", np.zeros((257, 5), np.uint8))
    bad(too_big_bank, "must be 1..256")

    def nan_alpha(n):
        a = n.tensor("alpha").copy()
        a[0] = np.nan
        _set(n, "alpha", a)
    bad(nan_alpha, "alpha has NaN")


def test_bad_sizes_in_the_file():
    """A bank section whose dims disagree with the node (CRCs recomputed) is refused."""
    g = fmt.from_bytes(VALID)
    n = next(i for i, n in enumerate(g.nodes) if n.wfmt == "stack" and n.kernel == 3)
    buf = bytearray(VALID)
    sec = next(j for j, e in enumerate(section_entries(buf)) if e[0] == 3 and e[1] == 3 and e[2] == 2)
    struct.pack_into("<I", buf, 64 + 64 * sec + 20, section_entries(buf)[sec][5] + 1)   # dims[1] + 1
    with pytest.raises(FormatError):
        fmt.from_bytes(bytes(refresh_crcs(buf)))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), fix_crc=st.booleans())
def test_fuzz_stacked_file_only_raises_format_error(data, fix_crc):
    b = bytearray(VALID)
    kind = data.draw(st.sampled_from(["truncate", "flip", "overwrite"]))
    if kind == "truncate":
        b = b[:data.draw(st.integers(0, len(b)))]
    elif kind == "flip":
        for _ in range(data.draw(st.integers(1, 8))):
            i = data.draw(st.integers(0, len(b) - 1))
            b[i] ^= 1 << data.draw(st.integers(0, 7))
    else:
        i = data.draw(st.integers(0, len(b) - 4))
        struct.pack_into("<I", b, i, data.draw(st.sampled_from([0, 1, 0xFFFFFFFF, 255, 256, 3])))
    if fix_crc and len(b) >= 64 + 64 * 2:
        try:
            refresh_crcs(b)
        except struct.error:
            pass
    try:
        fmt.from_bytes(bytes(b))
    except FormatError:
        pass


@pytest.mark.parametrize("d,m,mode", [(4, 8, "stack"), (8, 20, "stack"), (4, 8, "expand"), (4, 8, "auto")])
def test_fast_engine_bit_exact(monkeypatch, d, m, mode):
    """Both lowerings (bank conv + gather-sum, and the expanded ±1 weight on the dot
    tiles) give the reference's logits bit for bit; 1 and 2 threads."""
    from seprt.engine import FastEngine
    monkeypatch.setenv("SEPRT_STACK_KERNEL", mode)
    g = stacked_graph("BQ", "resnet20", d, m, seed=d)
    x = np.random.default_rng(3).standard_normal((2, 32, 32, 3)).astype(np.float32)
    want = reference.run(g, x)[g.output]
    e = FastEngine(g)
    assert any(p.startswith("stack-u8") for p in e.plan.paths) == (mode != "expand")
    np.testing.assert_array_equal(e.run(x)[0], want)
    np.testing.assert_array_equal(FastEngine(g, threads=2).run(x[:1])[0], want[:1])
