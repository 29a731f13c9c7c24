"""Execution plan: a Graph compiled into one instruction table + flat arenas.

The fast engine (seprt/engine.py) runs the whole table in one numba call per
batch, so the per-layer cost is a branch, not a Python call. Planning:

1. Fusion. A conv/fc whose only consumer is `add(conv, r)` writes the add's
   output with r as residual (the producer of r is hoisted before the conv
   when it can be); a relu that is the only consumer of a conv/fc/add output
   becomes that kernel's relu flag.
2. Buffers. Every float value that survives fusion gets a region of the f32
   arena (NHWC, one image). Each quantized input of an integer node gets a
   padded u8 buffer (border = zero point, written once), shared by all its
   consumers with the same groups; popcount consumers also get bit planes.
3. Weights are packed once into the layouts the kernels want (read-only,
   shared by all threads).

Kernel choice per integer conv/fc (named in `Plan.paths`):
    int8 weights                      -> "dot-u8i8" (VNNI tiles / generic vectors)
    binary patterns, 8-bit inputs     -> "dot-u8i8" on ±1 int8 (measured faster than
                                         popcount on AVX-512 VNNI CPUs, docs/performance.md)
    binary patterns, 2/4-bit inputs   -> "popcount-u{bits}" (SEPRT_BIN_KERNEL=dot or
                                         popcount overrides)
    float weights or float inputs     -> "f32"
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from .graph import Graph, Node
from .kernels.conv import pack_bin, pack_f32, pack_u8i8, window_offsets
from .kernels.intrinsics import has_vnni
from .quant import unpack_pattern
from .reference import float_weight

# opcodes of the instruction table (engine.run_program)
OP_QUANT, OP_PLANES, OP_CONV_DOT, OP_CONV_BIN, OP_CONV_F32 = 1, 2, 3, 4, 5
OP_ADD, OP_RELU, OP_POOL, OP_GAP, OP_SHORTCUT = 6, 7, 8, 9, 10
WIDTH = 24


class _Arena:
    """Append-only flat buffer builder (offsets in elements)."""

    def __init__(self, dtype):
        self.dtype, self.parts, self.size = np.dtype(dtype), [], 0

    def add(self, a) -> int:
        a = np.ascontiguousarray(a, self.dtype).reshape(-1)
        off = self.size
        self.parts.append(a)
        self.size += a.size
        return off

    def reserve(self, n: int) -> int:
        off = self.size
        self.size += int(n)
        return off

    def array(self) -> np.ndarray:
        out = np.zeros(max(self.size, 1), self.dtype)
        pos = 0
        for a in self.parts:
            out[pos:pos + a.size] = a
            pos += a.size
        return out


@dataclass
class Plan:
    prog: np.ndarray                  # (n, WIDTH) int64 instruction table
    names: list[str]                  # node name(s) each instruction runs
    paths: list[str]                  # kernel path of each instruction
    macs: list[int]                   # MACs of each instruction (one image)
    weights: dict                     # read-only arenas: wf32, wi8, wu64, wi32, aux
    sizes: dict                       # per-thread arena sizes: f32, u8, u64, i32
    borders: list = field(default_factory=list)   # (u8 offset, array) written once per workspace
    input_off: int = 0
    input_size: int = 0
    logits_off: int = 0
    embed_off: int = 0
    scratch: int = 0                  # elements of each scratch accumulator


def bin_kernel_choice(bits: int) -> str:
    """'dot' or 'popcount' for a binary conv with `bits`-bit inputs."""
    forced = os.environ.get("SEPRT_BIN_KERNEL", "")
    if forced in ("dot", "popcount"):
        return forced
    return "dot" if bits == 8 or not has_vnni() else "popcount"


def _fusions(g: Graph):
    """-> (writes, residual, relu, skipped, writer): per kept node the value it
    writes, its residual value (-1: none) and relu flag; the fused-away nodes;
    value -> index of the kept node that writes it."""
    cons = g.consumers()
    producer = {n.output: i for i, n in enumerate(g.nodes)}
    sole = lambda v: cons[v][0] if len(cons.get(v, [])) == 1 else -1
    writes, residual, relu, skipped = {}, {}, {}, set()
    for i, n in enumerate(g.nodes):
        if i in skipped:
            continue
        out, res = n.output, -1
        j = sole(out)
        if n.op in ("conv", "fc") and j >= 0 and g.nodes[j].op == "add":
            add = g.nodes[j]
            r = add.inputs[1] if add.inputs[0] == out else add.inputs[0]
            pr = producer.get(r, -1)
            # r must exist before this node runs: produced earlier, or its producer can
            # be hoisted (its inputs exist, and it is not a conv fusing into the same add)
            hoistable = (pr > i and pr not in skipped and not (g.nodes[pr].op in ("conv", "fc") and sole(r) == j)
                         and all(producer.get(v, -1) < i for v in g.nodes[pr].inputs))
            if r != out and (pr < i or hoistable):
                out, res = add.output, r
                skipped.add(j)
        j = sole(out)
        is_relu = n.op in ("conv", "fc", "add") and j >= 0 and g.nodes[j].op == "relu"
        if is_relu:
            out = g.nodes[j].output
            skipped.add(j)
        writes[i], residual[i], relu[i] = out, res, is_relu
    writer = {v: i for i, v in writes.items()}
    return writes, residual, relu, skipped, writer


def build(g: Graph) -> Plan:
    """Compile a validated graph into a Plan."""
    writes, residual, relu, skipped, writer = _fusions(g)
    cons = g.consumers()
    f32, u8, u64, i32 = _Arena(np.float32), _Arena(np.uint8), _Arena(np.uint64), _Arena(np.int32)
    wf32, wi8, wu64, wi32, aux = (_Arena(np.float32), _Arena(np.int8), _Arena(np.uint64),
                                  _Arena(np.int32), _Arena(np.int64))
    shape = lambda v: g.values[v].shape
    hwc = lambda v: shape(v) if len(shape(v)) == 3 else (1, 1, shape(v)[0])
    size = lambda v: int(np.prod(shape(v)))
    fbuf = {g.input: f32.reserve(size(g.input))}
    rows, names, paths, macs, borders = [], [], [], [], []
    scratch = 8 * 32

    def emit(row, name, path, mac=0):
        r = np.zeros(WIDTH, np.int64)
        r[:len(row)] = row
        rows.append(r)
        names.append(name)
        paths.append(path)
        macs.append(int(mac))

    # ---- quantized input buffers, keyed by (value, groups)
    qbufs = {}

    def qbuffer(v: int, groups: int, with_planes: bool):
        key = (v, groups)
        val = g.values[v]
        if key not in qbufs:
            users = [g.nodes[i] for i in cons[v] if g.is_integer(g.nodes[i]) and g.nodes[i].groups == groups]
            pad = max(u.pad for u in users)
            h, w, c = hwc(v)
            cg = c // groups
            cgp = -(-cg // 4) * 4
            hp, wp = h + 2 * pad, w + 2 * pad
            border = np.zeros((hp, wp, groups, cgp), np.uint8)
            border[:, :, :, :cg] = val.q_zero
            off = u8.reserve(border.size)
            borders.append((off, border.reshape(-1)))
            qbufs[key] = {"off": off, "pad": pad, "hp": hp, "wp": wp, "cgp": cgp, "cg": cg, "planes": None}
            emit([OP_QUANT, fbuf[v], h, w, c, wf32.add([val.q_scale]), val.q_zero, (1 << val.q_bits) - 1,
                  off, wp, pad, groups, cgp], f"quantize {val.name}", f"quantize-u{val.q_bits}")
        q = qbufs[key]
        if with_planes and q["planes"] is None:
            nw, bits, n_pix = -(-q["cg"] // 64), val.q_bits, q["hp"] * q["wp"]
            q["nw"] = nw
            q["planes"] = u64.reserve(n_pix * groups * bits * nw)
            q["qsum"] = i32.reserve(n_pix * groups)
            emit([OP_PLANES, q["off"], n_pix, groups, q["cg"], q["cgp"], bits, nw, q["planes"], q["qsum"]],
                 f"bit planes {val.name}", f"planes-u{bits}")
        return q

    def out_buffer(v: int) -> int:
        if v not in fbuf:
            fbuf[v] = f32.reserve(size(v))
        return fbuf[v]

    emitted = set()

    def run_node(i: int):
        nonlocal scratch
        n = g.nodes[i]
        emitted.add(i)
        res = residual.get(i, -1)
        if res >= 0 and res not in fbuf:         # hoist the residual's producer
            run_node(writer[res])
        out = out_buffer(writes[i])
        label = n.name if writes[i] == n.output else f"{n.name} (+{g.values[writes[i]].name})"
        if n.op in ("conv", "fc"):
            x = n.inputs[0]
            h, w, c = hwc(x)
            ho, wo, k = hwc(n.output)
            kernel = n.kernel if n.op == "conv" else 1
            stride, pad, groups = (n.stride, n.pad, n.groups) if n.op == "conv" else (1, 0, 1)
            cg, kg = c // groups, k // groups
            mac = g.node_params(n) * ho * wo
            common = [wf32.add(n.bias), out, fbuf[res] if res >= 0 else -1, k, int(relu[i])]
            if g.is_integer(n):
                v = g.values[x]
                mult = (np.float32(v.q_scale) * n.scale).astype(np.float32)
                use_pop = n.wfmt == "bin" and bin_kernel_choice(v.q_bits) == "popcount"
                q = qbuffer(x, groups, with_planes=use_pop)
                shift = q["pad"] - pad
                if use_pop:
                    pattern = unpack_pattern(n.weight, (kernel, kernel, cg))
                    words, wsum = pack_bin(pattern, groups)
                    pix, _ = window_offsets(ho, wo, stride, shift, q["wp"], 1, 1, 4)
                    toff = (np.arange(kernel)[:, None] * q["wp"] + np.arange(kernel)[None, :]).reshape(-1)
                    scratch = max(scratch, kg)
                    emit([OP_CONV_BIN, q["planes"], q["qsum"], aux.add(pix), len(pix), aux.add(toff), kernel * kernel,
                          groups, v.q_bits, q["nw"], wu64.add(words), kg, v.q_zero, wi32.add(wsum),
                          wf32.add(mult)] + common, label, f"popcount-u{v.q_bits}", mac)
                else:
                    w_int = n.weight if n.wfmt == "i8" else unpack_pattern(n.weight, (kernel, kernel, cg))
                    w_int = w_int.reshape(k, kernel, kernel, cg)
                    M = 2 if kg > 16 else 1
                    b, wsum = pack_u8i8(w_int, groups, q["cgp"], M)
                    pix, koff = window_offsets(ho, wo, stride, shift, q["wp"], groups * q["cgp"], kernel, q["cgp"])
                    emit([OP_CONV_DOT, q["off"], aux.add(pix), len(pix), aux.add(koff), len(koff), wi8.add(b),
                          groups, q["cgp"], kg, M, v.q_zero, wi32.add(wsum), wf32.add(mult)] + common, label,
                         f"dot-u{v.q_bits}{'i8' if n.wfmt == 'i8' else 'bin'}", mac)
            else:
                wt = float_weight(n, c).reshape(k, kernel, kernel, cg)
                scratch = max(scratch, kg)
                emit([OP_CONV_F32, fbuf[x], h, w, c, wf32.add(pack_f32(wt, groups)), groups, kernel, stride, pad,
                      ho, wo, kg, wf32.add(np.ones(k, np.float32))] + common, label, f"f32-{n.wfmt}", mac)
        elif n.op == "add":
            emit([OP_ADD, fbuf[n.inputs[0]], fbuf[n.inputs[1]], out, size(n.output), int(relu[i])], label, "f32")
        elif n.op == "relu":
            emit([OP_RELU, fbuf[n.inputs[0]], out, size(n.output)], label, "f32")
        elif n.op in ("maxpool", "avgpool"):
            h, w, c = hwc(n.inputs[0])
            ho, wo, _ = hwc(n.output)
            emit([OP_POOL, fbuf[n.inputs[0]], h, w, c, n.kernel, n.stride, n.pad, ho, wo, out,
                  int(n.op == "maxpool")], label, "f32")
        elif n.op == "gap":
            h, w, c = hwc(n.inputs[0])
            scratch = max(scratch, c)
            emit([OP_GAP, fbuf[n.inputs[0]], h * w, c, out], label, "f32")
        elif n.op == "shortcut_a":
            h, w, c = hwc(n.inputs[0])
            ho, wo, k = hwc(n.output)
            emit([OP_SHORTCUT, fbuf[n.inputs[0]], h, w, c, n.stride, ho, wo, k, out], label, "f32")
        else:
            raise ValueError(f"no kernel for op {n.op}")

    for i in range(len(g.nodes)):
        if i not in skipped and i not in emitted:
            run_node(i)
    return Plan(prog=np.stack(rows), names=names, paths=paths, macs=macs,
                weights={"wf32": wf32.array(), "wi8": wi8.array(), "wu64": wu64.array(),
                         "wi32": wi32.array(), "aux": aux.array()},
                sizes={"f32": f32.size, "u8": u8.size, "u64": u64.size, "i32": i32.size},
                borders=borders, input_off=fbuf[g.input], input_size=size(g.input),
                logits_off=fbuf[g.output], embed_off=fbuf[g.embed], scratch=scratch)
