package ai.seprt.core;

import static ai.seprt.core.FormatTest.assertRejected;
import static ai.seprt.core.FormatTest.le;
import static ai.seprt.core.FormatTest.resealed;
import static ai.seprt.core.FormatTest.sectionOffset;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.util.Collections;
import java.util.HashMap;
import java.util.Map;
import org.junit.jupiter.api.Test;

/**
 * The rules of the ops act, mul, affine, shuffle, flatten, slice, the pool attributes ceil_mode and
 * count_include_pad, f32 attribute records, and the `stack` weight format (docs/format.md, "Ops",
 * "Weight formats", "Stacked binary filters"). Files are the generated newops-BQ8 and
 * tiny-stack-BQ8 models (make_golden.py --models), changed byte by byte; rules that need other
 * tensor shapes than the file's sizes allow are tested on the read graph with replaced tensors.
 */
class NewOpsFormatTest {
    private static byte[] generated(String name) throws IOException {
        return Files.readAllBytes(Golden.get().models.get(name).file.toPath());
    }

    private static FormatV2Test.Rec rec(byte[] b, String name) {
        FormatV2Test.Rec r = FormatV2Test.records(b).get(name);
        assertTrue(r != null, "no node " + name);
        return r;
    }

    private static int attrValueAt(byte[] b, String node, String key) {
        return rec(b, node).attrAt.get(key) + 1 + key.length() + 1;
    }

    /** Section index of a node's tensor t. */
    private static int tensorSection(byte[] b, String node, int t) {
        return le(b).getInt(rec(b, node).tensorsAt + 4 * t);
    }

    /** Overwrites the dims of section s (rank 2; the product must stay the same). */
    private static void setDims2(byte[] b, int s, int d0, int d1) {
        int e = 64 + 64 * s;
        assertEquals(2, le(b).getInt(e + 8), "rank");
        assertEquals((long) le(b).getInt(e + 16) * le(b).getInt(e + 20), (long) d0 * d1, "same size");
        le(b).putInt(e + 16, d0);
        le(b).putInt(e + 20, d1);
    }

    // ------------------------------------------------------------ ops and attributes

    @Test
    void readsTheNewOpsAndTheirAttributes() throws IOException {
        Graph g = ModelReader.read(ByteBuffer.wrap(generated("newops-BQ8")));
        Map<String, Node> byName = new HashMap<>();
        for (Node n : g.nodes) {
            byName.put(n.name, n);
        }
        assertEquals(OpDef.ACT, byName.get("b1.conv1.act").op);
        assertEquals(2, byName.get("b1.conv1.act").i32("kind"));
        assertEquals(0.2f, byName.get("b1.conv1.act").f32("slope"), 0f);
        assertEquals(-0.5f, byName.get("pool.act").f32("slope"), 0f);
        assertEquals(0.01f, byName.get("conv1.relu.act").f32("slope"), 0f, "missing f32 attribute: its default");
        assertEquals(1, byName.get("conv1.relu.act").i32("kind"));
        assertEquals(1, byName.get("pool1").i32("ceil_mode"));
        assertArrayEquals(new int[] {7, 6, 8}, g.value(byName.get("pool1").output).shape, "ceil mode 12x10 -> 7x6");
        assertEquals(1, byName.get("b3.pool").i32("count_include_pad"));
        assertEquals(OpDef.SHUFFLE, byName.get("pool1.shuffle").op);
        assertEquals(OpDef.MUL, byName.get("se.mul").op);
        assertEquals(OpDef.AFFINE, byName.get("b1.conv2.affine").op);
        assertEquals(WfmtDef.F32, byName.get("b1.conv2.affine").wfmt);
        assertEquals(OpDef.FLATTEN, byName.get("pool").op);
        assertEquals(32, byName.get("hi").i32("start"));
    }

    @Test
    void rejectsBadActKind() throws IOException {
        byte[] b = generated("newops-BQ8");
        le(b).putInt(attrValueAt(b, "b1.conv1.act", "kind"), 7);
        assertRejected(resealed(b), "node 'b1.conv1.act'", "attribute kind=7 out of range 1..6");
        byte[] c = generated("newops-BQ8");
        le(c).putInt(attrValueAt(c, "b1.conv1.act", "kind"), 0);
        assertRejected(resealed(c), "node 'b1.conv1.act'", "attribute kind=0 out of range 1..6");
    }

