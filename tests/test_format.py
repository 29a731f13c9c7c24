"""Model file format v1: exact bytes, round trip, and every bad-input rule."""
import hashlib
import os
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import seprt
from seprt import format as fmt
from seprt.errors import FormatError
from seprt.ops import OPS

from helpers import graph_section, refresh_crcs, section_entries, small_graph, tiny3_graph, tiny_graph, v2_node_offsets

TINY = os.path.join(os.path.dirname(__file__), "data", "tiny.bin")        # a version-1 file (pinned)
TINY_V2 = os.path.join(os.path.dirname(__file__), "data", "tiny-v2.bin")  # what this writer writes (pinned)


def test_exact_bytes():
    """The writer's output for the tiny v2 model is pinned byte for byte."""
    data = fmt.to_bytes(tiny3_graph())
    with open(TINY_V2, "rb") as f:
        assert data == f.read(), "format drifted: if intended, bump the version and regenerate tests/data/tiny-v2.bin"
    # the fields the spec's tables promise, read by hand
    assert data[:8] == b"SEPRTMDL"
    major, minor, hsize, size, count, align, table = struct.unpack_from("<HHIQIIQ", data, 8)
    assert (major, minor, hsize, size, count, align, table) == (2, 0, 64, len(data), 6, 64, 64)
    offsets = [e[8] for e in section_entries(data)]
    assert offsets[0] == 448 and all(o % 64 == 0 for o in offsets)
    e = section_entries(data)[2]                       # the conv weight: f32 (2,3,3,3), 216 bytes
    assert e[:8] == [3, 1, 4, 0, 2, 3, 3, 3] and e[9] == 216
    # node 0: conv (op 1), f32 (1), 1 input, 2 tensors, 2 attributes, name "conv", output value 1,
    # input 0, sections 2 and 3, then "kernel" = 3 and "pad" = 1 (sorted, both i32)
    n0 = v2_node_offsets(data)[0]
    assert struct.unpack_from("<6HI", data, n0) == (1, 1, 1, 2, 2, 4, 1)
    assert struct.unpack_from("<3I", data, n0 + 16) == (0, 2, 3) and data[n0 + 28:n0 + 32] == b"conv"
    assert data[n0 + 32:n0 + 53] == b"\x06kernel\x01" + struct.pack("<i", 3) + b"\x03pad\x01" + struct.pack("<i", 1)
    # node 1: relu (op 4), no weights, no attributes
    assert struct.unpack_from("<6HI", data, v2_node_offsets(data)[1]) == (4, 0, 1, 0, 0, 9, 2)


def test_version_1_file_still_loads():
    """A pinned v1 file loads into the same graph as the v2 writer's (and the
    v1 reader keeps its v1 rules)."""
    with open(TINY, "rb") as f:
        v1 = f.read()
    assert struct.unpack_from("<H", v1, 8)[0] == 1
    g = fmt.from_bytes(v1)
    assert fmt.to_bytes(g) == fmt.to_bytes(tiny_graph())
    x = np.random.default_rng(0).standard_normal((2, 2, 2, 3)).astype(np.float32)
    assert np.array_equal(seprt.Model.from_bytes(v1).logits(x), seprt.Model.from_bytes(fmt.to_bytes(g)).logits(x))


@pytest.mark.parametrize("variant", ["R", "B", "BQ"])
@pytest.mark.parametrize("arch_id", ["resnet20", "sepnet-cifar"])
def test_round_trip(variant, arch_id):
    g = small_graph(variant, arch_id)
    data = fmt.to_bytes(g)
    g2 = fmt.from_bytes(data)
    assert fmt.to_bytes(g2) == data
    assert g2.meta == fmt.from_bytes(data).meta and g2.meta["variant"] == variant
    for a, b in zip(g.nodes, g2.nodes):
        assert (a.name, a.op, a.inputs, a.output, a.wfmt) == (b.name, b.op, b.inputs, b.output, b.wfmt)
        for x, y in ((a.weight, b.weight), (a.scale, b.scale), (a.bias, b.bias)):
            assert (x is None and y is None) or np.array_equal(x, y)
    for a, b in zip(g.values, g2.values):
        assert (a.shape, a.q_bits, a.q_zero) == (b.shape, b.q_bits, b.q_zero)
        assert np.float32(a.q_scale) == np.float32(b.q_scale)


