package ai.seprt.core;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.io.IOException;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestFactory;

/** The Java preprocess against seprt.image.preprocess (Pillow bilinear) on the same pixels: identical floats. */
class PreprocessTest {
    static Preprocessor preprocessor(String resize, int h, int w, float cropFraction, String order, float[] mean,
                                     float[] std) throws SeprtFormatException {
        Map<String, Object> m = new HashMap<>();
        m.put("preprocess.size", new long[] {h, w});
        m.put("preprocess.resize", resize);
        m.put("preprocess.crop_fraction", cropFraction);
        m.put("preprocess.channel_order", order);
        m.put("preprocess.mean", mean);
        m.put("preprocess.std", std);
        return new Preprocessor(new Metadata(m));
    }

    @TestFactory
    List<DynamicTest> sameFloatsAsPillow() throws IOException {
        List<DynamicTest> tests = new ArrayList<>();
        for (String[] f : Golden.get().preprocessCases) {
            // preprocess CASE RGB W H RESIZE SIZE_H SIZE_W CROP_FRACTION ORDER MEAN3 STD3 EXPECTED
            tests.add(DynamicTest.dynamicTest(f[1], () -> {
                float[] mean = {Float.parseFloat(f[10]), Float.parseFloat(f[11]), Float.parseFloat(f[12])};
                float[] std = {Float.parseFloat(f[13]), Float.parseFloat(f[14]), Float.parseFloat(f[15])};
                Preprocessor p = preprocessor(f[5], Integer.parseInt(f[6]), Integer.parseInt(f[7]),
                        Float.parseFloat(f[8]), f[9], mean, std);
                float[] x = p.apply(Golden.rgbToArgb(Golden.read(f[2])), Integer.parseInt(f[3]), Integer.parseInt(f[4]));
                assertArrayEquals(Golden.readF32(f[16]), x, 0f);
            }));
        }
        return tests;
    }

    @Test
    void transparentPixelsBecomeWhite() throws SeprtFormatException {
        float[] mean = {0.5f, 0.25f, 0f};
        float[] std = {0.5f, 0.5f, 1f};
        Preprocessor p = preprocessor("stretch", 1, 1, 0.875f, "RGB", mean, std);
        float[] x = p.apply(new int[] {0x00123456}, 1, 1);
        assertArrayEquals(new float[] {1f, 1.5f, 1f}, x, 0f);
    }

    @Test
    void rejectsTooFewPixels() throws SeprtFormatException {
        Preprocessor p = preprocessor("stretch", 2, 2, 0.875f, "RGB", new float[3], new float[] {1, 1, 1});
        assertThrows(IllegalArgumentException.class, () -> p.apply(new int[3], 2, 2));
    }

    @Test
    void bgrReversesChannelsBeforeMean() throws SeprtFormatException {
        Preprocessor p = preprocessor("stretch", 1, 1, 0.875f, "BGR", new float[] {0f, 0f, 0f}, new float[] {1, 1, 1});
        float[] x = p.apply(new int[] {0xFFFF0000}, 1, 1);     // pure red -> B, G, R order
        assertEquals(0f, x[0]);
        assertEquals(1f, x[2]);
    }
}
