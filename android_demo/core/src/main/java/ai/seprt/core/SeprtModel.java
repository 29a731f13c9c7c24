package ai.seprt.core;

import java.io.File;
import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.Comparator;
import java.util.List;

/**
 * A loaded seprt model (docs/format.md v1 or v2): validate the file, preprocess image pixels as its
 * metadata says, compute logits and top-k predictions.
 *
 * <pre>
 *   SeprtModel m = SeprtModel.load(new File("demo.bin"));
 *   float[] x = m.preprocess(argbPixels, width, height);      // (H, W, 3) float32, NHWC
 *   List&lt;Prediction&gt; top5 = m.predict(x, 5);
 *   long nanos = m.lastInferenceNanos();
 * </pre>
 *
 * Inference is synchronized: one image at a time per model object.
 *
 * <p>Two execution paths give the same logits (bit-identical on integer models): {@link Path#FAST}
 * (the default) and {@link Path#REFERENCE}, the plain code the fast path is tested against. The
 * system property {@code seprt.path=reference} changes the default.
 */
public final class SeprtModel {
    /** Which kernels run: the fast ones, or the scalar references. */
    public enum Path {
        FAST, REFERENCE;

        /** The path named by the system property seprt.path ("fast" or "reference"; default fast). */
        public static Path fromProperty() {
            String p = System.getProperty("seprt.path", "fast");
            if (p.equalsIgnoreCase("fast")) {
                return FAST;
            }
            if (p.equalsIgnoreCase("reference")) {
                return REFERENCE;
            }
            throw new IllegalArgumentException("seprt.path must be fast or reference, got " + p);
        }

        /** "fast" or "reference". */
        public String label() {
            return name().toLowerCase(java.util.Locale.ROOT);
        }
    }

    private final Graph graph;
    private final Path path;
    private final int threads;
    private final Runner executor;
    private final Preprocessor preprocessor;
    private final List<String> labels;
    private final long fileBytes;
    private long lastNanos = -1;

    private SeprtModel(Graph graph, long fileBytes, Path path, int threads) throws SeprtFormatException {
        this.graph = graph;
        this.path = path;
        this.threads = path == Path.FAST ? threads : 1;
        this.fileBytes = fileBytes;
        this.labels = Collections.unmodifiableList(new ArrayList<>(graph.meta.strings("labels")));
        this.preprocessor = new Preprocessor(graph.meta);
        this.executor = path == Path.FAST ? new FastExecutor(graph, threads) : new Executor(graph);
    }

    /** Reads and validates a model file; runs it on the default path ({@link Path#fromProperty}). */
    public static SeprtModel load(File file) throws IOException {
        return load(file, Path.fromProperty());
    }

    /** Reads and validates a model file, to run on the given path. */
    public static SeprtModel load(File file, Path path) throws IOException {
        return load(file, path, 1);
    }

    /**
     * Reads and validates a model file, to run on the given path; the fast path runs each conv
     * on {@code threads} threads (same logits for any count; the reference path runs on one).
     */
    public static SeprtModel load(File file, Path path, int threads) throws IOException {
        try (RandomAccessFile f = new RandomAccessFile(file, "r"); FileChannel ch = f.getChannel()) {
            if (ch.size() > Integer.MAX_VALUE) {
                throw new SeprtFormatException(file + ": " + ch.size() + " bytes is too large for a model file");
            }
            ByteBuffer buf = ByteBuffer.allocate((int) ch.size());
            while (buf.hasRemaining() && ch.read(buf) >= 0) {
                // read the whole file
            }
            buf.flip();
            return load(buf, path, threads);
        } catch (SeprtFormatException e) {
            throw new SeprtFormatException(file + ": " + e.getMessage());
        }
    }

    /** Validates a model held in memory. */
    public static SeprtModel load(byte[] bytes) throws SeprtFormatException {
        return load(ByteBuffer.wrap(bytes), Path.fromProperty());
    }

    /** Validates a model held in memory, to run on the given path. */
    public static SeprtModel load(byte[] bytes, Path path) throws SeprtFormatException {
        return load(ByteBuffer.wrap(bytes), path);
    }

    /** Validates a model from buf's position to its limit (the buffer is not modified). */
    public static SeprtModel load(ByteBuffer buf) throws SeprtFormatException {
        return load(buf, Path.fromProperty());
    }

