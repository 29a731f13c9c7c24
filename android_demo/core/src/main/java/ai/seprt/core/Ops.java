package ai.seprt.core;

/**
 * The ops without weights, on float32 NHWC values without the batch axis, with the
 * semantics (and float32 summation order) of seprt/reference.py.
 */
final class Ops {
    private Ops() {
    }

    /** a + b, elementwise. */
    static float[] add(float[] a, float[] b) {
        return add(a, b, new float[a.length]);
    }

    /** y = a + b, elementwise, into y (any of the three may be the same array). */
    static float[] add(float[] a, float[] b, float[] y) {
        for (int i = 0; i < a.length; i++) {
            y[i] = a[i] + b[i];
        }
        return y;
    }

    /** max(x, 0), elementwise. */
    static float[] relu(float[] x) {
        return relu(x, new float[x.length]);
    }

    /** y = max(x, 0), elementwise, into y (may be x). */
    static float[] relu(float[] x, float[] y) {
        for (int i = 0; i < x.length; i++) {
            y[i] = x[i] > 0f ? x[i] : 0f;
        }
        return y;
    }

    /** (H, W, C) -> (Ho, Wo, C): max over the window; padding never wins. */
    static float[] maxpool(float[] x, int h, int w, int c, int kernel, int stride, int pad, int ho, int wo) {
        return maxpool(x, h, w, c, kernel, stride, pad, ho, wo, new float[ho * wo * c]);
    }

    /** maxpool into y (Ho, Wo, C), every element overwritten. */
    static float[] maxpool(float[] x, int h, int w, int c, int kernel, int stride, int pad, int ho, int wo,
                           float[] y) {
        for (int oy = 0; oy < ho; oy++) {
            for (int ox = 0; ox < wo; ox++) {
                int yb = (oy * wo + ox) * c;
                java.util.Arrays.fill(y, yb, yb + c, Float.NEGATIVE_INFINITY);
                for (int ky = 0; ky < kernel; ky++) {
                    int iy = oy * stride - pad + ky;
                    for (int kx = 0; kx < kernel && iy >= 0 && iy < h; kx++) {
                        int ix = ox * stride - pad + kx;
                        if (ix < 0 || ix >= w) {
                            continue;
                        }
                        int xb = (iy * w + ix) * c;
                        for (int ch = 0; ch < c; ch++) {
                            y[yb + ch] = Math.max(y[yb + ch], x[xb + ch]);
                        }
                    }
                }
            }
        }
        return y;
    }

    /**
     * (H, W, C) -> (Ho, Wo, C): window sum (row-major taps) / count of non-padding taps, or with
     * countPad / the window clipped to the padded input (windows of ceil mode may run past both).
     */
    static float[] avgpool(float[] x, int h, int w, int c, int kernel, int stride, int pad, int ho, int wo,
                           boolean countPad) {
        return avgpool(x, h, w, c, kernel, stride, pad, ho, wo, countPad, new float[ho * wo * c]);
    }

    /** avgpool into y (Ho, Wo, C), every element overwritten. */
    static float[] avgpool(float[] x, int h, int w, int c, int kernel, int stride, int pad, int ho, int wo,
                           boolean countPad, float[] y) {
        java.util.Arrays.fill(y, 0, ho * wo * c, 0f);
        for (int oy = 0; oy < ho; oy++) {
            for (int ox = 0; ox < wo; ox++) {
                int yb = (oy * wo + ox) * c;
                int count = 0;
                for (int ky = 0; ky < kernel; ky++) {
                    int iy = oy * stride - pad + ky;
                    for (int kx = 0; kx < kernel && iy >= 0 && iy < h; kx++) {
                        int ix = ox * stride - pad + kx;
                        if (ix < 0 || ix >= w) {
                            continue;
                        }
                        count++;
                        int xb = (iy * w + ix) * c;
                        for (int ch = 0; ch < c; ch++) {
                            y[yb + ch] += x[xb + ch];
                        }
                    }
                }
                if (countPad) {
                    count = padSpan(oy, stride, pad, kernel, h) * padSpan(ox, stride, pad, kernel, w);
                }
                for (int ch = 0; ch < c; ch++) {
                    y[yb + ch] /= count;
                }
            }
        }
        return y;
    }

    /**
     * Global average pool (H, W, C) -> (C,), exactly as docs/format.md defines it: float32 sums
     * over the pixels in row-major order ({@code acc += x[y, x, :]}), then one float32 division by
     * H*W (as numpy's {@code acc / np.float32(H*W)}: the int converts to the nearest float).
     */
    static float[] gap(float[] x, int pixels, int c) {
        return gap(x, pixels, c, new float[c]);
    }

    /** gap into y (C,), every element overwritten. */
    static float[] gap(float[] x, int pixels, int c, float[] y) {
        java.util.Arrays.fill(y, 0, c, 0f);
        for (int p = 0; p < pixels; p++) {
            for (int ch = 0; ch < c; ch++) {
                y[ch] += x[p * c + ch];
            }
        }
        for (int ch = 0; ch < c; ch++) {
            y[ch] = y[ch] / (float) pixels;
        }
        return y;
    }

    /** Channel concatenation: inputs (P, C_i) side by side, in input order, into (P, cout). */
    static float[] concat(float[][] xs, int[] channels, int pixels, int cout) {
        float[] y = new float[pixels * cout];
        int c0 = 0;
        for (int i = 0; i < xs.length; i++) {
            int c = channels[i];
            for (int p = 0; p < pixels; p++) {
                System.arraycopy(xs[i], p * c, y, p * cout + c0, c);
            }
            c0 += c;
        }
        return y;
    }

