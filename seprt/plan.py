"""Execution plan: a Graph compiled into one instruction table + flat arenas.

The fast engine (seprt/engine.py) runs the whole table in one numba call per
batch, so the per-layer cost is a branch, not a Python call. Planning:

1. Fusion (`fusions`). A conv/fc whose only consumer is `add(conv, r)` writes
   the add's output with r as residual (the producer of r is hoisted before
   the conv when it can be); a relu that is the only consumer of a
   conv/fc/add output becomes that kernel's relu flag, and so does a relu6
   (act kind 1) after a conv/fc/affine (flag 2: min(max(v, 0), 6)). A pattern
   residual block (k x k conv + 1x1 conv of the same input, summed) runs as one
   dot instruction (`Planner.paired`): the 1x1 is accumulated in the same tiles.
2. Kernel choice (`Planner.choose`) per integer conv/fc, named in `Plan.paths`:
       int8 weights                     -> "dot-u{bits}i8-{isa}" (u8 x i8 dot tiles)
       binary patterns                  -> "dot-u{bits}bin-{isa}" on ±1 int8, or "popcount-u{bits}"
       depthwise (groups = C = K)       -> "dw-u{bits}{i8|bin}"
       float weights or float inputs    -> "f32-{wfmt}"
   where isa is "vnni" (AVX-512 VNNI), "udot" (ARMv8.2 dot product) or "generic"
   (portable vectors): kernels.intrinsics.dot_isa().
3. Lowering. Each op's `lower` (seprt/ops) emits its rows through the
   Planner's helpers: buffers in the f32 arena (NHWC, one image) for every
   float value that survives fusion; a padded u8 buffer per quantized input
   (border = zero point, written once), shared by all consumers with the same
   layout; bit planes for popcount consumers; weights packed once into the
   layouts the kernels want (read-only, shared by all threads).
   A max pool between a conv and integer convs runs on quantized values
   (`Planner.u8_maxpool`): the conv quantizes with the pool output's scale,
   which is exact because quantization is monotonic. So does a max pool whose
   input integer convs also read, when its output has its input's
   quantization (`Planner.shared_u8_maxpool`): it reads their u8 buffer.
4. Memory (`share_f32`). Float buffers whose lifetimes (first to last
   instruction that names them) do not overlap share memory, placed greedily
   by size as TFLite's arena planner does: the working set of one inference
   stays small enough for the caches. (Padded u8 buffers keep their own
   memory: their borders are written once per workspace.)

Each row is WIDTH int64 columns, named per opcode by the IntEnums next to
the kernel that reads them (seprt/kernels/conv.py, elementwise.py).
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np

from .graph import Graph
from .kernels import conv as kc
from .kernels import stack as ks
from .ops import wfmt_stack
from .kernels.conv import Epilogue, pack_bin, pack_dw, pack_f32, pack_u8i8, window_offsets
from .kernels.elementwise import OP_QUANT, QuantRow
from .kernels.intrinsics import dot_isa
from .ops import get_op, get_wfmt

WIDTH = 40
CONV_ROWS = (kc.ConvDotRow, kc.ConvBinRow, kc.ConvF32Row, kc.ConvDwRow, ks.ConvStackRow)   # end in Epilogue columns
EPILOGUE_STEPS = 4    # dot_tile_work: one 16-channel epilogue costs about as much as 4 dot steps


class _F32(int):
    """An f32 arena offset that remembers its value, so `emit` can record which
    instruction columns name which float buffer (`share_f32` moves them)."""

    def __new__(cls, off: int, v: int):
        o = int.__new__(cls, off)
        o.v = v
        return o


def share_f32(sizes: dict, first: dict, last: dict, align: int = 16) -> tuple[dict, int]:
    """Offsets for float buffers v of sizes[v] elements, live from instruction
    first[v] to last[v] (inclusive): buffers live at the same time never overlap.
    Largest first, each at the lowest aligned offset that fits (greedy by size).
    -> ({v: offset}, arena size)."""
    placed, off = [], {}
    for v in sorted(sizes, key=lambda v: (-sizes[v], v)):
        clash = sorted((o, o + n) for u, o, n in placed if first[u] <= last[v] and first[v] <= last[u])
        at = 0
        for lo, hi in clash:
            if at + sizes[v] <= lo:
                break
            at = max(at, -(-hi // align) * align)
        off[v] = at
        placed.append((v, at, sizes[v]))
    return off, max((o + n for _, o, n in placed), default=0)


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


def bin_kernel_choice() -> str:
    """'dot' or 'popcount' for binary convs.

    Measured on sepnet-cifar (docs/performance.md): the ±1 int8 dot tile beats
    bit-plane popcount at 8 and 4 bits both with AVX-512 VNNI (one vpdpbusd is
    64 multiply-adds) and on a generic x86-64 target (SSE2 only), so 'dot' is
    the default; SEPRT_BIN_KERNEL=popcount selects the popcount kernel.
    """
    forced = os.environ.get("SEPRT_BIN_KERNEL", "")
    return forced if forced in ("dot", "popcount") else "dot"


def stack_kernel_choice(n, cg: int, kg: int) -> str:
    """'stack' (bank conv per slice + gather-sum, seprt/kernels/stack.py) or
    'expand' (the ±1 weight expanded, on the dot tiles) for a stacked conv
    (`stack` or `stack_packed`).
    Measured on resnet20 (AMD EPYC Zen 4, 1 thread, batch 1; docs/results.md):
    the expanded dot tiles are 3-30x faster than this first stack kernel even
    at m = K/4 (short tile loops per slice, scalar gather), so 'expand' is the
    default; SEPRT_STACK_KERNEL=stack selects it where d % 4 == 0, and
    SEPRT_STACK_KERNEL=auto where it also does fewer MACs (m < K)."""
    d = cg // wfmt_stack.slices(n)
    forced = os.environ.get("SEPRT_STACK_KERNEL", "")
    if d % 4 or forced not in ("stack", "auto"):
        return "expand"
    mp = -(-n.tensor("bank").shape[0] // 16) * 16
    fewer = mp * cg * n.kernel ** 2 + kg * (cg // d) < kg * cg * n.kernel ** 2
    return "stack" if forced == "stack" or fewer else "expand"


def fusions(g: Graph):
    """-> (writes, residual, relu, skipped): per kept node the value it writes,
    its residual value (-1: none) and relu flag (Epilogue.RELU: 0, RELU, RELU6);
    the set of fused-away nodes."""
    cons = g.consumers()
    producer = {n.output: i for i, n in enumerate(g.nodes)}
    sole = lambda v: cons[v][0] if len(cons.get(v, [])) == 1 else -1
    weighted = lambda n: get_op(n.op).weighted
    fuses = lambda j, kind: get_op(g.nodes[j].op).fusion_of(g.nodes[j]) == kind
    writes, residual, relu, skipped = {}, {}, {}, set()
    for i, n in enumerate(g.nodes):
        if i in skipped:
            continue
        out, res = n.output, -1
        j = sole(out)
        if weighted(n) and j >= 0 and fuses(j, "residual"):
            add = g.nodes[j]
            r = add.inputs[1] if add.inputs[0] == out else add.inputs[0]
            pr = producer.get(r, -1)
            # r must exist before this node runs: produced earlier, or its producer can
            # be hoisted (its inputs exist, and it is not a conv fusing into the same add)
            hoistable = (pr > i and pr not in skipped and not (weighted(g.nodes[pr]) and sole(r) == j)
                         and all(producer.get(v, -1) < i for v in g.nodes[pr].inputs))
            if r != out and (pr < i or hoistable):
                out, res = add.output, r
                skipped.add(j)
        j = sole(out)
        flag = 0
        if j >= 0 and (weighted(n) or get_op(n.op).fusion == "residual") and fuses(j, "relu"):
            flag = kc.RELU
        elif j >= 0 and weighted(n) and fuses(j, "relu6"):
            flag = kc.RELU6
        if flag:
            out = g.nodes[j].output
            skipped.add(j)
        writes[i], residual[i], relu[i] = out, res, flag
    return writes, residual, relu, skipped


@functools.cache
def _columns(row: type[IntEnum]) -> dict[str, int]:
    """Planner.emit's field names (lower case) -> columns of `row`, and of the shared
    Epilogue for conv rows."""
    return {m.name.lower(): int(m) for m in list(row) + (list(Epilogue) if row in CONV_ROWS else [])}


def dot_tile_work(kernel: int, c: int, k: int, qg: int) -> int:
    """Tile work of a dot conv (kernel x kernel, c inputs, k outputs) run as qg
    groups, per output pixel, in 16-channel dot steps (conv_u8i8's loops)."""
    kg, cgp = k // qg, -(-(c // qg) // 4) * 4
    return qg * -(-kg // 16) * (kernel * kernel * cgp // 4 + EPILOGUE_STEPS)


def dot_blocks(kg: int) -> int:
    """M, the 16-channel blocks per dot tile for kg outputs per group: 2 (32-wide
    tiles) unless that pads more channels than 16-wide tiles do (kg = 40: 64 vs 48)."""
    return 2 if kg > 16 and -(-kg // 32) * 2 == -(-kg // 16) else 1


class Planner:
    """Builds a Plan. Op modules call its helpers from their `lower(pl, i)`."""

    def __init__(self, g: Graph):
        self.g = g
        self.writes, self.residual, self.relu, self.skipped = fusions(g)
        self.writer = {v: i for i, v in self.writes.items()}
        self.cons = g.consumers()
        # per-image activation arenas, and read-only weight arenas
        self.f32, self.u8, self.u64, self.i32 = (_Arena(np.float32), _Arena(np.uint8), _Arena(np.uint64),
                                                 _Arena(np.int32))
        self.wf32, self.wi8, self.wu64, self.wi32, self.aux = (_Arena(np.float32), _Arena(np.int8),
                                                               _Arena(np.uint64), _Arena(np.int32), _Arena(np.int64))
        self.rows, self.names, self.paths, self.macs, self.borders = [], [], [], [], []
        self.scratch = 8 * 32
        self.fbuf = {g.input: _F32(self.f32.reserve(self.size(g.input)), g.input)}   # value -> f32 offset
        self.f32_refs = []                                              # (row, column, value) of each f32 offset
        self.qbufs = {}                                                 # (value, groups) -> padded u8 buffer
        self.pool_in = {}                                               # value -> plain u8 buffer (u8_maxpool)
        self.emitted = set()
        self.kind, self.qgroups = {}, {}
        for i, n in enumerate(g.nodes):
            if g.is_integer(n):
                self.kind[i] = self.choose(n)
                self.qgroups[i] = 1 if self.kind[i] == "dw" else n.groups
        self.choose_dot_layouts()
        self.pair = {i: j for i in self.kind if (j := self.paired(i)) >= 0}     # conv -> its paired 1x1 conv
        self.paired_away = set(self.pair.values())

    # ------------------------------------------------------------ shapes
    def shape(self, v: int) -> tuple:
        return self.g.values[v].shape

    def hwc(self, v: int) -> tuple[int, int, int]:
        s = self.shape(v)
        return s if len(s) == 3 else (1, 1, s[0])

    def size(self, v: int) -> int:
        return int(np.prod(self.shape(v)))

    # ------------------------------------------------------------ choices
    def choose(self, n) -> str:
        """The kernel of an integer conv/fc: "dw", "stack", "popcount" or "dot".
        Depthwise convs read a dense (groups 1) buffer one channel per filter;
        the others read one with the conv's groups, except dot convs, whose
        layout choose_dot_layouts picks."""
        groups = n.groups
        cin, k = self.shape(n.inputs[0])[-1], self.shape(n.output)[-1]
        if groups > 1 and groups == cin == k:
            return "dw"
        if n.wfmt in wfmt_stack.FORMATS and stack_kernel_choice(n, cin // groups, k // groups) == "stack":
            return "stack"
        if n.wfmt == "bin" and bin_kernel_choice() == "popcount":
            return "popcount"
        return "dot"

    def choose_dot_layouts(self) -> None:
        """The buffer layout (groups qg, a divisor of the conv's groups) of each
        grouped dot conv. With qg < groups, each of the qg super-groups joins
        groups/qg neighbouring groups into one block-diagonal conv (_dense): a dot
        tile is 16 channels wide, so groups of few outputs waste less in one wide
        block than in several narrow ones, while groups of many outputs waste
        k*k*Cg steps per zero block. Dot convs with the same groups reading the same
        value share one layout (one buffer, one quantize): the qg with the least
        summed tile work (dot_tile_work), ties to fewer groups."""
        readers = {}
        for i, kind in self.kind.items():
            n = self.g.nodes[i]
            if kind == "dot" and n.groups > 1:
                readers.setdefault((n.inputs[0], n.groups), []).append(i)
        for (v, groups), convs in readers.items():
            c = self.hwc(v)[2]
            work = {qg: sum(dot_tile_work(self.g.nodes[i].kernel, c, self.hwc(self.g.nodes[i].output)[2], qg)
                            for i in convs)
                    for qg in range(1, groups + 1) if groups % qg == 0}
            best = min(work, key=lambda qg: (work[qg], qg))
            for i in convs:
                self.qgroups[i] = best

    def paired(self, i: int) -> int:
        """The 1x1 conv that runs inside conv i's dot tiles, or -1. A pattern residual
        block is a kxk conv and a 1x1 conv of the same input, summed: when the 1x1's
        output is read only by that add (fused into conv i as its residual), the
        tiles accumulate both convs over the same pixels (the 1x1 at the window's
        centre tap) and add the 1x1's output in registers: no pass of its own, no
        float tensor in between. Bit-identical: the same float32 steps."""
        g, n = self.g, self.g.nodes[i]
        r = self.residual.get(i, -1)
        j = self.writer.get(r, -1) if r >= 0 else -1
        if j < 0 or self.kind.get(i) != "dot" or self.kind.get(j) != "dot":
            return -1
        m = g.nodes[j]
        c = self.hwc(n.inputs[0])[2]
        return j if (n.op == m.op == "conv" and m.inputs[0] == n.inputs[0] and m.groups == n.groups
                     and m.kernel == 1 and m.pad == 0
                     and m.stride == n.stride and 2 * n.pad == n.kernel - 1 and self.qgroups[j] == self.qgroups[i]
                     and not kc.use_rows(n.kernel, c // n.groups, n.groups)
                     and self.writes[j] == r and self.residual[j] < 0 and self.relu[j] == 0
                     and len(self.cons.get(r, [])) == 1 and self.cons[r][0] in self.skipped
                     and r not in (g.output, g.embed)) else -1

    def float_needed(self, v: int) -> bool:
        """Does anything read value v as float (not as a quantized conv input)?"""
        g = self.g
        return v in (g.output, g.embed) or any((i not in self.qgroups or g.nodes[i].inputs[0] != v)
                                               and not self.u8_maxpool(i) and not self.shared_u8_maxpool(i)
                                               and not self.fused_concat(i)
                                               for i in self.cons.get(v, []))

    def u8_maxpool(self, i: int) -> bool:
        """Does maxpool node i run on quantized values? When a conv/fc writes its
        only input and only integer convs (one buffer layout, channels unpadded)
        read its output: the conv then quantizes with the pool output's scale
        into a plain (H, W, C) u8 buffer, and the pool writes the consumers'
        padded buffer. max(q(x)) = q(max(x)) as q is monotonic: bit-exact.
        The input may also be a concat of such convs (each writes its channels)."""
        g, n = self.g, self.g.nodes[i]
        if n.op != "maxpool" or i in self.skipped:
            return False
        x, p = n.inputs[0], n.output
        w = self.writer.get(x, -1)
        if w < 0 or self.cons.get(x) != [i] or x in (g.output, g.embed):
            return False
        return (get_op(g.nodes[w].op).weighted or self._concat_inputs_ok(w)) and self._int_conv_readers(p)

    def shared_u8_maxpool(self, i: int) -> bool:
        """Does maxpool node i read the u8 buffer its input's integer convs read?
        When the pool's output has its input's quantization (the converters
        give a max pool's output its input's: calibrate), the input is read
        otherwise only by integer convs of one layout with no spatial padding
        (the buffer is plain (H, W, C) u8), and the output only by integer convs
        (or such pools): max(q(x)) = q(max(x)), bit-exact, no float pass. An
        Inception block's pool branch (GoogLeNet) is this case."""
        g, n = self.g, self.g.nodes[i]
        if n.op != "maxpool" or i in self.skipped:
            return False
        x, p = n.inputs[0], n.output
        vx, vp = g.values[x], g.values[p]
        if not vx.q_bits or (vx.q_scale, vx.q_zero, vx.q_bits) != (vp.q_scale, vp.q_zero, vp.q_bits):
            return False
        convs = [j for j in self.cons.get(x, []) if j != i]
        return (self._conv_key(x, convs) is not None and all(g.nodes[j].pad == 0 for j in convs)
                and self.cons[x].count(i) == 1 and self._int_conv_readers(p))

    def _conv_key(self, v: int, readers: list) -> int | None:
        """The buffer layout (groups) when `readers` are integer convs reading v
        as their input, all with one layout whose channels need no padding; else None."""
        g = self.g
        keys = {self.qgroups.get(j) for j in readers}
        if (v in (g.output, g.embed) or not readers or len(keys) != 1 or None in keys
                or not all(g.nodes[j].inputs[0] == v for j in readers)):
            return None
        key = keys.pop()
        return key if self.shape(v)[2] // key % 4 == 0 else None

    def _int_conv_readers(self, v: int) -> bool:
        """Is v read only by integer convs (as their input) of one buffer layout,
        channels unpadded, and by max pools that share their u8 buffer?"""
        readers = self.cons.get(v, [])
        convs = [j for j in readers if not self.shared_u8_maxpool(j)]
        return self._conv_key(v, convs) is not None

    def _concat_inputs_ok(self, j: int) -> bool:
        """Is node j a concat whose every input a conv/fc writes for it alone?"""
        g, n = self.g, self.g.nodes[j]
        if n.op != "concat" or j in self.skipped:
            return False
        for u in n.inputs:
            w = self.writer.get(u, -1)
            if (w < 0 or not get_op(g.nodes[w].op).weighted or self.cons.get(u) != [j] or w in self.pair
                    or w in self.paired_away or u in (g.output, g.embed) or n.inputs.count(u) != 1):
                return False
        return True

    # ------------------------------------------------------------ emit
    def emit(self, opcode: int, row: type[IntEnum], name: str, path: str, mac: int = 0, **fields) -> np.ndarray:
        """Append one instruction: `fields` names every column of `row` (lower
        case), and of the shared Epilogue for conv rows."""
        cols = _columns(row)
        if fields.keys() != cols.keys():
            raise ValueError(f"{row.__name__}: fields {sorted(fields)} are not its columns {sorted(cols)}")
        r = np.zeros(WIDTH, np.int64)
        r[0] = opcode
        for field, col in cols.items():
            r[col] = fields[field]
            if isinstance(fields[field], _F32):
                self.f32_refs.append((len(self.rows), col, fields[field].v))
        self.rows.append(r)
        self.names.append(name)
        self.paths.append(path)
        self.macs.append(int(mac))
        return r

    def label(self, i: int) -> str:
        n, w = self.g.nodes[i], self.writes[i]
        return n.name if w == n.output else f"{n.name} (+{self.g.values[w].name})"

    def float_out(self, i: int) -> int:
        """Reserve the float output of node i (what it writes after fusion)."""
        w = self.writes[i]
        self.fbuf[w] = _F32(self.f32.reserve(self.size(w)), w)
        return self.fbuf[w]

    # ------------------------------------------------------------ quantized buffers
    def qbuffer(self, v: int, groups: int, fused: bool = False, rows: bool = False) -> dict:
        """The padded quantized input buffer of v for convs reading it with
        `groups`; emits its quantize step unless the producer writes it (fused).
        Channels are padded per group to a multiple of 4, except for row-packed
        convs (`rows`, kernels.conv.use_rows), whose buffer keeps them unpadded."""
        h, w, c = self.hwc(v)
        cg = c // groups
        cgp = cg if rows else -(-cg // 4) * 4
        key = (v, groups, cgp)
        val = self.g.values[v]
        if key not in self.qbufs:
            pad = max(self.g.nodes[i].pad for i in self.cons[v]
                      if self.qgroups.get(i) == groups and self.g.nodes[i].inputs[0] == v)
            hp, wp = h + 2 * pad, w + 2 * pad
            border = np.zeros((hp, wp, groups, cgp), np.uint8)
            border[:, :, :, :cg] = val.q_zero
            off = self.u8.reserve(border.size + 4)              # + slack for row-packed dot steps
            self.borders.append((off, border.reshape(-1)))
            self.qbufs[key] = {"off": off, "pad": pad, "hp": hp, "wp": wp, "cgp": cgp, "cg": cg, "planes": None}
            if not fused:
                self.scratch = max(self.scratch, w * c)          # quantize_u8's row stage
                self.emit(OP_QUANT, QuantRow, f"quantize {val.name}", f"quantize-u{val.q_bits}",
                          **{"in": self.fbuf[v]}, h=h, w=w, c=c, scale=self.wf32.add([val.q_scale]),
                          zero=val.q_zero, qmax=(1 << val.q_bits) - 1, out=off, wp=wp, pad=pad, g=groups, cgp=cgp)
        return self.qbufs[key]

    def planes(self, v: int, groups: int) -> dict:
        q = self.qbuffer(v, groups)
        if q["planes"] is None:
            nw, bits, n_pix = -(-q["cg"] // 64), self.g.values[v].q_bits, q["hp"] * q["wp"]
            q["nw"] = nw
            q["planes"] = self.u64.reserve(n_pix * groups * bits * nw)
            q["qsum"] = self.i32.reserve(n_pix * groups)
            self.emit(kc.OP_PLANES, kc.PlanesRow, f"bit planes {self.g.values[v].name}", f"planes-u{bits}",
                      a=q["off"], n_pix=n_pix, g=groups, cg=q["cg"], cgp=q["cgp"], bits=bits, nw=nw,
                      planes=q["planes"], qsum=q["qsum"])
        return q

    def fused_quant(self, w: int) -> dict:
        """Requantization fused into the producer of w: the one padded buffer all
        of w's integer consumers read, when its channels need no padding."""
        keys = {(w, self.qgroups[i]) for i in self.cons.get(w, [])
                if i in self.qgroups and self.g.nodes[i].inputs[0] == w}
        none = {"q_off": -1, "q_wo": 0, "q_pad": 0, "q_wp": 0, "q_zero": 0, "q_max": 0, "q_scale": 0, "q_k": 0}
        if len(keys) != 1 or len(self.shape(w)) != 3:
            return none
        (_, groups), = keys
        if self.shape(w)[2] // groups % 4:
            return none
        q = self.qbuffer(w, groups, fused=True)
        val = self.g.values[w]
        return {"q_off": q["off"], "q_wo": self.shape(w)[1], "q_pad": q["pad"], "q_wp": q["wp"],
                "q_zero": val.q_zero, "q_max": (1 << val.q_bits) - 1, "q_scale": self.wf32.add([val.q_scale]),
                "q_k": self.shape(w)[2]}

    def fused_concat(self, j: int) -> bool:
        """Does concat node j run no step of its own? When every input is written
        by a conv/fc read by nothing else, and the concat is read only by integer
        convs (one buffer layout, channels unpadded) or by one u8 max pool: each
        producer then writes its quantized channels straight into that buffer
        (`concat_slot`). quantize(concat(a, b)) = concat(quantize(a), quantize(b))
        with one scale: bit-exact."""
        if not self._concat_inputs_ok(j):
            return False
        v = self.g.nodes[j].output
        readers = self.cons.get(v, [])
        return self._int_conv_readers(v) or (len(readers) == 1 and self.u8_maxpool(readers[0]))

    def concat_slot(self, w: int) -> dict | None:
        """The epilogue's quantized copy for value w when a fused concat reads it:
        w's channels (offset c0, q_k = all channels) of the concat's consumers'
        padded buffer, or of the plain u8 buffer its max pool reads."""
        cons = self.cons.get(w, [])
        if len(cons) != 1 or not self.fused_concat(cons[0]):
            return None
        n = self.g.nodes[cons[0]]
        v = n.output
        c0 = sum(self.shape(u)[2] for u in n.inputs[:n.inputs.index(w)])
        h, wd, c = self.hwc(v)
        pool = self.cons[v][0]
        if self.u8_maxpool(pool):                     # quantized with the pool output's scale
            if v not in self.pool_in:
                self.pool_in[v] = self.u8.reserve(h * wd * c)
            val = self.g.values[self.g.nodes[pool].output]
            off, pad, wp = self.pool_in[v], 0, wd
        else:
            conv = next(j for j in self.cons[v] if not self.shared_u8_maxpool(j))
            q = self.qbuffer(v, self.qgroups[conv], fused=True)
            val = self.g.values[v]
            off, pad, wp = q["off"], q["pad"], q["wp"]
        return {"q_off": off + c0, "q_wo": wd, "q_pad": pad, "q_wp": wp, "q_zero": val.q_zero,
                "q_max": (1 << val.q_bits) - 1, "q_scale": self.wf32.add([val.q_scale]), "q_k": c}

    # ------------------------------------------------------------ weighted ops
    def weighted(self, i: int) -> None:
        """Lower a conv or fc node: epilogue (fusion, requantization), then one kernel."""
        g, n = self.g, self.g.nodes[i]
        w_val = self.writes[i]
        qspec = self.fused_quant(w_val)
        pool = [j for j in self.cons.get(w_val, []) if self.u8_maxpool(j)]
        if pool:                                       # quantized for the max pool that reads it
            h, wd, c = self.hwc(w_val)
            p = self.g.values[self.g.nodes[pool[0]].output]
            self.pool_in[w_val] = self.u8.reserve(h * wd * c)
            qspec = {"q_off": self.pool_in[w_val], "q_wo": wd, "q_pad": 0, "q_wp": wd, "q_zero": p.q_zero,
                     "q_max": (1 << p.q_bits) - 1, "q_scale": self.wf32.add([p.q_scale]), "q_k": c}
        slot = self.concat_slot(w_val)
        if slot is not None:                           # a slice of the fused concat that reads it
            qspec = slot
        if self.float_needed(w_val) or qspec["q_off"] < 0:
            self.float_out(i)
        res = self.residual[i] if i not in self.pair else -1      # a paired conv's residual is in registers
        k = self.hwc(n.output)[2]
        epi = dict(bias=self.wf32.add(n.bias), out=self.fbuf.get(w_val, -1),
                   res=self.fbuf[res] if res >= 0 else -1, k=k, relu=self.relu[i], **qspec)
        mac = g.node_params(n) * self.hwc(n.output)[0] * self.hwc(n.output)[1]
        if i not in self.qgroups:
            return self._conv_f32(i, epi, mac)
        x = g.values[n.inputs[0]]
        epi["mult"] = self.wf32.add((np.float32(x.q_scale) * n.scale).astype(np.float32))
        cg = self.hwc(n.inputs[0])[2] // n.groups
        w_int = get_wfmt(n.wfmt).int_weight(n, g.kernel_shape(n)).reshape(k, n.kernel, n.kernel, cg)
        getattr(self, "_conv_" + self.kind[i])(i, w_int, epi, mac)

    def _geometry(self, n):
        ho, wo, _ = self.hwc(n.output)
        return n.kernel, n.stride, n.pad, ho, wo      # fc: 1, 1, 0 (an fc is a 1x1 conv on a 1x1 image)

    def _conv_dot(self, i, w_int, epi, mac):
        n = self.g.nodes[i]
        kernel, stride, pad, ho, wo = self._geometry(n)
        k, c = w_int.shape[0], self.hwc(n.inputs[0])[2]
        groups, qg = n.groups, self.qgroups[i]
        w_int = self._dense(w_int, groups, qg, c)
        kgq = k // qg
        M = dot_blocks(kgq)
        rows = kc.use_rows(kernel, c // groups, groups)
        q = self.qbuffer(n.inputs[0], qg, rows=rows)
        if rows:                              # window rows as contiguous bytes (RGB stems)
            b, wsum = kc.pack_u8i8_rows(w_int, M)
            pix, koff = kc.window_offsets_rows(ho, wo, stride, q["pad"] - pad, q["wp"], c, kernel)
        else:
            b, wsum = pack_u8i8(w_int, qg, q["cgp"], M)
            pix, koff = window_offsets(ho, wo, stride, q["pad"] - pad, q["wp"], qg * q["cgp"], kernel, q["cgp"])
        v = self.g.values[n.inputs[0]]
        path = f"dot-u{v.q_bits}{n.wfmt}-{dot_isa()}" + ("-rows" if rows else "")
        pair = dict(b2=0, koff2=0, nk2=0, wsum2=0, mult2=0, bias2=0)
        label = self.label(i)
        if i in self.pair:                    # the 1x1 branch of a PRB, at the window's centre tap
            j = self.pair[i]
            m = self.g.nodes[j]
            w2 = self._dense(get_wfmt(m.wfmt).int_weight(m, self.g.kernel_shape(m)).reshape(k, 1, 1, c // m.groups),
                             m.groups, qg, c)
            b2, wsum2 = pack_u8i8(w2, qg, q["cgp"], M)
            ctr = kernel // 2
            koff2 = ((ctr * q["wp"] + ctr) * qg * q["cgp"] + 4 * np.arange(q["cgp"] // 4)).astype(np.int64)
            pair = dict(b2=self.wi8.add(b2), koff2=self.aux.add(koff2), nk2=len(koff2), wsum2=self.wi32.add(wsum2),
                        mult2=self.wf32.add((np.float32(v.q_scale) * m.scale).astype(np.float32)),
                        bias2=self.wf32.add(m.bias))
            label, path = f"{label} + {m.name}", path + "+1x1"
            mac += self.g.node_params(m) * ho * wo
        self.emit(kc.OP_CONV_DOT, kc.ConvDotRow, label, path, mac,
                  a=q["off"], pix=self.aux.add(pix), n_pix=len(pix), koff=self.aux.add(koff), nk=len(koff),
                  b=self.wi8.add(b), g=qg, cgp=q["cgp"], kg=kgq, m=M, zero=v.q_zero, wsum=self.wi32.add(wsum),
                  pm1=int(np.abs(w_int).max(initial=0) <= 1), **pair, **epi)

    @staticmethod
    def _dense(w_int, groups: int, qg: int, c: int):
        """(K, k, k, C/groups) -> (K, k, k, C/qg) for a buffer layout of qg groups
        (qg divides groups): each of the qg super-groups is the block-diagonal conv
        of its groups/qg neighbouring groups. qg = groups: unchanged."""
        if qg == groups:
            return w_int
        k, kernel, cg, kg = w_int.shape[0], w_int.shape[1], c // groups, w_int.shape[0] // groups
        r = groups // qg
        dense = np.zeros((k, kernel, kernel, c // qg), w_int.dtype)
        for j in range(groups):
            at = (j % r) * cg                       # group j's channels inside its super-group
            dense[j * kg:(j + 1) * kg, :, :, at:at + cg] = w_int[j * kg:(j + 1) * kg]
        return dense

    def _conv_stack(self, i, w_int, epi, mac):
        """Stacked binary filters: bank conv per d-slice + gather-sum (seprt/kernels/stack.py)."""
        from .quant import unpack_pattern
        n = self.g.nodes[i]
        kernel, stride, pad, ho, wo = self._geometry(n)
        qg = self.qgroups[i]
        q = self.qbuffer(n.inputs[0], qg)
        index, bank = wfmt_stack.index_of(n, epi["k"]), n.tensor("bank")
        S = index.shape[1]
        d = q["cg"] // S
        bank_pm1 = unpack_pattern(bank, (kernel, kernel, d))
        b, mp, idx, wsum = ks.pack_stack(bank_pm1, index, qg, kernel)
        pix, koff = window_offsets(ho, wo, stride, q["pad"] - pad, q["wp"], qg * q["cgp"], kernel, d)
        kg = epi["k"] // qg
        self.scratch = max(self.scratch, 8 * 16 + 8 * S * mp + kg)
        v = self.g.values[n.inputs[0]]
        self.emit(ks.OP_CONV_STACK, ks.ConvStackRow, self.label(i), f"stack-u{v.q_bits}-{dot_isa()}",
                  ho * wo * qg * (q["cg"] * mp * kernel * kernel + kg * S),
                  a=q["off"], pix=self.aux.add(pix), n_pix=len(pix), koff=self.aux.add(koff), nk=len(koff),
                  b=self.wi8.add(b), mp=mp, s=S, d=d, g=qg, cgp=q["cgp"], kg=kg, idx=self.wi32.add(idx),
                  zero=v.q_zero, wsum=self.wi32.add(wsum), **epi)

    def _conv_dw(self, i, w_int, epi, mac):
        n = self.g.nodes[i]
        kernel, stride, pad, ho, wo = self._geometry(n)
        q = self.qbuffer(n.inputs[0], 1)
        wt, wsum = pack_dw(w_int, q["cgp"])
        pix, _ = window_offsets(ho, wo, stride, q["pad"] - pad, q["wp"], q["cgp"], 1, 4)
        toff = ((np.arange(kernel)[:, None] * q["wp"] + np.arange(kernel)[None, :]) * q["cgp"]).reshape(-1)
        v = self.g.values[n.inputs[0]]
        self.emit(kc.OP_CONV_DW, kc.ConvDwRow, self.label(i), f"dw-u{v.q_bits}{n.wfmt}-vec16", mac,
                  a=q["off"], pix=self.aux.add(pix), n_pix=len(pix), toff=self.aux.add(toff), t=len(toff),
                  wt=self.wi8.add(wt), cp=q["cgp"], zero=v.q_zero, wsum=self.wi32.add(wsum), **epi)

    def _conv_popcount(self, i, w_int, epi, mac):
        n = self.g.nodes[i]
        kernel, stride, pad, ho, wo = self._geometry(n)
        qg = self.qgroups[i]
        q = self.qbuffer(n.inputs[0], qg)
        self.planes(n.inputs[0], qg)
        words, wsum = pack_bin(w_int, qg)
        pix, _ = window_offsets(ho, wo, stride, q["pad"] - pad, q["wp"], 1, 1, 4)
        toff = (np.arange(kernel)[:, None] * q["wp"] + np.arange(kernel)[None, :]).reshape(-1)
        kgq = w_int.shape[0] // qg
        self.scratch = max(self.scratch, kgq)
        v = self.g.values[n.inputs[0]]
        self.emit(kc.OP_CONV_BIN, kc.ConvBinRow, self.label(i), f"popcount-u{v.q_bits}", mac,
                  planes=q["planes"], qsum=q["qsum"], pix=self.aux.add(pix), n_pix=len(pix),
                  toff=self.aux.add(toff), t=kernel * kernel, g=qg, bits=v.q_bits, nw=q["nw"],
                  pat=self.wu64.add(words), kg=kgq, zero=v.q_zero, wsum=self.wi32.add(wsum), **epi)

    def _conv_f32(self, i, epi, mac):
        n = self.g.nodes[i]
        kernel, stride, pad, ho, wo = self._geometry(n)
        x = n.inputs[0]
        h, w, c = self.hwc(x)
        k = epi["k"]
        groups = n.groups
        cg = c // groups
        wt = get_wfmt(n.wfmt).float_weight(n, self.g.kernel_shape(n))
        self.scratch = max(self.scratch, k)
        self.emit(kc.OP_CONV_F32, kc.ConvF32Row, self.label(i), f"f32-{n.wfmt}", mac,
                  **{"in": self.fbuf[x]}, h=h, w=w, c=c,
                  wt=self.wf32.add(pack_f32(wt.reshape(k, kernel, kernel, cg), groups)), g=groups, kernel=kernel,
                  stride=stride, pad=pad, ho=ho, wo=wo, kg=k // groups,
                  mult=self.wf32.add(np.ones(k, np.float32)), **epi)

    # ------------------------------------------------------------ driver
    def node(self, i: int) -> None:
        """Lower node i, after the producer of its fused residual (hoisted; a paired
        1x1 conv runs inside node i's own instruction)."""
        self.emitted.add(i)
        res = self.residual.get(i, -1)
        if res >= 0 and res not in self.fbuf and i not in self.pair:
            self.node(self.writer[res])
        get_op(self.g.nodes[i].op).lower(self, i)

    def build(self) -> Plan:
        g = self.g
        for i in range(len(g.nodes)):
            if i not in self.skipped and i not in self.emitted and i not in self.paired_away:
                self.node(i)
        # float buffers: the input is written before the first instruction, logits and
        # embedding read after the last; the others live between the rows that name them
        n = len(self.rows)
        first = {v: n for v in self.fbuf}
        last = {v: -1 for v in self.fbuf}
        first[g.input] = -1
        last[g.output] = last[g.embed] = n
        for row, _, v in self.f32_refs:
            first[v], last[v] = min(first[v], row), max(last[v], row)
        off, f32_size = share_f32({v: self.size(v) for v in self.fbuf}, first, last)
        for row, col, v in self.f32_refs:
            self.rows[row][col] = off[v]
        return Plan(prog=np.stack(self.rows), names=self.names, paths=self.paths, macs=self.macs,
                    weights={"wf32": self.wf32.array(), "wi8": self.wi8.array(), "wu64": self.wu64.array(),
                             "wi32": self.wi32.array(), "aux": self.aux.array()},
                    sizes={"f32": f32_size, "u8": self.u8.size, "u64": self.u64.size, "i32": self.i32.size},
                    borders=self.borders, input_off=off[g.input], input_size=self.size(g.input),
                    logits_off=off[g.output], embed_off=off[g.embed], scratch=self.scratch)


def build(g: Graph) -> Plan:
    """Compile a validated graph into a Plan."""
    return Planner(g).build()