def test_save_is_atomic_and_load_maps(tmp_path):
    p = tmp_path / "m.bin"
    n = fmt.save(tiny_graph(), p)
    assert p.stat().st_size == n and os.listdir(tmp_path) == ["m.bin"]
    g = fmt.load(p)
    assert not g.nodes[0].weight.flags.writeable      # a view into the mapping, not a copy


# ---------------------------------------------------------------- bad input

def rejects(buf, match):
    with pytest.raises(FormatError, match=match):
        fmt.from_bytes(bytes(buf))


@pytest.fixture(scope="module")
def tiny_bytes():
    """A v2 file."""
    return fmt.to_bytes(tiny_graph())


@pytest.fixture(scope="module")
def tiny_v1():
    """The pinned v1 file: node entries at fixed offsets (node_off)."""
    with open(TINY, "rb") as f:
        return f.read()


def test_wrong_magic(tiny_bytes):
    rejects(b"GGUF" + tiny_bytes[4:], "not a seprt model")


def test_unknown_version(tiny_bytes):
    b = bytearray(tiny_bytes)
    struct.pack_into("<H", b, 8, 3)
    rejects(refresh_crcs(b), "version 3.0 is not supported")


def test_newer_minor_version_is_read(tiny_bytes):
    b = bytearray(tiny_bytes)
    struct.pack_into("<H", b, 10, 7)
    assert fmt.from_bytes(bytes(refresh_crcs(b))).meta["arch"] == "tiny"


def test_truncated_at_every_byte(tiny_bytes):
    for n in range(len(tiny_bytes)):
        with pytest.raises(FormatError):
            fmt.from_bytes(tiny_bytes[:n])


def test_trailing_garbage(tiny_bytes):
    rejects(tiny_bytes + b"\0", "trailing bytes")


def test_empty_and_missing_file(tmp_path):
    (tmp_path / "empty.bin").write_bytes(b"")
    with pytest.raises(FormatError, match="empty"):
        seprt.Model(tmp_path / "empty.bin")
    with pytest.raises(FormatError, match="cannot read"):
        seprt.Model(tmp_path / "missing.bin")


def test_crc_mismatch(tiny_bytes):
    b = bytearray(tiny_bytes)
    off = section_entries(tiny_bytes)[2][8]
    b[off] ^= 0x40
    rejects(b, "checksum mismatch")
    b = bytearray(tiny_bytes)
    b[64 + 33] ^= 1          # a section offset: caught by the header CRC first
    rejects(b, "header checksum")


def set_entry(buf, i, field, value):
    b = bytearray(buf)
    e = list(fmt._ENTRY.unpack_from(b, 64 + 64 * i))
    e[field] = value
    fmt._ENTRY.pack_into(b, 64 + 64 * i, *e)
    return refresh_crcs(b)


def test_offsets_out_of_range_overlapping_misaligned(tiny_bytes):
    off = section_entries(tiny_bytes)[3][8]
    rejects(set_entry(tiny_bytes, 3, 8, off + 8), "misaligned")                # misaligned
    rejects(set_entry(tiny_bytes, 3, 8, off - 64), "misaligned|overlapping")   # overlapping
    rejects(set_entry(tiny_bytes, 3, 8, 1 << 40), "expected")                  # out of range
    rejects(set_entry(tiny_bytes, 5, 9, 1 << 40), "past the end|needs")        # size out of range


def test_size_products_that_overflow(tiny_bytes):
    b = set_entry(tiny_bytes, 2, 4, 0xFFFFFFFF)
    b = set_entry(b, 2, 5, 0xFFFFFFFF)
    rejects(b, "needs .* bytes")


def test_zero_dims_and_rank(tiny_bytes):
    rejects(set_entry(tiny_bytes, 2, 4, 0), "must be > 0")
    rejects(set_entry(tiny_bytes, 2, 2, 5), "rank 5 not allowed")
    rejects(set_entry(tiny_bytes, 2, 2, 0), "rank 0 not allowed")


def patch_graph(buf, offset_in_graph, fmt_, value):
    b = bytearray(buf)
    goff, _ = graph_section(buf)
    struct.pack_into(fmt_, b, goff + offset_in_graph, value)
    return refresh_crcs(b)


def node_off(i, field):
    """Byte offset of a v1 node field inside the tiny v1 model's graph section (5 values)."""
    return 24 + 5 * 32 + i * 48 + field * 4


def value_off(i, field):
    return 24 + i * 32 + field * 4


