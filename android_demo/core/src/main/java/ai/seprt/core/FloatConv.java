package ai.seprt.core;

/** Float path: y = conv(x, W) + bias with zero padding, W the effective float32 weight. */
final class FloatConv extends ConvKernel {
    private final float[] weight;   // (groups, k*k*Cg, Kg): weight[(g*n + j)*Kg + o'] = W[g*Kg + o', j]

    FloatConv(ConvGeometry geo, float[] bias, float[] ohwi) {
        super(geo, bias);
        this.weight = new float[ohwi.length];
        int n = geo.taps();
        for (int o = 0; o < geo.k; o++) {
            int g = o / geo.kg;
            for (int j = 0; j < n; j++) {
                weight[(g * n + j) * geo.kg + o % geo.kg] = ohwi[o * n + j];
            }
        }
    }

    @Override
    float[] forward(float[] x) {
        // x (H, W, C) -> y (Ho, Wo, K). Per output pixel and group, acc (Kg) += x[tap, c] * W[tap, c, :],
        // taps and channels in OHWI order; padding taps and zero inputs add nothing and are skipped.
        final ConvGeometry q = geo;
        final int n = q.taps();
        float[] y = new float[q.ho * q.wo * q.k];
        float[] acc = new float[q.kg];
        for (int oy = 0; oy < q.ho; oy++) {
            for (int ox = 0; ox < q.wo; ox++) {
                for (int g = 0; g < q.groups; g++) {
                    java.util.Arrays.fill(acc, 0f);
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
                                float xv = x[xb + c];
                                if (xv == 0f) {
                                    continue;
                                }
                                int wb = (jb + c) * q.kg;
                                for (int o = 0; o < q.kg; o++) {
                                    acc[o] += xv * weight[wb + o];
                                }
                            }
                        }
                    }
                    int yb = (oy * q.wo + ox) * q.k + g * q.kg;
                    for (int o = 0; o < q.kg; o++) {
                        y[yb + o] = acc[o] + bias[g * q.kg + o];
                    }
                }
            }
        }
        return y;
    }
}
