package ai.seprt.core;

/**
 * Integer path for bit-packed ±1 patterns, by AND + {@link Long#bitCount} on bit-planes.
 *
 * <p>A filter row holds n = k*k*Cg signs, sign j = (ky*k + kx)*Cg + c, bit 1 = +1 (the file's
 * packing, read as little-endian 64-bit words). For each output pixel and group the input
 * window is gathered into the same bit order, one bit-plane per activation bit b: plane b has
 * bit j set when bit b of q_j is set (q = the unsigned level, 0..2^bits - 1; padding taps stay
 * 0). The input is first laid out as padded row streams per group and plane, so each of the k
 * window rows is one copy of k*Cg consecutive bits. With P the +1 mask of a filter and V the mask of non-padding taps:
 * <pre>
 *   sum_j s_j q_j  = sum_b 2^b (2 popcount(P &amp; plane_b) - popcount(plane_b))
 *   sum_j s_j      = 2 popcount(P &amp; V) - popcount(V)            (over non-padding taps)
 *   acc            = sum_j s_j (q_j - z) = sum_j s_j q_j - z sum_j s_j
 * </pre>
 * exactly the spec's acc = conv(q - z, ±1) with padding contributing 0; then
 * y = f32(acc) * mult[o] + bias[o].
 */
final class BinaryConv extends ConvKernel {
    private final long[] pattern;   // (K, nw): filter o's n sign bits in words o*nw .. o*nw + nw - 1
    private final int[] signSum;    // (K,) 2 popcount(P) - n: sum of signs when no tap is padding
    private final float[] mult;     // (K,) f32(s * alpha[o])
    private final ActivationQuantizer quant;
    private final int n;            // bits per filter: k * k * Cg
    private final int nw;           // 64-bit words per filter: ceil(n / 64)

    BinaryConv(ConvGeometry geo, float[] bias, byte[] packed, float[] mult, ActivationQuantizer quant) {
        super(geo, bias);
        this.mult = mult;
        this.quant = quant;
        n = geo.taps();
        nw = (n + 63) / 64;
        int rowBytes = (n + 7) / 8;
        pattern = new long[geo.k * nw];
        signSum = new int[geo.k];
        for (int o = 0; o < geo.k; o++) {
            int ones = 0;
            for (int b = 0; b < rowBytes; b++) {
                pattern[o * nw + b / 8] |= (packed[o * rowBytes + b] & 0xFFL) << (8 * (b % 8));
            }
            for (int w = 0; w < nw; w++) {
                ones += Long.bitCount(pattern[o * nw + w]);
            }
            signSum[o] = 2 * ones - n;
        }
    }

    /** Sign j (±1) of filter o in packed rows of n bits (file layout). */
    static float sign(byte[] packed, int o, int n, int j) {
        int rowBytes = (n + 7) / 8;
        return ((packed[o * rowBytes + j / 8] >> (j % 8)) & 1) != 0 ? 1f : -1f;
    }

    @Override
    float[] forward(float[] x) {
        // x (H, W, C) -> q (H, W, C) -> rows (groups, bits, H, rw) -> y (Ho, Wo, K)
        final ConvGeometry g = geo;
        final int bits = quant.bits;
        final int zero = quant.zero;
        final int rowBits = (g.w + 2 * g.pad) * g.cg;
        final int rw = (rowBits + 63) / 64;
        long[] rows = rows(quant.levels(x), bits, rw);
        long[] validRow = new long[rw];             // ones at the real (non-padding) pixels of a row
        copyOnes(validRow, g.pad * g.cg, g.w * g.cg);
        long[] window = new long[bits * nw];        // plane b of the window: words b*nw .. b*nw + nw - 1
        long[] valid = new long[nw];                // V, built only for windows that overlap padding
        float[] y = new float[g.ho * g.wo * g.k];
        for (int oy = 0; oy < g.ho; oy++) {
            for (int ox = 0; ox < g.wo; ox++) {
                int y0 = oy * g.stride - g.pad;
                int x0 = ox * g.stride - g.pad;
                boolean interior = y0 >= 0 && x0 >= 0 && y0 + g.kernel <= g.h && x0 + g.kernel <= g.w;
                if (!interior) {
                    gatherValid(validRow, y0, x0, valid);
                }
                int yBase = (oy * g.wo + ox) * g.k;
                for (int grp = 0; grp < g.groups; grp++) {
                    gather(rows, bits, rw, grp, y0, x0, window);
                    long sumQ = 0;                  // sum_j q_j over the window
                    for (int b = 0; b < bits; b++) {
                        int ones = 0;
                        for (int w = 0; w < nw; w++) {
                            ones += Long.bitCount(window[b * nw + w]);
                        }
                        sumQ += (long) ones << b;
                    }
                    for (int o = grp * g.kg; o < (grp + 1) * g.kg; o++) {
                        int p = o * nw;
                        long plusQ = 0;             // sum_j q_j over the +1 signs
                        for (int b = 0; b < bits; b++) {
                            int ones = 0;
                            for (int w = 0; w < nw; w++) {
                                ones += Long.bitCount(pattern[p + w] & window[b * nw + w]);
                            }
                            plusQ += (long) ones << b;
                        }
                        long acc = 2 * plusQ - sumQ;
                        if (zero != 0) {
                            acc -= (long) zero * (interior ? signSum[o] : validSignSum(p, valid));
                        }
                        y[yBase + o] = (float) acc * mult[o] + bias[o];
                    }
                }
            }
        }
        return y;
    }

