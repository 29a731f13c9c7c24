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
    binary patterns                   -> "dot-u{bits}bin" on ±1 int8, or "popcount-u{bits}"
                                         (bin_kernel_choice)
    float weights or float inputs     -> "f32"
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from .graph import Graph
from .kernels.conv import pack_bin, pack_f32, pack_u8i8, window_offsets
from .quant import unpack_pattern
from .reference import float_weight

# opcodes of the instruction table (engine.run_program)
OP_QUANT, OP_PLANES, OP_CONV_DOT, OP_CONV_BIN, OP_CONV_F32 = 1, 2, 3, 4, 5
OP_ADD, OP_RELU, OP_POOL, OP_GAP, OP_SHORTCUT = 6, 7, 8, 9, 10
WIDTH = 32
DENSE_BELOW = 16      # groups with fewer outputs run as one dense block-diagonal dot conv
QSPEC = 24        # columns 24..30 of conv rows: fused requantization (see kernels.conv._write)


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
    """'dot' or 'popcount' for a binary conv with `bits`-bit inputs.

    Measured on sepnet-cifar (docs/performance.md): the ±1 int8 dot tile beats
    bit-plane popcount at 8 and 4 bits both with AVX-512 VNNI (one vpdpbusd is
    64 multiply-adds) and on a generic x86-64 target (SSE2 only), so 'dot' is
    the default; SEPRT_BIN_KERNEL=popcount selects the popcount kernel (CPUs
    where popcount is cheap and int8 dot products are not, e.g. to measure on
    an ARM board).
    """
    forced = os.environ.get("SEPRT_BIN_KERNEL", "")
    return forced if forced in ("dot", "popcount") else "dot"


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
    rows, names, paths, macs, borders = [], [], [], [], []
    scratch = 8 * 32

    # per integer node: kernel ("dot" | "popcount") and the groups its input buffer is laid out for.
    # Groups of fewer than 16 outputs run as one dense block-diagonal conv: a dot tile is 16
    # channels wide, and one wide tile wastes no more than several narrow ones but has less overhead.
    kind, qgroups = {}, {}
    for i, n in enumerate(g.nodes):
        if g.is_integer(n):
            bits = g.values[n.inputs[0]].q_bits
            kind[i] = "popcount" if n.wfmt == "bin" and bin_kernel_choice(bits) == "popcount" else "dot"
            groups = n.groups if n.op == "conv" else 1
            qgroups[i] = 1 if kind[i] == "dot" and g.values[n.output].shape[-1] // groups < DENSE_BELOW else groups

    def float_needed(v: int) -> bool:
        """Does anything read value v as float (not as a quantized conv input)?"""
        return v in (g.output, g.embed) or any(i not in qgroups or g.nodes[i].inputs[0] != v
                                               for i in cons.get(v, []))

    fbuf = {g.input: f32.reserve(size(g.input))}

    def emit(row, name, path, mac=0):
        r = np.zeros(WIDTH, np.int64)
        r[:len(row)] = row
        rows.append(r)
        names.append(name)
        paths.append(path)
        macs.append(int(mac))
        return r

    qbufs = {}    # (value, groups) -> padded u8 buffer of the quantized value

    def qbuffer(v: int, groups: int, fused: bool = False):
        """The padded quantized input buffer of v for convs with `groups`;
        emits its quantize step unless the producer writes it (fused)."""
        nonlocal scratch
        key = (v, groups)
        val = g.values[v]
        if key not in qbufs:
            pad = max(g.nodes[i].pad for i in cons[v] if qgroups.get(i) == groups and g.nodes[i].inputs[0] == v)
            h, w, c = hwc(v)
            cg = c // groups
            cgp = -(-cg // 4) * 4
            hp, wp = h + 2 * pad, w + 2 * pad
            border = np.zeros((hp, wp, groups, cgp), np.uint8)
            border[:, :, :, :cg] = val.q_zero
            off = u8.reserve(border.size)
            borders.append((off, border.reshape(-1)))
            qbufs[key] = {"off": off, "pad": pad, "hp": hp, "wp": wp, "cgp": cgp, "cg": cg, "planes": None}
            if not fused:
                scratch = max(scratch, w * c)          # quantize_u8's row stage
                emit([OP_QUANT, fbuf[v], h, w, c, wf32.add([val.q_scale]), val.q_zero, (1 << val.q_bits) - 1,
                      off, wp, pad, groups, cgp], f"quantize {val.name}", f"quantize-u{val.q_bits}")
        return qbufs[key]

    def planes(v: int, groups: int):
        q = qbufs[(v, groups)]
        if q["planes"] is None:
            nw, bits, n_pix = -(-q["cg"] // 64), g.values[v].q_bits, q["hp"] * q["wp"]
            q["nw"] = nw
            q["planes"] = u64.reserve(n_pix * groups * bits * nw)
            q["qsum"] = i32.reserve(n_pix * groups)
            emit([OP_PLANES, q["off"], n_pix, groups, q["cg"], q["cgp"], bits, nw, q["planes"], q["qsum"]],
                 f"bit planes {g.values[v].name}", f"planes-u{bits}")
        return q

    def fused_quant(w: int) -> list:
        """Requantization fused into the producer of w: the one padded buffer all
        of w's integer consumers read, when its channels need no padding."""
        keys = {(w, qgroups[i]) for i in cons.get(w, []) if i in qgroups and g.nodes[i].inputs[0] == w}
        if len(keys) != 1 or len(shape(w)) != 3:
            return [-1]
        (_, groups), = keys
        if shape(w)[2] // groups % 4:
            return [-1]
        q = qbuffer(w, groups, fused=True)
        val = g.values[w]
        return [q["off"], shape(w)[1], q["pad"], q["wp"], val.q_zero, (1 << val.q_bits) - 1, wf32.add([val.q_scale])]

    emitted = set()

    def run_node(i: int):
        nonlocal scratch
        n = g.nodes[i]
        emitted.add(i)
        res = residual.get(i, -1)
        if res >= 0 and res not in fbuf:         # hoist the residual's producer
            run_node(writer[res])
        w_val = writes[i]
        label = n.name if w_val == n.output else f"{n.name} (+{g.values[w_val].name})"
        if n.op in ("conv", "fc"):
            qspec = fused_quant(w_val)
            if float_needed(w_val) or qspec[0] < 0:
                fbuf[w_val] = f32.reserve(size(w_val))
            out = fbuf.get(w_val, -1)
            x = n.inputs[0]
            h, w, c = hwc(x)
            ho, wo, k = hwc(n.output)
            kernel = n.kernel if n.op == "conv" else 1
            stride, pad, groups = (n.stride, n.pad, n.groups) if n.op == "conv" else (1, 0, 1)
            cg = c // groups
            mac = g.node_params(n) * ho * wo
            common = [wf32.add(n.bias), out, fbuf[res] if res >= 0 else -1, k, int(relu[i])]
            if i in qgroups:
                v = g.values[x]
                mult = (np.float32(v.q_scale) * n.scale).astype(np.float32)
                w_int = n.weight if n.wfmt == "i8" else unpack_pattern(n.weight, (kernel, kernel, cg))
                w_int = w_int.reshape(k, kernel, kernel, cg)
                qg = qgroups[i]
                if qg != groups:                      # dense block-diagonal form
                    dense = np.zeros((k, kernel, kernel, c), w_int.dtype)
                    kg = k // groups
                    for j in range(groups):
                        dense[j * kg:(j + 1) * kg, :, :, j * cg:(j + 1) * cg] = w_int[j * kg:(j + 1) * kg]
                    w_int = dense
                q = qbuffer(x, qg)
                shift = q["pad"] - pad
                kgq = k // qg
                if kind[i] == "popcount":
                    planes(x, qg)
                    words, wsum = pack_bin(w_int, qg)
                    pix, _ = window_offsets(ho, wo, stride, shift, q["wp"], 1, 1, 4)
                    toff = (np.arange(kernel)[:, None] * q["wp"] + np.arange(kernel)[None, :]).reshape(-1)
                    scratch = max(scratch, kgq)
                    row = emit([OP_CONV_BIN, q["planes"], q["qsum"], aux.add(pix), len(pix), aux.add(toff),
                                kernel * kernel, qg, v.q_bits, q["nw"], wu64.add(words), kgq, v.q_zero,
                                wi32.add(wsum), wf32.add(mult)] + common, label, f"popcount-u{v.q_bits}", mac)
                else:
                    M = 2 if kgq > 16 else 1
                    b, wsum = pack_u8i8(w_int, qg, q["cgp"], M)
                    pix, koff = window_offsets(ho, wo, stride, shift, q["wp"], qg * q["cgp"], kernel, q["cgp"])
                    row = emit([OP_CONV_DOT, q["off"], aux.add(pix), len(pix), aux.add(koff), len(koff), wi8.add(b),
                                qg, q["cgp"], kgq, M, v.q_zero, wi32.add(wsum), wf32.add(mult)] + common, label,
                               f"dot-u{v.q_bits}{'i8' if n.wfmt == 'i8' else 'bin'}", mac)
            else:
                wt = float_weight(n, c).reshape(k, kernel, kernel, cg)
                scratch = max(scratch, k // groups)
                row = emit([OP_CONV_F32, fbuf[x], h, w, c, wf32.add(pack_f32(wt, groups)), groups, kernel, stride,
                            pad, ho, wo, k // groups, wf32.add(np.ones(k, np.float32))] + common, label,
                           f"f32-{n.wfmt}", mac)
            row[QSPEC:QSPEC + len(qspec)] = qspec
            return
        out = fbuf[w_val] = f32.reserve(size(w_val))
        if n.op == "add":
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
