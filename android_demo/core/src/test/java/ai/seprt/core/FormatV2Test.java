package ai.seprt.core;

import static ai.seprt.core.FormatTest.assertRejected;
import static ai.seprt.core.FormatTest.le;
import static ai.seprt.core.FormatTest.nodeEntry;
import static ai.seprt.core.FormatTest.resealed;
import static ai.seprt.core.FormatTest.sectionOffset;
import static ai.seprt.core.FormatTest.valueEntry;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

/**
 * Format v2 (variable node records with typed attributes) and v1 read into the same graph, and
 * the v2 rules of docs/format.md ("Node record", "Ops", "Weight formats", "Limits"). The v2 files
 * are generated models (make_golden.py --models); concat-dw-BQ8 has concat nodes and depthwise
 * convs, demo-v2 is the shipped v1 demo (testdata/models/demo.bin) re-written by Python as v2.
 */
class FormatV2Test {
    private static byte[] generated(String name) throws IOException {
        return Files.readAllBytes(Golden.get().models.get(name).file.toPath());
    }

    private static byte[] catDw() throws IOException {
        return generated("concat-dw-BQ8");
    }

    /** One v2 node record, located in the file. */
    static final class Rec {
        int at;             // record start
        int op;
        int wfmt;
        int nIn;
        int nT;
        String name;
        int inputsAt;
        int tensorsAt;
        final Map<String, Integer> attrAt = new LinkedHashMap<>();  // key -> offset of the key-length byte
    }

    /** The node records of a v2 file, by walking the GRAPH section. */
    static Map<String, Rec> records(byte[] b) {
        ByteBuffer le = le(b);
        int g = sectionOffset(b, 1);
        int nv = le.getInt(g);
        int nn = le.getInt(g + 4);
        int p = g + 24 + 32 * nv;
        Map<String, Rec> out = new LinkedHashMap<>();
        for (int i = 0; i < nn; i++) {
            Rec r = new Rec();
            r.at = p;
            r.op = le.getShort(p) & 0xFFFF;
            r.wfmt = le.getShort(p + 2) & 0xFFFF;
            r.nIn = le.getShort(p + 4) & 0xFFFF;
            r.nT = le.getShort(p + 6) & 0xFFFF;
            int nA = le.getShort(p + 8) & 0xFFFF;
            int nName = le.getShort(p + 10) & 0xFFFF;
            r.inputsAt = p + 16;
            r.tensorsAt = r.inputsAt + 4 * r.nIn;
            int nameAt = r.tensorsAt + 4 * r.nT;
            r.name = new String(b, nameAt, nName, StandardCharsets.UTF_8);
            p = nameAt + nName;
            for (int k = 0; k < nA; k++) {
                int len = b[p] & 0xFF;
                r.attrAt.put(new String(b, p + 1, len, StandardCharsets.US_ASCII), p);
                p += 1 + len + 1 + 4;
            }
            out.put(r.name, r);
        }
        assertEquals(sectionOffset(b, 1) + FormatTest.sectionSize(b, 1), p, "records end the graph section");
        return out;
    }

    private static Rec rec(byte[] b, String name) {
        Rec r = records(b).get(name);
        assertTrue(r != null, "no node " + name);
        return r;
    }

    /** Index of the value a node produces. */
    private static int output(byte[] b, String name) {
        return le(b).getInt(rec(b, name).at + 12);
    }

    /** Overwrites the attribute key of node's attribute `key` with `newKey` (same length). */
    private static void renameAttr(byte[] b, String node, String key, String newKey) {
        assertEquals(key.length(), newKey.length());
        int at = rec(b, node).attrAt.get(key);
        System.arraycopy(newKey.getBytes(StandardCharsets.US_ASCII), 0, b, at + 1, newKey.length());
    }

    private static int attrValueAt(byte[] b, String node, String key) {
        return rec(b, node).attrAt.get(key) + 1 + key.length() + 1;
    }

    // ------------------------------------------------------------ v1 and v2, same graph

    @Test
    void readsVersionOneAndTwoIntoTheSameGraph() throws IOException {
        byte[] v1 = Golden.read("models/demo.bin");
        byte[] v2 = generated("demo-v2");
        assertEquals(1, le(v1).getShort(8), "testdata/models/demo.bin is the v1 fixture");
        assertEquals(2, le(v2).getShort(8));
        Graph a = ModelReader.read(ByteBuffer.wrap(v1));
        Graph b = ModelReader.read(ByteBuffer.wrap(v2));
        assertEquals(a.nodes.size(), b.nodes.size());
        assertEquals(a.values.size(), b.values.size());
        for (int i = 0; i < a.nodes.size(); i++) {
            Node x = a.nodes.get(i);
            Node y = b.nodes.get(i);
            assertEquals(x.name, y.name);
            assertEquals(x.op, y.op);
            assertEquals(x.attrs, y.attrs, x.name);
            assertEquals(x.wfmt, y.wfmt, x.name);
            assertArrayEquals(x.inputs, y.inputs, x.name);
            assertEquals(x.output, y.output, x.name);
            assertEquals(x.tensors.length, y.tensors.length, x.name);
            for (int t = 0; t < x.tensors.length; t++) {
                assertArrayEquals(x.tensors[t].bytes(), y.tensors[t].bytes(), x.name + " tensor " + t);
            }
        }
        for (int i = 0; i < a.values.size(); i++) {
            assertArrayEquals(a.value(i).shape, b.value(i).shape);
            assertEquals(a.value(i).qScale, b.value(i).qScale);
            assertEquals(a.value(i).qZero, b.value(i).qZero);
            assertEquals(a.value(i).qBits, b.value(i).qBits);
        }
        float[] x = Golden.readF32("inputs/cat-4774.f32");
        assertArrayEquals(SeprtModel.load(v1).logits(x), SeprtModel.load(v2).logits(x), 0f);
    }