    /** 2 popcount(P &amp; V) - popcount(V) for the filter whose words start at p. */
    private int validSignSum(int p, long[] valid) {
        int plus = 0;
        int all = 0;
        for (int w = 0; w < nw; w++) {
            plus += Long.bitCount(pattern[p + w] & valid[w]);
            all += Long.bitCount(valid[w]);
        }
        return 2 * plus - all;
    }

    /**
     * q (H, W, C) levels -> padded row streams (groups, bits, H, rw words): in the stream of
     * (group g, plane b, row y), bit (x + pad)*Cg + c is bit b of q[y, x, g*Cg + c]; the pad
     * pixels at both ends of a row are 0. A window row of k taps is then k*Cg consecutive bits.
     */
    private long[] rows(int[] q, int bits, int rw) {
        final ConvGeometry g = geo;
        long[] rows = new long[g.groups * bits * g.h * rw];
        for (int iy = 0; iy < g.h; iy++) {
            for (int ix = 0; ix < g.w; ix++) {
                for (int grp = 0; grp < g.groups; grp++) {
                    int xb = (iy * g.w + ix) * g.c + grp * g.cg;
                    int row = (grp * bits * g.h + iy) * rw;
                    for (int c = 0; c < g.cg; c++) {
                        int at = (ix + g.pad) * g.cg + c;
                        int word = row + (at >>> 6);
                        long bit = 1L << (at & 63);
                        for (int v = q[xb + c], b = 0; v != 0; v >>>= 1, b++) {
                            if ((v & 1) != 0) {
                                rows[word + b * g.h * rw] |= bit;
                            }
                        }
                    }
                }
            }
        }
        return rows;
    }

    /** Window (y0, x0) of group grp into window (per plane, sign order j = (ky*k + kx)*Cg + c). */
    private void gather(long[] rows, int bits, int rw, int grp, int y0, int x0, long[] window) {
        final ConvGeometry g = geo;
        final int len = g.kernel * g.cg;
        java.util.Arrays.fill(window, 0L);
        for (int ky = 0; ky < g.kernel; ky++) {
            int iy = y0 + ky;
            if (iy < 0 || iy >= g.h) {
                continue;                           // padding rows stay 0
            }
            for (int b = 0; b < bits; b++) {
                int row = ((grp * bits + b) * g.h + iy) * rw;
                copyBits(rows, row, (x0 + g.pad) * g.cg, window, b * nw * 64 + ky * len, len);
            }
        }
    }

    /** V of window (y0, x0): ones at the taps inside the image. */
    private void gatherValid(long[] validRow, int y0, int x0, long[] valid) {
        final ConvGeometry g = geo;
        final int len = g.kernel * g.cg;
        java.util.Arrays.fill(valid, 0L);
        for (int ky = 0; ky < g.kernel; ky++) {
            if (y0 + ky >= 0 && y0 + ky < g.h) {
                copyBits(validRow, 0, (x0 + g.pad) * g.cg, valid, ky * len, len);
            }
        }
    }

    /** ORs len bits of src (starting at bit srcBit of word srcWord) into dst at bit dstBit. */
    private static void copyBits(long[] src, int srcWord, int srcBit, long[] dst, int dstBit, int len) {
        for (int done = 0; done < len; done += 64) {
            int n = Math.min(64, len - done);
            int at = srcBit + done;
            int w = srcWord + (at >>> 6);
            int s = at & 63;
            long v = src[w] >>> s;
            if (s != 0 && s + n > 64) {
                v |= src[w + 1] << (64 - s);
            }
            orBits(dst, dstBit + done, n == 64 ? v : v & ((1L << n) - 1), n);
        }
    }

    /** Sets len bits of a from bit pos on. */
    private static void copyOnes(long[] a, int pos, int len) {
        for (int done = 0; done < len; done += 64) {
            int n = Math.min(64, len - done);
            orBits(a, pos + done, n == 64 ? -1L : (1L << n) - 1, n);
        }
    }

    /** ORs the low n (1..64) bits of v into a at bit pos (v has no bits above n). */
    private static void orBits(long[] a, int pos, long v, int n) {
        int w = pos >>> 6;
        int s = pos & 63;
        a[w] |= v << s;
        if (s != 0 && s + n > 64) {
            a[w + 1] |= v >>> (64 - s);
        }
    }
}
