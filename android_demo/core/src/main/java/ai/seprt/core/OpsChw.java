package ai.seprt.core;

/**
 * The fast path's ops without weights on (C, H, W) planar float32 values, each writing into a
 * given buffer. Per channel they use the float32 order of {@link Ops} (the reference, NHWC), so
 * the results are the same floats: pools and gap sum the taps and pixels in the same raster order.
 */
final class OpsChw {
    private OpsChw() {
    }

    /** x (H, W, C) -> y (C, H, W). */
    static void fromHwc(float[] x, int h, int w, int c, float[] y) {
        int hw = h * w;
        for (int p = 0; p < hw; p++) {
            for (int ch = 0; ch < c; ch++) {
                y[ch * hw + p] = x[p * c + ch];
            }
        }
    }

    /** x (C, H, W) -> y (H, W, C). */
    static void toHwc(float[] x, int h, int w, int c, float[] y) {
        int hw = h * w;
        for (int p = 0; p < hw; p++) {
            for (int ch = 0; ch < c; ch++) {
                y[p * c + ch] = x[ch * hw + p];
            }
        }
    }

    /** (C, H, W) -> (C, Ho, Wo): max over the window; padding never wins. */
    static void maxpool(float[] x, int h, int w, int c, int kernel, int stride, int pad, int ho, int wo, float[] y) {
        for (int ch = 0; ch < c; ch++) {
            int xc = ch * h * w;
            int yc = ch * ho * wo;
            for (int oy = 0; oy < ho; oy++) {
                int y0 = oy * stride - pad;
                int ky0 = Math.max(0, -y0);
                int ky1 = Math.min(kernel, h - y0);
                for (int ox = 0; ox < wo; ox++) {
                    int x0 = ox * stride - pad;
                    int kx0 = Math.max(0, -x0);
                    int kx1 = Math.min(kernel, w - x0);
                    float m = Float.NEGATIVE_INFINITY;
                    for (int ky = ky0; ky < ky1; ky++) {
                        int row = xc + (y0 + ky) * w + x0;
                        for (int kx = kx0; kx < kx1; kx++) {
                            m = Math.max(m, x[row + kx]);
                        }
                    }
                    y[yc + oy * wo + ox] = m;
                }
            }
        }
    }

    /** (C, H, W) -> (C, Ho, Wo): window sum (row-major taps, from 0) / count of non-padding taps. */
    static void avgpool(float[] x, int h, int w, int c, int kernel, int stride, int pad, int ho, int wo, float[] y) {
        for (int ch = 0; ch < c; ch++) {
            int xc = ch * h * w;
            int yc = ch * ho * wo;
            for (int oy = 0; oy < ho; oy++) {
                int y0 = oy * stride - pad;
                int ky0 = Math.max(0, -y0);
                int ky1 = Math.min(kernel, h - y0);
                for (int ox = 0; ox < wo; ox++) {
                    int x0 = ox * stride - pad;
                    int kx0 = Math.max(0, -x0);
                    int kx1 = Math.min(kernel, w - x0);
                    float s = 0f;
                    for (int ky = ky0; ky < ky1; ky++) {
                        int row = xc + (y0 + ky) * w + x0;
                        for (int kx = kx0; kx < kx1; kx++) {
                            s += x[row + kx];
                        }
                    }
                    y[yc + oy * wo + ox] = s / ((ky1 - ky0) * (kx1 - kx0));
                }
            }
        }
    }

    /** Global average pool (C, H, W) -> (C,): float32 sum over pixels in raster order / (H*W). */
    static void gap(float[] x, int pixels, int c, float[] y) {
        for (int ch = 0; ch < c; ch++) {
            float s = 0f;
            for (int p = 0; p < pixels; p++) {
                s += x[ch * pixels + p];
            }
            y[ch] = s / pixels;
        }
    }

    /** ResNet option A on (C, H, W): x[:, ::s, ::s] into channels before..before+C of y, zeros elsewhere. */
    static void shortcutA(float[] x, int h, int w, int c, int stride, int cout, float[] y) {
        int ho = (h + stride - 1) / stride;
        int wo = (w + stride - 1) / stride;
        int before = (cout - c) / 2;
        java.util.Arrays.fill(y, 0, cout * ho * wo, 0f);
        for (int ch = 0; ch < c; ch++) {
            for (int oy = 0; oy < ho; oy++) {
                for (int ox = 0; ox < wo; ox++) {
                    y[((before + ch) * ho + oy) * wo + ox] = x[(ch * h + oy * stride) * w + ox * stride];
                }
            }
        }
    }
}
