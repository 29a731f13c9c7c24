package ai.seprt.core;

/**
 * conv_i32_planar: integer conv on channel planes, for layers with large outputs.
 *
 * <p>The input is quantized into one array of (q - z) ints per channel, laid out (s*s phases,
 * Hph, Wph): phase (py, px) holds the zero-padded input at rows py + s*i, columns px + s*j, so
 * that at any stride a tap (ky, kx) reads one phase as a stride-1 plane at offset
 * (ky/s)*Wph + kx/s. Output pixel (oy, ox) is flat index oy*Wph + ox of an accumulator plane
 * (columns ox &gt;= Wo are computed and dropped). For a tile of output rows, each input channel's
 * k*k shifted tap planes are copied once into tap[t] (0-based), then every output channel of
 * its group runs acc[o][i] += w0*tap[t][i] + w1*tap[t+1][i] + w2*tap[t+2][i] over the tile.
 *
 * <p>Every array in those loops is indexed by the loop counter itself: HotSpot (C2, JDK 17)
 * vectorizes {@code a[i] += w * b[i]} but not {@code a[i] += w * b[off + i]} (it cannot rule out
 * that a and b are the same array), which measured 1.5 against 10-20 GMAC/s on this machine.
 * The padding entries are written once (zeros) and never touched again.
 */
final class ConvI32Planar extends FastConv {
    /** Tiles have at least this many output ints per channel (whole rows), so the loops are long. */
    static final int MIN_N = 512;
    /** Accumulators of a tile: about this many ints over a block of output channels (at least one). */
    static final int TILE = 16384;

    private final IntWeights iw;
    private final int[] w;          // (K, Cg, k*k): w[(o*Cg + c)*kk + t] = W[o, ky, kx, c], t = ky*k + kx
    private final int kk;           // taps per channel
    private final int wph;          // phase plane columns
    private final int[] tapOff;     // (kk,) offset of tap t inside a channel's phases
    private final int[] rowDst;     // (H,) offset of input row iy inside a channel
    private final int[] colDst;     // (W,) offset of input column ix inside a channel
    private final int[][] xp;       // (C)(s*s, hph, wph) q - z, padding 0
    private final int tileRows;
    private final int kBlock;       // output channels per tile
    private final int[][] tap;      // (kk)(tileRows * wph) shifted planes of one input channel
    private final int[][] src;      // (kk) per tap: tap[t], or the channel itself when the tap's offset is 0
    private final int[][] acc;      // (K)(tileRows * wph)

    ConvI32Planar(ConvGeometry geo, IntWeights iw) {
        super(geo);
        this.iw = iw;
        final int k = geo.kernel;
        final int s = geo.stride;
        kk = k * k;
        int hph = Math.max(geo.ho + (k - 1) / s + 1, (geo.h - 1 + geo.pad) / s + 1);
        wph = Math.max(geo.wo + (k - 1) / s, (geo.w - 1 + geo.pad) / s + 1);
        int plane = hph * wph;
        tapOff = new int[kk];
        for (int ky = 0; ky < k; ky++) {
            for (int kx = 0; kx < k; kx++) {
                tapOff[ky * k + kx] = ((ky % s) * s + kx % s) * plane + (ky / s) * wph + kx / s;
            }
        }
        rowDst = new int[geo.h];
        for (int iy = 0; iy < geo.h; iy++) {
            int py = iy + geo.pad;
            rowDst[iy] = (py % s) * s * plane + (py / s) * wph;
        }
        colDst = new int[geo.w];
        for (int ix = 0; ix < geo.w; ix++) {
            int px = ix + geo.pad;
            colDst[ix] = (px % s) * plane + px / s;
        }
        xp = new int[geo.c][s * s * plane];
        // 1x1 stride-1 convs take the whole image as one tile: their only tap is then the channel
        // plane itself (offset 0), used without a copy
        boolean whole = k == 1 && s == 1 && geo.pad == 0 && geo.ho * wph <= 4 * TILE;
        tileRows = whole ? geo.ho : Math.min(geo.ho, (MIN_N + wph - 1) / wph);
        kBlock = Math.max(1, Math.min(geo.k, TILE / (tileRows * wph)));
        tap = new int[kk][tileRows * wph];
        src = new int[kk][];
        acc = new int[geo.k][tileRows * wph];
        int cg = geo.cg;
        w = new int[geo.k * cg * kk];
        for (int o = 0; o < geo.k; o++) {
            for (int t = 0; t < kk; t++) {
                for (int c = 0; c < cg; c++) {
                    w[(o * cg + c) * kk + t] = iw.ohwi[(o * kk + t) * cg + c];
                }
            }
        }
    }

