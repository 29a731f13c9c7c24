package ai.seprt.core;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.File;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.zip.CRC32;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestFactory;
import org.junit.jupiter.api.io.TempDir;

/**
 * Malformed model files are rejected with a SeprtFormatException that says why. Damage that
 * the checksums would catch first is applied with the CRCs recomputed ({@link #resealed}), so
 * that each test reaches the rule it is about.
 */
class FormatTest {
    private static byte[] demo() throws IOException {
        return Golden.read("models/demo.bin");
    }

    static ByteBuffer le(byte[] b) {
        return ByteBuffer.wrap(b).order(ByteOrder.LITTLE_ENDIAN);
    }

    static int sectionOffset(byte[] b, int i) {
        return (int) le(b).getLong(64 + 64 * i + 32);
    }

    static int sectionSize(byte[] b, int i) {
        return (int) le(b).getLong(64 + 64 * i + 40);
    }

    /** Byte offset of node entry i in the GRAPH section. */
    static int nodeEntry(byte[] b, int i) {
        int g = sectionOffset(b, 1);
        return g + 24 + 32 * le(b).getInt(g) + 48 * i;
    }

    static int valueEntry(byte[] b, int i) {
        return sectionOffset(b, 1) + 24 + 32 * i;
    }

    /** A copy with every section CRC and the header CRC recomputed. */
    static byte[] resealed(byte[] b) {
        ByteBuffer buf = le(b);
        int count = buf.getInt(24);
        for (int i = 0; i < count; i++) {
            CRC32 c = new CRC32();
            c.update(b, sectionOffset(b, i), sectionSize(b, i));
            buf.putInt(64 + 64 * i + 48, (int) c.getValue());
        }
        CRC32 h = new CRC32();
        h.update(b, 0, 60);
        h.update(b, 64, 64 * count);
        buf.putInt(60, (int) h.getValue());
        return b;
    }

    static String rejected(byte[] b) {
        return assertThrows(SeprtFormatException.class, () -> SeprtModel.load(b)).getMessage();
    }

    static void assertRejected(byte[] b, String... fragments) {
        String msg = rejected(b);
        for (String f : fragments) {
            assertTrue(msg.contains(f), "message '" + msg + "' should contain '" + f + "'");
        }
    }

    @Test
    void acceptsTheDemoModel() throws IOException {
        SeprtModel m = SeprtModel.load(demo());
        assertEquals("sepnet-cifar", m.arch());
        assertEquals(10, m.labels().size());
        assertEquals(32 * 32 * 3, m.inputSize());
    }

    @Test
    void acceptsAnyMinorVersion() throws IOException {
        byte[] b = demo();
        le(b).putShort(10, (short) 7);
        SeprtModel.load(resealed(b));
    }

    @TestFactory
    List<DynamicTest> rejectsTruncatedFiles() throws IOException {
        byte[] b = demo();
        List<DynamicTest> tests = new ArrayList<>();
        for (int len : new int[] {0, 8, 63, 64, 100, 1000, b.length / 2, b.length - 1}) {
            tests.add(DynamicTest.dynamicTest("truncated to " + len + " bytes", () -> {
                String msg = rejected(Arrays.copyOf(b, len));
                assertTrue(msg.contains("truncated") || msg.contains("shorter than the 64-byte header"), msg);
            }));
        }
        return tests;
    }

    @Test
    void rejectsTrailingBytes() throws IOException {
        byte[] b = demo();
        assertRejected(Arrays.copyOf(b, b.length + 1), "trailing bytes", String.valueOf(b.length + 1));
        assertRejected(Arrays.copyOf(b, b.length + 64), "trailing bytes");
    }

    @Test
    void rejectsTrailingBytesTheHeaderAccountsFor() throws IOException {
        byte[] b = Arrays.copyOf(demo(), demo().length + 64);
        le(b).putLong(16, b.length);
        assertRejected(resealed(b), "64 trailing bytes after the last section");
    }

    @Test
    void rejectsWrongMagic() throws IOException {
        byte[] b = demo();
        b[0] = 'X';
        assertRejected(b, "not a seprt model file");
        assertRejected("just some text, not a model at all, long enough for a header......."
                .getBytes(StandardCharsets.US_ASCII), "not a seprt model file");
    }

    @Test
    void rejectsUnknownMajorVersionNamingBoth() throws IOException {
        byte[] b = demo();
        le(b).putShort(8, (short) 3);
        assertRejected(resealed(b), "version 3.0", "1.x and 2.x");
    }

    @TestFactory
    List<DynamicTest> rejectsFlippedSectionBytes() throws IOException {
        byte[] b = demo();
        int count = le(b).getInt(24);
        List<DynamicTest> tests = new ArrayList<>();
        for (int i : new int[] {0, 1, 2, count / 2, count - 1}) {
            tests.add(DynamicTest.dynamicTest("section " + i, () -> {
                byte[] c = b.clone();
                c[sectionOffset(c, i) + sectionSize(c, i) / 2] ^= 0x10;
                assertRejected(c, "section " + i + ": checksum mismatch");
            }));
        }
        return tests;
    }

