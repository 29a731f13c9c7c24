package ai.seprt.core;

/**
 * conv_i32_nhwc: integer conv/fc with the output channel as the inner loop, for layers with few
 * output pixels and many channels (and every fc). Input and output are planar (C, H, W) like
 * every fast-path value; only the padded input buffer is (H, W, C).
 *
 * <p>Weight rows are separate arrays so that the inner loop {@code acc[o] += xv * row[o]} indexes
 * every array by the loop counter, which HotSpot vectorizes (see {@link ConvExactPlanar}).
 *
 * <p>The input is quantized into a zero-padded (Hp, Wp, C) buffer of (q - z) ints, prepared once
 * (the padding stays 0): first over the whole value into the shared float32 scratch
 * ({@link FastConv#quantizeCentered}, vectorized), then converted and scattered into (Hp, Wp, C).
 * For each output pixel, acc (Kb) += (q - z)[tap, c] * W[tap, c, :] over contiguous rows of Kb
 * weights. A grouped conv runs as {@link #blocksFor} blocks, each the dense block-diagonal conv
 * of neighbouring groups (the weights across groups are 0), so that the inner loop is long enough
 * to vectorize without multiplying too many zeros.
 */
final class ConvI32Nhwc extends FastConv implements Parallel.Part {
    private final IntWeights iw;
    private final int blocks;       // blocksFor(geo): divides groups
    private final int cb, kb;       // input / output channels per block
    private final int kk;
    private final int hp, wp;       // padded input
    private final int[][] w;        // (blocks * kk * cb)(kb): w[(blk*kk + t)*cb + c][o']
    private final int[] xq;         // (hp, wp, C) q - z, padding 0
    private final Parallel par;
    private final Scratch scratch;  // shared with the other kernels: qf (C, H, W) q - z of the input, float32
    private final int[][] acc;      // (threads)(kb)
    private float[] curY;           // the current call, for the parts (run)
    private boolean curRelu;

    ConvI32Nhwc(ConvGeometry geo, IntWeights iw, Parallel par, Scratch scratch) {
        super(geo);
        this.iw = iw;
        this.par = par;
        this.scratch = scratch;
        scratch.need(geo.c * geo.h * geo.w, 0, 0, 0);
        kk = geo.kernel * geo.kernel;
        blocks = blocksFor(geo.groups, geo.c, geo.k);
        cb = geo.c / blocks;
        kb = geo.k / blocks;
        hp = geo.h + 2 * geo.pad;
        wp = geo.w + 2 * geo.pad;
        xq = new int[hp * wp * geo.c];
        acc = new int[par.threads][kb];
        w = new int[blocks * kk * cb][kb];
        int taps = geo.taps();
        for (int o = 0; o < geo.k; o++) {
            int grp = o / geo.kg;
            int blk = o / kb;
            for (int t = 0; t < kk; t++) {
                for (int c = 0; c < geo.cg; c++) {
                    int cin = grp * geo.cg + c - blk * cb;   // input channel inside the block
                    w[(blk * kk + t) * cb + cin][o % kb] = iw.ohwi[o * taps + t * geo.cg + c];
                }
            }
        }
    }

    /**
     * The number of blocks a conv of {@code groups} groups, C inputs and K outputs runs as: the
     * divisor q of groups with the least row work per tap, q · ⌈(C/q)/4⌉ passes (4 input
     * channels each) · (⌈(K/q)/8⌉ 8-lane vectors + 1 for the pass's own cost and scalar tail);
     * ties go to the fewer blocks. E.g. groups 4, C 80, K 40 (sepnet-cifar's 8×8 slice2): 4
     * blocks (60) against 2 (80) and one dense block (120).
     */
    static int blocksFor(int groups, int c, int k) {
        int best = 1;
        long bestWork = Long.MAX_VALUE;
        for (int q = 1; q <= groups; q++) {
            if (groups % q != 0) {
                continue;
            }
            long work = (long) q * ((c / q + 3) / 4) * ((k / q + 7) / 8 + 1);
            if (work < bestWork) {
                best = q;
                bestWork = work;
            }
        }
        return best;
    }

