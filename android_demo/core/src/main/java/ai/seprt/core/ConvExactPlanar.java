package ai.seprt.core;

/**
 * conv_exact_f32_planar: integer conv (i8 or ±1 weights on q - z) on channel planes, for layers
 * with large outputs, carried out exactly in float32 lanes.
 *
 * <p>Exactness: every product w * (q - z) and every partial sum is an integer; float32 holds all
 * integers up to 2^24 exactly, so as long as sum |w| * max|q - z| over the terms of one
 * accumulator stays &lt;= 2^24, every float32 add is exact whatever the order and the result equals
 * the int sum. The bound is checked per layer at load: the sums are moved into int accumulators
 * every {@code flushEvery} input channels (usually never: 3x3x64 ±1 patterns on 8-bit levels
 * reach 147,000). Then y = f32(acc) * mult[o] + bias[o] as in the reference. Float32 because
 * HotSpot (C2, JDK 17) vectorizes the float quantize loop but not float-to-int conversions.
 *
 * <p>The input is first quantized over the whole value, qf[i] = clip(rint(x[i]/s) + z) - z in
 * float32 (one vectorized loop), then copied into one array per channel laid out (s*s phases,
 * Hph, Wph): phase (py, px) holds the zero-padded input at rows py + s*i, columns px + s*j, so
 * that at any stride a tap (ky, kx) reads one phase as a stride-1 plane at offset
 * (ky/s)*Wph + kx/s. Output pixel (oy, ox) is flat index oy*Wph + ox of an accumulator plane
 * (columns ox &gt;= Wo are computed and dropped). For a tile of output rows, the k*k shifted tap
 * planes of a block of input channels (one channel for i8 weights; for ±1 weights as many of a
 * group as fit in TAP_BUDGET floats) are copied once into tap[j] (j = c*kk + t within the block),
 * then every output channel of its group runs acc[o][i] += w0*tap[j][i] + ... + w4*tap[j+4][i]
 * (up to 5 taps a pass) over the tile.
 *
 * <p>±1 weights (bin patterns, stack filters) multiply nothing: with T = the sum of all taps of
 * the group (computed once per group and tile), acc = 2 * (sum of the +1 taps) - T
 * = T - 2 * (sum of the -1 taps), so each output adds only the taps of its smaller sign set,
 * at most half of them: a[i] += tap[j0][i] + ... + tap[j4][i].
 *
 * <p>Every array in those loops is indexed by the loop counter itself: C2 vectorizes
 * {@code a[i] += w * b[i]} but not {@code a[i] += w * b[off + i]} (it cannot rule out that a and
 * b are the same array), which measured 1.5 against 10-20 GMAC/s on this machine. The padding
 * entries are written once (zeros) and never touched again.
 */
final class ConvExactPlanar extends FastConv implements Parallel.Part {
    /** Tiles have at least this many outputs per channel (whole rows), so the loops are long. */
    static final int MIN_N = 1024;
    /** Taps per pass over an accumulator row (at most 5). */
    static final int MAX_TAPS = Integer.getInteger("seprt.maxTaps", 5);
    /**
     * Accumulators of a tile: about this many floats over a block of output channels (at least
     * one). Every block copies the tap planes again, so the default lets all output channels of
     * sepnet-t8's layers share one copy (measured 3-8% faster on conv1/conv2 than 16384).
     */
    static final int TILE = Integer.getInteger("seprt.tile", 131072);
    /** 1x1 stride-1 convs with at most this many output pixels take the whole image as one tile. */
    static final int WHOLE_1X1_MAX = 65536;
    /**
     * Floats of tap planes copied per block of input channels of a ±1-weight conv
     * (seprt.tapBudget, read when a kernel is built): blocks hold as many channels of a group as
     * fit. i8 convs copy one channel's taps at a time.
     */
    static final int TAP_BUDGET = 98304;

