"""Test helpers: tiny models and byte-level surgery on model files."""
from __future__ import annotations

import struct
import zlib

import numpy as np

from seprt import arch, format as fmt, variants
from seprt.arch import Arch, Layer


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