    @Test
    void readsConcatAndDepthwiseNodes() throws IOException {
        Graph g = ModelReader.read(ByteBuffer.wrap(catDw()));
        Map<String, Node> byName = new LinkedHashMap<>();
        for (Node n : g.nodes) {
            byName.put(n.name, n);
        }
        Node cat = byName.get("cat1");
        assertEquals(OpDef.CONCAT, cat.op);
        assertEquals(3, cat.inputs.length);
        assertArrayEquals(new int[] {12, 10, 18}, g.value(cat.output).shape);
        Node dw = byName.get("dw2");
        assertEquals(OpDef.CONV, dw.op);
        assertEquals(18, dw.groups);
        assertEquals(5, dw.kernel);
        assertEquals(2, dw.stride);
        assertEquals(WfmtDef.BIN, dw.wfmt);
        assertArrayEquals(new int[] {18, 4}, dw.weight.shape, "25-bit pattern rows: 4 bytes");
        assertEquals(WfmtDef.I8, byName.get("pw2").wfmt);
        Map<String, Integer> defaults = new LinkedHashMap<>();
        defaults.put("groups", 1);
        defaults.put("kernel", 1);
        defaults.put("pad", 0);
        defaults.put("stride", 1);
        assertEquals(defaults, byName.get("pw1").attrs, "missing attributes take their defaults");
    }

    // ------------------------------------------------------------ v2 node records

    @Test
    void rejectsUnknownOpCode() throws IOException {
        byte[] b = catDw();
        le(b).putShort(rec(b, "cat1").at, (short) 99);
        assertRejected(resealed(b), "node 'cat1'", "unknown op code 99", "needs a newer seprt");
    }

    @Test
    void rejectsUnknownWeightFormatCode() throws IOException {
        byte[] b = catDw();
        le(b).putShort(rec(b, "dw1").at + 2, (short) 7);
        assertRejected(resealed(b), "node 'dw1'", "unknown weight format code 7", "needs a newer seprt");
    }

    @Test
    void rejectsUnknownAttribute() throws IOException {
        byte[] b = catDw();
        renameAttr(b, "dw1", "pad", "pax");          // still sorted after "kernel"
        assertRejected(resealed(b), "node 'dw1'", "conv has no attribute 'pax'", "needs a newer seprt");
    }

    @Test
    void rejectsAttributeThatHoldsItsDefault() throws IOException {
        byte[] b = catDw();
        le(b).putInt(attrValueAt(b, "dw1", "pad"), 0);
        assertRejected(resealed(b), "node 'dw1'", "attribute 'pad' holds its default and must be omitted");
    }

    @Test
    void rejectsUnsortedOrRepeatedAttributes() throws IOException {
        byte[] b = catDw();
        List<String> keys = new ArrayList<>(rec(b, "dw1").attrAt.keySet());
        assertEquals("[groups, kernel, pad]", keys.toString(), "written sorted");
        renameAttr(b, "dw1", "groups", "stride");    // stride, kernel, pad: known keys out of order
        assertRejected(resealed(b), "node 'dw1'", "attributes must be sorted and unique ('kernel' after 'stride')");
        byte[] c = catDw();
        renameAttr(c, "dw2", "groups", "kernel");    // kernel twice
        assertRejected(resealed(c), "node 'dw2'", "attributes must be sorted and unique ('kernel' after 'kernel')");
    }

    @Test
    void rejectsAttributeOfTheWrongTypeOrRange() throws IOException {
        byte[] b = catDw();
        b[attrValueAt(b, "dw2", "stride") - 1] = 2;  // f32 type for an i32 attribute
        assertRejected(resealed(b), "node 'dw2'", "attribute 'stride' has type 2, expected 1");
        byte[] c = catDw();
        le(c).putInt(attrValueAt(c, "dw2", "stride"), 9);
        assertRejected(resealed(c), "node 'dw2'", "attribute stride=9 out of range 1..8");
        byte[] d = catDw();
        le(d).putInt(attrValueAt(d, "dw2", "pad"), 5);
        assertRejected(resealed(d), "node 'dw2'", "pad 5 must be < kernel 5");
    }

