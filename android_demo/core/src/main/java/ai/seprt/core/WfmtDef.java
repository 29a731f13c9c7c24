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
            return signTimes(n.tensors[0].bytes(), n.tensors[1].floats(), k, taps);
        }

        @Override
        byte[] patterns(Node n, int k, int taps) {
            return n.weight.bytes();
        }
    },
    /**
     * Stacked low-dimensional binary filters (seprt/ops/wfmt_stack.py): slice s (d channels) of
     * filter o is bank row index[o][s], a packed (k, k, d) ±1 filter; the whole filter is scaled
     * by alpha[o] (any sign). m = bank rows, d = Cg / index columns. Both paths run the filters
     * expanded to packed (k, k, Cg) patterns, i.e. exactly as {@link #BIN}.
     */
    STACK(4, "stack", true, "alpha", 1,
            new Spec("bank", Tensor.U8, Spec.FREE), new Spec("index", Tensor.U8, Spec.FREE),
            new Spec("alpha", Tensor.F32, Spec.PER_CHANNEL), new Spec("bias", Tensor.F32, Spec.PER_CHANNEL)) {
        @Override
        void check(Node n, int[] kshape) throws SeprtFormatException {
            Stacked.check(n, kshape, false);
        }

        @Override
        byte[] patterns(Node n, int k, int taps) {
            return Stacked.patterns(n, k, taps, false);
        }

        @Override
        float[] floatWeight(Node n, int k, int taps) {     // ±1 * alpha[o]
            return BIN.signTimes(patterns(n, k, taps), n.tensors[2].floats(), k, taps);
        }
    },
    /**
     * {@link #STACK} with the index bit-packed: u8 (S, ceil(K*b/8)), one row of K indices per
     * slice, b = max(1, ceil(log2 m)) bits each, LSB first; padding bits 0.
     */
    STACK_PACKED(5, "stack_packed", true, "alpha", 1,
            new Spec("bank", Tensor.U8, Spec.FREE), new Spec("index", Tensor.U8, Spec.FREE),
            new Spec("alpha", Tensor.F32, Spec.PER_CHANNEL), new Spec("bias", Tensor.F32, Spec.PER_CHANNEL)) {
        @Override
        void check(Node n, int[] kshape) throws SeprtFormatException {
            Stacked.check(n, kshape, true);
        }

        @Override
        byte[] patterns(Node n, int k, int taps) {
            return Stacked.patterns(n, k, taps, true);
        }

        @Override
        float[] floatWeight(Node n, int k, int taps) {     // ±1 * alpha[o]
            return BIN.signTimes(patterns(n, k, taps), n.tensors[2].floats(), k, taps);
        }
    };

    /** The two stacked formats' shared rules: stack (a byte per index) and stack_packed (b bits). */
    static final class Stacked {
        static final int MAX_BANK = 256;

        private Stacked() {
        }

        /** Bits per packed index for a bank of m filters: ceil(log2 m), at least 1. */
        static int indexBits(int m) {
            return Math.max(1, 32 - Integer.numberOfLeadingZeros(m - 1));
        }

        /** S = Cg / d, from the index's shape. */
        static int slices(Node n, boolean packed) {
            return n.tensors[1].shape[packed ? 0 : 1];
        }

        /** The bank row of each slice, (K, S) row-major; the index's shape already checked. */
        static int[] index(Node n, int k, boolean packed) {
            byte[] raw = n.tensors[1].bytes();
            int slices = slices(n, packed);
            int[] index = new int[k * slices];
            if (!packed) {
                for (int i = 0; i < index.length; i++) {
                    index[i] = raw[i] & 0xFF;
                }
                return index;
            }
            int b = indexBits(n.tensors[0].shape[0]);
            int rowBytes = n.tensors[1].shape[1];
            for (int s = 0; s < slices; s++) {
                for (int o = 0; o < k; o++) {
                    int v = 0;
                    for (int j = 0; j < b; j++) {
                        int bit = o * b + j;
                        v |= ((raw[s * rowBytes + bit / 8] >> (bit % 8)) & 1) << j;
                    }
                    index[o * slices + s] = v;
                }
            }
            return index;
        }

        static void check(Node n, int[] kshape, boolean packed) throws SeprtFormatException {
            String where = "node '" + n.name + "': ";
            Tensor bank = n.tensors[0];
            Tensor index = n.tensors[1];
            if (bank.shape.length != 2 || index.shape.length != 2) {
                throw new SeprtFormatException(where + "stack bank and index must be 2-d, got bank "
                        + Value.shapeString(bank.shape) + " and index " + Value.shapeString(index.shape));
            }
            if (!packed && index.shape[0] != kshape[0]) {
                throw new SeprtFormatException(where + "index has " + index.shape[0] + " rows, the conv " + kshape[0]
                        + " output channels");
            }
            int m = bank.shape[0];
            int slices = slices(n, packed);
            int cg = kshape[3];
            if (m < 1 || m > MAX_BANK) {
                throw new SeprtFormatException(where + "bank has " + m + " filters, must be 1.." + MAX_BANK);
            }
            if (slices < 1 || cg % slices != 0) {
                throw new SeprtFormatException(where + slices + " slices per filter do not divide its " + cg
                        + " input channels (slice depth d must divide Cg)");
            }
            int d = cg / slices;
            long bits = (long) kshape[1] * kshape[2] * d;
            int nb = (int) ((bits + 7) / 8);
            if (bank.shape[1] != nb) {
                throw new SeprtFormatException(where + "bank rows are " + bank.shape[1] + " bytes, a " + kshape[1] + "x"
                        + kshape[2] + "x" + d + " binary filter needs " + nb);
            }
            byte[] b = bank.bytes();
            checkPadding(b, m, nb, bits, where + "padding bits of packed bank filters must be 0");
            if (packed) {
                long indexBits = (long) kshape[0] * indexBits(m);
                long rowBytes = (indexBits + 7) / 8;
                if (index.shape[1] != rowBytes) {
                    throw new SeprtFormatException(where + "packed index rows are " + index.shape[1] + " bytes, "
                            + kshape[0] + " indices of " + indexBits(m) + " bits need " + rowBytes);
                }
                checkPadding(index.bytes(), slices, (int) rowBytes, indexBits,
                        where + "padding bits of packed index rows must be 0");
            }
            int max = -1;
            for (int v : index(n, kshape[0], packed)) {
                max = Math.max(max, v);
            }
            if (max >= m) {
                throw new SeprtFormatException(where + "bank index " + max + " out of range for a bank of " + m
                        + " filters");
            }
        }

        /** The unused high bits of each row's last byte (rows of rowBytes holding bits bits) are 0. */
        private static void checkPadding(byte[] p, int rows, int rowBytes, long bits, String error)
                throws SeprtFormatException {
            int used = (int) (bits % 8);
            if (used == 0) {
                return;
            }
            for (int r = 0; r < rows; r++) {
                if (((p[r * rowBytes + rowBytes - 1] & 0xFF) >> used) != 0) {
                    throw new SeprtFormatException(error);
                }
            }
        }

        /** The ±1 filters expanded from the bank, packed (K, ceil(taps/8)) rows in the bin sign order. */
        static byte[] patterns(Node n, int k, int taps, boolean packed) {
            byte[] bank = n.tensors[0].bytes();
            int[] index = index(n, k, packed);
            int slices = slices(n, packed);
            int cg = taps / (n.kernel * n.kernel);
            int d = cg / slices;
            int kk = n.kernel * n.kernel;
            int nb = (kk * d + 7) / 8;
            int rowBytes = (taps + 7) / 8;
            byte[] p = new byte[k * rowBytes];
            for (int o = 0; o < k; o++) {
                for (int s = 0; s < slices; s++) {
                    int row = index[o * slices + s] * nb;
                    for (int t = 0; t < kk; t++) {
                        for (int c = 0; c < d; c++) {
                            int src = t * d + c;                    // (ky*k + kx)*d + c in the bank row
                            if (((bank[row + src / 8] >> (src % 8)) & 1) != 0) {
                                int j = t * cg + s * d + c;         // (ky*k + kx)*Cg + s*d + c in the filter
                                p[o * rowBytes + j / 8] |= (byte) (1 << (j % 8));
                            }
                        }
                    }
                }
            }
            return p;
        }
    }

    /** One tensor a weight format stores: name, dtype and shape rule. */
    static final class Spec {
        static final int KSHAPE = 0;        // the unpacked weight shape
        static final int PER_CHANNEL = 1;   // (K,)
        static final int PACKED = 2;        // (K, ceil(k*k*Cg / 8)), conv only
        static final int FREE = 3;          // conv only; its shape is checked by the format's check

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
                case FREE:
                    return kshape.length == 4 ? kshape : null;
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

    /**
     * The integer path's ±1 filters as packed (K, ceil(taps/8)) rows in the bin sign order
     * (bin: as stored; stack, stack_packed: expanded from the bank). Only for bin and the stacked formats.
     */
    byte[] patterns(Node n, int k, int taps) {
        throw new IllegalStateException(fmtName + " has no binary patterns");
    }

    /** ±1 (packed rows p) times alpha[o], (K, taps) float32. */
    float[] signTimes(byte[] p, float[] alpha, int k, int taps) {
        float[] w = new float[k * taps];
        for (int o = 0; o < k; o++) {
            for (int j = 0; j < taps; j++) {
                w[o * taps + j] = BinaryConv.sign(p, o, taps, j) * alpha[o];
            }
        }
        return w;
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
