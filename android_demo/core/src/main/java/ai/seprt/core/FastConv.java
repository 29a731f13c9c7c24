package ai.seprt.core;

/**
 * A conv or fc node prepared for the fast path: {@link #forward} reads x (C, H, W) float32 and
 * overwrites y (K, Ho, Wo) float32 (fc: x (C,) -> y (K,)) without allocating: the fast path keeps
 * activations planar (channel-major), see {@link FastExecutor}. Each subclass
 * owns its quantized, padded input buffer, laid out for its loops and prepared once.
 *
 * <p>Integer kernels compute the same exact acc = sum w * (q - z) as the reference kernels
 * ({@link Int8Conv}, {@link BinaryConv}) and the same float epilogue
 * y = f32(acc) * mult[o] + bias[o], so their results are bit-identical to the reference.
 */
abstract class FastConv {
    final ConvGeometry geo;

    FastConv(ConvGeometry geo) {
        this.geo = geo;
    }

    /** Kernel name: op, dtype, layout (e.g. conv_exact_f32_planar). */
    abstract String kernelName();

    /**
     * x (C, H, W) float32 -> y (K, Ho, Wo) float32, no allocation; relu: y = max(y, 0) fused
     * (Math.max equals the reference relu on every non-NaN float, and y = f32(acc) * mult + bias
     * with finite mult and bias is never NaN).
     */
    abstract void forward(float[] x, float[] y, boolean relu);

    /** 1.5 * 2^23: for |v| &lt; 2^22, (v + ROUND) - ROUND is v rounded to an integer, half to even. */
    static final float ROUND = 12582912f;

    /**
     * qf[i] = q - z of x[i] for i &lt; n, as float32: q = clip(rint(x / scale) + zero, 0, qmax),
     * bit-identical to {@link ActivationQuantizer}. rint is the float32 round-to-even trick, exact
     * for |v| &lt; 2^22; larger |v| (or +-Inf) still land far beyond 0..qmax on the same side, so
     * the clip gives the same q (activations are never NaN). One loop with no float-to-int
     * conversion, which C2 vectorizes; the results are exact small integers.
     */
    static void quantizeCentered(float[] x, int n, float scale, int zero, int qmax, float[] qf) {
        final float z = zero;
        final float max = qmax;
        for (int i = 0; i < n; i++) {
            qf[i] = Math.min(Math.max(((x[i] / scale + ROUND) - ROUND) + z, 0f), max) - z;
        }
    }

    /** The reference kernel behind the fast interface (float convs; layers too wide for int sums). */
    static final class Reference extends FastConv {
        private final ConvKernel kernel;
        private final float[] hwc;      // (H, W, C) the input as the reference kernel takes it

        Reference(ConvKernel kernel) {
            super(kernel.geo);
            this.kernel = kernel;
            hwc = new float[geo.h * geo.w * geo.c];
        }

        @Override
        String kernelName() {
            return "reference:" + kernel.getClass().getSimpleName();
        }

        @Override
        void forward(float[] x, float[] y, boolean relu) {
            OpsChw.toHwc(x, geo.h, geo.w, geo.c, hwc);
            float[] r = kernel.forward(hwc);
            if (relu) {
                Ops.relu(r, r);
            }
            OpsChw.fromHwc(r, geo.ho, geo.wo, geo.k, y);
        }
    }
}
