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
 * {@code java -jar seprt-core.jar --bench MODEL [RUNS] [--per-layer] [--path fast|reference] [--threads T]
 * [--warmup SECONDS]} times RUNS inferences (on 1 thread unless --threads) after a time-based
 * warm-up (3 s by default) and prints
 * the summary line first; --per-layer then adds each node's mean time in microseconds.
 * Errors print one line on stderr and exit with 1 (2 for bad usage).
 */
public final class Main {
    private static final String USAGE_BENCH = "java -jar seprt-core.jar --bench MODEL [RUNS] [--per-layer]"
            + " [--path fast|reference] [--threads T] [--warmup SECONDS]";

    private Main() {
    }

    public static void main(String[] args) {
        try {
            if (args.length >= 2 && args[0].equals("--bench")) {
                bench(Arrays.copyOfRange(args, 1, args.length));
            } else if (args.length >= 2 && !args[0].startsWith("-")) {
                predict(args[0], Arrays.copyOfRange(args, 1, args.length));
            } else {
                System.err.println("usage: java -jar seprt-core.jar MODEL IMAGE...\n"
                        + "       " + USAGE_BENCH);
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
            System.out.printf(Locale.ROOT, "%s (%dx%d): inference %.2f ms, %s path%n", path, w, h,
                    m.lastInferenceNanos() / 1e6, m.path().label());
            for (int i = 0; i < top.size(); i++) {
                System.out.printf(Locale.ROOT, "  %d. %-16s %.3f%n", i + 1, top.get(i).label, top.get(i).probability);
            }
        }
    }

    /** --bench MODEL [RUNS] [--per-layer] [--path fast|reference] [--warmup SECONDS] */
    private static void bench(String[] args) throws IOException {
        String modelPath = args[0];
        int runs = 50;
        boolean perLayer = false;
        int threads = 1;
        double warmupSeconds = 3.0;
        SeprtModel.Path path = SeprtModel.Path.fromProperty();
        for (int i = 1; i < args.length; i++) {
            if (args[i].equals("--per-layer")) {
                perLayer = true;
            } else if (args[i].equals("--path") && i + 1 < args.length) {
                String p = args[++i];
                if (!p.equals("fast") && !p.equals("reference")) {
                    throw new IllegalArgumentException("--path must be fast or reference, got " + p);
                }
                path = SeprtModel.Path.valueOf(p.toUpperCase(Locale.ROOT));
            } else if (args[i].equals("--threads") && i + 1 < args.length) {
                threads = Integer.parseInt(args[++i]);
            } else if (args[i].equals("--warmup") && i + 1 < args.length) {
                warmupSeconds = Double.parseDouble(args[++i]);
            } else if (i == 1 && !args[i].startsWith("-")) {
                runs = Integer.parseInt(args[i]);
            } else {
                throw new IllegalArgumentException("unknown bench option " + args[i] + "; " + USAGE_BENCH);
            }
        }
        if (runs < 1) {
            throw new IllegalArgumentException("RUNS must be >= 1, got " + runs);
        }
        SeprtModel m = SeprtModel.load(new File(modelPath), path, threads);
        float[] x = new float[m.inputSize()];
        java.util.Random rnd = new java.util.Random(0);
        for (int i = 0; i < x.length; i++) {
            x[i] = (float) rnd.nextGaussian();
        }
        // warm-up by time, so that the JIT has compiled the hot loops (C2) before timing starts
        int warmup = 0;
        long w0 = System.nanoTime();
        while (warmup < 5 || System.nanoTime() - w0 < warmupSeconds * 1e9) {
            m.logits(x);
            warmup++;
        }
        double warmupTook = (System.nanoTime() - w0) / 1e9;
        long[] t = new long[runs];
        for (int i = 0; i < runs; i++) {
            m.logits(x);
            t[i] = m.lastInferenceNanos();
        }
        Arrays.sort(t);
        Long bits = m.metadata().u32("act_bits");
        System.out.printf(Locale.ROOT, "%s: %s %s%s: median %.2f ms, min %.2f ms over %d runs (%d warm-up runs, %.1f s),"
                        + " %d thread%s, %s path%n", modelPath, m.arch(), m.variant(), bits == null ? "" : " act_bits " + bits,
                t[runs / 2] / 1e6, t[0] / 1e6, runs, warmup, warmupTook, m.threads(), m.threads() == 1 ? "" : "s",
                m.path().label());
        if (perLayer) {
            perLayer(m, x, runs);
        }
    }

    /** Mean time per node in microseconds over RUNS more runs, and the integer MAC rate of convs. */
    private static void perLayer(SeprtModel m, float[] x, int runs) {
        Runner r = m.runner();
        Graph g = m.graph();
        r.profile(true);
        for (int i = 0; i < runs; i++) {
            m.logits(x);
        }
        long[] ns = r.nodeNanos();
        r.profile(false);
        long total = 0;
        for (long v : ns) {
            total += v;
        }
        System.out.printf(Locale.ROOT, "per layer (mean over %d runs, %s path): %.1f us in all%n", runs, m.path().label(),
                total / 1e3 / runs);
        System.out.printf(Locale.ROOT, "  %-24s %-22s %10s %8s %9s%n", "node", "kernel", "us", "share", "GMAC/s");
        for (int i = 0; i < ns.length; i++) {
            Node n = g.nodes.get(i);
            double us = ns[i] / 1e3 / runs;
            String rate = "";
            if (n.convLike()) {
                ConvGeometry geo = new ConvGeometry(g, n);
                double macs = (double) geo.ho * geo.wo * geo.k * geo.taps();
                rate = String.format(Locale.ROOT, "%9.2f", macs / (us * 1e3));
            }
            System.out.printf(Locale.ROOT, "  %-24s %-22s %10.1f %7.1f%% %s%n", n.name, r.kernelName(i), us,
                    100.0 * ns[i] / Math.max(total, 1), rate);
        }
    }
}
