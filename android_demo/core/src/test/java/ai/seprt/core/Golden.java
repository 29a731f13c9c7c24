package ai.seprt.core;

import java.io.File;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * testdata/golden.txt (written by android_demo/make_golden.py) and the files it names.
 * Locations: system properties seprt.testdata (default android_demo/testdata) and
 * seprt.testmodels (default android_demo/build/testmodels, filled by make_golden.py --models).
 */
final class Golden {
    static final File TESTDATA = new File(System.getProperty("seprt.testdata", "android_demo/testdata"));
    static final File MODELS = new File(System.getProperty("seprt.testmodels", "android_demo/build/testmodels"));

    /** model NAME SOURCE SHA256 */
    static final class ModelRef {
        final String name;
        final File file;
        final String sha256;

        ModelRef(String name, File file, String sha256) {
            this.name = name;
            this.file = file;
            this.sha256 = sha256;
        }
    }

    /** expect MODEL INPUT TOP5 LOGITS... */
    static final class Expect {
        final String model;
        final String input;
        final int[] top5;
        final float[] logits;

        Expect(String model, String input, int[] top5, float[] logits) {
            this.model = model;
            this.input = input;
            this.top5 = top5;
            this.logits = logits;
        }
    }

    final Map<String, ModelRef> models = new LinkedHashMap<>();
    final Map<String, String[]> inputs = new LinkedHashMap<>();
    final List<Expect> expects = new ArrayList<>();
    final List<String[]> preprocessCases = new ArrayList<>();

    private static Golden instance;

    static synchronized Golden get() throws IOException {
        if (instance == null) {
            instance = new Golden();
        }
        return instance;
    }

    private Golden() throws IOException {
        for (String line : Files.readAllLines(new File(TESTDATA, "golden.txt").toPath())) {
            if (line.isEmpty() || line.startsWith("#")) {
                continue;
            }
            String[] f = line.split(" ");
            switch (f[0]) {
                case "model": {
                    String src = f[2];
                    File file = src.startsWith("testdata:") ? new File(TESTDATA, src.substring(9))
                            : new File(MODELS, src.substring("generated:".length()));
                    models.put(f[1], new ModelRef(f[1], file, f[3]));
                    break;
                }
                case "input":
                    inputs.put(f[1], f);
                    break;
                case "expect": {
                    String[] t = f[3].split(",");
                    int[] top5 = new int[t.length];
                    for (int i = 0; i < t.length; i++) {
                        top5[i] = Integer.parseInt(t[i]);
                    }
                    float[] logits = new float[f.length - 4];
                    for (int i = 0; i < logits.length; i++) {
                        logits[i] = Float.parseFloat(f[4 + i]);
                    }
                    expects.add(new Expect(f[1], f[2], top5, logits));
                    break;
                }
                case "preprocess":
                    preprocessCases.add(f);
                    break;
                default:
                    throw new IOException("golden.txt: unknown record " + f[0]);
            }
        }
    }

    static byte[] read(String relative) throws IOException {
        return Files.readAllBytes(new File(TESTDATA, relative).toPath());
    }

    static float[] readF32(String relative) throws IOException {
        ByteBuffer b = ByteBuffer.wrap(read(relative)).order(ByteOrder.LITTLE_ENDIAN);
        float[] out = new float[b.remaining() / 4];
        b.asFloatBuffer().get(out);
        return out;
    }

    /** Raw (H, W, 3) RGB bytes -> opaque ARGB pixels, as Bitmap.getPixels / BufferedImage.getRGB give them. */
    static int[] rgbToArgb(byte[] rgb) {
        int[] argb = new int[rgb.length / 3];
        for (int p = 0; p < argb.length; p++) {
            argb[p] = 0xFF000000 | (rgb[3 * p] & 0xFF) << 16 | (rgb[3 * p + 1] & 0xFF) << 8 | (rgb[3 * p + 2] & 0xFF);
        }
        return argb;
    }

    /** The input tensor named by an input record, preprocessed by the model when it is raw pixels. */
    float[] input(String name, SeprtModel m) throws IOException {
        String[] f = inputs.get(name);
        if (f == null) {
            throw new IOException("golden.txt: no input " + name);
        }
        if (f[2].startsWith("f32:")) {
            return readF32(f[2].substring(4));
        }
        int w = Integer.parseInt(f[3]);
        int h = Integer.parseInt(f[4]);
        return m.preprocess(rgbToArgb(read(f[2].substring(4))), w, h);
    }

    static String sha256(File f) throws IOException {
        try {
            byte[] d = MessageDigest.getInstance("SHA-256").digest(Files.readAllBytes(f.toPath()));
            StringBuilder sb = new StringBuilder();
            for (byte b : d) {
                sb.append(String.format("%02x", b & 0xFF));
            }
            return sb.toString();
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }
}
