package ai.seprt.core;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.TreeMap;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.TestFactory;

/**
 * Java logits and top-5 against the Python reference engine (testdata/golden.txt) on the
 * same input tensors: top-5 must be identical, logits within max|d| / max|logit| &lt;= 1e-4, and
 * models without float conv/fc (BQ: integer paths only) bit-identical.
 */
class ParityTest {
    static final double TOLERANCE = 1e-4;
    /** Integer models with silu or sigmoid (act kinds 3, 5): exp is not bit-identical across platforms. */
    static final double EXP_TOLERANCE = 1e-5;

    static boolean usesExp(Graph g) {
        for (Node n : g.nodes) {
            if (n.op == OpDef.ACT && (n.i32("kind") == Ops.ACT_SILU || n.i32("kind") == Ops.ACT_SIGMOID)) {
                return true;
            }
        }
        return false;
    }
    private static final Map<String, SeprtModel> loaded = new HashMap<>();
    private static final Map<String, double[]> worst = new TreeMap<>();   // model -> {max rel err, cases}

    static synchronized SeprtModel model(String name) throws IOException {
        SeprtModel m = loaded.get(name);
        if (m == null) {
            m = SeprtModel.load(Golden.get().models.get(name).file);
            loaded.put(name, m);
        }
        return m;
    }

    @TestFactory
    List<DynamicTest> modelsAreTheGoldenOnes() throws IOException {
        List<DynamicTest> tests = new ArrayList<>();
        for (Golden.ModelRef ref : Golden.get().models.values()) {
            tests.add(DynamicTest.dynamicTest("model " + ref.name, () -> {
                assertTrue(ref.file.isFile(), ref.file + " is missing: run python android_demo/make_golden.py --models "
                        + Golden.MODELS);
                assertEquals(ref.sha256, Golden.sha256(ref.file), ref.file + " differs from the model the golden data "
                        + "was made from: rerun python android_demo/make_golden.py");
            }));
        }
        return tests;
    }

    @TestFactory
    List<DynamicTest> logitsAndTop5MatchPython() throws IOException {
        List<DynamicTest> tests = new ArrayList<>();
        for (Golden.Expect e : Golden.get().expects) {
            tests.add(DynamicTest.dynamicTest(e.model + " on " + e.input, () -> {
                SeprtModel m = model(e.model);
                float[] logits = m.logits(Golden.get().input(e.input, m));
                assertEquals(e.logits.length, logits.length);
                double maxAbs = 0;
                double maxDiff = 0;
                for (int i = 0; i < logits.length; i++) {
                    maxAbs = Math.max(maxAbs, Math.abs(e.logits[i]));
                    maxDiff = Math.max(maxDiff, Math.abs(logits[i] - e.logits[i]));
                }
                double rel = maxDiff / Math.max(maxAbs, 1e-30);
                record(e.model, rel);
                int[] top5 = m.topK(logits, 5).stream().mapToInt(p -> p.index).toArray();
                assertArrayEquals(e.top5, top5, "top-5 class indices");
                assertTrue(rel <= TOLERANCE, String.format(Locale.ROOT, "max|d|/max|logit| = %.3g > %.0e", rel, TOLERANCE));
                if (m.variant().equals("BQ") && !e.model.equals("tiny-mixed")) {
                    if (usesExp(m.graph())) {       // silu/sigmoid: float32 exp differs across platforms
                        assertTrue(rel <= EXP_TOLERANCE, String.format(Locale.ROOT,
                                "integer model with silu/sigmoid: max|d|/max|logit| = %.3g > %.0e", rel, EXP_TOLERANCE));
                    } else {
                        assertArrayEquals(e.logits, logits, 0f, "integer-path model: logits must be bit-identical");
                    }
                }
            }));
        }
        return tests;
    }

    private static synchronized void record(String model, double rel) {
        double[] w = worst.computeIfAbsent(model, k -> new double[2]);
        w[0] = Math.max(w[0], rel);
        w[1]++;
    }

    @AfterAll
    static void report() {
        System.out.println("parity: max|d|/max|logit| per model (cases)");
        worst.forEach((k, v) -> System.out.printf(Locale.ROOT, "  %-22s %.3g (%d)%n", k, v[0], (int) v[1]));
    }
}
