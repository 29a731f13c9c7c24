package ai.seprt.core;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.CharBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.zip.CRC32;

/**
 * Model file reader, format versions 1 and 2 (docs/format.md), the counterpart of seprt/format.py.
 *
 * <p>Checks the header, section table, canonical layout, zero padding and both CRC-32 layers
 * before reading any section, then decodes META and GRAPH with bounds-checked cursors (every
 * count is checked against the bytes left before anything is allocated) and hands the graph to
 * {@link GraphValidator}. v1 (fixed 48-byte node entries) and v2 (variable node records with
 * typed attributes) decode into the same {@link Graph}; op and weight-format codes and
 * attributes are looked up in {@link OpDef} and {@link WfmtDef}. Anything that is not a valid file raises {@link SeprtFormatException}.
 */
final class ModelReader {
    static final byte[] MAGIC = "SEPRTMDL".getBytes(StandardCharsets.US_ASCII);
    /** The majors this reader reads (v2 is the current one; v1 files MUST still be read). */
    static final int[] READS = {1, 2};
    static final int HEADER_SIZE = 64;
    static final int ENTRY_SIZE = 64;
    static final int ALIGNMENT = 64;
    static final long MAX_SECTIONS = 1 << 16;
    static final long MAX_META_KEYS = 4096;
    static final int MAX_RANK = 4;
    static final long NONE = 0xFFFFFFFFL;

    static final int KIND_META = 1;
    static final int KIND_GRAPH = 2;
    static final int KIND_TENSOR = 3;

    static final int T_U32 = 1;
    static final int T_F32 = 2;
    static final int T_STR = 3;
    static final int T_STRS = 4;
    static final int T_F32S = 5;
    static final int T_U32S = 6;

    private static final int VALUE_SIZE = 32;
    private static final int NODE_V1_SIZE = 48;
    private static final int NODE_V2_SIZE = 16;
    /** v1 knew op codes 1..8 and weight format codes 0..3. */
    private static final int V1_MAX_OP = 8;
    private static final int V1_MAX_WFMT = 3;

    private ModelReader() {
    }

    /** A section table entry that passed the layout, size and CRC checks. */
    private static final class Section {
        final int dtype;
        final int[] shape;
        final int offset;
        final int size;

        Section(int dtype, int[] shape, int offset, int size) {
            this.dtype = dtype;
            this.shape = shape;
            this.offset = offset;
            this.size = size;
        }
    }

    static long align(long n) {
        return (n + ALIGNMENT - 1) / ALIGNMENT * ALIGNMENT;
    }

    /** Parses and validates a whole model file held in {@code file} (position 0 .. limit). */
    static Graph read(ByteBuffer file) throws SeprtFormatException {
        ByteBuffer buf = file.slice().order(ByteOrder.LITTLE_ENDIAN);
        List<Section> sections = readSections(buf);
        Section m = sections.get(0);
        Metadata meta = readMeta(new Cursor(buf, m.offset, m.offset + m.size, "metadata"));
        Graph g = readGraph(buf, sections, meta, u16(buf, 8));
        GraphValidator.validate(g);
        return g;
    }

    // ------------------------------------------------------------ header and section table