    @Test
    void rejectsBadF32Attribute() throws IOException {
        byte[] b = generated("newops-BQ8");
        le(b).putFloat(attrValueAt(b, "b1.conv1.act", "slope"), 2e6f);
        assertRejected(resealed(b), "node 'b1.conv1.act'", "attribute slope=2000000.0 out of range");
        byte[] c = generated("newops-BQ8");
        le(c).putFloat(attrValueAt(c, "b1.conv1.act", "slope"), Float.NaN);
        assertRejected(resealed(c), "node 'b1.conv1.act'", "attribute slope=NaN out of range");
        byte[] d = generated("newops-BQ8");
        le(d).putFloat(attrValueAt(d, "b1.conv1.act", "slope"), 0.01f);
        assertRejected(resealed(d), "node 'b1.conv1.act'", "attribute 'slope' holds its default and must be omitted");
        byte[] e = generated("newops-BQ8");
        e[attrValueAt(e, "b1.conv1.act", "slope") - 1] = 1;      // i32 type for the f32 slope
        assertRejected(resealed(e), "node 'b1.conv1.act'", "attribute 'slope' has type 1, expected 2");
        byte[] f = generated("newops-BQ8");
        f[attrValueAt(f, "b1.conv1.act", "kind") - 1] = 2;       // f32 type for the i32 kind
        assertRejected(resealed(f), "node 'b1.conv1.act'", "attribute 'kind' has type 2, expected 1");
    }

    @Test
    void rejectsOutOfRangePoolAttributes() throws IOException {
        byte[] b = generated("newops-BQ8");
        le(b).putInt(attrValueAt(b, "pool1", "ceil_mode"), 2);
        assertRejected(resealed(b), "node 'pool1'", "attribute ceil_mode=2 out of range 0..1");
        byte[] c = generated("newops-BQ8");
        le(c).putInt(attrValueAt(c, "b3.pool", "count_include_pad"), -1);
        assertRejected(resealed(c), "node 'b3.pool'", "attribute count_include_pad=-1 out of range 0..1");
    }

    @Test
    void rejectsShuffleAndSliceShapes() throws IOException {
        byte[] b = generated("newops-BQ8");
        le(b).putInt(attrValueAt(b, "pool1.shuffle", "groups"), 3);
        assertRejected(resealed(b), "node 'pool1.shuffle'", "shuffle groups=3 does not divide 8 channels");
        byte[] c = generated("newops-BQ8");
        le(c).putInt(attrValueAt(c, "hi", "start"), 33);
        assertRejected(resealed(c), "node 'hi'", "slice of channels 33..80 from 80 channels");
    }

    @Test
    void ceilModeOutputSizes() {
        // docs/format.md: ceil((H + 2p - k) / s) + 1, minus 1 when (Ho - 1) * s >= H + p
        Map<String, Integer> a = new HashMap<>();
        a.put("kernel", 3);
        a.put("stride", 2);
        a.put("pad", 1);
        a.put("ceil_mode", 1);
        Node n = new Node("p", OpDef.MAXPOOL, new int[] {0}, 1, a, WfmtDef.NONE, new Tensor[0]);
        assertEquals(7, OpDef.convOut(12, n, true));
        assertEquals(6, OpDef.convOut(12, n, false));
        assertEquals(3, OpDef.convOut(4, n, true));
        a.put("kernel", 2);
        a.put("pad", 0);
        Node m = new Node("p", OpDef.MAXPOOL, new int[] {0}, 1, a, WfmtDef.NONE, new Tensor[0]);
        assertEquals(3, OpDef.convOut(5, m, true));     // k2 s2 on 5, ceil: 3 (floor: 2)
        assertEquals(2, OpDef.convOut(5, m, false));
        a.put("pad", 1);
        Node q = new Node("p", OpDef.MAXPOOL, new int[] {0}, 1, a, WfmtDef.NONE, new Tensor[0]);
        // k2 s2 p1 on 3: ceil(3 / 2) + 1 = 3, but (3 - 1) * 2 = 4 >= H + p = 4 (the third window
        // would start in the right padding), so 2
        assertEquals(2, OpDef.convOut(3, q, true));
    }

