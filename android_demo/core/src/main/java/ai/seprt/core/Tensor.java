package ai.seprt.core;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/** One TENSOR section: dtype, shape and its bytes (a little-endian view of the file). */
final class Tensor {
    static final int F32 = 1;
    static final int I8 = 2;
    static final int U8 = 3;

    final int dtype;
    final int[] shape;
    private final ByteBuffer data;

    Tensor(int dtype, int[] shape, ByteBuffer data) {
        this.dtype = dtype;
        this.shape = shape;
        this.data = data.slice().order(ByteOrder.LITTLE_ENDIAN);
    }

    static String dtypeName(int dtype) {
        return dtype == F32 ? "f32" : dtype == I8 ? "i8" : dtype == U8 ? "u8" : "dtype " + dtype;
    }

    /** Element count (the reader checked it against the section size). */
    int count() {
        int n = 1;
        for (int d : shape) {
            n *= d;
        }
        return n;
    }

    /** f32 data as a new array. */
    float[] floats() {
        float[] out = new float[count()];
        data.duplicate().order(ByteOrder.LITTLE_ENDIAN).asFloatBuffer().get(out);
        return out;
    }

    /** i8 or u8 data as a new array (u8 values are read back with {@code & 0xFF}). */
    byte[] bytes() {
        byte[] out = new byte[count()];
        data.duplicate().get(out);
        return out;
    }
}
