package ai.seprt.core;

/**
 * The fast path's ops without weights on (C, H, W) planar float32 values, each writing into a
 * given buffer. Per channel they use the float32 order of {@link Ops} (the reference, NHWC), so
 * the results are the same floats: pools and gap sum the taps and pixels in the same raster order.
 */
final class OpsChw {
    private OpsChw() {
    }

    /**
     * x (H, W, C) -> y (C, H, W), one output plane at a time (for the 3-channel image this
     * measured 100 against 200 us at 224x224 with the pixel loop outside).
     */
    static void fromHwc(float[] x, int h, int w, int c, float[] y) {
        int hw = h * w;
        for (int ch = 0; ch < c; ch++) {
            int yb = ch * hw;
            for (int p = 0; p < hw; p++) {
                y[yb + p] = x[p * c + ch];
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

    /** Floats in each of maxpool's two row buffers: a padded input row, with room for ceil-mode windows. */
    static int maxpoolRowLength(int w, int kernel, int stride, int pad, int wo) {
        return Math.max(w + 2 * pad, (wo - 1) * stride + kernel);
    }

    /**
     * (C, H, W) -> (C, Ho, Wo): max over the window; padding never wins. Per output row, the
     * window's input rows are reduced to one padded row first: rowMax[pad + ix] = max over ky of
     * x[ch, iy, ix], with rowMax and the copied input row (row) indexed by the loop counter, so
     * that C2 vectorizes it; rowMax's padding is -Inf. Then each output takes the max of its k
     * columns of rowMax, without bounds checks. rows: two buffers of maxpoolRowLength floats.
     * Math.max is order-free (it treats -0 &lt; +0 and propagates NaN whatever the order), so the
     * result equals the reference's.
     */
    static void maxpool(float[] x, int h, int w, int c, int kernel, int stride, int pad, int ho, int wo,
                        float[][] rows, float[] y) {
        final float[] rowMax = rows[0];
        final float[] row = rows[1];
        java.util.Arrays.fill(rowMax, 0, maxpoolRowLength(w, kernel, stride, pad, wo), Float.NEGATIVE_INFINITY);
        for (int ch = 0; ch < c; ch++) {
            int xc = ch * h * w;
            for (int oy = 0; oy < ho; oy++) {
                int iy0 = Math.max(0, oy * stride - pad);
                int iy1 = Math.min(h, oy * stride - pad + kernel);
                if (iy0 >= iy1) {
                    java.util.Arrays.fill(rowMax, pad, pad + w, Float.NEGATIVE_INFINITY);
                } else {
                    System.arraycopy(x, xc + iy0 * w, rowMax, pad, w);
                }
                for (int iy = iy0 + 1; iy < iy1; iy++) {
                    System.arraycopy(x, xc + iy * w, row, pad, w);
                    for (int i = pad; i < pad + w; i++) {       // vectorized
                        rowMax[i] = Math.max(rowMax[i], row[i]);
                    }
                }
                int yb = (ch * ho + oy) * wo;
                if (kernel == 3) {          // the usual window, unrolled: C2 does not unroll a 2-trip tap loop
                    for (int ox = 0; ox < wo; ox++) {
                        int xb = ox * stride;
                        y[yb + ox] = Math.max(Math.max(rowMax[xb], rowMax[xb + 1]), rowMax[xb + 2]);
                    }
                } else {
                    for (int ox = 0; ox < wo; ox++) {
                        int xb = ox * stride;
                        float m = rowMax[xb];
                        for (int kx = 1; kx < kernel; kx++) {
                            m = Math.max(m, rowMax[xb + kx]);
                        }
                        y[yb + ox] = m;
                    }
                }
            }
        }
    }

    /**
     * (C, H, W) -> (C, Ho, Wo): window sum (row-major taps, from 0) / count of non-padding taps, or
     * with countPad / the window clipped to the padded input ({@link Ops#padSpan}).
     */
    static void avgpool(float[] x, int h, int w, int c, int kernel, int stride, int pad, int ho, int wo,
                        boolean countPad, float[] y) {
        java.util.Arrays.fill(y, 0, c * ho * wo, 0f);
        for (int ch = 0; ch < c; ch++) {
            int xc = ch * h * w;
            int yc = ch * ho * wo;
            for (int oy = 0; oy < ho; oy++) {
                int yb = yc + oy * wo;
                int rows = 0;
                for (int ky = 0; ky < kernel; ky++) {
                    int iy = oy * stride - pad + ky;
                    if (iy < 0 || iy >= h) {
                        continue;
                    }
                    rows++;
                    for (int kx = 0; kx < kernel; kx++) {
                        int lo = firstInside(kx, stride, pad);
                        int hi = Math.min(wo, lastInside(kx, stride, pad, w) + 1);
                        int xb = xc + iy * w + kx - pad;
                        for (int ox = lo; ox < hi; ox++) {
                            y[yb + ox] += x[xb + ox * stride];
                        }
                    }
                }
                for (int ox = 0; ox < wo; ox++) {
                    int x0 = ox * stride - pad;
                    int cols = Math.max(0, Math.min(kernel, w - x0) - Math.max(0, -x0));
                    y[yb + ox] /= countPad ? Ops.padSpan(oy, stride, pad, kernel, h) * Ops.padSpan(ox, stride, pad, kernel, w)
                            : rows * cols;
                }
            }
        }
    }

    /** The first ox whose tap kx falls inside the row: ox*stride - pad + kx &gt;= 0. */
    private static int firstInside(int kx, int stride, int pad) {
        int need = pad - kx;
        return need <= 0 ? 0 : (need + stride - 1) / stride;
    }

    /** The last ox whose tap kx falls inside the row: ox*stride - pad + kx &lt;= w - 1. */
    private static int lastInside(int kx, int stride, int pad, int w) {
        int room = w - 1 + pad - kx;
        return room < 0 ? -1 : room / stride;
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