    private final IntWeights iw;
    private final float[] w;        // (K, Cg, k*k): w[(o*Cg + c)*kk + t] = W[o, ky, kx, c], t = ky*k + kx
    private final int kk;           // taps per channel
    private final int wph;          // phase plane columns
    private final int[] tapOff;     // (kk,) offset of tap t inside a channel's phases
    private final int[] rowDst;     // (H,) offset of input row iy inside a channel
    private final int[] colDst;     // (W,) offset of input column ix inside a channel
    private final Scratch scratch;  // shared with the other kernels: qf (C, H, W) q - z of the input,
                                    // acc (K)(tileRows * wph) exact partial sums,
                                    // tap (threads * cBlock * kk)(tileRows * wph) shifted planes of a
                                    // block of input channels
    private final float[][] xp;     // (C)(s*s, hph, wph) q - z, padding 0
    private final int tileRows;
    private final int kBlock;       // output channels per tile
    private final int cBlock;       // input channels per tap block (within a group)
    private final Parallel par;
    private final float[][][] src;  // (threads)(cBlock * kk) per tap: a tap row, or the channel itself
                                    // when its offset is 0
    private float[][] acc;          // scratch.acc() during a call
    private float[][] tap;          // scratch.tap() during a call
    private final int flushEvery;   // input channels per exact float32 partial sum (see above)
    private final int[][] wide;     // (K)(tileRows * wph) int sums of flushed partials; null if never
    // ±1 weights (bin, stack) without flushes: each output adds only the taps of its smaller sign
    // set, acc = 2 * sum(+1 taps) - T or T - 2 * sum(-1 taps), T the sum of all taps of its group
    private final boolean signs;
    private final int[][] sel;      // (K)(taps of the chosen sign) flat indices c*kk + t within the group, ascending
    private final boolean[] negSel; // (K,) true: sel holds the -1 taps
    private final int[][] selStart; // (K)(group blocks + 1) first sel entry of each channel block
    private final float[][] tsum;   // (threads)(tileRows * wph) T, the sum of the group's taps so far

    // a fused max-pool (fusePool): kernel, stride, output size; 0 = none
    private int poolK, poolS, poolHo, poolWo;
    private float[][] poolTail;     // (K)((k - 1) * Wo) the last k - 1 conv rows of the tiles so far
    private float[][][] poolRowBuf; // (threads)(2)(Wo) window row max, one row

    // the current call, for the parts (run): no allocation per call
    private float[] curY;
    private boolean curRelu;
    private int curR0;

