package ai.seprt.core;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.awt.image.BufferedImage;
import java.io.ByteArrayOutputStream;
import java.io.File;
import java.io.IOException;
import java.io.PrintStream;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import javax.imageio.ImageIO;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestFactory;

/**
 * End to end: the sample JPEGs decoded by javax.imageio, preprocessed and classified by the
 * golden copy of the demo model. JPEG decoders may differ slightly from Pillow's libjpeg, so
 * the decoded pixels may differ by a few levels and only the top-1 class must agree.
 */
class ImageTest {
    static final File SAMPLES = new File(System.getProperty("seprt.samples", "seprt/data/samples"));
    static final int MAX_PIXEL_DIFF = 8;
    static final double MAX_MEAN_PIXEL_DIFF = 1.0;

    @TestFactory
    List<DynamicTest> jpegSamplesClassifyLikePython() throws IOException {
        Golden golden = Golden.get();
        List<DynamicTest> tests = new ArrayList<>();
        for (Golden.Expect e : golden.expects) {
            if (!e.model.equals("demo")) {
                continue;
            }
            tests.add(DynamicTest.dynamicTest(e.input + ".jpg", () -> {
                BufferedImage img = ImageIO.read(new File(SAMPLES, e.input + ".jpg"));
                int w = img.getWidth();
                int h = img.getHeight();
                int[] argb = img.getRGB(0, 0, w, h, null, 0, w);
                byte[] pillow = Golden.read("images/" + e.input + ".rgb");
                assertEquals(pillow.length, argb.length * 3, "decoded size");
                int max = 0;
                long sum = 0;
                for (int p = 0; p < argb.length; p++) {
                    for (int c = 0; c < 3; c++) {
                        int d = Math.abs(((argb[p] >> (16 - 8 * c)) & 0xFF) - (pillow[3 * p + c] & 0xFF));
                        max = Math.max(max, d);
                        sum += d;
                    }
                }
                double mean = sum / (3.0 * argb.length);
                System.out.printf(Locale.ROOT, "jpeg %s: javax.imageio vs Pillow pixels max|d| %d, mean|d| %.3f%n",
                        e.input, max, mean);
                assertTrue(max <= MAX_PIXEL_DIFF && mean <= MAX_MEAN_PIXEL_DIFF,
                        "decoder difference too large: max " + max + ", mean " + mean);
                SeprtModel m = ParityTest.model("demo");
                List<Prediction> top = m.predict(m.preprocess(argb, w, h), 5);
                assertEquals(e.top5[0], top.get(0).index, "top-1 class");
                double total = 0;
                for (double p : Ops.softmax(m.logits(m.preprocess(argb, w, h)))) {
                    total += p;
                }
                assertEquals(1.0, total, 1e-9);
            }));
        }
        return tests;
    }

    @Test
    void commandLinePrintsTop5AndLatency() throws IOException {
        PrintStream old = System.out;
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        System.setOut(new PrintStream(out, true, "UTF-8"));
        try {
            Main.main(new String[] {Golden.get().models.get("demo").file.getPath(),
                    new File(SAMPLES, "cat-4774.jpg").getPath()});
        } finally {
            System.setOut(old);
        }
        String text = out.toString("UTF-8");
        assertTrue(text.contains("cat-4774.jpg (32x32): inference "), text);
        assertTrue(text.contains("  5. "), text);
        assertEquals(-1, text.indexOf("  6. "), text);
    }
}