    @Test
    void rejectsFlippedHeaderOrTableBytes() throws IOException {
        byte[] b = demo();
        b[64 + 64 * 3 + 36] ^= 1;          // a section's offset (high bytes)
        assertRejected(b, "header checksum mismatch");
        byte[] c = demo();
        c[50] ^= 1;                          // header reserved bytes are covered by the CRC too
        assertRejected(c, "header checksum mismatch");
    }

    @Test
    void rejectsNonZeroPadding() throws IOException {
        byte[] b = demo();
        int end = sectionOffset(b, 0) + sectionSize(b, 0);
        assertTrue(end < sectionOffset(b, 1), "the demo has padding after META");
        b[end] = 1;
        assertRejected(b, "padding before section 1 is not zero");
    }

    @Test
    void rejectsWrongSectionKindAndDims() throws IOException {
        byte[] b = demo();
        le(b).putInt(64 + 64 * 2, 1);
        assertRejected(resealed(b), "section 2 has kind 1, expected 3");
        byte[] c = demo();
        assertEquals(1, le(c).getInt(64 + 64 * 3 + 8), "section 3 (conv1 scale) has rank 1");
        le(c).putInt(64 + 64 * 3 + 16 + 4, 5);    // dims[1] of a rank-1 tensor
        assertRejected(resealed(c), "section 3: dims");
    }

    @Test
    void rejectsUnknownOp() throws IOException {
        byte[] b = demo();
        le(b).putInt(nodeEntry(b, 3), 99);
        assertRejected(resealed(b), "unknown op code 99");
    }

    @Test
    void rejectsNonTopologicalOrder() throws IOException {
        byte[] b = demo();
        int nodes = le(b).getInt(sectionOffset(b, 1) + 4);
        int lastOutput = le(b).getInt(nodeEntry(b, nodes - 1) + 12);
        le(b).putInt(nodeEntry(b, 1) + 4, lastOutput);     // node 1 reads the logits
        assertRejected(resealed(b), "before it is produced");
    }

    @Test
    void rejectsShapeMismatch() throws IOException {
        byte[] b = demo();
        int out = le(b).getInt(nodeEntry(b, 0) + 12);       // conv1's output value (32, 32, 32)
        le(b).putInt(valueEntry(b, out) + 4, 31);
        assertRejected(resealed(b), "node 'conv1'");
    }

    @Test
    void rejectsNonFiniteAlpha() throws IOException {
        byte[] b = demo();
        int nodes = le(b).getInt(sectionOffset(b, 1) + 4);
        for (int i = 0; i < nodes; i++) {
            if (le(b).getInt(nodeEntry(b, i) + 32) == 3) {     // first bin node
                int alpha = le(b).getInt(nodeEntry(b, i) + 40);
                le(b).putFloat(sectionOffset(b, alpha), Float.NaN);
                assertRejected(resealed(b), "alpha has NaN, Inf or a magnitude over 1e12");
                return;
            }
        }
        throw new AssertionError("the demo model has no binary conv");
    }

    @Test
    void rejectsBadActivationQuantization() throws IOException {
        byte[] b = demo();
        le(b).putInt(valueEntry(b, 0) + 24, 3);             // q_bits 3
        assertRejected(resealed(b), "activation bits 3");
        byte[] c = demo();
        le(c).putInt(valueEntry(c, 0) + 20, 256);           // zero point of an 8-bit value
        assertRejected(resealed(c), "zero point 256");
    }

    @Test
    void rejectsBadMetadataValue() throws IOException {
        byte[] b = demo();
        byte[] key = "\u0007\u0000variant".getBytes(StandardCharsets.US_ASCII);    // u16 length + key
        int at = indexOf(b, key, sectionOffset(b, 0));
        int value = at + key.length + 1 + 4;                 // after the type byte and the u32 length
        assertEquals('B', b[value]);
        b[value] = 'X';
        assertRejected(resealed(b), "variant 'XQ'");
    }

    @Test
    void fileErrorsNameTheFile(@TempDir File dir) throws IOException {
        File empty = new File(dir, "empty.bin");
        Files.write(empty.toPath(), new byte[0]);
        String msg = assertThrows(SeprtFormatException.class, () -> SeprtModel.load(empty)).getMessage();
        assertTrue(msg.startsWith(empty.getPath()), msg);
        assertThrows(IOException.class, () -> SeprtModel.load(new File(dir, "missing.bin")));
    }

    private static int indexOf(byte[] b, byte[] what, int from) {
        for (int i = from; i + what.length <= b.length; i++) {
            if (Arrays.equals(Arrays.copyOfRange(b, i, i + what.length), what)) {
                return i;
            }
        }
        throw new AssertionError("not found");
    }
}