    // ------------------------------------------------------------ stack

    private static final String STACKED = "tiny-stack-BQ8";

    @Test
    void rejectsStackIndexOutOfRange() throws IOException {
        byte[] b = generated(STACKED);
        int index = tensorSection(b, "b3.conv", 1);
        b[sectionOffset(b, index) + 5] = 8;                   // a bank of 8 filters
        assertRejected(resealed(b), "node 'b3.conv'", "bank index 8 out of range for a bank of 8 filters");
    }

    @Test
    void rejectsStackPaddingBits() throws IOException {
        byte[] b = generated(STACKED);
        int bank = tensorSection(b, "conv1", 0);              // 3x3x3 = 27 bits: 5 padding bits per row
        b[sectionOffset(b, bank) + 4 * 2 + 3] |= (byte) 0x80;
        assertRejected(resealed(b), "node 'conv1'", "padding bits of packed bank filters must be 0");
    }

    @Test
    void rejectsStackSectionSizes() throws IOException {
        byte[] b = generated(STACKED);
        setDims2(b, tensorSection(b, "b1.conv2", 0), 10, 4);   // (8, 5) bank read as 10 rows of 4 bytes
        assertRejected(resealed(b), "node 'b1.conv2'", "bank rows are 4 bytes, a 3x3x4 binary filter needs 5");
        byte[] c = generated(STACKED);
        setDims2(c, tensorSection(c, "b3.conv", 1), 24, 10);   // index (12, 20) read as (24, 10)
        assertRejected(resealed(c), "node 'b3.conv'", "index has 24 rows, the conv 12 output channels");
        byte[] d = generated(STACKED);
        setDims2(d, tensorSection(d, "b1.conv2", 0), 40, 1);   // 40 filters of 1 byte
        assertRejected(resealed(d), "node 'b1.conv2'", "bank rows are 1 bytes");
    }

    private static final String PACKED = "tiny-stack-packed-BQ8";   // m = 6: 3-bit indices

    @Test
    void rejectsPackedIndexOutOfRange() throws IOException {
        byte[] b = generated(PACKED);
        b[sectionOffset(b, tensorSection(b, "b3.conv", 1))] |= 0x07;   // slice 0, filter 0: index 7
        assertRejected(resealed(b), "node 'b3.conv'", "bank index 7 out of range for a bank of 6 filters");
    }

    @Test
    void rejectsPackedIndexPaddingBits() throws IOException {
        byte[] b = generated(PACKED);
        int index = tensorSection(b, "b3.conv", 1);          // 12 indices of 3 bits: 5 bytes, 4 padding bits
        b[sectionOffset(b, index) + 4] |= (byte) 0x80;
        assertRejected(resealed(b), "node 'b3.conv'", "padding bits of packed index rows must be 0");
    }

    @Test
    void rejectsPackedIndexSizes() throws IOException {
        Graph g = ModelReader.read(ByteBuffer.wrap(generated(PACKED)));
        for (int i = 0; i < g.nodes.size(); i++) {
            Node n = g.nodes.get(i);
            if (n.name.equals("b3.conv")) {                     // index (20, 5) -> (20, 6)
                Tensor[] ts = n.tensors.clone();
                ts[1] = u8(20, 6, 0);
                g.nodes.set(i, new Node(n.name, n.op, n.inputs, n.output, n.attrs, n.wfmt, ts));
            }
        }
        String msg = invalid(g);
        assertTrue(msg.contains("node 'b3.conv'") && msg.contains("packed index rows are 6 bytes, 12 indices of 3 bits need 5"),
                msg);
        byte[] c = generated(PACKED);
        setDims2(c, tensorSection(c, "b3.conv", 1), 25, 4);   // 25 slices do not divide Cg = 80
        assertRejected(resealed(c), "node 'b3.conv'", "25 slices per filter do not divide its 80 input channels");
    }

