"""Model file format: reader (v1 and v2) and writer (v2). Spec: docs/format.md.

    save(graph, path) / load(path) -> Graph          (files, atomic write)
    to_bytes(graph) -> bytes / from_bytes(buf) -> Graph

The writer takes plain numpy arrays (no torch). The reader checks every
length, offset and count before it uses it, never allocates more than the
file holds, and raises FormatError for anything that is not a valid file.
Tensor data is viewed zero-copy from the buffer (an mmap for `load`).

Layout (all little-endian; byte offsets from the start of the file):
    0     header, 64 bytes
    64    section table, section_count x 64 bytes
    ...   sections, each at the next multiple of 64, zero padding between:
          section 0 META (key/values), section 1 GRAPH, then TENSOR sections.
"""
from __future__ import annotations

import mmap
import os
import struct
import zlib

import numpy as np

from .errors import FormatError
from .files import atomic_write
from .graph import Graph, Node, Value
from .ops import OP_CODES, WFMT_CODES, get_op, get_wfmt

MAGIC = b"SEPRTMDL"
VERSION_MAJOR = 2            # what this writer writes
VERSION_MINOR = 0
READS = (1, 2)               # majors this reader reads
HEADER_SIZE = 64
ENTRY_SIZE = 64
ALIGNMENT = 64
MAX_SECTIONS = 1 << 16
MAX_META_KEYS = 4096
MAX_RANK = 4
NONE = 0xFFFFFFFF

KIND_META, KIND_GRAPH, KIND_TENSOR = 1, 2, 3
DTYPES = {1: np.dtype("<f4"), 2: np.dtype("i1"), 3: np.dtype("u1")}
DTYPE_CODES = {np.dtype("<f4"): 1, np.dtype("i1"): 2, np.dtype("u1"): 3}
T_U32, T_F32, T_STR, T_STRS, T_F32S, T_U32S = 1, 2, 3, 4, 5, 6

_HEADER = struct.Struct("<8sHHIQIIQI16sI")      # 64 bytes, see docs/format.md
_ENTRY = struct.Struct("<IIII4IQQIIQ")          # 64 bytes
_GRAPH_HEAD = struct.Struct("<6I")              # 24 bytes
_VALUE = struct.Struct("<I3IfiII")              # 32 bytes
_NODE_V1 = struct.Struct("<12I")                # 48 bytes (v1)
_NODE_V2 = struct.Struct("<6HI")                # 16 bytes, then variable parts (v2)
A_INT, A_F32 = 1, 2                             # v2 attribute value types
assert _HEADER.size == HEADER_SIZE and _ENTRY.size == ENTRY_SIZE
assert _VALUE.size == 32 and _NODE_V1.size == 48 and _NODE_V2.size == 16


def _align(n: int) -> int:
    return (n + ALIGNMENT - 1) // ALIGNMENT * ALIGNMENT


# ======================================================================= write

def _enc_str(s: str) -> bytes:
    b = s.encode("utf-8")
    return struct.pack("<I", len(b)) + b


def _enc_meta(meta: dict) -> bytes:
    """META section: u32 count, then per key: u16 len, key, u8 type, value."""
    out = [struct.pack("<I", len(meta))]
    for key in sorted(meta):
        v = meta[key]
        kb = key.encode("utf-8")
        out.append(struct.pack("<H", len(kb)) + kb)
        if isinstance(v, str):
            out.append(bytes([T_STR]) + _enc_str(v))
        elif isinstance(v, bool):
            raise TypeError(f"metadata {key!r}: bool is not a metadata type")
        elif isinstance(v, (int, np.integer)):
            out.append(bytes([T_U32]) + struct.pack("<I", int(v)))
        elif isinstance(v, (float, np.floating)):
            out.append(bytes([T_F32]) + struct.pack("<f", float(v)))
        elif isinstance(v, (list, tuple)) and all(isinstance(x, str) for x in v):
            out.append(bytes([T_STRS]) + struct.pack("<I", len(v)) + b"".join(_enc_str(x) for x in v))
        elif isinstance(v, (list, tuple)) and all(isinstance(x, (int, np.integer)) for x in v):
            out.append(bytes([T_U32S]) + struct.pack("<I", len(v)) + np.asarray(v, "<u4").tobytes())
        elif isinstance(v, (list, tuple)):
            out.append(bytes([T_F32S]) + struct.pack("<I", len(v)) + np.asarray(v, "<f4").tobytes())
        else:
            raise TypeError(f"metadata {key!r}: unsupported value {v!r}")
    return b"".join(out)