    /** ResNet option A: (H, W, C) -> (ceil(H/s), ceil(W/s), Cout), x[::s, ::s], zero channels both sides. */
    static float[] shortcutA(float[] x, int h, int w, int c, int stride, int cout) {
        int ho = (h + stride - 1) / stride;
        int wo = (w + stride - 1) / stride;
        return shortcutA(x, h, w, c, stride, cout, new float[ho * wo * cout]);
    }

    /** shortcutA into y (Ho, Wo, Cout), every element overwritten. */
    static float[] shortcutA(float[] x, int h, int w, int c, int stride, int cout, float[] y) {
        int ho = (h + stride - 1) / stride;
        int wo = (w + stride - 1) / stride;
        int before = (cout - c) / 2;
        java.util.Arrays.fill(y, 0, ho * wo * cout, 0f);
        for (int oy = 0; oy < ho; oy++) {
            for (int ox = 0; ox < wo; ox++) {
                System.arraycopy(x, (oy * stride * w + ox * stride) * c, y, (oy * wo + ox) * cout + before, c);
            }
        }
        return y;
    }

    /** Softmax of logits in double precision, computed stably. */
    static double[] softmax(float[] z) {
        double max = Double.NEGATIVE_INFINITY;
        for (float v : z) {
            max = Math.max(max, v);
        }
        double[] p = new double[z.length];
        double sum = 0;
        for (int i = 0; i < z.length; i++) {
            p[i] = Math.exp(z[i] - max);
            sum += p[i];
        }
        for (int i = 0; i < z.length; i++) {
            p[i] /= sum;
        }
        return p;
    }

    /**
     * count_include_pad's window length along one axis: the window [o*s - p, o*s - p + k)
     * clipped to the padded input [-p, size + p) (it starts inside it).
     */
    static int padSpan(int o, int stride, int pad, int kernel, int size) {
        int x0 = o * stride - pad;
        return Math.min(x0 + kernel, size + pad) - x0;
    }

    // ------------------------------------------------------------ act, mul, affine, shuffle, slice

    static final int ACT_RELU6 = 1;
    static final int ACT_LEAKY = 2;
    static final int ACT_SILU = 3;
    static final int ACT_HARDSWISH = 4;
    static final int ACT_SIGMOID = 5;
    static final int ACT_HARDSIGMOID = 6;

    /** numpy's maximum(a, b): a when a &gt;= b or a is NaN (so maximum(-0, 0) is -0). */
    static float npMax(float a, float b) {
        return a >= b || a != a ? a : b;
    }

    /** numpy's minimum(a, b): a when a &lt;= b or a is NaN. */
    static float npMin(float a, float b) {
        return a <= b || a != a ? a : b;
    }

    /**
     * act (op 10), elementwise into y (may be x), each step one float32 operation in the order of
     * seprt/ops/op_act.py. silu and sigmoid use exp (double exp rounded to float32: within an ulp
     * or so of numpy's float32 exp, not bit-identical).
     */
    static float[] act(float[] x, int kind, float slope, float[] y) {
        switch (kind) {
            case ACT_RELU6:
                for (int i = 0; i < x.length; i++) {
                    y[i] = npMin(npMax(x[i], 0f), 6f);
                }
                break;
            case ACT_LEAKY:
                for (int i = 0; i < x.length; i++) {
                    y[i] = x[i] > 0f ? x[i] : x[i] * slope;
                }
                break;
            case ACT_SILU:
                for (int i = 0; i < x.length; i++) {
                    y[i] = x[i] / (1f + (float) Math.exp(-x[i]));
                }
                break;
            case ACT_HARDSWISH:
                for (int i = 0; i < x.length; i++) {
                    float r = npMin(npMax(x[i] + 3f, 0f), 6f);
                    y[i] = x[i] * r / 6f;
                }
                break;
            case ACT_SIGMOID:
                for (int i = 0; i < x.length; i++) {
                    y[i] = 1f / (1f + (float) Math.exp(-x[i]));
                }
                break;
            case ACT_HARDSIGMOID:
                for (int i = 0; i < x.length; i++) {
                    y[i] = npMin(npMax(x[i] + 3f, 0f), 6f) / 6f;
                }
                break;
            default:
                throw new IllegalArgumentException("act kind " + kind);
        }
        return y;
    }

    /** mul (op 11): x (H, W, C) * s (C,) into y. */
    static float[] mul(float[] x, float[] s, int c, float[] y) {
        for (int i = 0; i < x.length; i += c) {
            for (int ch = 0; ch < c; ch++) {
                y[i + ch] = x[i + ch] * s[ch];
            }
        }
        return y;
    }

    /** affine (op 12): y = x * w[c] + b[c] (a multiplication, then an addition) on (H, W, C) or (C,). */
    static float[] affine(float[] x, float[] w, float[] b, float[] y) {
        int c = w.length;
        for (int i = 0; i < x.length; i += c) {
            for (int ch = 0; ch < c; ch++) {
                y[i + ch] = x[i + ch] * w[ch] + b[ch];
            }
        }
        return y;
    }

    /** shuffle (op 13): y[p, i*G + g] = x[p, g*(C/G) + i]. */
    static float[] shuffle(float[] x, int pixels, int c, int groups) {
        float[] y = new float[x.length];
        int per = c / groups;
        for (int p = 0; p < pixels; p++) {
            int b = p * c;
            for (int g = 0; g < groups; g++) {
                for (int i = 0; i < per; i++) {
                    y[b + i * groups + g] = x[b + g * per + i];
                }
            }
        }
        return y;
    }

    /** slice (op 15): channels start..start+k-1 of (pixels, C) -> (pixels, k). */
    static float[] slice(float[] x, int pixels, int c, int start, int k) {
        float[] y = new float[pixels * k];
        for (int p = 0; p < pixels; p++) {
            System.arraycopy(x, p * c + start, y, p * k, k);
        }
        return y;
    }
}
