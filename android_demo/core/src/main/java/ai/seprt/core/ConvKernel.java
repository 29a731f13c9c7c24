package ai.seprt.core;

/**
 * A conv or fc node with its weights prepared for one of three kernels:
 * {@link FloatConv} (float path), {@link Int8Conv} (i8 weights, integer path) and
 * {@link BinaryConv} (bit-packed patterns, bin or stack expanded, integer path by AND + popcount).
 */
abstract class ConvKernel {
    final ConvGeometry geo;
    final float[] bias;

    ConvKernel(ConvGeometry geo, float[] bias) {
        this.geo = geo;
        this.bias = bias;
    }

    /** x (H, W, C) float32 -> y (Ho, Wo, K) float32; fc: x (C,) -> y (K,). */
    abstract float[] forward(float[] x);

    /** Chooses the kernel of a node by its weight format and whether its input is quantized. */
    static ConvKernel create(Graph g, Node n) {
        ConvGeometry geo = new ConvGeometry(g, n);
        float[] bias = n.bias.floats();
        Value in = g.value(n.inputs[0]);
        if (g.isInteger(n)) {
            float[] mult = n.scale.floats();        // y = f32(acc) * f32(s * scale[o]) + bias[o]
            for (int o = 0; o < mult.length; o++) {
                mult[o] = in.qScale * mult[o];
            }
            ActivationQuantizer quant = new ActivationQuantizer(in);
            return n.wfmt == Node.WeightFormat.I8
                    ? new Int8Conv(geo, bias, n.weight.bytes(), mult, quant)
                    : new BinaryConv(geo, bias, n.wfmt.patterns(n, geo.k, geo.taps()), mult, quant);
        }
        return new FloatConv(geo, bias, effectiveWeight(n, geo));
    }

    /** The float32 weight (K, k, k, Cg): f32 as stored, q * scale[o] (i8), ±alpha[o] (bin). */
    private static float[] effectiveWeight(Node n, ConvGeometry geo) {
        return n.wfmt.floatWeight(n, geo.k, geo.taps());
    }
}