    private static List<Section> readSections(ByteBuffer buf) throws SeprtFormatException {
        final int size = buf.limit();
        if (size < HEADER_SIZE) {
            throw new SeprtFormatException("file is " + size + " bytes, shorter than the " + HEADER_SIZE
                    + "-byte header; it is truncated or not a seprt model");
        }
        byte[] magic = new byte[8];
        ((ByteBuffer) buf.duplicate().position(0)).get(magic);
        if (!Arrays.equals(magic, MAGIC)) {
            throw new SeprtFormatException("not a seprt model file (magic " + printable(magic)
                    + ", expected \"SEPRTMDL\")");
        }
        int major = u16(buf, 8);
        int minor = u16(buf, 10);
        if (major != READS[0] && major != READS[1]) {
            throw new SeprtFormatException("model file version " + major + "." + minor
                    + " is not supported by this reader (reads " + READS[0] + ".x and " + READS[1] + ".x); "
                    + "upgrade seprt-core or re-export the model");
        }
        if (u32(buf, 12) != HEADER_SIZE || u32(buf, 28) != ALIGNMENT || buf.getLong(32) != HEADER_SIZE
                || u32(buf, 40) != 0) {
            throw new SeprtFormatException(
                    "header fields (header_size, alignment, table offset, flags) are not those of the spec");
        }
        long fileSize = buf.getLong(16);     // u64; a value >= 2^63 reads negative and mismatches
        if (fileSize != size) {
            String what = fileSize < 0 || size < fileSize ? "truncated" : "followed by trailing bytes";
            throw new SeprtFormatException("file is " + what + ": " + size + " bytes, header says "
                    + unsigned(fileSize) + "; re-export or re-download the model");
        }
        long count = u32(buf, 24);
        long tableEnd = HEADER_SIZE + count * ENTRY_SIZE;
        if (count < 2 || count > MAX_SECTIONS || tableEnd > size) {
            throw new SeprtFormatException("section count " + count + " is out of range for a " + size
                    + "-byte file");
        }
        CRC32 crc = new CRC32();
        crc.update(bytes(buf, 0, 60));
        crc.update(bytes(buf, HEADER_SIZE, (int) tableEnd - HEADER_SIZE));
        if (crc.getValue() != u32(buf, 60)) {
            throw new SeprtFormatException("header checksum mismatch: the file is corrupt; "
                    + "re-download or re-export it");
        }

        List<Section> sections = new ArrayList<>();
        long expect = align(tableEnd);
        long prevEnd = tableEnd;
        for (int i = 0; i < count; i++) {
            int e = HEADER_SIZE + i * ENTRY_SIZE;
            long kind = u32(buf, e);
            long dtype = u32(buf, e + 4);
            long rank = u32(buf, e + 8);
            long[] dims = {u32(buf, e + 16), u32(buf, e + 20), u32(buf, e + 24), u32(buf, e + 28)};
            long offset = buf.getLong(e + 32);
            long length = buf.getLong(e + 40);
            long want = i == 0 ? KIND_META : i == 1 ? KIND_GRAPH : KIND_TENSOR;
            if (kind != want) {
                throw new SeprtFormatException("section " + i + " has kind " + kind + ", expected " + want);
            }
            if (u32(buf, e + 12) != 0 || u32(buf, e + 52) != 0 || buf.getLong(e + 56) != 0) {
                throw new SeprtFormatException("section " + i + ": reserved fields must be 0");
            }
            if (offset != expect) {
                throw new SeprtFormatException("section " + i + " at offset " + unsigned(offset)
                        + ", expected " + expect + ": sections are misaligned, overlapping or out of order");
            }
            if (length < 0 || length > size - offset) {
                throw new SeprtFormatException("section " + i + " ends at byte "
                        + unsigned(offset + length) + ", past the end of the file (" + size + ")");
            }
            for (long p = prevEnd; p < offset; p++) {
                if (buf.get((int) p) != 0) {
                    throw new SeprtFormatException("padding before section " + i + " is not zero");
                }
            }
            if (dtype < 1 || dtype > 3 || rank < 1 || rank > MAX_RANK || (i < 2 && (dtype != Tensor.U8 || rank != 1))) {
                throw new SeprtFormatException("section " + i + ": dtype " + dtype + " / rank " + rank
                        + " not allowed");
            }
            long nbytes = dtype == Tensor.F32 ? 4 : 1;
            int[] shape = new int[(int) rank];
            for (int d = 0; d < MAX_RANK; d++) {
                if (d < rank ? dims[d] == 0 : dims[d] != 0) {
                    throw new SeprtFormatException("section " + i + ": dims " + Arrays.toString(dims)
                            + " must be > 0 up to the rank (" + rank + ") and 0 after");
                }
            }
            for (int d = 0; d < rank; d++) {
                nbytes = nbytes <= size ? nbytes * dims[d] : nbytes;  // stays < 2^63: size < 2^31, dims < 2^32
                shape[d] = (int) Math.min(dims[d], Integer.MAX_VALUE);
            }
            if (nbytes != length) {
                throw new SeprtFormatException("section " + i + ": shape " + Arrays.toString(Arrays.copyOf(dims, (int) rank))
                        + " needs " + (nbytes > size ? "more than " + size : String.valueOf(nbytes))
                        + " bytes, entry says " + length);
            }
            CRC32 sc = new CRC32();
            sc.update(bytes(buf, (int) offset, (int) length));
            if (sc.getValue() != u32(buf, e + 48)) {
                throw new SeprtFormatException("section " + i + ": checksum mismatch, the file is corrupt; "
                        + "re-download or re-export it");
            }
            sections.add(new Section((int) dtype, shape, (int) offset, (int) length));
            prevEnd = offset + length;
            expect = align(prevEnd);
        }
        if (prevEnd != size) {
            throw new SeprtFormatException((size - prevEnd) + " trailing bytes after the last section");
        }
        return sections;
    }