def test_unknown_op(tiny_v1):
    rejects(patch_graph(tiny_v1, node_off(1, 0), "<I", 99), "unknown op code 99")


def test_v1_pool_takes_the_defaults_of_later_attributes(tiny_v1):
    """v1 entries have no ceil_mode / count_include_pad: a v1 maxpool reads
    them as their defaults (it was a KeyError; found by the fuzz test)."""
    g = fmt.from_bytes(patch_graph(tiny_v1, node_off(1, 0), "<I", OPS["maxpool"].code))   # relu -> maxpool 1x1
    assert g.nodes[1].op == "maxpool" and g.nodes[1].attrs["ceil_mode"] == 0


def test_dangling_and_cyclic_references(tiny_v1):
    rejects(patch_graph(tiny_v1, node_off(1, 1), "<I", 77), "references value 77")
    rejects(patch_graph(tiny_v1, node_off(1, 1), "<I", 3), "before it is produced")   # reads a later value
    rejects(patch_graph(tiny_v1, node_off(0, 1), "<I", 1), "before it is produced")   # reads itself
    rejects(patch_graph(tiny_v1, node_off(2, 3), "<I", 1), "already produced")


def test_groups_not_dividing_channels(tiny_v1):
    rejects(patch_graph(tiny_v1, node_off(0, 7), "<I", 2), "groups=2 does not divide")
    rejects(patch_graph(tiny_v1, node_off(0, 7), "<I", 0), "groups=0")


def test_bad_value_dims(tiny_v1):
    rejects(patch_graph(tiny_v1, value_off(1, 1), "<I", 0), "dims")
    rejects(patch_graph(tiny_v1, value_off(1, 0), "<I", 4), "rank 4")
    rejects(patch_graph(tiny_v1, value_off(1, 1), "<I", 3), "does not match")


def test_nan_and_inf_scales():
    g = small_graph("BQ")
    n = next(n for n in g.nodes if n.wfmt == "i8")
    for bad, match in ((np.nan, "NaN, Inf"), (np.inf, "NaN, Inf"), (0.0, "scales must be finite"),
                       (1e38, "magnitude over")):
        s = n.scale.copy()
        s[0] = bad
        n.tensors = (n.weight, s, n.bias)
        with pytest.raises(FormatError, match=match):
            fmt.to_bytes(g)          # the writer refuses too
    g = small_graph("BQ")
    buf = bytearray(fmt.to_bytes(g))
    # poison the first i8 scale section in the file itself
    ents = section_entries(bytes(buf))
    idx = next(i for i, n in enumerate(g.nodes) if n.wfmt == "i8")
    sec = 2 + sum(len(m.tensors) for m in g.nodes[:idx]) + 1
    struct.pack_into("<f", buf, ents[sec][8], float("nan"))
    rejects(refresh_crcs(buf), "NaN")
    v = next(i for i, v in enumerate(g.values) if v.quantized)
    goff, _ = graph_section(bytes(buf))
    buf = bytearray(fmt.to_bytes(g))
    struct.pack_into("<f", buf, goff + 24 + v * 32 + 16, float("inf"))
    rejects(refresh_crcs(buf), "activation scale inf")


def test_duplicate_names_and_label_count():
    g = tiny_graph()
    g.nodes[1].name = g.nodes[0].name
    with pytest.raises(FormatError, match="duplicate node name"):
        fmt.to_bytes(g)
    g = tiny_graph()
    g.meta["labels"] = ["only-one"]
    with pytest.raises(FormatError, match="1 labels for a classifier of width 2"):
        fmt.to_bytes(g)


def test_invalid_graphs_rejected_by_reader(tiny_v1):
    """Same rules in the reader: write with duplicate names by patching bytes."""
    goff, glen = graph_section(tiny_v1)
    names_off = goff + 24 + 5 * 32 + 4 * 48
    b = bytearray(tiny_v1)
    # names: "conv", "conv.relu", ... make the second "conv" + padding-free: rename 'conv.relu' -> 'conv' is a
    # length change; instead rename 'pool' to 'conv' (same length)
    i = b.index(b"pool", names_off)
    b[i:i + 4] = b"conv"
    rejects(refresh_crcs(b), "duplicate node name")


def test_unreferenced_tensor_section(tiny_v1):
    rejects(patch_graph(tiny_v1, node_off(3, 11), "<I", 0xFFFFFFFF), "missing a weight, scale or bias|not referenced")
    rejects(patch_graph(tiny_v1, node_off(3, 11), "<I", 2), "referenced twice")
    rejects(patch_graph(tiny_v1, node_off(3, 11), "<I", 1), "not a tensor section")


