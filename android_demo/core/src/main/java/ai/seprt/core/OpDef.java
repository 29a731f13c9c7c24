package ai.seprt.core;

import java.util.Arrays;

/**
 * The op table: every op this reader knows, declared once (the counterpart of seprt/ops/op_*.py).
 * Each entry states its stable on-disk code (docs/format.md, "Ops"), its name, how many inputs
 * it takes, its attributes (default and range), whether it carries weights, its shape rule,
 * any extra validation, and the executor's function for it. {@link ModelReader} decodes op codes
 * and attributes with it, {@link GraphValidator} checks nodes against it, {@link Executor} runs
 * nodes through it.
 *
 * <p>A new op is one new constant here (with the next free code), plus its kernel in {@link Ops}.
 */
enum OpDef {
    CONV(1, "conv", 1, 1, true, Attr.plus(Attr.window(), new Attr("groups", 1, 1, 1 << 16))) {
        @Override
        int[] shape(Node n, int[][] in, int k) throws SeprtFormatException {
            int[] x = hwc(this, in[0]);
            if (x[2] % n.groups != 0 || k % n.groups != 0) {
                throw new SeprtFormatException("groups=" + n.groups + " does not divide channels " + x[2] + "->" + k);
            }
            return new int[] {convOut(x[0], n), convOut(x[1], n), k};
        }

        @Override
        void check(Node n) throws SeprtFormatException {
            checkWindow(n);
        }

        @Override
        float[] run(Node n, float[][] xs, int[][] in, int[] out, ConvKernel kernel) {
            return kernel.forward(xs[0]);
        }
    },
    FC(2, "fc", 1, 1, true) {
        @Override
        int[] shape(Node n, int[][] in, int k) throws SeprtFormatException {
            if (in[0].length != 1) {
                throw new SeprtFormatException("fc needs a flat (C,) input, got " + Value.shapeString(in[0]));
            }
            return new int[] {k};
        }

        @Override
        float[] run(Node n, float[][] xs, int[][] in, int[] out, ConvKernel kernel) {
            return kernel.forward(xs[0]);
        }
    },
    ADD(3, "add", 2, 2, false) {
        @Override
        int[] shape(Node n, int[][] in, int k) throws SeprtFormatException {
            if (!Arrays.equals(in[0], in[1])) {
                throw new SeprtFormatException("add of different shapes " + Value.shapeString(in[0]) + " and "
                        + Value.shapeString(in[1]));
            }
            return in[0];
        }

        @Override
        float[] run(Node n, float[][] xs, int[][] in, int[] out, ConvKernel kernel) {
            return Ops.add(xs[0], xs[1]);
        }
    },
    RELU(4, "relu", 1, 1, false) {
        @Override
        int[] shape(Node n, int[][] in, int k) {
            return in[0];
        }

        @Override
        float[] run(Node n, float[][] xs, int[][] in, int[] out, ConvKernel kernel) {
            return Ops.relu(xs[0]);
        }
    },
    MAXPOOL(5, "maxpool", 1, 1, false, Attr.plus(Attr.window(), ceilMode())) {
        @Override
        int[] shape(Node n, int[][] in, int k) throws SeprtFormatException {
            return poolShape(this, n, in[0]);
        }

        @Override
        void check(Node n) throws SeprtFormatException {
            checkWindow(n);
        }

        @Override
        float[] run(Node n, float[][] xs, int[][] in, int[] out, ConvKernel kernel) {
            int[] s = in[0];
            return Ops.maxpool(xs[0], s[0], s[1], s[2], n.kernel, n.stride, n.pad, out[0], out[1]);
        }
    },
    AVGPOOL(6, "avgpool", 1, 1, false,
            Attr.plus(Attr.plus(Attr.window(), ceilMode()), new Attr("count_include_pad", 0, 0, 1))) {
        @Override
        int[] shape(Node n, int[][] in, int k) throws SeprtFormatException {
            return poolShape(this, n, in[0]);
        }

        @Override
        void check(Node n) throws SeprtFormatException {
            checkWindow(n);
        }

        @Override
        float[] run(Node n, float[][] xs, int[][] in, int[] out, ConvKernel kernel) {
            int[] s = in[0];
            return Ops.avgpool(xs[0], s[0], s[1], s[2], n.kernel, n.stride, n.pad, out[0], out[1],
                    n.i32("count_include_pad") != 0);
        }
    },
    GAP(7, "gap", 1, 1, false) {
        @Override
        int[] shape(Node n, int[][] in, int k) throws SeprtFormatException {
            return new int[] {hwc(this, in[0])[2]};
        }

        @Override
        float[] run(Node n, float[][] xs, int[][] in, int[] out, ConvKernel kernel) {
            int[] s = in[0];
            return Ops.gap(xs[0], s[0] * s[1], s[2]);
        }
    },
    SHORTCUT_A(8, "shortcut_a", 1, 1, false, new Attr("stride", 1, 1, GraphValidator.MAX_STRIDE)) {
        @Override
        int[] shape(Node n, int[][] in, int k) throws SeprtFormatException {
            int[] x = hwc(this, in[0]);
            if (k < x[2] || (k - x[2]) % 2 != 0) {
                throw new SeprtFormatException("shortcut_a cannot pad " + x[2] + " channels to " + k);
            }
            return new int[] {ceilDiv(x[0], n.stride), ceilDiv(x[1], n.stride), k};
        }

        @Override
        float[] run(Node n, float[][] xs, int[][] in, int[] out, ConvKernel kernel) {
            int[] s = in[0];
            return Ops.shortcutA(xs[0], s[0], s[1], s[2], n.stride, out[2]);
        }
    },
    CONCAT(9, "concat", 2, 64, false) {
        @Override
        int[] shape(Node n, int[][] in, int k) throws SeprtFormatException {
            long c = 0;
            for (int[] s : in) {
                if (s.length != 3 || s[0] != in[0][0] || s[1] != in[0][1]) {
                    StringBuilder sb = new StringBuilder();
                    for (int[] t : in) {
                        sb.append(sb.length() > 0 ? ", " : "").append(Value.shapeString(t));
                    }
                    throw new SeprtFormatException("concat needs (H, W, C) inputs of equal H and W, got [" + sb + "]");
                }
                c += s[2];
            }
            // a sum over 2^16 is no valid value width; the shape comparison then rejects it
            return new int[] {in[0][0], in[0][1], (int) Math.min(c, Integer.MAX_VALUE)};
        }

        @Override
        float[] run(Node n, float[][] xs, int[][] in, int[] out, ConvKernel kernel) {
            int[] channels = new int[in.length];
            for (int i = 0; i < in.length; i++) {
                channels[i] = in[i][2];
            }
            return Ops.concat(xs, channels, out[0] * out[1], out[2]);
        }
    },
    ACT(10, "act", 1, 1, false, new Attr("kind", 1, 1, 6), Attr.f32("slope", 0.01f, -1e6f, 1e6f)) {
        @Override
        int[] shape(Node n, int[][] in, int k) {
            return in[0];
        }

        @Override
        float[] run(Node n, float[][] xs, int[][] in, int[] out, ConvKernel kernel) {
            return Ops.act(xs[0], n.i32("kind"), n.f32("slope"), new float[xs[0].length]);
        }
    },
    MUL(11, "mul", 2, 2, false) {
        @Override
        int[] shape(Node n, int[][] in, int k) throws SeprtFormatException {
            int[] x = hwc(this, in[0]);
            if (in[1].length != 1 || in[1][0] != x[2]) {
                throw new SeprtFormatException("mul scales an (H, W, C) value by a (C,) value, got "
                        + Value.shapeString(in[0]) + " and " + Value.shapeString(in[1]));
            }
            return in[0];
        }

        @Override
        float[] run(Node n, float[][] xs, int[][] in, int[] out, ConvKernel kernel) {
            return Ops.mul(xs[0], xs[1], in[0][2], new float[xs[0].length]);
        }
    },
    AFFINE(12, "affine", 1, 1, true) {
        @Override
        int[] shape(Node n, int[][] in, int k) throws SeprtFormatException {
            if (in[0].length != 3 && in[0].length != 1) {
                throw new SeprtFormatException("affine needs an (H, W, C) or (C,) input, got " + Value.shapeString(in[0]));
            }
            return in[0];
        }

        @Override
        void check(Node n) throws SeprtFormatException {
            if (n.wfmt != WfmtDef.F32) {
                throw new SeprtFormatException("affine takes f32 weights (scale, shift), got " + n.wfmt.fmtName);
            }
        }

        @Override
        float[] run(Node n, float[][] xs, int[][] in, int[] out, ConvKernel kernel) {
            return Ops.affine(xs[0], n.weight.floats(), n.bias.floats(), new float[xs[0].length]);
        }
    },
    SHUFFLE(13, "shuffle", 1, 1, false, new Attr("groups", 1, 1, 1 << 16)) {
        @Override
        int[] shape(Node n, int[][] in, int k) throws SeprtFormatException {
            int[] x = hwc(this, in[0]);
            if (x[2] % n.groups != 0) {
                throw new SeprtFormatException("shuffle groups=" + n.groups + " does not divide " + x[2] + " channels");
            }
            return in[0];
        }

        @Override
        float[] run(Node n, float[][] xs, int[][] in, int[] out, ConvKernel kernel) {
            return Ops.shuffle(xs[0], in[0][0] * in[0][1], in[0][2], n.groups);
        }
    },
    FLATTEN(14, "flatten", 1, 1, false) {
        @Override
        int[] shape(Node n, int[][] in, int k) throws SeprtFormatException {
            int[] x = hwc(this, in[0]);
            long size = (long) x[0] * x[1] * x[2];
            return new int[] {(int) Math.min(size, Integer.MAX_VALUE)};
        }

        @Override
        float[] run(Node n, float[][] xs, int[][] in, int[] out, ConvKernel kernel) {
            return xs[0].clone();           // (H, W, C) row-major is already H, W, C order
        }
    },
    SLICE(15, "slice", 1, 1, false, new Attr("start", 0, 0, (1 << 16) - 1)) {
        @Override
        int[] shape(Node n, int[][] in, int k) throws SeprtFormatException {
            int[] x = hwc(this, in[0]);
            int start = n.i32("start");
            if ((long) start + k > x[2]) {
                throw new SeprtFormatException("slice of channels " + start + ".." + ((long) start + k - 1) + " from "
                        + x[2] + " channels");
            }
            return new int[] {x[0], x[1], k};
        }

        @Override
        float[] run(Node n, float[][] xs, int[][] in, int[] out, ConvKernel kernel) {
            return Ops.slice(xs[0], in[0][0] * in[0][1], in[0][2], n.i32("start"), out[2]);
        }
    };

