package ai.seprt.core;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Random;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestFactory;

/**
 * The fast path against the reference path, every golden model both ways on the golden inputs
 * and on random inputs: bit-identical logits and embeddings on integer models (BQ), within
 * 1e-5 of max|logit| otherwise. Also: which kernels the fast path picked, and that an
 * inference allocates nothing but its result.
 */
class FastPathTest {
    static void assertSame(String what, float[] ref, float[] fast, boolean exact) {
        assertEquals(ref.length, fast.length, what + ": length");
        if (exact) {
            assertArrayEquals(ref, fast, 0f, what + ": integer model, fast and reference must be bit-identical");
            return;
        }
        double maxAbs = 0;
        double maxDiff = 0;
        for (int i = 0; i < ref.length; i++) {
            maxAbs = Math.max(maxAbs, Math.abs(ref[i]));
            maxDiff = Math.max(maxDiff, Math.abs(fast[i] - ref[i]));
        }
        assertTrue(maxDiff <= 1e-5 * Math.max(maxAbs, 1e-30),
                String.format(Locale.ROOT, "%s: max|d| %.3g against max|logit| %.3g", what, maxDiff, maxAbs));
    }

    @TestFactory
    List<DynamicTest> fastMatchesReference() throws IOException {
        List<DynamicTest> tests = new ArrayList<>();
        for (Golden.ModelRef ref : Golden.get().models.values()) {
            tests.add(DynamicTest.dynamicTest(ref.name, () -> {
                SeprtModel r = SeprtModel.load(ref.file, SeprtModel.Path.REFERENCE);
                SeprtModel f = SeprtModel.load(ref.file, SeprtModel.Path.FAST);
                assertEquals(SeprtModel.Path.FAST, f.path());
                boolean exact = r.variant().equals("BQ") && !ref.name.equals("tiny-mixed");
                List<float[]> inputs = new ArrayList<>();
                for (Golden.Expect e : Golden.get().expects) {
                    if (e.model.equals(ref.name)) {
                        inputs.add(Golden.get().input(e.input, r));
                    }
                }
                Random rnd = new Random(ref.name.hashCode());
                for (int k = 0; k < 3; k++) {
                    float[] x = new float[r.inputSize()];
                    for (int i = 0; i < x.length; i++) {
                        x[i] = (float) (rnd.nextGaussian() * (k + 1));
                    }
                    inputs.add(x);
                }
                for (int k = 0; k < inputs.size(); k++) {
                    float[] x = inputs.get(k);
                    assertSame(ref.name + " input " + k + " logits", r.logits(x), f.logits(x), exact);
                    assertSame(ref.name + " input " + k + " embed", r.embed(x), f.embed(x), exact);
                }
                // run twice more in another order: the planned buffers carry nothing over
                float[] first = f.logits(inputs.get(0));
                f.logits(inputs.get(inputs.size() - 1));
                assertArrayEquals(first, f.logits(inputs.get(0)), 0f, "same input, same logits");
            }));
        }
        return tests;
    }

    /** Pool output size along one axis, floor or ceil mode (ceil: the last window starts inside input or left pad). */
    private static int poolOut(int in, int kernel, int stride, int pad, boolean ceil) {
        int span = in + 2 * pad - kernel;
        int out = (ceil ? (span + stride - 1) / stride : span / stride) + 1;
        return ceil && (out - 1) * stride >= in + pad ? out - 1 : out;
    }

    @Test
    void planarMaxpoolMatchesReference() {
        Random rnd = new Random(3);
        int cases = 0;
        for (int[] hw : new int[][] {{7, 5}, {11, 13}, {1, 6}}) {
            for (int kernel = 1; kernel <= 4; kernel++) {
                for (int stride = 1; stride <= 3; stride++) {
                    for (int pad = 0; pad <= kernel / 2; pad++) {
                        for (boolean ceil : new boolean[] {false, true}) {
                            int h = hw[0];
                            int w = hw[1];
                            int c = 3;
                            int ho = poolOut(h, kernel, stride, pad, ceil);
                            int wo = poolOut(w, kernel, stride, pad, ceil);
                            if (ho < 1 || wo < 1) {
                                continue;
                            }
                            float[] x = new float[h * w * c];
                            for (int i = 0; i < x.length; i++) {
                                x[i] = (float) rnd.nextGaussian();
                            }
                            x[0] = -0f;
                            float[] ref = Ops.maxpool(x, h, w, c, kernel, stride, pad, ho, wo);
                            float[] chw = new float[x.length];
                            OpsChw.fromHwc(x, h, w, c, chw);
                            int len = OpsChw.maxpoolRowLength(w, kernel, stride, pad, wo);
                            float[] y = new float[ho * wo * c];
                            OpsChw.maxpool(chw, h, w, c, kernel, stride, pad, ho, wo, new float[2][len], y);
                            float[] fast = new float[y.length];
                            OpsChw.toHwc(y, ho, wo, c, fast);
                            assertArrayEquals(ref, fast, 0f, String.format(Locale.ROOT,
                                    "maxpool %dx%d k %d s %d pad %d ceil %b", h, w, kernel, stride, pad, ceil));
                            cases++;
                        }
                    }
                }
            }
        }
        assertTrue(cases > 100, cases + " cases");
    }