    @Override
    String kernelName() {
        return "conv_i32_planar";
    }

    @Override
    void forward(float[] x, float[] y, boolean relu) {
        quantize(x);
        final ConvGeometry g = geo;
        for (int r0 = 0; r0 < g.ho; r0 += tileRows) {
            final int rows = Math.min(tileRows, g.ho - r0);
            final int n = rows * wph;
            for (int o0 = 0; o0 < g.k; o0 += kBlock) {
                final int o1 = Math.min(g.k, o0 + kBlock);
                for (int o = o0; o < o1; o++) {
                    java.util.Arrays.fill(acc[o], 0, n, 0);
                }
                for (int cin = 0; cin < g.c; cin++) {
                    int grp = cin / g.cg;
                    int lo = Math.max(o0, grp * g.kg);      // outputs of this tile that read cin
                    int hi = Math.min(o1, (grp + 1) * g.kg);
                    if (lo >= hi) {
                        continue;
                    }
                    for (int t = 0; t < kk; t++) {
                        int off = r0 * wph + tapOff[t];
                        if (off == 0) {
                            src[t] = xp[cin];
                        } else {
                            System.arraycopy(xp[cin], off, tap[t], 0, n);
                            src[t] = tap[t];
                        }
                    }
                    int c = cin % g.cg;
                    for (int o = lo; o < hi; o++) {
                        int[] a = acc[o];
                        int wb = (o * g.cg + c) * kk;
                        int t = 0;
                        for (; t + 3 <= kk; t += 3) {
                            mac3(a, src[t], src[t + 1], src[t + 2], w[wb + t], w[wb + t + 1], w[wb + t + 2], n);
                        }
                        for (; t < kk; t++) {
                            mac1(a, src[t], w[wb + t], n);
                        }
                    }
                }
                for (int o = o0; o < o1; o++) {
                    int[] a = acc[o];
                    float m = iw.mult[o];
                    float b = iw.bias[o];
                    float floor = relu ? 0f : Float.NEGATIVE_INFINITY;
                    for (int r = 0; r < rows; r++) {
                        int yb = (o * g.ho + r0 + r) * g.wo;
                        int ab = r * wph;
                        for (int ox = 0; ox < g.wo; ox++) {
                            y[yb + ox] = Math.max((float) a[ab + ox] * m + b, floor);
                        }
                    }
                }
            }
        }
    }

    /** a[i] += w0 * x0[i] for i &lt; n. */
    static void mac1(int[] a, int[] x0, int w0, int n) {
        for (int i = 0; i < n; i++) {
            a[i] += w0 * x0[i];
        }
    }

    /** a[i] += w0 * x0[i] + w1 * x1[i] + w2 * x2[i] for i &lt; n. */
    static void mac3(int[] a, int[] x0, int[] x1, int[] x2, int w0, int w1, int w2, int n) {
        for (int i = 0; i < n; i++) {
            a[i] += w0 * x0[i] + w1 * x1[i] + w2 * x2[i];
        }
    }

    /** x (C, H, W) float32 -> xp (C)(phases, hph, wph): q - z at the real pixels. */
    private void quantize(float[] x) {
        final ConvGeometry g = geo;
        final float scale = iw.scale;
        final int zero = iw.zero;
        final int qmax = iw.qmax;
        for (int c = 0; c < g.c; c++) {
            int[] dst = xp[c];
            for (int iy = 0; iy < g.h; iy++) {
                int xb = (c * g.h + iy) * g.w;
                int row = rowDst[iy];
                for (int ix = 0; ix < g.w; ix++) {
                    dst[row + colDst[ix]] = centered(x[xb + ix], scale, zero, qmax);
                }
            }
        }
    }
}
