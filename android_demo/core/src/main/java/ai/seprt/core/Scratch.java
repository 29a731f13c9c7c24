package ai.seprt.core;

/**
 * Scratch buffers shared by the fast kernels of one model: the quantized input (qf), the
 * accumulator rows (acc) and the shifted tap planes (tap) live only during one kernel's
 * forward, so every kernel uses the same arrays, sized for the largest. Kernels state their
 * needs when they are built and take the arrays when they run (after every kernel is built).
 * The zero-padded input planes are not shared: their padding is written once per kernel.
 */
final class Scratch {
    private int qfSize;
    private int accCount;
    private int tapCount;
    private int rowLen;
    private float[] qf;
    private float[][] acc;
    private float[][] tap;

    /** A kernel needs qf of qfSize floats, accCount accumulator rows and tapCount tap rows of len floats. */
    void need(int qfSize, int accCount, int tapCount, int len) {
        if (qf != null) {
            throw new IllegalStateException("scratch already in use");
        }
        this.qfSize = Math.max(this.qfSize, qfSize);
        this.accCount = Math.max(this.accCount, accCount);
        this.tapCount = Math.max(this.tapCount, tapCount);
        this.rowLen = Math.max(this.rowLen, len);
    }

    private void allocate() {
        qf = new float[qfSize];
        acc = new float[accCount][rowLen];
        tap = new float[tapCount][rowLen];
    }

    /** (at least qfSize) quantized input. */
    float[] qf() {
        if (qf == null) {
            allocate();
        }
        return qf;
    }

    /** (at least accCount)(at least len) accumulator rows. */
    float[][] acc() {
        if (qf == null) {
            allocate();
        }
        return acc;
    }

    /** (at least tapCount)(at least len) tap rows. */
    float[][] tap() {
        if (qf == null) {
            allocate();
        }
        return tap;
    }
}
