"""Weight formats `stack` and `stack_packed` (stacked low-dimensional binary
filters; the index a byte or ceil(log2 m) bits): layout, validation of bad
input, fuzzing, and the fast engine (expanded dot path and the bank kernel)
bit-exact vs the reference. No torch: `make test-aarch64` runs it too (the
reference against PyTorch is in test_stack_e2e.py)."""
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from seprt import arch, format as fmt, reference, stacked, variants
from seprt.errors import FormatError
from seprt.ops.wfmt_stack import expand, index_bits, index_of, pack_index, slices, unpack_index
from seprt.quant import pack_pattern

from helpers import refresh_crcs, section_entries, stack_node_weights, stack_tensors

rng = np.random.default_rng(0)


def test_expand_is_the_documented_layout():
    """docs/format.md's example: bank rows 0x05 (+-+), 0x02 (-+-); index [0,1], [1,1]."""
    w = expand(np.array([[5], [2]], np.uint8), np.array([[0, 1], [1, 1]], np.uint8), (2, 1, 1, 6))
    assert w[:, 0, 0].tolist() == [[1, -1, 1, -1, 1, -1], [-1, 1, -1, -1, 1, -1]]
    bank, index, _, _ = stack_tensors(5, 3, 12, 4, 7)
    w = expand(pack_pattern(bank), index, (5, 3, 3, 12))
    for o in range(5):
        for s in range(3):
            assert np.array_equal(w[o, :, :, 4 * s:4 * s + 4], bank[index[o, s]])