    ConvExactPlanar(ConvGeometry geo, IntWeights iw, Parallel par, Scratch scratch) {
        super(geo);
        this.iw = iw;
        this.par = par;
        this.scratch = scratch;
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
        xp = new float[geo.c][s * s * plane];
        // 1x1 stride-1 convs take the whole image as one tile: their only tap is then the channel
        // plane itself (offset 0), used without a copy
        boolean whole = k == 1 && s == 1 && geo.pad == 0 && geo.ho * wph <= WHOLE_1X1_MAX;
        int minN = Integer.getInteger("seprt.minN", MIN_N);     // read per kernel, so tests can vary it
        tileRows = whole ? geo.ho : Math.max(1, Math.min(geo.ho, (minN + wph - 1) / wph));
        int kb = Math.max(1, Math.min(geo.k, TILE / (tileRows * wph)));
        kBlock = Math.min(kb, (geo.k + par.threads - 1) / par.threads);     // at least one block per thread
        int cg = geo.cg;
        w = new float[geo.k * cg * kk];
        long colMax = 0;                    // max over (o, c) of sum over taps |w|
        for (int o = 0; o < geo.k; o++) {
            for (int c = 0; c < cg; c++) {
                long col = 0;
                for (int t = 0; t < kk; t++) {
                    int v = iw.ohwi[(o * kk + t) * cg + c];
                    w[(o * cg + c) * kk + t] = v;
                    col += Math.abs(v);
                }
                colMax = Math.max(colMax, col);
            }
        }
        long maxq = Math.max(iw.zero, iw.qmax - iw.zero);    // max |q - z|
        long every = colMax * maxq == 0 ? cg : (1L << 24) / (colMax * maxq);
        int forced = Integer.getInteger("seprt.flushEvery", 0);      // tests: force the int flushes
        flushEvery = (int) Math.max(1, Math.min(forced > 0 ? forced : cg, Math.min(cg, every)));
        wide = flushEvery < cg ? new int[geo.k][tileRows * wph] : null;
        boolean pm1 = true;                 // ±1 weights (bin, stack)
        for (int v : iw.ohwi) {
            pm1 &= v == 1 || v == -1;
        }
        // channel blocks for ±1 weights only: i8 convs with short rows ran 10-15% slower with
        // blocks (conv3 of sepnet-t8, conv2/conv3 of the demo: their per-channel taps fit in L1)
        int budget = Integer.getInteger("seprt.tapBudget", TAP_BUDGET);
        int cb = pm1 ? Math.max(1, Math.min(cg, budget / (kk * tileRows * wph))) : 1;
        cBlock = wide != null ? Math.min(cb, flushEvery) : cb;
        src = new float[par.threads][cBlock * kk][];
        // seprt.signAdds=false: ±1 weights multiply-add every tap, as i8 weights (tests, timing)
        signs = pm1 && wide == null && !"false".equals(System.getProperty("seprt.signAdds"));
        if (signs) {
            int blocks = (cg + cBlock - 1) / cBlock;
            sel = new int[geo.k][];
            negSel = new boolean[geo.k];
            selStart = new int[geo.k][blocks + 1];
            for (int o = 0; o < geo.k; o++) {
                int pos = 0;
                for (int j = 0; j < cg * kk; j++) {
                    pos += w[o * cg * kk + j] > 0 ? 1 : 0;
                }
                negSel[o] = pos > cg * kk - pos;
                sel[o] = new int[negSel[o] ? cg * kk - pos : pos];
                int e = 0;
                for (int j = 0; j < cg * kk; j++) {
                    if (j % (cBlock * kk) == 0) {
                        selStart[o][j / (cBlock * kk)] = e;
                    }
                    if ((w[o * cg * kk + j] > 0) != negSel[o]) {
                        sel[o][e++] = j;
                    }
                }
                selStart[o][blocks] = e;
            }
            tsum = new float[par.threads][tileRows * wph];
        } else {
            sel = null;
            negSel = null;
            selStart = null;
            tsum = null;
        }
        scratch.need(geo.c * geo.h * geo.w, geo.k, par.threads * cBlock * kk, tileRows * wph);
    }

    /** Whether the ±1 weights run as sign-set adds (see signBlock). */
    boolean signAdds() {
        return signs;
    }

    /** Input channels per exact float32 partial sum (&lt; Cg: partial sums are moved to ints). */
    int flushEvery() {
        return flushEvery;
    }

    @Override
    String kernelName() {
        return "conv_exact_f32_planar";
    }

    @Override
    void forward(float[] x, float[] y, boolean relu) {
        quantize(x);
        final ConvGeometry g = geo;
        acc = scratch.acc();
        tap = scratch.tap();
        curY = y;
        curRelu = relu;
        if (whole1x1()) {
            if (par.threads == 1) {
                forward1x1(0, g.k);
            } else {
                par.run(this, g.k);
            }
            return;
        }
        int blocks = (g.k + kBlock - 1) / kBlock;
        for (int r0 = 0; r0 < g.ho; r0 += tileRows) {
            curR0 = r0;
            if (par.threads == 1) {
                for (int b = 0; b < blocks; b++) {
                    block(r0, b * kBlock, Math.min(g.k, (b + 1) * kBlock), 0);
                }
            } else {
                par.run(this, blocks);
            }
        }
    }

    boolean whole1x1() {
        return kk == 1 && tileRows == geo.ho && tapOff[0] == 0 && wide == null;
    }