def test_weight_shape_and_padding_bits():
    g = small_graph("B")
    n = next(n for n in g.nodes if n.wfmt == "bin")
    p = n.weight.copy()
    used = n.kernel * n.kernel * (g.values[n.inputs[0]].shape[-1] // n.groups) % 8
    if used:
        p[0, -1] |= 0x80
        n.tensors = (p,) + n.tensors[1:]
        with pytest.raises(FormatError, match="padding bits"):
            fmt.to_bytes(g)
    g = small_graph("R")
    n = g.nodes[0]
    n.tensors = (n.weight[:, :, :, :2].copy(), n.bias)
    with pytest.raises(FormatError, match="weight is float32"):
        fmt.to_bytes(g)


# ---------------------------------------------------------------- v2 node records

def patch_v2(buf, node, at, fmt_, value):
    """Overwrite bytes `at` bytes into v2 node record `node`, CRCs recomputed."""
    b = bytearray(buf)
    struct.pack_into(fmt_, b, v2_node_offsets(buf)[node] + at, value)
    return refresh_crcs(b)


TINY3 = fmt.to_bytes(tiny3_graph())


def test_v2_bad_node_records():
    rejects(patch_v2(TINY3, 1, 0, "<H", 99), "unknown op code 99; this file needs a newer seprt")
    rejects(patch_v2(TINY3, 0, 2, "<H", 9), "unknown weight format code 9")
    rejects(patch_v2(TINY3, 0, 2, "<H", 2), "has 3 tensors, the node 2")            # i8 with f32's tensors
    rejects(patch_v2(TINY3, 1, 16, "<I", 77), "references value 77")
    rejects(patch_v2(TINY3, 1, 16, "<I", 3), "before it is produced")
    rejects(patch_v2(TINY3, 0, 20, "<I", 1), "not a tensor section")
    rejects(patch_v2(TINY3, 0, 20, "<I", 3), "referenced twice")
    rejects(patch_v2(TINY3, 0, 4, "<H", 2), "truncated|before it is produced|exceeds|inputs")
    rejects(patch_v2(TINY3, 1, 4, "<H", 0), "takes 1 inputs|unread|unknown op code|truncated")


def test_v2_attributes():
    a0 = v2_node_offsets(TINY3)[0] + 32              # "kernel" record, then "pad"
    rejects(patch_v2(TINY3, 0, 32 + 1, "6s", b"kernex"), "no attribute 'kernex'; this file needs a newer seprt")
    rejects(patch_v2(TINY3, 0, 32 + 7, "B", 2), "attribute 'kernel' has type 2")
    rejects(patch_v2(TINY3, 0, 32 + 8, "<i", 1), "holds its default and must be omitted")
    rejects(patch_v2(TINY3, 0, 32 + 8, "<i", 99), "kernel=99 out of range")
    rejects(patch_v2(TINY3, 0, 32 + 8, "<i", -3), "kernel=-3 out of range")
    rejects(patch_v2(TINY3, 0, 32 + 13, "3s", b"kap"), "sorted and unique")
    b = bytearray(TINY3)
    b[a0 + 12:a0 + 21] = b"\x03pad\x01" + struct.pack("<i", 3)   # pad 3 >= kernel 3
    rejects(refresh_crcs(b), "pad 3 must be < kernel 3")


def test_activation_memory_bomb_is_refused(monkeypatch):
    """A small file whose activations would need GiBs is refused at load, with the figure."""
    from seprt import graph as graph_mod
    g = tiny_graph()
    g.values[0].shape = (8192, 8192, 3)
    g.values[1].shape = (8192, 8192, 2)
    g.values[2].shape = (8192, 8192, 2)
    g.meta["preprocess.size"] = [8192, 8192]
    with pytest.raises(FormatError, match=r"needs \d+\.\d\d GiB of activation memory, over the limit of 1\.00 GiB"):
        fmt.to_bytes(g)
    monkeypatch.setattr(graph_mod, "MAX_ACTIVATION_BYTES", 4 << 30)
    data = fmt.to_bytes(g)                           # the caller raised the limit
    assert len(data) < 2048
    monkeypatch.setattr(graph_mod, "MAX_ACTIVATION_BYTES", 1 << 30)
    rejects(data, "activation memory")


def test_tampered_magnitudes_end_in_format_error_or_finite_probabilities():
    """Scales and alphas pushed to the largest legal value, CRCs recomputed:
    the model loads, and predict either gives finite probabilities or raises
    FormatError; values over the limit are refused at load."""
    g = small_graph("BQ", "sepnet-cifar")
    for n in g.nodes:
        if n.scale is not None:
            n.tensors = tuple(np.full_like(a, 1e12) if a is n.scale else a for a in n.tensors)
    m = seprt.Model.from_bytes(fmt.to_bytes(g))
    x = np.random.default_rng(1).standard_normal((1, 32, 32, 3)).astype(np.float32)
    for run in (lambda: [p for _, p in m.predict(np.zeros((32, 32, 3), np.uint8))], lambda: m.logits(x)):
        try:
            assert np.all(np.isfinite(run()))
        except FormatError as e:
            assert "overflowed" in str(e)
    buf = bytearray(fmt.to_bytes(g))
    n = next(i for i, n in enumerate(g.nodes) if n.wfmt == "bin")
    sec = 2 + sum(len(m.tensors) for m in g.nodes[:n]) + 1      # its alpha
    struct.pack_into("<f", buf, section_entries(bytes(buf))[sec][8], 1e38)
    rejects(refresh_crcs(buf), "magnitude over")


def test_not_bytes():
    with pytest.raises(FormatError, match="bytes-like"):
        fmt.from_bytes(12345)


# ---------------------------------------------------------------- fuzzing

VALID = fmt.to_bytes(small_graph("BQ", "resnet20"))
VALID_TINY = fmt.to_bytes(tiny3_graph())
VALID_V1 = open(TINY, "rb").read()


def only_format_errors(buf):
    try:
        fmt.from_bytes(bytes(buf))
    except FormatError:
        pass


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), base=st.sampled_from([VALID, VALID_TINY, VALID_V1]), fix_crc=st.booleans())
def test_fuzz_mutations_only_raise_format_error(data, base, fix_crc):
    b = bytearray(base)
    kind = data.draw(st.sampled_from(["truncate", "flip", "splice", "overwrite"]))
    if kind == "truncate":
        b = b[:data.draw(st.integers(0, len(b)))]
    elif kind == "flip":
        for _ in range(data.draw(st.integers(1, 8))):
            # bias toward the header, table and graph, where structure lives
            hi = data.draw(st.sampled_from([len(b), 64 + 64 * 8, sum(graph_section(base))]))
            i = data.draw(st.integers(0, min(hi, len(b)) - 1))
            b[i] ^= 1 << data.draw(st.integers(0, 7))
    elif kind == "splice":
        i = data.draw(st.integers(0, len(b)))
        j = data.draw(st.integers(0, len(b)))
        b = b[:i] + bytearray(base[j:j + data.draw(st.integers(0, 256))]) + b[i:]
    else:
        i = data.draw(st.integers(0, len(b) - 4))
        struct.pack_into("<I", b, i, data.draw(st.sampled_from([0, 1, 0xFFFFFFFF, 0x7FFFFFFF, 65536, 3])))
    if fix_crc and len(b) >= 64 + 64 * 2:
        try:
            refresh_crcs(b)
        except struct.error:
            pass
    only_format_errors(b)


def test_strict_fields_the_spec_fixes():
    """Rules the Java reader checks too: float values carry no quantization,
    float weights no scale, unused op fields keep their defaults, metadata types."""
    cases = []
    g = tiny_graph()
    g.values[1].q_scale = 0.5                       # float value with a scale
    cases.append((g, "float value"))
    g = tiny_graph()
    n = g.nodes[0]
    n.tensors = (n.weight, np.ones(2, np.float32), n.bias)   # f32 weights with a scale section
    cases.append((g, "has 2 tensors, got 3"))
    g = tiny_graph()
    g.nodes[1].attrs["kernel"] = 3                  # relu has no kernel
    cases.append((g, "has no attribute 'kernel'"))
    g = tiny_graph()
    g.meta["preprocess.size"] = "2x2"
    cases.append((g, "must be of type u32"))
    g = tiny_graph()
    g.meta["act_bits"] = 3
    cases.append((g, "act_bits 3"))
    g = tiny_graph()
    g.meta["provenance.val_images"] = 5000.0
    cases.append((g, "'provenance.val_images' must be of type u32"))
    for g, match in cases:
        with pytest.raises(FormatError, match=match):
            fmt.to_bytes(g)