    /** Bit flips in the stacked convs' bank and index sections, checksums recomputed: each file loads or is a SeprtFormatException. */
    @Test
    void fuzzedPackedStackSectionsOnlyRaiseFormatErrors() throws IOException {
        byte[] valid = generated(PACKED);
        String[] convs = {"conv1", "b1.conv1", "b1.conv2", "b2.conv", "b3.conv"};
        java.util.Random rnd = new java.util.Random(18);
        int rejected = 0;
        for (int it = 0; it < 300; it++) {
            byte[] b = valid.clone();
            for (int f = 1 + rnd.nextInt(4); f > 0; f--) {
                int s = tensorSection(b, convs[rnd.nextInt(convs.length)], rnd.nextInt(2));
                b[sectionOffset(b, s) + rnd.nextInt(FormatTest.sectionSize(b, s))] ^= (byte) (1 << rnd.nextInt(8));
            }
            try {
                SeprtModel.load(resealed(b));
            } catch (SeprtFormatException e) {
                rejected++;
            }
        }
        assertTrue(rejected > 30 && rejected < 300, rejected + " of 300 rejected");
    }

    @Test
    void packedIndexIsTheSameModelAsAByteIndex() {
        // the spec example with the index packed at 1 bit (m = 2): slice rows 0b10 and 0b11
        Tensor bank = new Tensor(Tensor.U8, new int[] {2, 1}, ByteBuffer.wrap(new byte[] {0x05, 0x02}));
        Tensor index = new Tensor(Tensor.U8, new int[] {2, 1}, ByteBuffer.wrap(new byte[] {0b10, 0b11}));
        ByteBuffer f = ByteBuffer.allocate(16).order(ByteOrder.LITTLE_ENDIAN).putFloat(1f).putFloat(-2f);
        f.flip();
        Tensor alpha = new Tensor(Tensor.F32, new int[] {2}, f);
        Tensor bias = new Tensor(Tensor.F32, new int[] {2}, ByteBuffer.wrap(new byte[8]));
        Node n = new Node("s", OpDef.CONV, new int[] {0}, 1, Collections.<String, Integer>emptyMap(),
                WfmtDef.STACK_PACKED, new Tensor[] {bank, index, alpha, bias});
        float[] w = WfmtDef.STACK_PACKED.floatWeight(n, 2, 6);
        assertArrayEquals(new float[] {1, -1, 1, -1, 1, -1, 2, -2, 2, 2, -2, 2}, w, 0f);
        assertEquals(1, WfmtDef.Stacked.indexBits(1));
        assertEquals(1, WfmtDef.Stacked.indexBits(2));
        assertEquals(7, WfmtDef.Stacked.indexBits(128));
        assertEquals(8, WfmtDef.Stacked.indexBits(129));
        assertEquals(8, WfmtDef.Stacked.indexBits(256));
    }

    /** The graph of the stacked model with node name's tensors t replaced. */
    private static Graph replaced(String name, int t, Tensor with) throws IOException {
        Graph g = ModelReader.read(ByteBuffer.wrap(generated(STACKED)));
        for (int i = 0; i < g.nodes.size(); i++) {
            Node n = g.nodes.get(i);
            if (n.name.equals(name)) {
                Tensor[] ts = n.tensors.clone();
                ts[t] = with;
                g.nodes.set(i, new Node(n.name, n.op, n.inputs, n.output, n.attrs, n.wfmt, ts));
            }
        }
        return g;
    }

    private static Tensor u8(int rows, int cols, int fill) {
        byte[] b = new byte[rows * cols];
        java.util.Arrays.fill(b, (byte) fill);
        return new Tensor(Tensor.U8, new int[] {rows, cols}, ByteBuffer.wrap(b));
    }

    private static String invalid(Graph g) {
        return assertThrows(SeprtFormatException.class, () -> GraphValidator.validate(g)).getMessage();
    }

    @Test
    void rejectsStackSliceDepthThatDoesNotDivideCg() throws IOException {
        // b1.conv2: K = 8, Cg = 8; 3 slices per filter do not divide 8 channels
        String msg = invalid(replaced("b1.conv2", 1, u8(8, 3, 0)));
        assertTrue(msg.contains("node 'b1.conv2'") && msg.contains("3 slices per filter do not divide its 8 input channels"),
                msg);
    }

