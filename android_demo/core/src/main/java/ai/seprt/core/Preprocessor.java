package ai.seprt.core;

/**
 * Image pixels -> model input, as the model's metadata says (seprt/image.py):
 * ARGB -> RGB (transparent pixels composited over white), resize ("stretch" to H x W, or
 * "center_crop": shorter side to round(max(H, W) / crop_fraction), central H x W crop),
 * then (p / 255 - mean) / std in float32, channel order applied.
 *
 * <p>The resize is Pillow's BILINEAR resampling for 8-bit images (a triangle filter widened
 * by the scale when shrinking, fixed-point coefficients with 22 fractional bits, horizontal
 * pass then vertical pass), so that the same RGB pixels give the same input tensor as the
 * Python runtime.
 */
final class Preprocessor {
    private static final int PRECISION_BITS = 32 - 8 - 2;

    final int height;
    final int width;
    private final boolean centerCrop;
    private final double cropFraction;
    private final float[] mean;
    private final float[] std;
    private final boolean bgr;

    Preprocessor(Metadata m) throws SeprtFormatException {
        long[] size = m.u32s("preprocess.size");
        height = (int) size[0];
        width = (int) size[1];
        centerCrop = m.string("preprocess.resize", null).equals("center_crop");
        cropFraction = m.f32("preprocess.crop_fraction", 0.875f);
        mean = m.f32s("preprocess.mean");
        std = m.f32s("preprocess.std");
        bgr = m.string("preprocess.channel_order", "RGB").equals("BGR");
    }

    /** argb (h, w) row-major 0xAARRGGBB pixels -> model input (H, W, 3) float32. */
    float[] apply(int[] argb, int w, int h) {
        if (w < 1 || h < 1 || argb.length < (long) w * h) {
            throw new IllegalArgumentException("image of " + w + "x" + h + " pixels needs " + ((long) w * h)
                    + " ARGB values, got " + argb.length);
        }
        int[] rgb = toRgb(argb, w * h);
        if (centerCrop) {
            double scale = Math.max(height, width) / cropFraction / Math.min(w, h);
            int rw = (int) Math.max(width, Math.rint(w * scale));
            int rh = (int) Math.max(height, Math.rint(h * scale));
            rgb = resize(rgb, w, h, rw, rh);
            rgb = crop(rgb, rw, (rw - width) / 2, (rh - height) / 2, width, height);
        } else {
            rgb = resize(rgb, w, h, width, height);
        }
        return normalize(rgb);
    }

    /** (P,) ARGB -> (P, 3) RGB 0..255; alpha < 255 is composited over white. */
    private static int[] toRgb(int[] argb, int pixels) {
        int[] rgb = new int[pixels * 3];
        for (int p = 0; p < pixels; p++) {
            int v = argb[p];
            int a = v >>> 24;
            for (int ch = 0; ch < 3; ch++) {
                int c = (v >>> (16 - 8 * ch)) & 0xFF;
                rgb[p * 3 + ch] = a == 255 ? c : (c * a + 255 * (255 - a) + 127) / 255;
            }
        }
        return rgb;
    }

    /** (H, W, 3) 0..255 -> float32 (p / 255 - mean) / std, channels reversed for BGR models. */
    private float[] normalize(int[] rgb) {
        float[] x = new float[rgb.length];
        for (int p = 0; p < rgb.length / 3; p++) {
            for (int ch = 0; ch < 3; ch++) {
                float v = rgb[p * 3 + (bgr ? 2 - ch : ch)] / 255f;
                x[p * 3 + ch] = (v - mean[ch]) / std[ch];
            }
        }
        return x;
    }

    private static int[] crop(int[] rgb, int w, int left, int top, int cw, int ch) {
        int[] out = new int[cw * ch * 3];
        for (int y = 0; y < ch; y++) {
            System.arraycopy(rgb, ((top + y) * w + left) * 3, out, y * cw * 3, cw * 3);
        }
        return out;
    }

    /** (h, w, 3) -> (dh, dw, 3), Pillow BILINEAR: horizontal pass, then vertical pass. */
    static int[] resize(int[] rgb, int w, int h, int dw, int dh) {
        if (dw != w) {
            rgb = resample(rgb, w, h, dw, true);
        }
        if (dh != h) {
            rgb = resample(rgb, dw, h, dh, false);
        }
        return rgb;
    }

    /**
     * One resampling pass along x (horizontal) or y: (h, w, 3) -> (h, out, 3) or (out, w, 3).
     * Output sample i reads inputs bounds[2i] .. bounds[2i] + bounds[2i+1] - 1 with weights
     * coeff[i*ksize ..].
     */
    private static int[] resample(int[] rgb, int w, int h, int out, boolean horizontal) {
        int in = horizontal ? w : h;
        int[] bounds = new int[2 * out];
        int ksize = coefficientsPerSample(in, out);
        int[] coeff = coefficients(in, out, ksize, bounds);
        int ow = horizontal ? out : w;
        int oh = horizontal ? h : out;
        int[] dst = new int[ow * oh * 3];
        for (int y = 0; y < oh; y++) {
            for (int x = 0; x < ow; x++) {
                int i = horizontal ? x : y;
                int min = bounds[2 * i];
                int n = bounds[2 * i + 1];
                for (int ch = 0; ch < 3; ch++) {
                    int ss = 1 << (PRECISION_BITS - 1);
                    for (int t = 0; t < n; t++) {
                        int src = horizontal ? (y * w + min + t) : ((min + t) * w + x);
                        ss += rgb[src * 3 + ch] * coeff[i * ksize + t];
                    }
                    int v = ss >> PRECISION_BITS;
                    dst[(y * ow + x) * 3 + ch] = v < 0 ? 0 : v > 255 ? 255 : v;
                }
            }
        }
        return dst;
    }

    private static int coefficientsPerSample(int in, int out) {
        double filterScale = Math.max((double) in / out, 1.0);
        return (int) Math.ceil(filterScale) * 2 + 1;     // bilinear support 1.0, widened by the scale
    }

    /** Fixed-point triangle-filter weights of each output sample (Pillow's precompute_coeffs). */
    private static int[] coefficients(int in, int out, int ksize, int[] bounds) {
        double scale = (double) in / out;
        double filterScale = Math.max(scale, 1.0);
        double support = filterScale;
        double ss = 1.0 / filterScale;
        int[] coeff = new int[out * ksize];
        double[] k = new double[ksize];
        for (int i = 0; i < out; i++) {
            double center = (i + 0.5) * scale;
            int min = Math.max(0, (int) (center - support + 0.5));
            int n = Math.min(in, (int) (center + support + 0.5)) - min;
            double sum = 0;
            for (int t = 0; t < n; t++) {
                double d = Math.abs((t + min - center + 0.5) * ss);
                k[t] = d < 1.0 ? 1.0 - d : 0.0;
                sum += k[t];
            }
            for (int t = 0; t < n; t++) {
                double v = sum != 0.0 ? k[t] / sum : k[t];
                coeff[i * ksize + t] = (int) (v < 0 ? -0.5 + v * (1 << PRECISION_BITS) : 0.5 + v * (1 << PRECISION_BITS));
            }
            bounds[2 * i] = min;
            bounds[2 * i + 1] = n;
        }
        return coeff;
    }
}
