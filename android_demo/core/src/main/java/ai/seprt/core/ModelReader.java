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
 * Model file format v1 reader (docs/format.md), the counterpart of seprt/format.py.
 *
 * <p>Checks the header, section table, canonical layout, zero padding and both CRC-32 layers
 * before reading any section, then decodes META and GRAPH with bounds-checked cursors (every
 * count is checked against the bytes left before anything is allocated) and hands the graph to
 * {@link GraphValidator}. Anything that is not a valid file raises {@link SeprtFormatException}.
 */
final class ModelReader {
    static final byte[] MAGIC = "SEPRTMDL".getBytes(StandardCharsets.US_ASCII);
    static final int VERSION_MAJOR = 1;
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
    private static final int NODE_SIZE = 48;

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
        Graph g = readGraph(buf, sections, meta);
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
        if (major != VERSION_MAJOR) {
            throw new SeprtFormatException("model file version " + major + "." + minor
                    + " is not supported by this reader (reads " + VERSION_MAJOR + ".x); "
                    + "upgrade seprt-core or re-export the model");
        }
        if (u32(buf, 12) != HEADER_SIZE || u32(buf, 28) != ALIGNMENT || buf.getLong(32) != HEADER_SIZE
                || u32(buf, 40) != 0) {
            throw new SeprtFormatException(
                    "header fields (header_size, alignment, table offset, flags) are not those of v1");
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

    private static Graph readGraph(ByteBuffer buf, List<Section> sections, Metadata meta)
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
        if (nv * VALUE_SIZE + nn * (NODE_SIZE + 2) > gs.size) {
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
        c.expectEnd();
        if (in < nv) {
            values.get((int) in).name = "input";
        }

        Set<Integer> used = new HashSet<>();
        List<Node> nodes = new ArrayList<>((int) nn);
        Node.Op[] ops = Node.Op.values();
        Node.WeightFormat[] wfmts = Node.WeightFormat.values();
        for (int i = 0; i < nn; i++) {
            long[] r = raw[i];
            String name = names[i];
            if (r[0] < 1 || r[0] > ops.length) {
                throw new SeprtFormatException("node '" + name + "': unknown op code " + r[0]
                        + "; this file needs a newer seprt-core");
            }
            if (r[8] >= wfmts.length) {
                throw new SeprtFormatException("node '" + name + "': unknown weight format code " + r[8]);
            }
            int[] inputs = r[2] == NONE ? new int[] {index(r[1])} : new int[] {index(r[1]), index(r[2])};
            Node n = new Node(name, ops[(int) r[0] - 1], inputs, index(r[3]), index(r[4]), index(r[5]),
                    index(r[6]), index(r[7]), wfmts[(int) r[8]],
                    tensor(buf, sections, used, r[9], name), tensor(buf, sections, used, r[10], name),
                    tensor(buf, sections, used, r[11], name));
            nodes.add(n);
            if (n.output >= 0 && n.output < nv) {
                values.get(n.output).name = name;
            }
        }
        int unused = sections.size() - 2 - used.size();
        if (unused != 0) {
            throw new SeprtFormatException(unused + " tensor sections are not referenced by any node");
        }
        return new Graph(values, nodes, index(in), index(out), index(embed), meta);
    }

    /** A u32 index or count as an int; values above 2^31 - 1 become -1, which every range check rejects. */
    private static int index(long u32) {
        return u32 > Integer.MAX_VALUE ? -1 : (int) u32;
    }

    private static Tensor tensor(ByteBuffer buf, List<Section> sections, Set<Integer> used, long ref, String node)
            throws SeprtFormatException {
        if (ref == NONE) {
            return null;
        }
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
        private int pos;

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

        long u32() throws SeprtFormatException {
            return buf.getInt(take(4)) & 0xFFFFFFFFL;
        }

        float f32() throws SeprtFormatException {
            return buf.getFloat(take(4));
        }

        /** A UTF-8 string after a u16 or u32 length; malformed UTF-8 is an error. */
        String string(int lengthBytes) throws SeprtFormatException {
            long n = lengthBytes == 2 ? buf.getShort(take(2)) & 0xFFFF : u32();
            int at = take(n);
            ByteBuffer b = ((ByteBuffer) buf.duplicate().position(at).limit(at + (int) n)).slice();
            try {
                CharBuffer s = StandardCharsets.UTF_8.newDecoder()
                        .onMalformedInput(CodingErrorAction.REPORT)
                        .onUnmappableCharacter(CodingErrorAction.REPORT)
                        .decode(b);
                return s.toString();
            } catch (CharacterCodingException e) {
                throw new SeprtFormatException(what + " section: string at byte " + at + " is not UTF-8");
            }
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
