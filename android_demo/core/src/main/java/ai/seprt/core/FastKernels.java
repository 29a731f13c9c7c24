package ai.seprt.core;

/**
 * The one place that picks a fast kernel for a conv/fc node, by op, weight format and shape.
 * Adding an op or a weight format means adding a kernel class and a line here; the reference
 * kernels ({@link ConvKernel#create}) stay what the fast ones are tested against.
 *
 * <pre>
 *   integer path (i8 or bin weights, quantized input), int sums safe:
 *       k x k conv with Ho*Wph &gt;= PLANAR_MIN (PLANAR_MIN_BIN for bin and stack weights),
 *       or 1x1 conv with Ho*Wo &gt;= PLANAR_MIN_1X1  -> {@link ConvExactPlanar}
 *       otherwise (small images, fc)              -> {@link ConvI32Nhwc}
 *   float path, or a window too wide for int sums -> the reference kernel
 * </pre>
 * bin patterns run as ±1 int weights (expanded at load): on HotSpot this measured faster than
 * AND + popcount over bit-planes (android_demo/README.md, "JVM latency").
 */
final class FastKernels {
    /** k x k convs (k &gt; 1) with output planes (Ho * Wph ints) at least this big run planar. */
    static final int PLANAR_MIN = Integer.getInteger("seprt.planarMin", 64);
    /**
     * Same for ±1 weights (bin, stack), which the planar kernel runs as sign-set adds: sepnet-t8's
     * 7x7 pattern convs (Ho * Wph = 63) took 100-180 us there against 170-290 us in NHWC.
     */
    static final int PLANAR_MIN_BIN = Integer.getInteger("seprt.planarMinBin", 32);
    /** 1x1 convs with at least this many output pixels run planar. */
    static final int PLANAR_MIN_1X1 = Integer.getInteger("seprt.planarMin1x1", 128);

    private FastKernels() {
    }

    static FastConv create(Graph g, Node n, Parallel par, Scratch scratch) {
        ConvGeometry geo = new ConvGeometry(g, n);
        if (!g.isInteger(n) || geo.taps() > IntWeights.SAFE_TERMS
                || (long) geo.kernel * geo.kernel * geo.c > IntWeights.SAFE_TERMS) {
            return new FastConv.Reference(ConvKernel.create(g, n));
        }
        IntWeights iw = new IntWeights(g, n, geo);
        int wph = geo.wo + (geo.kernel - 1) / geo.stride;
        boolean pm1 = n.wfmt == Node.WeightFormat.BIN || n.wfmt == Node.WeightFormat.STACK
                || n.wfmt == Node.WeightFormat.STACK_PACKED;
        boolean planar = geo.kernel > 1 ? (long) geo.ho * wph >= (pm1 ? PLANAR_MIN_BIN : PLANAR_MIN)
                : (long) geo.ho * geo.wo >= PLANAR_MIN_1X1;
        if (n.op == Node.Op.CONV && planar) {
            return new ConvExactPlanar(geo, iw, par, scratch);
        }
        return new ConvI32Nhwc(geo, iw, par, scratch);
    }
}