    @Test
    void rejectsStackBankSizeAndShapes() throws IOException {
        String big = invalid(replaced("b1.conv2", 0, u8(257, 5, 0)));
        assertTrue(big.contains("bank has 257 filters, must be 1..256"), big);
        String rank = invalid(replaced("b1.conv2", 1, new Tensor(Tensor.U8, new int[] {16}, ByteBuffer.wrap(new byte[16]))));
        assertTrue(rank.contains("must be 2-d"), rank);
        String dtype = invalid(replaced("b1.conv2", 0, new Tensor(Tensor.I8, new int[] {8, 5},
                ByteBuffer.wrap(new byte[40]))));
        assertTrue(dtype.contains("bank is i8"), dtype);
        // a bank of 256 filters is allowed (index < m holds: the index is all 0)
        GraphValidator.validate(replaced("b1.conv2", 0, u8(256, 5, 0)));
    }

    @Test
    void rejectsStackAlphaNotFinite() throws IOException {
        ByteBuffer a = ByteBuffer.allocate(4 * 8).order(ByteOrder.LITTLE_ENDIAN);
        for (int i = 0; i < 8; i++) {
            a.putFloat(i == 3 ? Float.NaN : -0.5f);
        }
        a.flip();
        String msg = invalid(replaced("b1.conv2", 2, new Tensor(Tensor.F32, new int[] {8}, a)));
        assertTrue(msg.contains("alpha has NaN, Inf or a magnitude over 1e12"), msg);
    }

    @Test
    void rejectsStackOnAnFcAndAffineWithoutF32() throws IOException {
        Graph g = ModelReader.read(ByteBuffer.wrap(generated(STACKED)));
        Node conv = null;
        for (Node n : g.nodes) {
            conv = n.name.equals("b1.conv2") ? n : conv;
        }
        for (int i = 0; i < g.nodes.size(); i++) {
            Node n = g.nodes.get(i);
            if (n.op == OpDef.FC) {         // the conv's stack tensors on the fc: K differs too, the rule comes first
                g.nodes.set(i, new Node(n.name, n.op, n.inputs, n.output, n.attrs, WfmtDef.STACK, conv.tensors));
            }
        }
        String msg = invalid(g);
        assertTrue(msg.contains("node 'fc'") && msg.contains("stack weights need a k x k conv"), msg);

        Graph h = ModelReader.read(ByteBuffer.wrap(generated("newops-BQ8")));
        for (int i = 0; i < h.nodes.size(); i++) {
            Node n = h.nodes.get(i);
            if (n.op == OpDef.AFFINE) {
                h.nodes.set(i, new Node(n.name, n.op, n.inputs, n.output, n.attrs, WfmtDef.STACK, conv.tensors));
            }
        }
        String aff = invalid(h);
        assertTrue(aff.contains("affine takes f32 weights (scale, shift), got stack"), aff);
    }

    @Test
    void expandsTheSpecExample() {
        // docs/format.md: k = 1, Cg = 6, d = 3, m = 2, bank rows 0x05 (+ - +) and 0x02 (- + -),
        // index rows [0, 1] and [1, 1]: filters + - + - + - and - + - - + -
        Tensor bank = new Tensor(Tensor.U8, new int[] {2, 1}, ByteBuffer.wrap(new byte[] {0x05, 0x02}));
        Tensor index = new Tensor(Tensor.U8, new int[] {2, 2}, ByteBuffer.wrap(new byte[] {0, 1, 1, 1}));
        ByteBuffer f = ByteBuffer.allocate(16).order(ByteOrder.LITTLE_ENDIAN).putFloat(1f).putFloat(-2f);
        f.flip();
        Tensor alpha = new Tensor(Tensor.F32, new int[] {2}, f);
        Tensor bias = new Tensor(Tensor.F32, new int[] {2}, ByteBuffer.wrap(new byte[8]));
        Node n = new Node("s", OpDef.CONV, new int[] {0}, 1, Collections.<String, Integer>emptyMap(), WfmtDef.STACK,
                new Tensor[] {bank, index, alpha, bias});
        float[] w = WfmtDef.STACK.floatWeight(n, 2, 6);
        assertArrayEquals(new float[] {1, -1, 1, -1, 1, -1, 2, -2, 2, 2, -2, 2}, w, 0f);
    }
}