def _enc_node(n: Node, refs: list[int]) -> bytes:
    """A v2 node record: fixed 16 bytes, inputs, tensor sections, name, attributes."""
    op = get_op(n.op)
    name = n.name.encode("utf-8")
    attrs = op.non_default(n.attrs)
    out = [_NODE_V2.pack(op.code, get_wfmt(n.wfmt).code if n.wfmt else 0, len(n.inputs), len(refs), len(attrs),
                         len(name), n.output),
           struct.pack(f"<{len(n.inputs)}I", *n.inputs), struct.pack(f"<{len(refs)}I", *refs), name]
    for key in sorted(attrs):
        kb, v = key.encode("utf-8"), attrs[key]
        typ = A_F32 if op.attr(key).kind is float else A_INT
        out.append(bytes([len(kb)]) + kb + bytes([typ]) + struct.pack("<f" if typ == A_F32 else "<i", v))
    return b"".join(out)


def to_bytes(g: Graph) -> bytes:
    """Serialize a graph (validated first) to the v2 byte layout."""
    g.validate()
    # 1) collect tensor sections in node order, each node's in its weight format's order
    tensors: list[np.ndarray] = []
    refs: list[list[int]] = []
    for n in g.nodes:
        refs.append(list(range(2 + len(tensors), 2 + len(tensors) + len(n.tensors))))
        tensors += [np.ascontiguousarray(a, a.dtype.newbyteorder("<")) for a in n.tensors]
    # 2) graph section: head, values, node records
    gb = [_GRAPH_HEAD.pack(len(g.values), len(g.nodes), g.input, g.output, g.embed, 0)]
    for v in g.values:
        dims = list(v.shape) + [0] * (3 - len(v.shape))
        gb.append(_VALUE.pack(len(v.shape), *dims, v.q_scale, v.q_zero, v.q_bits, 0))
    for n, r in zip(g.nodes, refs):
        gb.append(_enc_node(n, r))
    blobs = [_enc_meta(g.meta), b"".join(gb)] + [t.tobytes() for t in tensors]
    # 3) section table: offsets at the next multiple of ALIGNMENT
    count = len(blobs)
    offset = _align(HEADER_SIZE + ENTRY_SIZE * count)
    entries, layout = [], []
    for i, blob in enumerate(blobs):
        if i < 2:
            kind, code, shape = (KIND_META if i == 0 else KIND_GRAPH), 3, (len(blob),)
        else:
            t = tensors[i - 2]
            kind, code, shape = KIND_TENSOR, DTYPE_CODES[t.dtype], t.shape
        dims = list(shape) + [0] * (MAX_RANK - len(shape))
        entries.append(_ENTRY.pack(kind, code, len(shape), 0, *dims, offset, len(blob), zlib.crc32(blob), 0, 0))
        layout.append(offset)
        offset = _align(offset + len(blob))
    file_size = layout[-1] + len(blobs[-1])
    table = b"".join(entries)
    # 4) header with CRC32 over header bytes [0, 60) and the section table
    head = _HEADER.pack(MAGIC, VERSION_MAJOR, VERSION_MINOR, HEADER_SIZE, file_size, count, ALIGNMENT,
                        HEADER_SIZE, 0, bytes(16), 0)[:60]
    head += struct.pack("<I", zlib.crc32(table, zlib.crc32(head)))
    out = bytearray(file_size)
    out[:HEADER_SIZE] = head
    out[HEADER_SIZE:HEADER_SIZE + len(table)] = table
    for off, blob in zip(layout, blobs):
        out[off:off + len(blob)] = blob
    return bytes(out)


def save(g: Graph, path: str | os.PathLike) -> int:
    """Write a model file atomically (temp file + rename). Returns its size."""
    data = to_bytes(g)
    atomic_write(path, data)
    return len(data)


# ======================================================================== read

class _Cursor:
    """Bounds-checked little-endian reads from one section."""

    def __init__(self, buf, start: int, end: int, what: str):
        self.buf, self.pos, self.end, self.what = buf, start, end, what

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > self.end:
            raise FormatError(f"{self.what} section truncated at byte {self.pos} (needs {n} more); re-export the model")
        b = bytes(self.buf[self.pos:self.pos + n])
        self.pos += n
        return b

    def unpack(self, st: struct.Struct) -> tuple:
        return st.unpack(self.take(st.size))

    def u32(self) -> int:
        return struct.unpack("<I", self.take(4))[0]

    def string(self, length_bytes: int = 4) -> str:
        n = struct.unpack("<I" if length_bytes == 4 else "<H", self.take(length_bytes))[0]
        try:
            return self.take(n).decode("utf-8")
        except UnicodeDecodeError:
            raise FormatError(f"{self.what} section: string at byte {self.pos - n} is not UTF-8") from None

    def count(self, min_item_bytes: int) -> int:
        """A u32 element count, checked against the bytes left."""
        n = self.u32()
        if n * min_item_bytes > self.end - self.pos:
            raise FormatError(f"{self.what} section: count {n} at byte {self.pos - 4} exceeds the section size")
        return n


