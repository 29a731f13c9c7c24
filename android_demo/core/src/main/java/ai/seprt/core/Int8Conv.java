package ai.seprt.core;

/**
 * Integer path for int8 weights: acc[o] = sum over taps and channels of w[o, tap, c] * (q - z),
 * exact, then y = f32(acc) * mult[o] + bias[o]. One tap's sum over Cg &lt;= 65536 channels fits
 * in an int (65536 * 255 * 128 &lt; 2^31); layers whose whole window could overflow an int
 * carry the sum in a long after every tap.
 */
final class Int8Conv extends ConvKernel {
    /** Terms of magnitude at most 255 * 128 whose sum always fits in an int. */
    private static final int SAFE_TERMS = Integer.MAX_VALUE / (255 * 128);

    private final int[] weight;     // (groups, k*k*Cg, Kg): weight[(g*n + j)*Kg + o'] = w[g*Kg + o', j]
    private final float[] mult;     // (K,) f32(s * scale[o])
    private final ActivationQuantizer quant;
    private final boolean widen;    // k*k*Cg > SAFE_TERMS: move the int sums to longs after each tap

    Int8Conv(ConvGeometry geo, float[] bias, byte[] ohwi, float[] mult, ActivationQuantizer quant) {
        super(geo, bias);
        this.mult = mult;
        this.quant = quant;
        int n = geo.taps();
        widen = n > SAFE_TERMS;
        weight = new int[ohwi.length];
        for (int o = 0; o < geo.k; o++) {
            int g = o / geo.kg;
            for (int j = 0; j < n; j++) {
                weight[(g * n + j) * geo.kg + o % geo.kg] = ohwi[o * n + j];
            }
        }
    }

    @Override
    float[] forward(float[] x) {
        // x (H, W, C) -> q - z (H, W, C) -> y (Ho, Wo, K). Padding is the real 0 (q - z = 0) and,
        // like zero activations, adds nothing: skipped.
        final ConvGeometry q = geo;
        final int n = q.taps();
        int[] xq = quant.centered(x);
        float[] y = new float[q.ho * q.wo * q.k];
        int[] acc = new int[q.kg];
        long[] wide = new long[widen ? q.kg : 0];
        for (int oy = 0; oy < q.ho; oy++) {
            for (int ox = 0; ox < q.wo; ox++) {
                for (int g = 0; g < q.groups; g++) {
                    java.util.Arrays.fill(acc, 0);
                    java.util.Arrays.fill(wide, 0L);
                    for (int ky = 0; ky < q.kernel; ky++) {
                        int iy = oy * q.stride - q.pad + ky;
                        for (int kx = 0; kx < q.kernel && iy >= 0 && iy < q.h; kx++) {
                            int ix = ox * q.stride - q.pad + kx;
                            if (ix < 0 || ix >= q.w) {
                                continue;
                            }
                            int xb = (iy * q.w + ix) * q.c + g * q.cg;
                            int jb = g * n + (ky * q.kernel + kx) * q.cg;
                            for (int c = 0; c < q.cg; c++) {
                                int xv = xq[xb + c];
                                if (xv == 0) {
                                    continue;
                                }
                                int wb = (jb + c) * q.kg;
                                for (int o = 0; o < q.kg; o++) {
                                    acc[o] += xv * weight[wb + o];
                                }
                            }
                            if (widen) {
                                for (int o = 0; o < q.kg; o++) {
                                    wide[o] += acc[o];
                                    acc[o] = 0;
                                }
                            }
                        }
                    }
                    int yb = (oy * q.wo + ox) * q.k + g * q.kg;
                    for (int o = 0; o < q.kg; o++) {
                        long sum = widen ? wide[o] : acc[o];
                        y[yb + o] = (float) sum * mult[g * q.kg + o] + bias[g * q.kg + o];
                    }
                }
            }
        }
        return y;
    }
}