    /** Part p of this call: a range of output channels (1x1) or of output blocks of tile curR0. */
    @Override
    public void run(int p, int parts) {
        final ConvGeometry g = geo;
        if (whole1x1()) {
            forward1x1(Parallel.start(g.k, p, parts), Parallel.start(g.k, p + 1, parts));
            return;
        }
        int blocks = (g.k + kBlock - 1) / kBlock;
        for (int b = Parallel.start(blocks, p, parts); b < Parallel.start(blocks, p + 1, parts); b++) {
            block(curR0, b * kBlock, Math.min(g.k, (b + 1) * kBlock), p);
        }
    }

    /**
     * Outputs o0..o1 of the tile of rows from r0, with the tap buffers of part p. The input
     * channels of a group run in blocks of cBlock: the tap planes of a whole block are copied
     * first, then each output of the block runs all its cb * kk taps in passes of up to 5 (the
     * weights of consecutive channels are consecutive), so that its accumulator row is read and
     * written once per block rather than once per channel. After its group's last block an
     * output's row goes through the epilogue at once, while it is still in L1.
     */
    private void block(int r0, int o0, int o1, int p) {
        final ConvGeometry g = geo;
        final int rows = Math.min(tileRows, g.ho - r0);
        final int n = rows * wph;
        final float[][] tap = this.tap;
        final int tb = p * cBlock * kk;             // part p's tap rows: tb .. tb + cBlock*kk - 1
        final float[][] src = this.src[p];
        for (int o = o0; o < o1; o++) {
            java.util.Arrays.fill(acc[o], 0, n, 0f);
            if (wide != null) {
                java.util.Arrays.fill(wide[o], 0, n, 0);
            }
        }
        int unflushed = 0;                          // channels summed in float32 since the last flush
        for (int c0 = 0; c0 < g.c; ) {
            int grp = c0 / g.cg;
            int c1 = Math.min(c0 + cBlock, (grp + 1) * g.cg);    // a block never spans two groups
            int lo = Math.max(o0, grp * g.kg);      // outputs of this block that read c0..c1-1
            int hi = Math.min(o1, (grp + 1) * g.kg);
            if (lo >= hi) {
                c0 = c1;
                continue;
            }
            for (int cin = c0; cin < c1; cin++) {
                for (int t = 0; t < kk; t++) {
                    int j = (cin - c0) * kk + t;
                    int off = r0 * wph + tapOff[t];
                    if (off == 0) {
                        src[j] = xp[cin];
                    } else {
                        System.arraycopy(xp[cin], off, tap[tb + j], 0, n);
                        src[j] = tap[tb + j];
                    }
                }
            }
            final int taps = (c1 - c0) * kk;
            final boolean last = c1 == (grp + 1) * g.cg;
            unflushed += c1 - c0;                   // flush before the next block could pass flushEvery
            final boolean flush = wide != null && (last || unflushed + cBlock > flushEvery);
            if (flush) {
                unflushed = 0;
            }
            if (signs) {
                signBlock(r0, rows, n, c0, last, lo, hi, taps, src, p);
                c0 = c1;
                continue;
            }
            for (int o = lo; o < hi; o++) {
                float[] a = acc[o];
                macTaps(a, src, taps, (o * g.cg + c0 % g.cg) * kk, n);
                if (flush) {
                    flushInto(wide[o], a, n);       // at most flushEvery channels since the last one
                } else if (last && wide == null) {
                    epilogue(a, o, r0, rows, n, curY, curRelu, p);
                }
            }
            c0 = c1;
        }
        if (wide != null) {
            for (int o = o0; o < o1; o++) {
                float[] a = acc[o];
                for (int i = 0; i < n; i++) {   // a = f32(exact int sum), as the reference's f32(acc)
                    a[i] = (float) wide[o][i];
                }
                epilogue(a, o, r0, rows, n, curY, curRelu, p);
            }
        }
    }