    // ------------------------------------------------------------ META

    private static Metadata readMeta(Cursor c) throws SeprtFormatException {
        long n = c.u32();
        if (n > MAX_META_KEYS) {
            throw new SeprtFormatException("metadata has " + n + " keys; the limit is " + MAX_META_KEYS);
        }
        Map<String, Object> meta = new HashMap<>();
        for (long k = 0; k < n; k++) {
            String key = c.string(2);
            if (meta.containsKey(key)) {
                throw new SeprtFormatException("metadata key '" + key + "' appears twice");
            }
            int type = c.u8();
            Object value;
            switch (type) {
                case T_U32:
                    value = c.u32();
                    break;
                case T_F32:
                    value = c.f32();
                    break;
                case T_STR:
                    value = c.string(4);
                    break;
                case T_STRS: {
                    int count = c.count(4);
                    List<String> list = new ArrayList<>(count);
                    for (int i = 0; i < count; i++) {
                        list.add(c.string(4));
                    }
                    value = list;
                    break;
                }
                case T_F32S: {
                    float[] a = new float[c.count(4)];
                    for (int i = 0; i < a.length; i++) {
                        a[i] = c.f32();
                    }
                    value = a;
                    break;
                }
                case T_U32S: {
                    long[] a = new long[c.count(4)];
                    for (int i = 0; i < a.length; i++) {
                        a[i] = c.u32();
                    }
                    value = a;
                    break;
                }
                default:
                    throw new SeprtFormatException("metadata key '" + key + "': unknown value type " + type);
            }
            meta.put(key, value);
        }
        c.expectEnd();
        return new Metadata(meta);
    }

    // ------------------------------------------------------------ GRAPH

    private static Graph readGraph(ByteBuffer buf, List<Section> sections, Metadata meta, int major)
            throws SeprtFormatException {
        Section gs = sections.get(1);
        Cursor c = new Cursor(buf, gs.offset, gs.offset + gs.size, "graph");
        long nv = c.u32();
        long nn = c.u32();
        long in = c.u32();
        long out = c.u32();
        long embed = c.u32();
        if (c.u32() != 0) {
            throw new SeprtFormatException("graph section: reserved field must be 0");
        }
        if (nv < 1 || nv > GraphValidator.MAX_VALUES || nn < 1 || nn > GraphValidator.MAX_NODES) {
            throw new SeprtFormatException("graph has " + nv + " values and " + nn + " nodes; limits are 1.."
                    + GraphValidator.MAX_VALUES);
        }
        long minNode = major == 1 ? NODE_V1_SIZE + 2 : NODE_V2_SIZE + 4;
        if (nv * VALUE_SIZE + nn * minNode > gs.size) {
            throw new SeprtFormatException("graph section (" + gs.size + " bytes) too small for " + nv
                    + " values and " + nn + " nodes");
        }
        List<Value> values = new ArrayList<>((int) nv);
        for (int i = 0; i < nv; i++) {
            long rank = c.u32();
            long[] d = {c.u32(), c.u32(), c.u32()};
            float qScale = c.f32();
            int qZero = (int) c.u32();      // i32
            long qBits = c.u32();
            long reserved = c.u32();
            if ((rank != 1 && rank != 3) || reserved != 0 || (rank == 1 && (d[1] != 0 || d[2] != 0))) {
                throw new SeprtFormatException("value " + i + ": rank " + rank + " / dims " + Arrays.toString(d)
                        + " invalid");
            }
            int[] shape = new int[(int) rank];
            for (int k = 0; k < rank; k++) {
                if (d[k] < 1 || d[k] > GraphValidator.MAX_DIM) {
                    throw new SeprtFormatException("value " + i + ": dims " + Arrays.toString(d)
                            + " must be in 1.." + GraphValidator.MAX_DIM);
                }
                shape[k] = (int) d[k];
            }
            values.add(new Value(shape, qScale, qZero, (int) Math.min(qBits, Integer.MAX_VALUE)));
        }
        if (in < nv) {
            values.get((int) in).name = "input";
        }
        Tensors tensors = new Tensors(buf, sections);
        List<Node> nodes = new ArrayList<>((int) nn);
        if (major == 1) {
            long[][] raw = new long[(int) nn][12];
            for (long[] r : raw) {
                for (int k = 0; k < 12; k++) {
                    r[k] = c.u32();
                }
            }
            String[] names = new String[(int) nn];
            for (int i = 0; i < nn; i++) {
                names[i] = c.string(2);
            }
            for (int i = 0; i < nn; i++) {
                nodes.add(nodeV1(raw[i], names[i], tensors));
            }
        } else {
            for (int i = 0; i < nn; i++) {
                nodes.add(nodeV2(c, tensors));
            }
        }
        c.expectEnd();
        for (Node n : nodes) {
            if (n.output >= 0 && n.output < nv) {
                values.get(n.output).name = n.name;
            }
        }
        int unused = sections.size() - 2 - tensors.used.size();
        if (unused != 0) {
            throw new SeprtFormatException(unused + " tensor sections are not referenced by any node");
        }
        return new Graph(values, nodes, index(in), index(out), index(embed), meta);
    }