def _dec_meta(c: _Cursor) -> dict:
    n = c.u32()
    if n > MAX_META_KEYS:
        raise FormatError(f"metadata has {n} keys; the limit is {MAX_META_KEYS}")
    meta = {}
    for _ in range(n):
        key = c.string(2)
        if key in meta:
            raise FormatError(f"metadata key {key!r} appears twice")
        t = c.take(1)[0]
        if t == T_U32:
            meta[key] = c.u32()
        elif t == T_F32:
            meta[key] = struct.unpack("<f", c.take(4))[0]
        elif t == T_STR:
            meta[key] = c.string()
        elif t == T_STRS:
            meta[key] = [c.string() for _ in range(c.count(4))]
        elif t in (T_F32S, T_U32S):
            k = c.count(4)
            arr = np.frombuffer(c.take(4 * k), "<f4" if t == T_F32S else "<u4")
            meta[key] = [float(x) for x in arr] if t == T_F32S else [int(x) for x in arr]
        else:
            raise FormatError(f"metadata key {key!r}: unknown value type {t}")
    if c.pos != c.end:
        raise FormatError(f"metadata section has {c.end - c.pos} unread bytes at its end")
    return meta


def from_bytes(buf) -> Graph:
    """Parse and validate a model from a bytes-like object (zero-copy views).

    Raises FormatError for anything that is not a valid v1 model.
    """
    try:
        mv = memoryview(buf).cast("B")
    except TypeError:
        raise FormatError(f"expected a bytes-like model buffer, got {type(buf).__name__}") from None
    size = len(mv)
    if size < HEADER_SIZE:
        raise FormatError(f"file is {size} bytes, shorter than the {HEADER_SIZE}-byte header; "
                          "it is truncated or not a seprt model")
    (magic, major, minor, hsize, file_size, count, alignment, table_off, flags, _reserved,
     hcrc) = _HEADER.unpack(bytes(mv[:HEADER_SIZE]))
    if magic != MAGIC:
        raise FormatError(f"not a seprt model file (magic {magic!r}, expected {MAGIC!r})")
    if major not in READS:
        raise FormatError(f"model file version {major}.{minor} is not supported by this seprt "
                          f"(reads {' and '.join(f'{m}.x' for m in READS)}); upgrade seprt or re-export the model")
    if hsize != HEADER_SIZE or alignment != ALIGNMENT or table_off != HEADER_SIZE or flags != 0:
        raise FormatError("header fields (header_size, alignment, table offset, flags) are not those of the spec")
    if file_size != size:
        what = "truncated" if size < file_size else "followed by trailing bytes"
        raise FormatError(f"file is {what}: {size} bytes, header says {file_size}; re-export or re-download the model")
    if not 2 <= count <= MAX_SECTIONS or HEADER_SIZE + count * ENTRY_SIZE > size:
        raise FormatError(f"section count {count} is out of range for a {size}-byte file")
    table = bytes(mv[HEADER_SIZE:HEADER_SIZE + count * ENTRY_SIZE])
    if zlib.crc32(table, zlib.crc32(bytes(mv[:60]))) != hcrc:
        raise FormatError("header checksum mismatch: the file is corrupt; re-download or re-export it")

    # sections: canonical layout, each at the next aligned offset, zero gaps
    sections = []
    expect = _align(HEADER_SIZE + count * ENTRY_SIZE)
    prev_end = HEADER_SIZE + count * ENTRY_SIZE
    for i in range(count):
        kind, code, rank, r0, *rest = _ENTRY.unpack_from(table, i * ENTRY_SIZE)
        dims, (offset, length, crc, r1, r2) = rest[:4], rest[4:]
        want_kind = KIND_META if i == 0 else KIND_GRAPH if i == 1 else KIND_TENSOR
        if kind != want_kind:
            raise FormatError(f"section {i} has kind {kind}, expected {want_kind}")
        if r0 or r1 or r2:
            raise FormatError(f"section {i}: reserved fields must be 0")
        if offset != expect:
            raise FormatError(f"section {i} at offset {offset}, expected {expect}: sections are misaligned, "
                              "overlapping or out of order")
        if offset + length > size:
            raise FormatError(f"section {i} ends at byte {offset + length}, past the end of the file ({size})")
        if any(mv[prev_end:offset]):
            raise FormatError(f"padding before section {i} is not zero")
        if code not in DTYPES or not 1 <= rank <= MAX_RANK or (i < 2 and (code != 3 or rank != 1)):
            raise FormatError(f"section {i}: dtype {code} / rank {rank} not allowed")
        shape = tuple(dims[:rank])
        if any(d == 0 for d in shape) or any(dims[rank:]):
            raise FormatError(f"section {i}: dims {dims} must be > 0 up to the rank ({rank}) and 0 after")
        nbytes = DTYPES[code].itemsize
        for d in shape:
            nbytes *= d
        if nbytes != length:
            raise FormatError(f"section {i}: shape {shape} needs {nbytes} bytes, entry says {length}")
        if zlib.crc32(mv[offset:offset + length]) != crc:
            raise FormatError(f"section {i}: checksum mismatch, the file is corrupt; re-download or re-export it")
        sections.append((offset, length, DTYPES[code], shape))
        prev_end = offset + length
        expect = _align(prev_end)
    if prev_end != size:
        raise FormatError(f"{size - prev_end} trailing bytes after the last section")

    meta = _dec_meta(_Cursor(mv, sections[0][0], sections[0][0] + sections[0][1], "metadata"))
    return _dec_graph(mv, sections, meta, major)