    /** On-disk op code (never changes). */
    final int code;
    /** Name as in docs/format.md and seprt/ops. */
    final String opName;
    final int minInputs;
    final int maxInputs;
    /** Carries a weight format (conv, fc); the others take no weights. */
    final boolean weighted;
    final Attr[] attrs;

    OpDef(int code, String opName, int minInputs, int maxInputs, boolean weighted, Attr... attrs) {
        this.code = code;
        this.opName = opName;
        this.minInputs = minInputs;
        this.maxInputs = maxInputs;
        this.weighted = weighted;
        this.attrs = attrs;
    }

    /**
     * Output shape of a node from its input shapes; k is the output value's last dim (the width
     * that conv, fc and shortcut_a declare). Throws with a message (without the node name) when the
     * inputs do not fit the op.
     */
    abstract int[] shape(Node n, int[][] in, int k) throws SeprtFormatException;

    /** Rules beyond input count, attribute ranges and shape (e.g. pad &lt; kernel). */
    void check(Node n) throws SeprtFormatException {
    }

    /**
     * Runs the node: xs are its input values (float32), in their shapes, out the output shape;
     * kernel is the node's prepared conv kernel (weighted ops) or null.
     */
    abstract float[] run(Node n, float[][] xs, int[][] in, int[] out, ConvKernel kernel);