    /** A v1 48-byte node entry: fixed kernel/stride/pad/groups fields and three tensor slots. */
    private static Node nodeV1(long[] r, String name, Tensors tensors) throws SeprtFormatException {
        OpDef op = r[0] <= V1_MAX_OP ? OpDef.byCode(r[0]) : null;
        if (op == null) {
            throw new SeprtFormatException("node '" + name + "': unknown op code " + r[0]
                    + "; this file needs a newer seprt");
        }
        WfmtDef wfmt = r[8] <= V1_MAX_WFMT ? WfmtDef.byCode(r[8]) : null;
        if (wfmt == null) {
            throw new SeprtFormatException("node '" + name + "': unknown weight format code " + r[8]);
        }
        String[] fields = {"kernel", "stride", "pad", "groups"};
        long[] defaults = {1, 1, 0, 1};
        Map<String, Integer> attrs = new HashMap<>();
        for (int k = 0; k < fields.length; k++) {
            long v = r[4 + k];
            if (op.attr(fields[k]) != null) {
                attrs.put(fields[k], index(v));     // range-checked by GraphValidator
            } else if (v != defaults[k]) {
                throw new SeprtFormatException("node '" + name + "': " + op.opName + " does not use " + fields[k]
                        + "; it must be " + defaults[k]);
            }
        }
        int[] inputs = r[2] == NONE ? new int[] {index(r[1])} : new int[] {index(r[1]), index(r[2])};
        long[] slots;
        if (wfmt == WfmtDef.NONE) {
            if (r[9] != NONE || r[10] != NONE || r[11] != NONE) {
                throw new SeprtFormatException("node '" + name + "': " + op.opName + " takes no weights");
            }
            slots = new long[0];
        } else if (wfmt == WfmtDef.F32) {
            if (r[10] != NONE) {
                throw new SeprtFormatException("node '" + name + "': float weights take no scale section");
            }
            slots = new long[] {r[9], r[11]};
        } else {
            slots = new long[] {r[9], r[10], r[11]};
        }
        Tensor[] ts = new Tensor[slots.length];
        for (int k = 0; k < slots.length; k++) {
            if (slots[k] == NONE) {
                throw new SeprtFormatException("node '" + name + "': missing a weight, scale or bias section");
            }
        }
        for (int k = 0; k < slots.length; k++) {
            ts[k] = tensors.get(slots[k], name);
        }
        return new Node(name, op, inputs, index(r[3]), attrs, wfmt, ts);
    }

