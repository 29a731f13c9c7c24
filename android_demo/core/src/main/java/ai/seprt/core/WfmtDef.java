package ai.seprt.core;

/**
 * The weight-format table: every weight format this reader knows, declared once (the
 * counterpart of seprt/ops/wfmt_*.py). Each entry states its stable on-disk code (docs/format.md,
 * "Weight formats"), its tensors in file order (dtype and shape rule), its value rules, whether
 * it runs on the integer path, and how to unpack its effective float32 weight.
 *
 * <p>Weights are OHWI: the unpacked weight shape ("kshape") is (K, k, k, Cg) for conv and
 * (K, C) for fc.
 */
enum WfmtDef {
    /** No weights (ops other than conv and fc): code 0, no tensors. */
    NONE(0, "none", false, "", 1),
    F32(1, "f32", false, "", 1,
            new Spec("weight", Tensor.F32, Spec.KSHAPE), new Spec("bias", Tensor.F32, Spec.PER_CHANNEL)) {
        @Override
        float[] floatWeight(Node n, int k, int taps) {
            return n.tensors[0].floats();
        }
    },
    I8(2, "i8", true, "scale", 1,
            new Spec("weight", Tensor.I8, Spec.KSHAPE), new Spec("scale", Tensor.F32, Spec.PER_CHANNEL),
            new Spec("bias", Tensor.F32, Spec.PER_CHANNEL)) {
        @Override
        void check(Node n, int[] kshape) throws SeprtFormatException {
            for (float s : n.tensors[1].floats()) {
                if (!(s > 0)) {
                    throw new SeprtFormatException("node '" + n.name + "': weight scales must be finite and > 0");
                }
            }
        }

        @Override
        float[] floatWeight(Node n, int k, int taps) {     // q * scale[o]; -128 is read as -128
            byte[] q = n.tensors[0].bytes();
            float[] scale = n.tensors[1].floats();
            float[] w = new float[k * taps];
            for (int o = 0; o < k; o++) {
                for (int j = 0; j < taps; j++) {
                    w[o * taps + j] = q[o * taps + j] * scale[o];
                }
            }
            return w;
        }
    },
    BIN(3, "bin", true, "alpha", 2,
            new Spec("pattern", Tensor.U8, Spec.PACKED), new Spec("alpha", Tensor.F32, Spec.PER_CHANNEL),
            new Spec("bias", Tensor.F32, Spec.PER_CHANNEL)) {
        @Override
        void check(Node n, int[] kshape) throws SeprtFormatException {
            for (float a : n.tensors[1].floats()) {
                if (!(a >= 0)) {
                    throw new SeprtFormatException("node '" + n.name + "': alpha must be finite and >= 0");
                }
            }
            int k = kshape[0];
            int nbits = kshape[1] * kshape[2] * kshape[3];
            int rowBytes = (nbits + 7) / 8;
            int used = nbits % 8;
            if (used != 0) {
                byte[] p = n.tensors[0].bytes();
                for (int o = 0; o < k; o++) {
                    if (((p[o * rowBytes + rowBytes - 1] & 0xFF) >> used) != 0) {
                        throw new SeprtFormatException("node '" + n.name + "': padding bits of packed patterns must be 0");
                    }
                }
            }
        }

        @Override
        float[] floatWeight(Node n, int k, int taps) {     // ±1 * alpha[o]
            byte[] p = n.tensors[0].bytes();
            float[] alpha = n.tensors[1].floats();
            float[] w = new float[k * taps];
            for (int o = 0; o < k; o++) {
                for (int j = 0; j < taps; j++) {
                    w[o * taps + j] = BinaryConv.sign(p, o, taps, j) * alpha[o];
                }
            }
            return w;
        }
    };

    /** One tensor a weight format stores: name, dtype and shape rule. */
    static final class Spec {
        static final int KSHAPE = 0;        // the unpacked weight shape
        static final int PER_CHANNEL = 1;   // (K,)
        static final int PACKED = 2;        // (K, ceil(k*k*Cg / 8)), conv only

        final String name;
        final int dtype;
        final int rule;

        Spec(String name, int dtype, int rule) {
            this.name = name;
            this.dtype = dtype;
            this.rule = rule;
        }

        /** This tensor's shape for a node of unpacked weight shape kshape, or null where it cannot exist. */
        int[] shape(int[] kshape) {
            switch (rule) {
                case KSHAPE:
                    return kshape;
                case PER_CHANNEL:
                    return new int[] {kshape[0]};
                default:
                    if (kshape.length != 4) {
                        return null;
                    }
                    long bits = (long) kshape[1] * kshape[2] * kshape[3];
                    return new int[] {kshape[0], (int) ((bits + 7) / 8)};
            }
        }
    }

    /** On-disk weight format code (never changes); 0 = none. */
    final int code;
    final String fmtName;
    /** Runs on the integer path when the node's input value is quantized. */
    final boolean integer;
    /** The tensor holding the integer path's per-output-channel multiplier ("" for f32). */
    final String scaleName;
    /** Smallest kernel the format allows (bin: 2, i.e. k x k patterns with k > 1). */
    final int minKernel;
    final Spec[] tensors;

    WfmtDef(int code, String fmtName, boolean integer, String scaleName, int minKernel, Spec... tensors) {
        this.code = code;
        this.fmtName = fmtName;
        this.integer = integer;
        this.scaleName = scaleName;
        this.minKernel = minKernel;
        this.tensors = tensors;
    }

    /** Index of the tensor called name, or -1. */
    int index(String name) {
        for (int i = 0; i < tensors.length; i++) {
            if (tensors[i].name.equals(name)) {
                return i;
            }
        }
        return -1;
    }

    /** Value rules beyond dtype, shape, finiteness and magnitude (checked by GraphValidator for all). */
    void check(Node n, int[] kshape) throws SeprtFormatException {
    }

    /** The effective float32 weight, (K, taps) row-major, taps = k*k*Cg (conv) or C (fc). */
    float[] floatWeight(Node n, int k, int taps) {
        throw new IllegalStateException(fmtName + " has no weights");
    }

    /** The format of an on-disk code, or null when this reader does not know it. */
    static WfmtDef byCode(long code) {
        for (WfmtDef w : values()) {
            if (w.code == code) {
                return w;
            }
        }
        return null;
    }
}