    /**
     * ±1 weights, channels c0.. of one group (taps tap planes in src): T += every tap; each output
     * lo..hi adds the taps of its sign set in this block; after the group's last block
     * acc = 2a - T (or T - 2a) and the epilogue. Exact: every partial sum, T and 2a are integers
     * of magnitude at most Cg * kk * max|q - z| &lt;= 2^24 (signs is only set without flushes).
     */
    private void signBlock(int r0, int rows, int n, int c0, boolean last, int lo, int hi, int taps, float[][] src,
                           int p) {
        final ConvGeometry g = geo;
        final float[] ts = tsum[p];
        final int cInG = c0 % g.cg;
        if (cInG == 0) {
            java.util.Arrays.fill(ts, 0, n, 0f);
        }
        addTaps(ts, src, null, 0, taps, 0, n);
        final int b = cInG / cBlock;
        final int jb = cInG * kk;
        for (int o = lo; o < hi; o++) {
            float[] a = acc[o];
            addTaps(a, src, sel[o], selStart[o][b], selStart[o][b + 1], jb, n);
            if (last) {
                if (negSel[o]) {
                    for (int i = 0; i < n; i++) {
                        a[i] = ts[i] - (a[i] + a[i]);
                    }
                } else {
                    for (int i = 0; i < n; i++) {
                        a[i] = (a[i] + a[i]) - ts[i];
                    }
                }
                epilogue(a, o, r0, rows, n, curY, curRelu, p);
            }
        }
    }

    /**
     * a[i] += src[j][i] summed over the taps j = idx[e] - jb for e in e0..e1 (idx null: j = e),
     * in passes of up to MAX_TAPS taps.
     */
    private void addTaps(float[] a, float[][] src, int[] idx, int e0, int e1, int jb, int n) {
        for (int e = e0; e < e1; ) {
            int m = Math.min(MAX_TAPS, e1 - e);
            float[] x0 = src[(idx == null ? e : idx[e]) - jb];
            float[] x1 = m > 1 ? src[(idx == null ? e + 1 : idx[e + 1]) - jb] : null;
            float[] x2 = m > 2 ? src[(idx == null ? e + 2 : idx[e + 2]) - jb] : null;
            float[] x3 = m > 3 ? src[(idx == null ? e + 3 : idx[e + 3]) - jb] : null;
            float[] x4 = m > 4 ? src[(idx == null ? e + 4 : idx[e + 4]) - jb] : null;
            switch (m) {
                case 5:
                    add5(a, x0, x1, x2, x3, x4, n);
                    break;
                case 4:
                    add4(a, x0, x1, x2, x3, n);
                    break;
                case 3:
                    add3(a, x0, x1, x2, n);
                    break;
                case 2:
                    add2(a, x0, x1, n);
                    break;
                default:
                    add1(a, x0, n);
                    break;
            }
            e += m;
        }
    }

    /** a[i] += x0[i] for i &lt; n. */
    static void add1(float[] a, float[] x0, int n) {
        for (int i = 0; i < n; i++) {
            a[i] += x0[i];
        }
    }

    /** a[i] += x0[i] + x1[i] for i &lt; n. */
    static void add2(float[] a, float[] x0, float[] x1, int n) {
        for (int i = 0; i < n; i++) {
            a[i] += x0[i] + x1[i];
        }
    }

    /** a[i] += x0[i] + x1[i] + x2[i] for i &lt; n. */
    static void add3(float[] a, float[] x0, float[] x1, float[] x2, int n) {
        for (int i = 0; i < n; i++) {
            a[i] += x0[i] + x1[i] + x2[i];
        }
    }

    /** a[i] += x0[i] + ... + x3[i] for i &lt; n. */
    static void add4(float[] a, float[] x0, float[] x1, float[] x2, float[] x3, int n) {
        for (int i = 0; i < n; i++) {
            a[i] += x0[i] + x1[i] + x2[i] + x3[i];
        }
    }

    /** a[i] += x0[i] + ... + x4[i] for i &lt; n. */
    static void add5(float[] a, float[] x0, float[] x1, float[] x2, float[] x3, float[] x4, int n) {
        for (int i = 0; i < n; i++) {
            a[i] += x0[i] + x1[i] + x2[i] + x3[i] + x4[i];
        }
    }