    /** A v2 node record (docs/format.md, "Node record"). */
    private static Node nodeV2(Cursor c, Tensors tensors) throws SeprtFormatException {
        int opCode = c.u16();
        int wcode = c.u16();
        int nIn = c.u16();
        int nT = c.u16();
        int nA = c.u16();
        int nName = c.u16();
        long out = c.u32();
        c.need(4L * nIn + 4L * nT);
        int[] inputs = new int[nIn];
        for (int k = 0; k < nIn; k++) {
            inputs[k] = index(c.u32());
        }
        long[] refs = new long[nT];
        for (int k = 0; k < nT; k++) {
            refs[k] = c.u32();
        }
        String name = c.utf8(nName, "node name");
        OpDef op = OpDef.byCode(opCode);
        if (op == null) {
            throw new SeprtFormatException("node '" + name + "': unknown op code " + opCode
                    + "; this file needs a newer seprt");
        }
        WfmtDef wfmt = WfmtDef.byCode(wcode);
        if (wfmt == null) {
            throw new SeprtFormatException("node '" + name + "': unknown weight format code " + wcode
                    + "; this file needs a newer seprt");
        }
        Map<String, Integer> attrs = new HashMap<>();
        byte[] prev = new byte[0];
        for (int k = 0; k < nA; k++) {
            int keyAt = c.pos;
            int keyLen = c.u8();
            byte[] keyBytes = c.bytes(keyLen);
            String key = decodeUtf8(ByteBuffer.wrap(keyBytes), "node '" + name + "': attribute name at byte " + keyAt);
            int type = c.u8();
            int raw = c.i32();
            if (compareBytes(keyBytes, prev) <= 0) {
                throw new SeprtFormatException("node '" + name + "': attributes must be sorted and unique ('" + key
                        + "' after '" + new String(prev, StandardCharsets.UTF_8) + "')");
            }
            prev = keyBytes;
            Attr a = op.attr(key);
            if (a == null) {
                throw new SeprtFormatException("node '" + name + "': " + op.opName + " has no attribute '" + key
                        + "'; this file needs a newer seprt");
            }
            if (type != a.type()) {
                throw new SeprtFormatException("node '" + name + "': attribute '" + key + "' has type " + type
                        + ", expected " + a.type());
            }
            if (a.isDefault(raw)) {
                throw new SeprtFormatException("node '" + name + "': attribute '" + key
                        + "' holds its default and must be omitted");
            }
            attrs.put(key, raw);                // range-checked by GraphValidator
        }
        if (nT != wfmt.tensors.length) {
            throw new SeprtFormatException("node '" + name + "': weight format " + wfmt.fmtName + " has "
                    + wfmt.tensors.length + " tensors, the node " + nT);
        }
        Tensor[] ts = new Tensor[nT];
        for (int k = 0; k < nT; k++) {
            ts[k] = tensors.get(refs[k], name);
        }
        return new Node(name, op, inputs, index(out), attrs, wfmt, ts);
    }

    private static int compareBytes(byte[] a, byte[] b) {
        for (int i = 0; i < Math.min(a.length, b.length); i++) {
            int d = (a[i] & 0xFF) - (b[i] & 0xFF);
            if (d != 0) {
                return d;
            }
        }
        return a.length - b.length;
    }

    /** A u32 index or count as an int; values above 2^31 - 1 become -1, which every range check rejects. */
    private static int index(long u32) {
        return u32 > Integer.MAX_VALUE ? -1 : (int) u32;
    }

    /** Views of the TENSOR sections; each may be referenced once. */
    private static final class Tensors {
        private final ByteBuffer buf;
        private final List<Section> sections;
        final Set<Integer> used = new HashSet<>();

        Tensors(ByteBuffer buf, List<Section> sections) {
            this.buf = buf;
            this.sections = sections;
        }

        Tensor get(long ref, String node) throws SeprtFormatException {
            if (ref < 2 || ref >= sections.size()) {
                throw new SeprtFormatException("node '" + node + "' references section " + ref
                        + ", which is not a tensor section");
            }
            if (!used.add((int) ref)) {
                throw new SeprtFormatException("section " + ref + " is referenced twice");
            }
            Section s = sections.get((int) ref);
            ByteBuffer view = ((ByteBuffer) buf.duplicate().position(s.offset).limit(s.offset + s.size)).slice();
            return new Tensor(s.dtype, s.shape, view);
        }
    }

    // ------------------------------------------------------------ little-endian helpers