    @Test
    void integerModelsRunOnlyFastKernels() throws IOException {
        for (String name : new String[] {"demo", "sepnet-t8-BQ", "tiny-BQ2", "sepnet-cifar-BQ8-all", "tiny-stack-BQ8",
                "concat-dw-stack-BQ8", "tiny-stack-packed-BQ8", "concat-dw-stack-packed-BQ8", "newops-BQ8"}) {
            SeprtModel f = SeprtModel.load(Golden.get().models.get(name).file, SeprtModel.Path.FAST);
            Graph g = f.graph();
            boolean planar = false;
            for (int i = 0; i < g.nodes.size(); i++) {
                if (g.nodes.get(i).convLike()) {
                    String k = f.runner().kernelName(i);
                    assertTrue(k.startsWith("conv_i32_nhwc") || k.startsWith("conv_exact_f32_planar"),
                            name + " " + g.nodes.get(i).name + " runs " + k);
                    planar |= k.startsWith("conv_exact_f32_planar");
                }
            }
            assertTrue(planar || name.startsWith("tiny"), name + ": no layer runs conv_exact_f32_planar");
        }
    }

    /**
     * Layers whose float32 partial sums could pass 2^24 move them to ints (none of the test models
     * reaches the bound), so the flushes are forced here: after every channel, and after every 3
     * (bin layers then flush between channel blocks of up to 3 channels).
     */
    @Test
    void exactPlanarFlushesToIntsBitIdentically() throws IOException {
        String old = System.getProperty("seprt.flushEvery");
        try {
            for (String every : new String[] {"1", "3"}) {
                System.setProperty("seprt.flushEvery", every);
                for (String name : new String[] {"demo", "tiny-BQ2", "tiny-BQ8", "sepnet-cifar-BQ8-all"}) {
                    SeprtModel r = SeprtModel.load(Golden.get().models.get(name).file, SeprtModel.Path.REFERENCE);
                    SeprtModel f = SeprtModel.load(Golden.get().models.get(name).file, SeprtModel.Path.FAST);
                    boolean flushes = false;
                    for (int i = 0; i < f.graph().nodes.size(); i++) {
                        FastConv c = ((FastExecutor) f.runner()).conv(i);
                        if (c instanceof ConvExactPlanar) {
                            flushes |= ((ConvExactPlanar) c).flushEvery() < c.geo.cg;
                        }
                    }
                    assertTrue(flushes, name + ": no planar layer flushes");
                    Random rnd = new Random(7);
                    float[] x = new float[r.inputSize()];
                    for (int i = 0; i < x.length; i++) {
                        x[i] = (float) rnd.nextGaussian();
                    }
                    assertSame(name + " flushing every " + every + " channels", r.logits(x), f.logits(x), true);
                }
            }
        } finally {
            if (old == null) {
                System.clearProperty("seprt.flushEvery");
            } else {
                System.setProperty("seprt.flushEvery", old);
            }
        }
    }

