package ai.seprt.core;

/**
 * Activation quantization of a value feeding an integer conv/fc:
 * q = clip(rint(x / scale) + zero, 0, 2^bits - 1), computed in float32 with rint rounding half
 * to even, exactly as seprt.quant.quantize_act.
 */
final class ActivationQuantizer {
    final float scale;
    final int zero;
    final int bits;
    private final int qmax;

    ActivationQuantizer(Value v) {
        scale = v.qScale;
        zero = v.qZero;
        bits = v.qBits;
        qmax = (1 << bits) - 1;
    }

    /** x (any shape) -> q in 0..2^bits - 1, same shape. */
    int[] levels(float[] x) {
        int[] q = new int[x.length];
        for (int i = 0; i < x.length; i++) {
            float t = (float) Math.rint(x[i] / scale) + zero;   // float32 divide, exact rint, float32 add
            q[i] = t <= 0 ? 0 : t >= qmax ? qmax : (int) t;
        }
        return q;
    }

    /** x -> q - zero, the integer that multiplies the weights. */
    int[] centered(float[] x) {
        int[] q = levels(x);
        for (int i = 0; i < q.length; i++) {
            q[i] -= zero;
        }
        return q;
    }
}