    /** a[i] += sum over j &lt; taps of w[wb + j] * src[j][i], in passes of up to MAX_TAPS taps. */
    private void macTaps(float[] a, float[][] src, int taps, int wb, int n) {
        final float[] w = this.w;
        for (int t = 0; t < taps; ) {
            switch (Math.min(MAX_TAPS, taps - t)) {
                case 5:
                    mac5(a, src[t], src[t + 1], src[t + 2], src[t + 3], src[t + 4], w[wb + t], w[wb + t + 1],
                            w[wb + t + 2], w[wb + t + 3], w[wb + t + 4], n);
                    t += 5;
                    break;
                case 4:
                    mac4(a, src[t], src[t + 1], src[t + 2], src[t + 3], w[wb + t], w[wb + t + 1], w[wb + t + 2],
                            w[wb + t + 3], n);
                    t += 4;
                    break;
                case 3:
                    mac3(a, src[t], src[t + 1], src[t + 2], w[wb + t], w[wb + t + 1], w[wb + t + 2], n);
                    t += 3;
                    break;
                default:
                    mac1(a, src[t], w[wb + t], n);
                    t += 1;
                    break;
            }
        }
    }

    /**
     * 1x1 stride-1 convs over the whole image: the channel planes are the taps (no copies), and
     * each pass over an output's accumulator takes 5 input channels, so the accumulator is read
     * and written once per 5 channels instead of once per channel.
     */
    private void forward1x1(int oFrom, int oTo) {
        final ConvGeometry g = geo;
        final int n = g.ho * wph;
        for (int o = oFrom; o < oTo; o++) {
            float[] a = acc[o];
            int c0 = (o / g.kg) * g.cg;         // first input channel of o's group
            int wb = o * g.cg;                  // w[(o*Cg + c)*1]
            int c = 0;
            if (g.cg >= 5) {                    // the first pass sets a (no zero fill)
                set5(a, xp[c0], xp[c0 + 1], xp[c0 + 2], xp[c0 + 3], xp[c0 + 4], w[wb], w[wb + 1], w[wb + 2], w[wb + 3],
                        w[wb + 4], n);
                c = 5;
            } else {
                java.util.Arrays.fill(a, 0, n, 0f);
            }
            for (; c + 5 <= g.cg; c += 5) {
                mac5(a, xp[c0 + c], xp[c0 + c + 1], xp[c0 + c + 2], xp[c0 + c + 3], xp[c0 + c + 4], w[wb + c],
                        w[wb + c + 1], w[wb + c + 2], w[wb + c + 3], w[wb + c + 4], n);
            }
            if (c + 3 <= g.cg) {
                mac3(a, xp[c0 + c], xp[c0 + c + 1], xp[c0 + c + 2], w[wb + c], w[wb + c + 1], w[wb + c + 2], n);
                c += 3;
            }
            for (; c < g.cg; c++) {
                mac1(a, xp[c0 + c], w[wb + c], n);
            }
            epilogue(a, o, 0, g.ho, n, curY, curRelu, 0);   // never pooled (see fusePool)
        }
    }

    /**
     * acc row a of output o, tile rows r0..r0+rows (n = rows*wph) -> y (K, Ho, Wo), relu fused;
     * with a fused max-pool, y (K, Hp, Wp) gets the pool rows whose window ends in this tile.
     */
    private void epilogue(float[] a, int o, int r0, int rows, int n, float[] y, boolean relu, int p) {
        final ConvGeometry g = geo;
        float m = iw.mult[o];
        float b = iw.bias[o];
        float floor = relu ? 0f : Float.NEGATIVE_INFINITY;
        for (int i = 0; i < n; i++) {          // in place, vectorized (see the class comment)
            a[i] = Math.max(a[i] * m + b, floor);
        }
        if (poolK > 0) {
            pool(a, o, r0, rows, y, p);
        } else if (wph == g.wo) {
            System.arraycopy(a, 0, y, (o * g.ho + r0) * g.wo, n);
        } else {
            for (int r = 0; r < rows; r++) {
                System.arraycopy(a, r * wph, y, (o * g.ho + r0 + r) * g.wo, g.wo);
            }
        }
    }