class _Tensors:
    """Zero-copy views of tensor sections; each may be referenced once."""

    def __init__(self, mv, sections):
        self.mv, self.sections, self.used = mv, sections, set()

    def get(self, ref: int, node: str) -> np.ndarray:
        if not 2 <= ref < len(self.sections):
            raise FormatError(f"node {node!r} references section {ref}, which is not a tensor section")
        if ref in self.used:
            raise FormatError(f"section {ref} is referenced twice")
        self.used.add(ref)
        off, length, dtype, shape = self.sections[ref]
        return np.frombuffer(self.mv, dtype, length // dtype.itemsize, off).reshape(shape)


def _node_v1(c: _Cursor, raw, name: str, tensors: _Tensors) -> Node:
    """A v1 48-byte entry: fixed kernel/stride/pad/groups fields and three tensor slots."""
    op_code, in0, in1, out, k, s, p, grp, wcode, wr, sr, br = raw
    if op_code not in OP_CODES or op_code > 8:
        raise FormatError(f"node {name!r}: unknown op code {op_code}; this file needs a newer seprt")
    if wcode and (wcode not in WFMT_CODES or wcode > 3):
        raise FormatError(f"node {name!r}: unknown weight format code {wcode}")
    op = OP_CODES[op_code]
    fields = {"kernel": k, "stride": s, "pad": p, "groups": grp}
    defaults = {"kernel": 1, "stride": 1, "pad": 0, "groups": 1}
    for key, v in fields.items():
        if not any(a.name == key for a in op.attrs) and v != defaults[key]:
            raise FormatError(f"node {name!r}: {op.name} does not use {key}; it must be {defaults[key]}")
    attrs = {a.name: fields.get(a.name, a.default) for a in op.attrs}     # ceil_mode etc. came after v1
    ins = (in0,) if in1 == NONE else (in0, in1)
    wfmt = WFMT_CODES[wcode].name if wcode else ""
    slots = (wr, sr, br)
    if not wfmt:
        if any(r != NONE for r in slots):
            raise FormatError(f"node {name!r}: {op.name} takes no weights")
        return Node(name, op.name, ins, out, attrs)
    if wfmt == "f32":
        if sr != NONE:
            raise FormatError(f"node {name!r}: float weights take no scale section")
        slots = (wr, br)
    if any(r == NONE for r in slots):
        raise FormatError(f"node {name!r}: missing a weight, scale or bias section")
    return Node(name, op.name, ins, out, attrs, wfmt, tuple(tensors.get(r, name) for r in slots))


def _node_v2(c: _Cursor, tensors: _Tensors) -> Node:
    """A v2 node record (docs/format.md, "Node record")."""
    op_code, wcode, n_in, n_t, n_a, n_name, out = c.unpack(_NODE_V2)
    ins = struct.unpack(f"<{n_in}I", c.take(4 * n_in))
    refs = struct.unpack(f"<{n_t}I", c.take(4 * n_t))
    try:
        name = c.take(n_name).decode("utf-8")
    except UnicodeDecodeError:
        raise FormatError(f"graph section: node name at byte {c.pos - n_name} is not UTF-8") from None
    if op_code not in OP_CODES:
        raise FormatError(f"node {name!r}: unknown op code {op_code}; this file needs a newer seprt")
    op = OP_CODES[op_code]
    if wcode and wcode not in WFMT_CODES:
        raise FormatError(f"node {name!r}: unknown weight format code {wcode}; this file needs a newer seprt")
    attrs, prev = {}, ""
    for _ in range(n_a):
        try:
            key = c.take(c.take(1)[0]).decode("utf-8")
        except UnicodeDecodeError:
            raise FormatError(f"node {name!r}: attribute name is not UTF-8") from None
        typ = c.take(1)[0]
        raw = c.take(4)
        if key <= prev:
            raise FormatError(f"node {name!r}: attributes must be sorted and unique ({key!r} after {prev!r})")
        prev = key
        known = {a.name: a for a in op.attrs}
        if key not in known:
            raise FormatError(f"node {name!r}: {op.name} has no attribute {key!r}; this file needs a newer seprt")
        want = A_F32 if known[key].kind is float else A_INT
        if typ != want:
            raise FormatError(f"node {name!r}: attribute {key!r} has type {typ}, expected {want}")
        v = struct.unpack("<f" if typ == A_F32 else "<i", raw)[0]
        if v == known[key].default:
            raise FormatError(f"node {name!r}: attribute {key!r} holds its default and must be omitted")
        attrs[key] = v
    wfmt = WFMT_CODES[wcode].name if wcode else ""
    want_t = len(WFMT_CODES[wcode].tensors) if wcode else 0
    if n_t != want_t:
        raise FormatError(f"node {name!r}: weight format {wfmt or 'none'} has {want_t} tensors, the node {n_t}")
    return Node(name, op.name, ins, out, attrs, wfmt, tuple(tensors.get(r, name) for r in refs))


def _dec_graph(mv, sections, meta, major: int) -> Graph:
    goff, glen = sections[1][:2]
    c = _Cursor(mv, goff, goff + glen, "graph")
    nv, nn, gin, gout, gemb, reserved = c.unpack(_GRAPH_HEAD)
    if reserved:
        raise FormatError("graph section: reserved field must be 0")
    min_node = _NODE_V1.size + 2 if major == 1 else _NODE_V2.size + 4
    if nv * _VALUE.size + nn * min_node > glen:
        raise FormatError(f"graph section ({glen} bytes) too small for {nv} values and {nn} nodes")
    raw_values = [c.unpack(_VALUE) for _ in range(nv)]
    values = []
    for rank, d0, d1, d2, qs, qz, qb, r in raw_values:
        if rank not in (1, 3) or r or any((d0, d1, d2)[rank:]):
            raise FormatError(f"value {len(values)}: rank {rank} / dims {(d0, d1, d2)} invalid")
        values.append(Value("", (d0, d1, d2)[:rank], float(qs), int(qz), int(qb)))
    if 0 <= gin < nv:
        values[gin].name = "input"
    tensors = _Tensors(mv, sections)
    if major == 1:
        raw_nodes = [c.unpack(_NODE_V1) for _ in range(nn)]
        names = [c.string(2) for _ in range(nn)]
        nodes = [_node_v1(c, raw, name, tensors) for raw, name in zip(raw_nodes, names)]
    else:
        nodes = [_node_v2(c, tensors) for _ in range(nn)]
    if c.pos != c.end:
        raise FormatError(f"graph section has {c.end - c.pos} unread bytes at its end")
    for n in nodes:
        if 0 <= n.output < nv:
            values[n.output].name = n.name
    if len(tensors.used) != len(sections) - 2:
        raise FormatError(f"{len(sections) - 2 - len(tensors.used)} tensor sections are not referenced by any node")
    g = Graph(values, nodes, gin, gout, gemb, meta)
    g.validate()
    return g


def load(path: str | os.PathLike) -> Graph:
    """Read a model file (memory-mapped, zero-copy tensor views)."""
    try:
        with open(path, "rb") as f:
            if os.fstat(f.fileno()).st_size == 0:
                raise FormatError(f"{path}: file is empty; it is not a seprt model")
            buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    except FormatError:
        raise
    except OSError as e:
        raise FormatError(f"cannot read model file {path}: {e.strerror or e}") from None
    try:
        return from_bytes(buf)
    except FormatError as e:
        raise FormatError(f"{path}: {e}") from None