def test_packed_index_layout():
    """b = max(1, ceil(log2 m)) bits per index, one row of K indices per slice, LSB first."""
    assert [index_bits(m) for m in (1, 2, 3, 4, 5, 128, 129, 256)] == [1, 1, 2, 2, 3, 7, 8, 8]
    index = np.array([[1, 2], [3, 0], [2, 2]], np.uint8)                  # K = 3, S = 2, m = 4: b = 2
    assert pack_index(index, 4).tolist() == [[0b101101], [0b100010]]        # o0 | o1 << 2 | o2 << 4
    for m in (1, 2, 7, 32, 128, 200, 256):
        for k_out in (1, 3, 8, 13):
            idx = rng.integers(0, m, (k_out, 5)).astype(np.uint8)
            p = pack_index(idx, m)
            assert p.shape == (5, -(-k_out * index_bits(m) // 8))
            assert np.array_equal(unpack_index(p, k_out, m), idx)


def stacked_graph(variant="BQ", arch_id="resnet20", d=4, m=8, seed=0, wfmt="stack_packed"):
    """A random-weight stacked model; wfmt "stack" rewrites the converter's
    `stack_packed` nodes with a byte per index (the files of earlier converters)."""
    a = arch.get(arch_id)
    layers = stacked.stack_layers(a, variants.random_layers(a, seed), d, m, iters=3)
    meta = {**variants.default_preprocess(a), "provenance.source": "random weights (not trained)"}
    calib = np.random.default_rng(seed + 1).standard_normal((4,) + a.input_shape).astype(np.float32)
    g = variants.build_graph(a, layers, variant, meta, calib if variant == "BQ" else None)
    return stacked.byte_index(g) if wfmt == "stack" else g


FORMATS = ["stack", "stack_packed"]
STACKED = {f: stacked_graph(wfmt=f) for f in FORMATS}
VALID = {f: fmt.to_bytes(g) for f, g in STACKED.items()}


@pytest.mark.parametrize("wfmt", FORMATS)
def test_round_trip_and_info(wfmt):
    g = fmt.from_bytes(VALID[wfmt])
    convs = [n for n in g.nodes if n.op == "conv" and n.kernel > 1]
    assert convs and all(n.wfmt == wfmt for n in convs)
    for a, b in zip(STACKED[wfmt].nodes, g.nodes):
        assert a.wfmt == b.wfmt and all(np.array_equal(x, y) for x, y in zip(a.tensors, b.tensors))
    stem = next(n for n in g.nodes if n.inputs == (g.input,))
    assert stem.tensor("bank").shape == (8, 4)                                   # d = 3, m = 8
    assert stem.tensor("index").shape == ((16, 1) if wfmt == "stack" else (1, 6))  # 16 indices of 3 bits
    import seprt
    info = seprt.Model.from_bytes(VALID[wfmt], engine="reference").info()
    row = next(r for r in info["layers"] if r["name"] == stem.name)
    assert row["weights"] == wfmt and row["op"] == "conv" and row["kernel"] == 3 and row["params"] == 432
    assert row["weight_bytes"] == 8 * 4 + (16 if wfmt == "stack" else 6) and info["arch"] == "resnet20"
    assert stacked.kxk_bytes(g)["ratio"] > 64


def test_both_formats_are_the_same_model():
    """`stack_packed` only stores the index tighter: the same weights, logits
    bit for bit, and fewer bytes (3 bits per index at m = 8)."""
    gs, gp = (fmt.from_bytes(VALID[f]) for f in FORMATS)
    for a, b in zip(gs.nodes, gp.nodes):
        if a.wfmt:
            np.testing.assert_array_equal(gs.int_weight(a) if a.wfmt == "stack" else gs.float_weight(a),
                                          gp.int_weight(b) if b.wfmt == "stack_packed" else gp.float_weight(b))
    x = np.random.default_rng(5).standard_normal((2, 32, 32, 3)).astype(np.float32)
    np.testing.assert_array_equal(reference.run(gs, x)[gs.output], reference.run(gp, x)[gp.output])
    assert stacked.kxk_bytes(gp)["bytes"] < stacked.kxk_bytes(gs)["bytes"]
    # byte_index / packed_index convert between them, byte for byte
    assert fmt.to_bytes(stacked.byte_index(fmt.from_bytes(VALID["stack_packed"]))) == VALID["stack"]
    assert fmt.to_bytes(stacked.packed_index(fmt.from_bytes(VALID["stack"]))) == VALID["stack_packed"]


def node_with(g, fn):
    n = next(n for n in g.nodes if n.wfmt in FORMATS and n.kernel == 3 and slices(n) > 1)
    fn(n)
    return g


def bad(wfmt, fn, match):
    g = fmt.from_bytes(VALID[wfmt])
    node_with(g, fn)
    with pytest.raises(FormatError, match=match):
        g.validate()
    with pytest.raises(FormatError, match=match):
        fmt.to_bytes(g)


def _set(n, name, a):
    from seprt.ops import get_wfmt
    t = list(n.tensors)
    t[get_wfmt(n.wfmt).index(name)] = a
    n.tensors = tuple(t)


def _set_index(n, index):
    """Set the (K, S) index of a node of either format."""
    _set(n, "index", pack_index(index, n.tensor("bank").shape[0]) if n.wfmt == "stack_packed" else index)


@pytest.mark.parametrize("wfmt", FORMATS)
def test_bad_stacked_layers_are_format_errors(wfmt):
    def index_ge_m(n):                               # m = 8 = 2**3: a 3-bit field cannot hold 8; m = 5 can
        m = 5
        _set(n, "bank", n.tensor("bank")[:m].copy())
        i = index_of(n, n.tensor("alpha").shape[0]).copy() % m
        i[0, 0] = m + 1
        _set_index(n, i)
    bad(wfmt, index_ge_m, "out of range for a bank of")

    def d_not_dividing(n):                           # Cg = 16: 3 slices
        _set_index(n, np.zeros((n.tensor("alpha").shape[0], 3), np.uint8))
    bad(wfmt, d_not_dividing, "do not divide")

    def stray_bits(n):                               # k*k*d = 36 bits: 4 padding bits in byte 4
        b = n.tensor("bank").copy()
        b[0, -1] |= 0x80
        _set(n, "bank", b)
    bad(wfmt, stray_bits, "padding bits of packed bank")

    def wrong_row_bytes(n):
        _set(n, "bank", np.zeros((n.tensor("bank").shape[0], 6), np.uint8))
    bad(wfmt, wrong_row_bytes, "bank rows are 6 bytes")

    def too_big_bank(n):
        _set(n, "bank", np.zeros((257, 5), np.uint8))
    bad(wfmt, too_big_bank, "must be 1..256")

    def nan_alpha(n):
        a = n.tensor("alpha").copy()
        a[0] = np.nan
        _set(n, "alpha", a)
    bad(wfmt, nan_alpha, "alpha has NaN")

    if wfmt == "stack":
        def wrong_index_rows(n):
            _set(n, "index", n.tensor("index")[:-1].copy())
        bad(wfmt, wrong_index_rows, "index is uint8")
    else:
        def wrong_index_row_bytes(n):                # K = 16 indices of 3 bits: 6 bytes
            i = n.tensor("index")
            _set(n, "index", np.concatenate([i, np.zeros((len(i), 1), np.uint8)], 1))
        bad(wfmt, wrong_index_row_bytes, "packed index rows are 7 bytes, 16 indices of 3 bits need 6")


def test_packed_index_padding_bits_are_format_errors():
    """resnet20's K (16, 32, 64) leave no padding in 3-bit index rows: K = 5 leaves 1 bit."""
    from seprt.graph import make_node
    from seprt.ops import get_wfmt
    bank, index, alpha, bias = stack_tensors(5, 3, 8, 4, 6)                 # m = 6: 3 bits; 15 bits in 2 bytes
    w = stack_node_weights("stack_packed", bank, index, alpha, bias)
    n = make_node("n", "conv", [0], 1, {"kernel": 3, "pad": 1}, w)
    check = get_wfmt("stack_packed").check
    check(n, 3, (5, 3, 3, 8))
    w["index"][1, -1] |= 0x80
    with pytest.raises(FormatError, match="padding bits of packed index rows"):
        check(make_node("n", "conv", [0], 1, {"kernel": 3, "pad": 1}, w), 3, (5, 3, 3, 8))


@pytest.mark.parametrize("wfmt", FORMATS)
def test_bad_sizes_in_the_file(wfmt):
    """A bank section whose dims disagree with the node (CRCs recomputed) is refused."""
    buf = bytearray(VALID[wfmt])
    sec = next(j for j, e in enumerate(section_entries(buf)) if e[0] == 3 and e[1] == 3 and e[2] == 2)
    struct.pack_into("<I", buf, 64 + 64 * sec + 20, section_entries(buf)[sec][5] + 1)   # dims[1] + 1
    with pytest.raises(FormatError):
        fmt.from_bytes(bytes(refresh_crcs(buf)))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), fix_crc=st.booleans(), wfmt=st.sampled_from(FORMATS))