    /**
     * Fuses the max-pool (kernel k, stride s, no padding, every window inside the input) that
     * reads this conv's (relu'd) output, so the full-size output is never written: node
     * conv -&gt; relu -&gt; maxpool of sepnet-t8's stem (111x111x64, 3x3/2). Called once, after
     * construction, by {@link FastExecutor}; forward's y is then the pool's (K, hp, wp) output.
     */
    void fusePool(int k, int s, int hp, int wp) {
        if (whole1x1() || k < 1 || s < 1 || hp != (geo.ho - k) / s + 1 || wp != (geo.wo - k) / s + 1) {
            throw new IllegalArgumentException("cannot fuse a " + k + "x" + k + "/" + s + " max-pool into "
                    + geo.ho + "x" + geo.wo + " planar conv");
        }
        poolK = k;
        poolS = s;
        poolHo = hp;
        poolWo = wp;
        poolTail = new float[geo.k][Math.max(1, (k - 1) * geo.wo)];
        poolRowBuf = new float[par.threads][2][geo.wo];
    }

    /** Whether a max-pool is fused (fusePool). */
    boolean pooled() {
        return poolK > 0;
    }

    /**
     * Pool rows py of output o whose window rows py*s .. py*s + k - 1 end in tile rows r0..r1-1
     * (a, row stride wph, after the epilogue); earlier rows come from poolTail[o], the last k - 1
     * conv rows of the tiles before. The same maxima as {@link OpsChw#maxpool} (max is exact and
     * its order does not matter: no NaN, and Math.max(+0, -0) = +0 either way).
     */
    private void pool(float[] a, int o, int r0, int rows, float[] y, int p) {
        final int k = poolK;
        final int s = poolS;
        final int wo = geo.wo;
        final int r1 = r0 + rows;
        final float[] tail = poolTail[o];       // conv rows r0 - (k - 1) .. r0 - 1, wo each
        final float[] rowMax = poolRowBuf[p][0];
        final float[] row = poolRowBuf[p][1];
        int pyLo = r0 - k + 1 <= 0 ? 0 : (r0 - k + s) / s;              // ceil((r0 - k + 1) / s)
        int pyHi = r1 - k < 0 ? -1 : Math.min(poolHo - 1, (r1 - k) / s);
        for (int py = pyLo; py <= pyHi; py++) {
            for (int j = 0; j < k; j++) {
                int rr = py * s + j;
                float[] dst = j == 0 ? rowMax : row;
                if (rr >= r0) {
                    System.arraycopy(a, (rr - r0) * wph, dst, 0, wo);
                } else {
                    System.arraycopy(tail, (rr - r0 + k - 1) * wo, dst, 0, wo);
                }
                if (j > 0) {
                    for (int i = 0; i < wo; i++) {      // vectorized
                        rowMax[i] = Math.max(rowMax[i], row[i]);
                    }
                }
            }
            int yb = (o * poolHo + py) * poolWo;
            if (k == 3) {
                for (int ox = 0; ox < poolWo; ox++) {
                    int xb = ox * s;
                    y[yb + ox] = Math.max(Math.max(rowMax[xb], rowMax[xb + 1]), rowMax[xb + 2]);
                }
            } else {
                for (int ox = 0; ox < poolWo; ox++) {
                    int xb = ox * s;
                    float mx = rowMax[xb];
                    for (int kx = 1; kx < k; kx++) {
                        mx = Math.max(mx, rowMax[xb + kx]);
                    }
                    y[yb + ox] = mx;
                }
            }
        }
        for (int j = 0; j < k - 1; j++) {       // keep the last k - 1 conv rows (sources lie ahead)
            int rr = r1 - (k - 1) + j;
            if (rr >= r0) {
                System.arraycopy(a, (rr - r0) * wph, tail, j * wo, wo);
            } else if (rr >= 0) {
                System.arraycopy(tail, (rr - r0 + k - 1) * wo, tail, j * wo, wo);
            }
        }
    }