    @Test
    void rejectsWrongTensorCount() throws IOException {
        byte[] b = catDw();
        Rec dw = rec(b, "dw1");
        assertEquals(3, dw.wfmt, "bin");
        le(b).putShort(dw.at + 2, (short) 1);         // f32 has 2 tensors, the node stores 3
        assertRejected(resealed(b), "node 'dw1'", "weight format f32 has 2 tensors, the node 3");
        byte[] c = catDw();
        le(c).putShort(rec(c, "cat1").at + 2, (short) 1);   // weights on an op without weights
        assertRejected(resealed(c), "node 'cat1'", "weight format f32 has 2 tensors, the node 0");
        byte[] d = catDw();
        le(d).putShort(rec(d, "dw1").at + 2, (short) 0);    // a conv without a weight format
        assertRejected(resealed(d), "node 'dw1'", "weight format none has 0 tensors, the node 3");
    }

    @Test
    void rejectsDanglingReferences() throws IOException {
        byte[] b = catDw();
        Rec cat = rec(b, "cat1");
        le(b).putInt(cat.inputsAt + 4, output(b, "pw2"));   // a value produced later
        assertRejected(resealed(b), "node 'cat1' reads value", "before it is produced");
        byte[] c = catDw();
        le(c).putInt(rec(c, "cat1").inputsAt, 999);          // no such value
        assertRejected(resealed(c), "node 'cat1' references value 999");
        byte[] d = catDw();
        le(d).putInt(rec(d, "fc").tensorsAt, 999);           // no such section
        assertRejected(resealed(d), "node 'fc' references section 999");
    }

    // ------------------------------------------------------------ ops: concat and depthwise conv

    @Test
    void rejectsConcatShapeMismatch() throws IOException {
        byte[] b = catDw();
        le(b).putInt(rec(b, "cat1").inputsAt, 0);            // the (12, 10, 3) input instead of pw1 (6 channels)
        assertRejected(resealed(b), "node 'cat1'", "output shape (12, 10, 18) does not match concat");
    }

    @Test
    void rejectsGroupsThatDoNotDivideTheChannels() throws IOException {
        byte[] b = catDw();
        le(b).putInt(attrValueAt(b, "dw1", "groups"), 3);
        assertRejected(resealed(b), "node 'dw1'", "groups=3 does not divide channels 8->8");
    }

    // ------------------------------------------------------------ limits

    @Test
    void rejectsActivationMemoryBomb() throws IOException {
        byte[] b = catDw();
        int v = valueEntry(b, output(b, "cat2"));
        le(b).putInt(v + 4, 16384);                          // (16384, 16384, 1): 2^28 elements, 1.25 GiB
        le(b).putInt(v + 8, 16384);
        le(b).putInt(v + 12, 1);
        assertRejected(resealed(b), "GiB of activation memory, over the limit of 1.00 GiB");
    }

    @Test
    void rejectsParameterMagnitudeOverOneE12() throws IOException {
        byte[] b = catDw();
        Rec fc = rec(b, "fc");
        int bias = le(b).getInt(fc.tensorsAt + 8);           // i8: weight, scale, bias
        le(b).putFloat(sectionOffset(b, bias), 1e12f);       // the float nearest 1e12 is allowed
        ModelReader.read(ByteBuffer.wrap(resealed(b)));
        le(b).putFloat(sectionOffset(b, bias), -2e12f);
        assertRejected(resealed(b), "node 'fc'", "bias has NaN, Inf or a magnitude over 1e12");
        byte[] c = catDw();
        int scale = le(c).getInt(rec(c, "pw1").tensorsAt + 4);
        le(c).putFloat(sectionOffset(c, scale), Float.POSITIVE_INFINITY);
        assertRejected(resealed(c), "node 'pw1'", "scale has NaN, Inf or a magnitude over 1e12");
    }

    @Test
    void rejectsActivationScaleOverOneE12() throws IOException {
        byte[] b = catDw();
        int v = valueEntry(b, 0);                             // the input feeds the integer conv1
        assertTrue(le(b).getInt(v + 24) == 8, "the input value is quantized");
        le(b).putFloat(v + 16, 2e12f);
        assertRejected(resealed(b), "activation scale", "must be in (0, 1e12]");
    }

    // ------------------------------------------------------------ v1 node entries

    @Test
    void rejectsVersionOneFieldAnOpDoesNotUse() throws IOException {
        byte[] b = Golden.read("models/demo.bin");
        int nodes = le(b).getInt(sectionOffset(b, 1) + 4);
        for (int i = 0; i < nodes; i++) {
            if (le(b).getInt(nodeEntry(b, i)) == OpDef.RELU.code) {
                le(b).putInt(nodeEntry(b, i) + 16, 3);        // kernel of a relu
                assertRejected(resealed(b), "relu does not use kernel; it must be 1");
                return;
            }
        }
        throw new AssertionError("the demo model has no relu");
    }

    @Test
    void rejectsVersionOneUnknownCodes() throws IOException {
        byte[] b = Golden.read("models/demo.bin");
        le(b).putInt(nodeEntry(b, 0), OpDef.CONCAT.code);    // v1 knew op codes 1..8 only
        assertRejected(resealed(b), "unknown op code 9");
        byte[] c = Golden.read("models/demo.bin");
        le(c).putInt(nodeEntry(c, 0) + 32, 4);
        assertRejected(resealed(c), "unknown weight format code 4");
    }
}