    /**
     * The planar kernel's channel blocks (seprt.tapBudget: 1 channel a block, blocks that split
     * groups unevenly, the default) and its ±1 paths (sign-set adds, default; multiply-adds with
     * seprt.signAdds=false) all give the reference's logits, on every integer model with planar
     * layers, bin or stack patterns (depthwise too), odd sizes and zero points != 0.
     */
    @TestFactory
    List<DynamicTest> exactPlanarBlocksAndSignAddsBitIdentical() {
        List<DynamicTest> tests = new ArrayList<>();
        String[] models = {"demo", "sepnet-t8-BQ", "tiny-BQ8", "tiny-BQ4", "tiny-BQ2", "sepnet-cifar-BQ8-all",
            "concat-dw-BQ8", "concat-dw-BQ4", "newops-BQ4", "tiny-stack-BQ4", "concat-dw-stack-BQ8",
            "tiny-stack-packed-BQ4", "concat-dw-stack-packed-BQ8"};
        String[][] settings = {{"seprt.tapBudget", "1"}, {"seprt.tapBudget", "20000"}, {"seprt.signAdds", "false"},
            {"seprt.tapBudget", "1", "seprt.signAdds", "false"}};
        for (String[] props : settings) {
            tests.add(DynamicTest.dynamicTest(String.join("=", props), () -> {
                String[] old = new String[props.length / 2];
                try {
                    for (int k = 0; k < props.length; k += 2) {
                        old[k / 2] = System.getProperty(props[k]);
                        System.setProperty(props[k], props[k + 1]);
                    }
                    for (String name : models) {
                        java.io.File file = Golden.get().models.get(name).file;
                        SeprtModel r = SeprtModel.load(file, SeprtModel.Path.REFERENCE);
                        SeprtModel f = SeprtModel.load(file, SeprtModel.Path.FAST);
                        Random rnd = new Random(11);
                        float[] x = new float[r.inputSize()];
                        for (int i = 0; i < x.length; i++) {
                            x[i] = (float) rnd.nextGaussian();
                        }
                        assertSame(name + " with " + String.join("=", props), r.logits(x), f.logits(x), true);
                    }
                } finally {
                    for (int k = 0; k < props.length; k += 2) {
                        if (old[k / 2] == null) {
                            System.clearProperty(props[k]);
                        } else {
                            System.setProperty(props[k], old[k / 2]);
                        }
                    }
                }
            }));
        }
        return tests;
    }

    /**
     * sepnet-t8's stem (conv 5x5/2 -> relu -> maxpool 3x3/2, 111x111x64) pools inside the planar
     * conv; with 1-row and 3-row tiles (seprt.minN; windows then span 2 or 3 tiles), with the int
     * flushes forced, and unfused (seprt.fusePool=false) the logits stay the reference's.
     */
    @Test
    void maxpoolFusedIntoPlanarConvBitIdentical() throws IOException {
        java.io.File file = Golden.get().models.get("sepnet-t8-BQ").file;
        SeprtModel r = SeprtModel.load(file, SeprtModel.Path.REFERENCE);
        Random rnd = new Random(5);
        float[] x = new float[r.inputSize()];
        for (int i = 0; i < x.length; i++) {
            x[i] = (float) rnd.nextGaussian();
        }
        float[] ref = r.logits(x);
        SeprtModel f = SeprtModel.load(file, SeprtModel.Path.FAST);
        assertEquals("conv_exact_f32_planar+relu+maxpool", f.runner().kernelName(0));
        assertEquals("(fused)", f.runner().kernelName(2));
        assertSame("fused max-pool", ref, f.logits(x), true);
        String[][] settings = {{"seprt.minN", "1"}, {"seprt.minN", "300"}, {"seprt.flushEvery", "1"},
            {"seprt.fusePool", "false"}};
        for (String[] kv : settings) {
            String old = System.getProperty(kv[0]);
            try {
                System.setProperty(kv[0], kv[1]);
                SeprtModel v = SeprtModel.load(file, SeprtModel.Path.FAST);
                String kernel = kv[0].equals("seprt.fusePool") ? "conv_exact_f32_planar+relu"
                        : "conv_exact_f32_planar+relu+maxpool";
                assertEquals(kernel, v.runner().kernelName(0), kv[0] + "=" + kv[1]);
                assertSame("sepnet-t8 with " + kv[0] + "=" + kv[1], ref, v.logits(x), true);
                assertSame("sepnet-t8 with " + kv[0] + "=" + kv[1] + ", again", ref, v.logits(x), true);
            } finally {
                if (old == null) {
                    System.clearProperty(kv[0]);
                } else {
                    System.setProperty(kv[0], old);
                }
            }
        }
    }

