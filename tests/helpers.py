"""Test helpers: tiny models and byte-level surgery on model files."""
from __future__ import annotations

import struct
import zlib

import numpy as np

from seprt import arch, format as fmt, variants
from seprt.arch import Arch, Layer
from seprt.ops.wfmt_stack import pack_index
from seprt.quant import pack_pattern


def tiny_arch() -> Arch:
    """2x2x3 input -> 1x1 conv (2) -> relu -> gap -> fc (2)."""
    layers = (
        Layer("conv", "conv", ("input",), out_channels=2),
        Layer("conv.relu", "relu", ("conv",)),
        Layer("pool", "gap", ("conv.relu",)),
        Layer("fc", "fc", ("pool",), out_channels=2),
    )
    return Arch("tiny", (2, 2, 3), 2, layers, ("no", "yes"))


def tiny_graph():
    """The tiny model with fixed, exactly representable weights."""
    a = tiny_arch()
    layers = {
        "conv": {"weight": np.arange(6, dtype=np.float32).reshape(2, 1, 1, 3) / 4 - 0.5,
                 "bias": np.array([0.25, -0.5], np.float32)},
        "fc": {"weight": np.array([[1, -1], [0.5, 2]], np.float32), "bias": np.array([0, 1], np.float32)},
    }
    meta = {**variants.CIFAR_PREPROCESS, "preprocess.size": [2, 2], "provenance.source": "tests"}
    return variants.build_graph(a, layers, "R", meta)


def small_graph(variant="BQ", arch_id="resnet20", seed=0, **kw):
    return variants.random_graph(arch.get(arch_id), variant, "all" if arch_id.startswith("resnet") else "prb",
                                 seed=seed, **kw)


def section_entries(buf: bytes) -> list[list]:
    count = struct.unpack_from("<I", buf, 24)[0]
    return [list(fmt._ENTRY.unpack_from(buf, 64 + 64 * i)) for i in range(count)]


def refresh_crcs(buf: bytearray) -> bytearray:
    """Recompute every section CRC and the header CRC (to get past the checksum
    and reach the structural checks)."""
    count = min(struct.unpack_from("<I", buf, 24)[0], (len(buf) - 64) // 64)
    for i in range(count):
        e = fmt._ENTRY.unpack_from(buf, 64 + 64 * i)
        off, size = e[8], e[9]
        if off + size <= len(buf):
            struct.pack_into("<I", buf, 64 + 64 * i + 48, zlib.crc32(buf[off:off + size]))
    table_end = min(len(buf), 64 + 64 * count)
    struct.pack_into("<I", buf, 60, zlib.crc32(bytes(buf[64:table_end]), zlib.crc32(bytes(buf[:60]))))
    return buf


def graph_section(buf: bytes) -> tuple[int, int]:
    e = section_entries(buf)[1]
    return e[8], e[9]


def run_op(op: str, xs: list, k: int | None = None, weights: dict | None = None, qin=(0.0, 0, 0), **attrs):
    """The op table's numpy reference of one op on batched NHWC arrays xs
    (tinygrad's helper_test_op, for seprt): k = output channels (default: the
    first input's), weights = a weighted op's {"wfmt", tensors...}, qin = the
    first input's (scale, zero, bits)."""
    from seprt.graph import Graph, Value, make_node
    from seprt.ops import get_op
    d = get_op(op)
    ins = [tuple(x.shape[1:]) for x in xs]
    n = make_node("n", op, range(len(xs)), len(xs), attrs, weights)
    out = d.shape(n.attrs, ins, k or ins[0][-1])
    values = [Value(f"x{i}", s, *(qin if i == 0 else (0.0, 0, 0))) for i, s in enumerate(ins)] + [Value("n", out)]
    return d.reference(Graph(values, [n], 0, len(xs), len(xs), {}), n, list(xs))


def tiny3_graph():
    """The tiny v2 example: 4x4x3 input -> 3x3 conv (2, pad 1) -> relu -> gap -> fc (2);
    the conv's non-default attributes (kernel 3, pad 1) exercise attribute records."""
    layers = (
        Layer("conv", "conv", ("input",), out_channels=2, kernel=3, pad=1),
        Layer("conv.relu", "relu", ("conv",)),
        Layer("pool", "gap", ("conv.relu",)),
        Layer("fc", "fc", ("pool",), out_channels=2),
    )
    a = Arch("tiny3", (4, 4, 3), 2, layers, ("no", "yes"))
    w = {"conv": {"weight": (np.arange(54, dtype=np.float32).reshape(2, 3, 3, 3) - 27) / 32,
                  "bias": np.array([0.25, -0.5], np.float32)},
         "fc": {"weight": np.array([[1, -1], [0.5, 2]], np.float32), "bias": np.array([0, 1], np.float32)}}
    meta = {**variants.CIFAR_PREPROCESS, "preprocess.size": [4, 4], "provenance.source": "tests"}
    return variants.build_graph(a, w, "R", meta)


def v2_node_offsets(buf: bytes) -> list[int]:
    """Byte offset (in the file) of each v2 node record."""
    goff, _ = graph_section(buf)
    nv, nn = struct.unpack_from("<II", buf, goff)
    pos, out = goff + 24 + 32 * nv, []
    for _ in range(nn):
        out.append(pos)
        _, _, n_in, n_t, n_a, n_name, _ = struct.unpack_from("<6HI", buf, pos)
        pos += 16 + 4 * (n_in + n_t) + n_name
        for _ in range(n_a):
            pos += 1 + buf[pos] + 1 + 4
    return out


def stack_tensors(k_out, k, cg, d, m, seed=0):
    """Random stacked-conv tensors: bank ±1 (m, k, k, d), index (K, Cg/d) < m, alpha, bias."""
    r = np.random.default_rng(seed)
    bank = np.where(r.random((m, k, k, d)) < 0.5, -1, 1).astype(np.int8)
    index = r.integers(0, m, (k_out, cg // d)).astype(np.uint8)
    return bank, index, r.random(k_out).astype(np.float32) + 0.1, r.standard_normal(k_out).astype(np.float32)


def stack_node_weights(wfmt, bank, index, alpha, bias):
    """bank ±1 (m, k, k, d), index (K, S) -> a weights dict of either stacked format."""
    i = pack_index(index, len(bank)) if wfmt == "stack_packed" else index
    return {"wfmt": wfmt, "bank": pack_pattern(bank), "index": i, "alpha": alpha, "bias": bias}