    /** Validates a model from buf's position to its limit, to run on the given path. */
    public static SeprtModel load(ByteBuffer buf, Path path) throws SeprtFormatException {
        return load(buf, path, 1);
    }

    /** Validates a model from buf's position to its limit, to run on the given path and threads. */
    public static SeprtModel load(ByteBuffer buf, Path path, int threads) throws SeprtFormatException {
        if (threads < 1) {
            throw new IllegalArgumentException("threads must be >= 1, got " + threads);
        }
        return new SeprtModel(ModelReader.read(buf), buf.remaining(), path, threads);
    }

    /** The execution path this model runs on. */
    public Path path() {
        return path;
    }

    /** Threads per inference (1 unless loaded with more on the fast path). */
    public int threads() {
        return threads;
    }

    // ------------------------------------------------------------ description

    public Metadata metadata() {
        return graph.meta;
    }

    public String arch() throws SeprtFormatException {
        return graph.meta.string("arch", "");
    }

    public String variant() throws SeprtFormatException {
        return graph.meta.string("variant", "");
    }

    public List<String> labels() {
        return labels;
    }

    public int inputHeight() {
        return preprocessor.height;
    }

    public int inputWidth() {
        return preprocessor.width;
    }

    /** Input elements: H * W * 3. */
    public int inputSize() {
        return graph.value(graph.input).size();
    }

    public long fileBytes() {
        return fileBytes;
    }

    // ------------------------------------------------------------ inference

    /** argb (height, width) row-major 0xAARRGGBB pixels (e.g. Bitmap.getPixels) -> input (H, W, 3). */
    public float[] preprocess(int[] argbPixels, int width, int height) {
        return preprocessor.apply(argbPixels, width, height);
    }

    /** Preprocessed input (H, W, 3) float32, NHWC without batch -> logits (K,). */
    public synchronized float[] logits(float[] nhwcInput) {
        checkInput(nhwcInput);
        long t0 = System.nanoTime();
        float[] out = executor.run(nhwcInput, graph.output);
        lastNanos = System.nanoTime() - t0;
        return out;
    }

    /** Preprocessed input -> pooled features (D,) that feed the classifier. */
    public synchronized float[] embed(float[] nhwcInput) {
        checkInput(nhwcInput);
        return executor.run(nhwcInput, graph.embed);
    }

    /** Preprocessed input -> the k most probable classes (softmax of the logits), best first. */
    public List<Prediction> predict(float[] nhwcInput, int k) {
        return topK(logits(nhwcInput), k);
    }

    /** Top-k of logits: softmax probabilities in double, sorted descending, ties by class index. */
    public List<Prediction> topK(float[] logits, int k) {
        if (k < 1) {
            throw new IllegalArgumentException("k must be >= 1, got " + k);
        }
        final double[] p = Ops.softmax(logits);
        Integer[] order = new Integer[p.length];
        for (int i = 0; i < order.length; i++) {
            order[i] = i;
        }
        Arrays.sort(order, new Comparator<Integer>() {     // no lambdas: dx targets API 23
            @Override
            public int compare(Integer a, Integer b) {
                return p[a] != p[b] ? Double.compare(p[b], p[a]) : Integer.compare(a, b);
            }
        });
        List<Prediction> out = new ArrayList<>();
        for (int i = 0; i < Math.min(k, p.length); i++) {
            out.add(new Prediction(order[i], labels.get(order[i]), p[order[i]]));
        }
        return out;
    }

    /** Wall time of the last {@link #logits} call in nanoseconds (-1 before the first). */
    public synchronized long lastInferenceNanos() {
        return lastNanos;
    }

    // ------------------------------------------------------------ profiling (package: Main, tests)

    Graph graph() {
        return graph;
    }

    Runner runner() {
        return executor;
    }

    private void checkInput(float[] x) {
        int[] s = graph.value(graph.input).shape;
        if (x == null || x.length != inputSize()) {
            throw new IllegalArgumentException("input must be (" + s[0] + ", " + s[1] + ", 3) float32 = "
                    + inputSize() + " values, got " + (x == null ? "null" : x.length + " values")
                    + "; use preprocess() to make one");
        }
        for (float v : x) {
            if (!GraphValidator.finite(v)) {
                throw new IllegalArgumentException("input contains NaN or Inf");
            }
        }
    }
}