def test_fuzz_stacked_file_only_raises_format_error(data, fix_crc, wfmt):
    b = bytearray(VALID[wfmt])
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


@pytest.mark.parametrize("d,m,mode,wfmt", [(4, 8, "stack", "stack"), (8, 20, "stack", "stack_packed"),
                                           (4, 8, "expand", "stack_packed"), (4, 8, "auto", "stack")])
def test_fast_engine_bit_exact(monkeypatch, d, m, mode, wfmt):
    """Both lowerings (bank conv + gather-sum, and the expanded ±1 weight on the dot
    tiles) give the reference's logits bit for bit; 1 and 2 threads."""
    from seprt.engine import FastEngine
    monkeypatch.setenv("SEPRT_STACK_KERNEL", mode)
    g = stacked_graph("BQ", "resnet20", d, m, seed=d, wfmt=wfmt)
    x = np.random.default_rng(3).standard_normal((2, 32, 32, 3)).astype(np.float32)
    want = reference.run(g, x)[g.output]
    e = FastEngine(g)
    assert any(p.startswith("stack-u8") for p in e.plan.paths) == (mode != "expand")
    np.testing.assert_array_equal(e.run(x)[0], want)
    np.testing.assert_array_equal(FastEngine(g, threads=2).run(x[:1])[0], want[:1])
