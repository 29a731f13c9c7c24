package ai.seprt.core;

/** An activation tensor of the graph: NHWC without the batch axis, (H, W, C) or (C,). */
public final class Value {
    /** Name of the producing node ("input" for the graph input). */
    String name = "";
    final int[] shape;
    /** Activation quantization (q_bits 0 = float value; else 2, 4 or 8). */
    final float qScale;
    final int qZero;
    final int qBits;

    Value(int[] shape, float qScale, int qZero, int qBits) {
        this.shape = shape;
        this.qScale = qScale;
        this.qZero = qZero;
        this.qBits = qBits;
    }

    boolean quantized() {
        return qBits > 0;
    }

    int rank() {
        return shape.length;
    }

    /** Number of elements (validated to be at most 2^28). */
    int size() {
        long n = 1;
        for (int d : shape) {
            n *= d;
        }
        return (int) n;
    }

    static String shapeString(int[] shape) {
        StringBuilder sb = new StringBuilder("(");
        for (int i = 0; i < shape.length; i++) {
            sb.append(i > 0 ? ", " : "").append(shape[i]);
        }
        return sb.append(shape.length == 1 ? ",)" : ")").toString();
    }
}