    /** a[i] += w0 * x0[i] for i &lt; n. */
    static void mac1(float[] a, float[] x0, float w0, int n) {
        for (int i = 0; i < n; i++) {
            a[i] += w0 * x0[i];
        }
    }

    /** a[i] += w0 * x0[i] + w1 * x1[i] + w2 * x2[i] for i &lt; n. */
    static void mac3(float[] a, float[] x0, float[] x1, float[] x2, float w0, float w1, float w2, int n) {
        for (int i = 0; i < n; i++) {
            a[i] += w0 * x0[i] + w1 * x1[i] + w2 * x2[i];
        }
    }

    /** a[i] += w0 * x0[i] + ... + w3 * x3[i] for i &lt; n. */
    static void mac4(float[] a, float[] x0, float[] x1, float[] x2, float[] x3, float w0, float w1, float w2, float w3,
                     int n) {
        for (int i = 0; i < n; i++) {
            a[i] += w0 * x0[i] + w1 * x1[i] + w2 * x2[i] + w3 * x3[i];
        }
    }

    /**
     * a[i] = 0 + (w0 * x0[i] + ... + w4 * x4[i]) for i &lt; n: what mac5 gives on a zeroed a, bit for
     * bit (the 0 + turns a sum of -0 products into +0, as 0 + -0 = +0 in mac5).
     */
    static void set5(float[] a, float[] x0, float[] x1, float[] x2, float[] x3, float[] x4, float w0, float w1,
                     float w2, float w3, float w4, int n) {
        for (int i = 0; i < n; i++) {
            a[i] = 0f + (w0 * x0[i] + w1 * x1[i] + w2 * x2[i] + w3 * x3[i] + w4 * x4[i]);
        }
    }

    /** a[i] += w0 * x0[i] + ... + w4 * x4[i] for i &lt; n. */
    static void mac5(float[] a, float[] x0, float[] x1, float[] x2, float[] x3, float[] x4, float w0, float w1,
                     float w2, float w3, float w4, int n) {
        for (int i = 0; i < n; i++) {
            a[i] += w0 * x0[i] + w1 * x1[i] + w2 * x2[i] + w3 * x3[i] + w4 * x4[i];
        }
    }

    /** wide[i] += (int) a[i]; a[i] = 0 (a holds exact integers). */
    private static void flushInto(int[] wide, float[] a, int n) {
        for (int i = 0; i < n; i++) {
            wide[i] += (int) a[i];
            a[i] = 0f;
        }
    }

    /**
     * x (C, H, W) float32 -> qf (C, H, W) q - z -> xp (C)(phases, hph, wph) at the real pixels:
     * one copy per channel when its rows are contiguous in xp (1x1, no padding), one per row at
     * stride 1, and at stride s one strided loop per row and column phase (no index table).
     */
    private void quantize(float[] x) {
        final ConvGeometry g = geo;
        final float[] qf = scratch.qf();
        final int s = g.stride;
        quantizeCentered(x, g.c * g.h * g.w, iw.scale, iw.zero, iw.qmax, qf);
        final boolean contiguous = s == 1 && wph == g.w && colDst[0] == 0 && rowDst[0] == 0;
        for (int c = 0; c < g.c; c++) {
            float[] dst = xp[c];
            if (contiguous) {
                System.arraycopy(qf, c * g.h * g.w, dst, 0, g.h * g.w);
                continue;
            }
            for (int iy = 0; iy < g.h; iy++) {
                int xb = (c * g.h + iy) * g.w;
                int row = rowDst[iy];
                if (s == 1) {
                    System.arraycopy(qf, xb, dst, row + colDst[0], g.w);
                } else {
                    for (int ix0 = 0; ix0 < Math.min(s, g.w); ix0++) {   // columns ix0, ix0 + s, ...
                        int d = row + colDst[ix0];                     // consecutive in phase px
                        int cnt = (g.w - ix0 + s - 1) / s;
                        for (int j = 0; j < cnt; j++) {
                            dst[d + j] = qf[xb + ix0 + s * j];
                        }
                    }
                }
            }
        }
    }
}