    private static long u32(ByteBuffer buf, int at) {
        return buf.getInt(at) & 0xFFFFFFFFL;
    }

    /** A u64 as decimal (Long.toUnsignedString needs Android API 26). */
    private static String unsigned(long v) {
        return v >= 0 ? Long.toString(v) : java.math.BigInteger.valueOf(v).add(java.math.BigInteger.ONE.shiftLeft(64)).toString();
    }

    private static int u16(ByteBuffer buf, int at) {
        return buf.getShort(at) & 0xFFFF;
    }

    private static byte[] bytes(ByteBuffer buf, int at, int n) {
        byte[] b = new byte[n];
        ((ByteBuffer) buf.duplicate().position(at)).get(b);
        return b;
    }

    /** Strict UTF-8 decoding; where names the bytes in the error message. */
    private static String decodeUtf8(ByteBuffer b, String where) throws SeprtFormatException {
        try {
            CharBuffer s = StandardCharsets.UTF_8.newDecoder()
                    .onMalformedInput(CodingErrorAction.REPORT)
                    .onUnmappableCharacter(CodingErrorAction.REPORT)
                    .decode(b);
            return s.toString();
        } catch (CharacterCodingException e) {
            throw new SeprtFormatException(where + " is not UTF-8");
        }
    }

    private static String printable(byte[] b) {
        StringBuilder sb = new StringBuilder("\"");
        for (byte x : b) {
            int v = x & 0xFF;
            sb.append(v >= 0x20 && v < 0x7F ? String.valueOf((char) v) : String.format("\\x%02x", v));
        }
        return sb.append('"').toString();
    }

    /** Bounds-checked little-endian reads inside one section. */
    private static final class Cursor {
        private final ByteBuffer buf;
        private final int end;
        private final String what;
        int pos;

        Cursor(ByteBuffer buf, int start, int end, String what) {
            this.buf = buf;
            this.pos = start;
            this.end = end;
            this.what = what;
        }

        private int take(long n) throws SeprtFormatException {
            if (n < 0 || n > end - pos) {
                throw new SeprtFormatException(what + " section truncated at byte " + pos + " (needs " + n
                        + " more); re-export the model");
            }
            int at = pos;
            pos += (int) n;
            return at;
        }

        int u8() throws SeprtFormatException {
            return buf.get(take(1)) & 0xFF;
        }

        int u16() throws SeprtFormatException {
            return buf.getShort(take(2)) & 0xFFFF;
        }

        int i32() throws SeprtFormatException {
            return buf.getInt(take(4));
        }

        /** Fails unless n more bytes are left (checked before allocating for them). */
        void need(long n) throws SeprtFormatException {
            take(n);
            pos -= (int) n;
        }

        byte[] bytes(int n) throws SeprtFormatException {
            return ModelReader.bytes(buf, take(n), n);
        }

        /** n bytes of UTF-8; malformed UTF-8 is an error. */
        String utf8(long n, String field) throws SeprtFormatException {
            int at = take(n);
            ByteBuffer b = ((ByteBuffer) buf.duplicate().position(at).limit(at + (int) n)).slice();
            return decodeUtf8(b, what + " section: " + field + " at byte " + at);
        }

        long u32() throws SeprtFormatException {
            return buf.getInt(take(4)) & 0xFFFFFFFFL;
        }

        float f32() throws SeprtFormatException {
            return buf.getFloat(take(4));
        }

        /** A UTF-8 string after a u16 or u32 length; malformed UTF-8 is an error. */
        String string(int lengthBytes) throws SeprtFormatException {
            long n = lengthBytes == 2 ? u16() : u32();
            return utf8(n, "string");
        }

        /** A u32 element count, checked against the bytes left (each item needs minItemBytes). */
        int count(int minItemBytes) throws SeprtFormatException {
            long n = u32();
            if (n * minItemBytes > end - pos) {
                throw new SeprtFormatException(what + " section: count " + n + " at byte " + (pos - 4)
                        + " exceeds the section size");
            }
            return (int) n;
        }

        void expectEnd() throws SeprtFormatException {
            if (pos != end) {
                throw new SeprtFormatException(what + " section has " + (end - pos) + " unread bytes at its end");
            }
        }
    }
}