    /** The attribute called name, or null when the op has none by that name. */
    Attr attr(String name) {
        for (Attr a : attrs) {
            if (a.name.equals(name)) {
                return a;
            }
        }
        return null;
    }

    private static final OpDef[] BY_CODE = new OpDef[64];

    static {
        for (OpDef op : values()) {
            BY_CODE[op.code] = op;
        }
    }

    /** The op of an on-disk code, or null when this reader does not know it. */
    static OpDef byCode(long code) {
        return code >= 0 && code < BY_CODE.length ? BY_CODE[(int) code] : null;
    }

    // ------------------------------------------------------------ shared shape helpers

    static int[] hwc(OpDef op, int[] x) throws SeprtFormatException {
        if (x.length != 3) {
            throw new SeprtFormatException(op.opName + " needs an (H, W, C) input, got " + Value.shapeString(x));
        }
        return x;
    }

    static int[] poolShape(OpDef op, Node n, int[] in) throws SeprtFormatException {
        int[] x = hwc(op, in);
        boolean ceil = n.i32("ceil_mode") != 0;
        return new int[] {convOut(x[0], n, ceil), convOut(x[1], n, ceil), x[2]};
    }

    static Attr ceilMode() {
        return new Attr("ceil_mode", 0, 0, 1);
    }

    /**
     * Pool output length: floor mode as {@link #convOut(int, Node)}; ceil mode
     * ceil((in + 2 pad - kernel) / stride) + 1, minus 1 when the last window would start at or
     * past in + pad (docs/format.md, PyTorch's rule).
     */
    static int convOut(int size, Node n, boolean ceil) {
        if (!ceil) {
            return convOut(size, n);
        }
        int span = size + 2 * n.pad - n.kernel;
        int o = (span >= 0 ? (span + n.stride - 1) / n.stride : -((-span) / n.stride)) + 1;
        return (long) (o - 1) * n.stride >= size + n.pad ? o - 1 : o;
    }

    static void checkWindow(Node n) throws SeprtFormatException {
        if (n.pad >= n.kernel) {
            throw new SeprtFormatException("pad " + n.pad + " must be < kernel " + n.kernel);
        }
    }

    /** Output length along one axis: floor((in + 2 pad - kernel) / stride) + 1. */
    static int convOut(int size, Node n) {
        int span = size + 2 * n.pad - n.kernel;
        return (span >= 0 ? span / n.stride : -((-span + n.stride - 1) / n.stride)) + 1;
    }

    static int ceilDiv(int a, int b) {
        return (a + b - 1) / b;
    }
}