    /** sepnet-t8's binary pattern convs (all planar, 7x7 ones too) run as sign-set adds, its i8 convs do not. */
    @Test
    void binaryPlanarLayersRunAsSignAdds() throws IOException {
        SeprtModel f = SeprtModel.load(Golden.get().models.get("sepnet-t8-BQ").file, SeprtModel.Path.FAST);
        int signs = 0;
        for (int i = 0; i < f.graph().nodes.size(); i++) {
            FastConv c = ((FastExecutor) f.runner()).conv(i);
            if (c instanceof ConvExactPlanar) {
                Node n = f.graph().nodes.get(i);
                assertEquals(n.wfmt == Node.WeightFormat.BIN, ((ConvExactPlanar) c).signAdds(), n.name);
                signs += ((ConvExactPlanar) c).signAdds() ? 1 : 0;
            }
        }
        assertEquals(12, signs, "bin layers of sepnet-t8 (modules 1-6, two each)");
    }

    /** Threads split output channels or rows; every output is still computed in the same order. */
    @Test
    void threadsGiveTheSameLogits() throws IOException {
        for (String name : new String[] {"demo", "sepnet-t8-BQ", "tiny-BQ2", "tiny-BQ8", "sepnet-cifar-BQ8-all"}) {
            java.io.File file = Golden.get().models.get(name).file;
            SeprtModel r = SeprtModel.load(file, SeprtModel.Path.REFERENCE);
            Random rnd = new Random(3);
            float[] x = new float[r.inputSize()];
            for (int i = 0; i < x.length; i++) {
                x[i] = (float) rnd.nextGaussian();
            }
            float[] ref = r.logits(x);
            for (int threads : new int[] {2, 3}) {
                SeprtModel f = SeprtModel.load(file, SeprtModel.Path.FAST, threads);
                assertEquals(threads, f.threads());
                assertSame(name + " on " + threads + " threads", ref, f.logits(x), true);
                assertSame(name + " on " + threads + " threads, again", ref, f.logits(x), true);
            }
        }
    }

    @Test
    void benchPrintsTheSummaryFirstThenPerLayer() throws IOException {
        java.io.PrintStream old = System.out;
        java.io.ByteArrayOutputStream buf = new java.io.ByteArrayOutputStream();
        try {
            System.setOut(new java.io.PrintStream(buf, true, "UTF-8"));
            Main.main(new String[] {"--bench", Golden.get().models.get("tiny-BQ8").file.getPath(), "3", "--per-layer",
                "--warmup", "0"});
        } finally {
            System.setOut(old);
        }
        String[] lines = buf.toString("UTF-8").split("\n");
        assertTrue(lines[0].matches(".*: median [0-9.]+ ms, min [0-9.]+ ms over 3 runs .*, 1 thread, fast path"), lines[0]);
        assertTrue(lines[1].startsWith("per layer (mean over 3 runs, fast path)"), lines[1]);
        assertTrue(buf.toString("UTF-8").contains("conv_i32_"), buf.toString("UTF-8"));
    }

    @Test
    void referencePathByProperty() throws IOException {
        String old = System.getProperty("seprt.path");
        try {
            System.setProperty("seprt.path", "reference");
            assertEquals(SeprtModel.Path.REFERENCE, SeprtModel.load(Golden.get().models.get("demo").file).path());
            System.setProperty("seprt.path", "fast");
            assertEquals(SeprtModel.Path.FAST, SeprtModel.load(Golden.get().models.get("demo").file).path());
        } finally {
            if (old == null) {
                System.clearProperty("seprt.path");
            } else {
                System.setProperty("seprt.path", old);
            }
        }
    }

    /** conv_i32_nhwc's blocks: the divisor of the groups with the least row work, ties to fewer. */
    @Test
    void nhwcBlocksJoinGroupsByRowWork() {
        assertEquals(1, ConvI32Nhwc.blocksFor(1, 160, 80));     // not grouped
        assertEquals(4, ConvI32Nhwc.blocksFor(4, 80, 40));      // sepnet-cifar 8x8 slice2: 60 < 80 (2) < 120 (1)
        assertEquals(4, ConvI32Nhwc.blocksFor(4, 80, 80));      // slice1: 80 < 120 < 220
        assertEquals(2, ConvI32Nhwc.blocksFor(8, 32, 16));      // Cg 4, Kg 2: 16 for 2, 4 and 8 blocks, 24 for 1
        assertEquals(120, ConvI32Nhwc.blocksFor(960, 960, 960)); // depthwise: 8 channels a block, not 960x960
    }
}
