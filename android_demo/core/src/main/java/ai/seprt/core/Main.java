package ai.seprt.core;

import java.awt.image.BufferedImage;
import java.io.File;
import java.io.IOException;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import javax.imageio.ImageIO;

/**
 * Command line: {@code java -jar seprt-core.jar MODEL IMAGE...} prints, per image, what the
 * app shows: the top-5 classes with probabilities and the inference latency.
 * {@code java -jar seprt-core.jar --bench MODEL [RUNS]} times RUNS inferences (after warm-up).
 * Errors print one line on stderr and exit with 1 (2 for bad usage).
 */
public final class Main {
    private Main() {
    }

    public static void main(String[] args) {
        try {
            if (args.length >= 2 && args[0].equals("--bench")) {
                bench(args[1], args.length > 2 ? Integer.parseInt(args[2]) : 50);
            } else if (args.length >= 2 && !args[0].startsWith("-")) {
                predict(args[0], Arrays.copyOfRange(args, 1, args.length));
            } else {
                System.err.println("usage: java -jar seprt-core.jar MODEL IMAGE...\n"
                        + "       java -jar seprt-core.jar --bench MODEL [RUNS]");
                System.exit(2);
            }
        } catch (IOException | IllegalArgumentException e) {
            System.err.println("error: " + e.getMessage());
            System.exit(1);
        }
    }

    private static void predict(String modelPath, String[] images) throws IOException {
        SeprtModel m = SeprtModel.load(new File(modelPath));
        String source = m.metadata().string("provenance.source", "");
        System.out.printf(Locale.ROOT, "%s: %s %s, %,d bytes, input %dx%d%n", modelPath, m.arch(), m.variant(),
                m.fileBytes(), m.inputWidth(), m.inputHeight());
        if (source.contains("not trained")) {
            System.out.println("NOTE: this model has " + source + ": the predictions are meaningless.");
        }
        for (String path : images) {
            BufferedImage img = ImageIO.read(new File(path));
            if (img == null) {
                throw new IOException(path + ": not an image this JVM can decode");
            }
            int w = img.getWidth();
            int h = img.getHeight();
            float[] x = m.preprocess(img.getRGB(0, 0, w, h, null, 0, w), w, h);
            List<Prediction> top = m.predict(x, 5);
            System.out.printf(Locale.ROOT, "%s (%dx%d): inference %.2f ms%n", path, w, h,
                    m.lastInferenceNanos() / 1e6);
            for (int i = 0; i < top.size(); i++) {
                System.out.printf(Locale.ROOT, "  %d. %-16s %.3f%n", i + 1, top.get(i).label, top.get(i).probability);
            }
        }
    }

    private static void bench(String modelPath, int runs) throws IOException {
        if (runs < 1) {
            throw new IllegalArgumentException("RUNS must be >= 1, got " + runs);
        }
        SeprtModel m = SeprtModel.load(new File(modelPath));
        float[] x = new float[m.inputSize()];
        java.util.Random rnd = new java.util.Random(0);
        for (int i = 0; i < x.length; i++) {
            x[i] = (float) rnd.nextGaussian();
        }
        int warmup = Math.max(5, runs / 5);
        for (int i = 0; i < warmup; i++) {
            m.logits(x);
        }
        long[] t = new long[runs];
        for (int i = 0; i < runs; i++) {
            m.logits(x);
            t[i] = m.lastInferenceNanos();
        }
        Arrays.sort(t);
        Long bits = m.metadata().u32("act_bits");
        System.out.printf(Locale.ROOT, "%s: %s %s%s: median %.2f ms, min %.2f ms over %d runs (%d warm-up), 1 thread%n",
                modelPath, m.arch(), m.variant(), bits == null ? "" : " act_bits " + bits, t[runs / 2] / 1e6, t[0] / 1e6,
                runs, warmup);
    }
}
