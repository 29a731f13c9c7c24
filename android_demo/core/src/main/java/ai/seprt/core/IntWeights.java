package ai.seprt.core;

/**
 * Integer weights of an integer-path conv/fc as the fast kernels take them: (K, k, k, Cg) OHWI
 * ints, i8 as stored, bin patterns (and stack filters) expanded to ±1 (the file's sign order, bit 1 = +1), and the
 * per-output epilogue y = f32(acc) * mult[o] + bias[o] with mult[o] = f32(s * scale[o]).
 */
final class IntWeights {
    /** Terms of magnitude at most 255 * 128 whose sum always fits in an int. */
    static final int SAFE_TERMS = Integer.MAX_VALUE / (255 * 128);

    final int[] ohwi;       // (K, k*k*Cg)
    final float[] mult;     // (K,)
    final float[] bias;     // (K,)
    final float scale;      // input activation scale s
    final int zero;         // input zero point z
    final int qmax;         // 2^bits - 1

    IntWeights(Graph g, Node n, ConvGeometry geo) {
        Value in = g.value(n.inputs[0]);
        scale = in.qScale;
        zero = in.qZero;
        qmax = (1 << in.qBits) - 1;
        bias = n.bias.floats();
        mult = n.scale.floats();
        for (int o = 0; o < mult.length; o++) {
            mult[o] = in.qScale * mult[o];
        }
        int taps = geo.taps();
        byte[] raw = n.wfmt == Node.WeightFormat.I8 ? n.weight.bytes() : n.wfmt.patterns(n, geo.k, taps);
        ohwi = new int[geo.k * taps];
        for (int o = 0; o < geo.k; o++) {
            for (int j = 0; j < taps; j++) {
                ohwi[o * taps + j] = n.wfmt == Node.WeightFormat.I8 ? raw[o * taps + j]
                        : (int) BinaryConv.sign(raw, o, taps, j);
            }
        }
    }
}