    @Override
    String kernelName() {
        return "conv_i32_nhwc";
    }

    @Override
    void forward(float[] x, float[] y, boolean relu) {
        quantize(x);
        curY = y;
        curRelu = relu;
        if (par.threads == 1) {
            rows(0, geo.ho, 0);
        } else {
            par.run(this, geo.ho);
        }
    }

    /** Part p: a range of output rows. */
    @Override
    public void run(int p, int parts) {
        rows(Parallel.start(geo.ho, p, parts), Parallel.start(geo.ho, p + 1, parts), p);
    }

    /** Output rows oy0..oy1 with the accumulator of part p. */
    private void rows(int oy0, int oy1, int p) {
        final ConvGeometry g = geo;
        final float[] y = curY;
        final boolean relu = curRelu;
        final int[] acc = this.acc[p];
        final int[] xq = this.xq;
        final int[][] w = this.w;
        final int kb = this.kb;
        for (int oy = oy0; oy < oy1; oy++) {
            for (int ox = 0; ox < g.wo; ox++) {
                for (int blk = 0; blk < blocks; blk++) {
                    java.util.Arrays.fill(acc, 0);
                    for (int ky = 0; ky < g.kernel; ky++) {
                        for (int kx = 0; kx < g.kernel; kx++) {
                            int xb = ((oy * g.stride + ky) * wp + ox * g.stride + kx) * g.c + blk * cb;
                            int wb = (blk * kk + ky * g.kernel + kx) * cb;
                            int c = 0;
                            for (; c + 4 <= cb; c += 4) {
                                mac4(acc, w[wb + c], w[wb + c + 1], w[wb + c + 2], w[wb + c + 3],
                                        xq[xb + c], xq[xb + c + 1], xq[xb + c + 2], xq[xb + c + 3], kb);
                            }
                            for (; c < cb; c++) {
                                mac1(acc, w[wb + c], xq[xb + c], kb);
                            }
                        }
                    }
                    int hw = g.ho * g.wo;
                    int yb = blk * kb * hw + oy * g.wo + ox;       // y (K, Ho, Wo)
                    float floor = relu ? 0f : Float.NEGATIVE_INFINITY;
                    for (int o = 0; o < kb; o++) {
                        y[yb + o * hw] = Math.max((float) acc[o] * iw.mult[blk * kb + o] + iw.bias[blk * kb + o], floor);
                    }
                }
            }
        }
    }

    /** a[o] += x0 * w0[o] for o &lt; n. */
    static void mac1(int[] a, int[] w0, int x0, int n) {
        for (int o = 0; o < n; o++) {
            a[o] += x0 * w0[o];
        }
    }

    /** a[o] += x0 * w0[o] + x1 * w1[o] + x2 * w2[o] + x3 * w3[o] for o &lt; n (zero inputs skipped as a whole). */
    static void mac4(int[] a, int[] w0, int[] w1, int[] w2, int[] w3, int x0, int x1, int x2, int x3, int n) {
        if ((x0 | x1 | x2 | x3) == 0) {
            return;
        }
        for (int o = 0; o < n; o++) {
            a[o] += x0 * w0[o] + x1 * w1[o] + x2 * w2[o] + x3 * w3[o];
        }
    }

    /** x (C, H, W) float32 -> qf (C, H, W) q - z -> xq (Hp, Wp, C) at the real pixels. */
    private void quantize(float[] x) {
        final ConvGeometry g = geo;
        final float[] qf = scratch.qf();
        quantizeCentered(x, g.c * g.h * g.w, iw.scale, iw.zero, iw.qmax, qf);
        for (int c = 0; c < g.c; c++) {
            for (int iy = 0; iy < g.h; iy++) {
                int src = (c * g.h + iy) * g.w;
                int dst = ((iy + g.pad) * wp + g.pad) * g.c + c;
                for (int ix = 0; ix < g.w; ix++) {
                    xq[dst + ix * g.c] = (int) qf[src + ix];    // an exact integer
                }
            }
        }
    }
}
