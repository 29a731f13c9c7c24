package ai.seprt.core;

import java.util.Arrays;
import java.util.HashSet;
import java.util.List;
import java.util.Set;

/**
 * The graph rules of docs/format.md (structure, shapes, weights, metadata), the counterpart of
 * {@code Graph.validate} in seprt/graph.py. Raises {@link SeprtFormatException} on the first
 * broken rule.
 */
final class GraphValidator {
    static final int MAX_VALUES = 65535;
    static final int MAX_NODES = 65535;
    static final int MAX_DIM = 1 << 16;
    static final long MAX_VALUE_ELEMS = 1L << 28;
    static final int MAX_KERNEL = 15;
    static final int MAX_STRIDE = 8;

    private GraphValidator() {
    }

    static void validate(Graph g) throws SeprtFormatException {
        int nv = g.values.size();
        for (int i : new int[] {g.input, g.output, g.embed}) {
            if (i < 0 || i >= nv) {
                throw new SeprtFormatException("graph references value " + i + ", but has only " + nv
                        + "; re-export the model");
            }
        }
        for (Value v : g.values) {
            checkValue(v);
        }
        int[] in = g.value(g.input).shape;
        if (in.length != 3 || in[2] != 3) {
            throw new SeprtFormatException("input value must be (H, W, 3), got " + Value.shapeString(in));
        }
        boolean[] produced = new boolean[nv];
        produced[g.input] = true;
        Set<String> names = new HashSet<>();
        for (Node n : g.nodes) {
            if (!names.add(n.name)) {
                throw new SeprtFormatException("duplicate node name '" + n.name + "'");
            }
            for (int i : concat(n.inputs, n.output)) {
                if (i < 0 || i >= nv) {
                    throw new SeprtFormatException("node '" + n.name + "' references value " + i
                            + ", but the graph has " + nv);
                }
            }
            for (int i : n.inputs) {
                if (!produced[i]) {
                    throw new SeprtFormatException("node '" + n.name + "' reads value " + i + " before it is "
                            + "produced: dangling or cyclic reference");
                }
            }
            if (produced[n.output]) {
                throw new SeprtFormatException("node '" + n.name + "' writes value " + n.output
                        + ", which is already produced");
            }
            produced[n.output] = true;
            checkNode(g, n);
        }
        for (int i : new int[] {g.output, g.embed}) {
            if (!produced[i]) {
                throw new SeprtFormatException("graph output value " + i + " is never produced");
            }
        }
        if (g.value(g.output).rank() != 1 || g.value(g.embed).rank() != 1) {
            throw new SeprtFormatException("graph output (logits) and embed (features) must be flat (C,) values");
        }
        checkMeta(g);
    }

    private static int[] concat(int[] a, int b) {
        int[] out = Arrays.copyOf(a, a.length + 1);
        out[a.length] = b;
        return out;
    }

    private static void checkValue(Value v) throws SeprtFormatException {
        long elems = 1;
        for (int d : v.shape) {
            elems *= d;
        }
        if (elems > MAX_VALUE_ELEMS) {
            throw new SeprtFormatException("value '" + v.name + "': " + elems + " elements exceeds the limit "
                    + MAX_VALUE_ELEMS);
        }
        if (v.qBits == 0) {
            if (v.qScale != 0f || v.qZero != 0) {
                throw new SeprtFormatException("value '" + v.name + "': a float value (q_bits 0) must have "
                        + "q_scale 0 and q_zero 0");
            }
            return;
        }
        if (v.qBits != 2 && v.qBits != 4 && v.qBits != 8) {
            throw new SeprtFormatException("value '" + v.name + "': activation bits " + v.qBits + " not in (2, 4, 8)");
        }
        if (!(finite(v.qScale) && v.qScale > 0)) {
            throw new SeprtFormatException("value '" + v.name + "': activation scale " + v.qScale
                    + " must be finite and > 0");
        }
        if (v.qZero < 0 || v.qZero > (1 << v.qBits) - 1) {
            throw new SeprtFormatException("value '" + v.name + "': zero point " + v.qZero + " outside 0.."
                    + ((1 << v.qBits) - 1));
        }
    }

    // ------------------------------------------------------------ nodes

    private static void checkNode(Graph g, Node n) throws SeprtFormatException {
        int wantInputs = n.op == Node.Op.ADD ? 2 : 1;
        if (n.inputs.length != wantInputs) {
            throw new SeprtFormatException("node '" + n.name + "': " + n.opName() + " takes " + wantInputs
                    + " inputs, got " + n.inputs.length);
        }
        if (n.op == Node.Op.CONV || n.op == Node.Op.MAXPOOL || n.op == Node.Op.AVGPOOL) {
            if (n.kernel < 1 || n.kernel > MAX_KERNEL || n.stride < 1 || n.stride > MAX_STRIDE
                    || n.pad < 0 || n.pad >= n.kernel) {
                throw new SeprtFormatException("node '" + n.name + "': kernel " + n.kernel + ", stride " + n.stride
                        + ", pad " + n.pad + " out of range (kernel 1.." + MAX_KERNEL + ", stride 1.." + MAX_STRIDE
                        + ", pad < kernel)");
            }
        }
        if (n.op == Node.Op.SHORTCUT_A && (n.stride < 1 || n.stride > MAX_STRIDE)) {
            throw new SeprtFormatException("node '" + n.name + "': stride " + n.stride + " out of range 1.."
                    + MAX_STRIDE);
        }
        int[] x = g.value(n.inputs[0]).shape;
        int[] out = g.value(n.output).shape;
        if (n.weighted()) {
            checkWeights(n, x, out);
        } else if (n.weight != null || n.scale != null || n.bias != null) {
            throw new SeprtFormatException("node '" + n.name + "': " + n.opName() + " takes no weights");
        }
        int[] want = outputShape(g, n, x, out[out.length - 1]);
        if (!Arrays.equals(want, out)) {
            StringBuilder ins = new StringBuilder();
            for (int i : n.inputs) {
                ins.append(ins.length() > 0 ? " and " : "").append(Value.shapeString(g.value(i).shape));
            }
            throw new SeprtFormatException("node '" + n.name + "': output shape " + Value.shapeString(out)
                    + " does not match " + n.opName() + " of " + ins + " (expected " + Value.shapeString(want) + ")");
        }
    }

    private static void checkWeights(Node n, int[] x, int[] out) throws SeprtFormatException {
        if (n.wfmt == Node.WeightFormat.NONE) {
            throw new SeprtFormatException("node '" + n.name + "': " + n.opName() + " needs a weight format");
        }
        int k = out[out.length - 1];
        int cin = x[x.length - 1];
        if (n.op == Node.Op.CONV) {
            if (x.length != 3) {
                throw new SeprtFormatException("node '" + n.name + "': conv needs an (H, W, C) input, got "
                        + Value.shapeString(x));
            }
            if (n.groups < 1 || cin % n.groups != 0 || k % n.groups != 0) {
                throw new SeprtFormatException("node '" + n.name + "': groups=" + n.groups
                        + " does not divide channels " + cin + "->" + k);
            }
        } else if (n.wfmt == Node.WeightFormat.BIN) {
            throw new SeprtFormatException("node '" + n.name + "': fc cannot have binary patterns");
        }
        expect(n, "bias", n.bias, Tensor.F32, k);
        requireFinite(n, "bias", n.bias.floats());
        int[] kshape = n.op == Node.Op.FC ? new int[] {k, cin}
                : new int[] {k, n.kernel, n.kernel, cin / n.groups};
        switch (n.wfmt) {
            case F32:
                expect(n, "weight", n.weight, Tensor.F32, kshape);
                requireFinite(n, "weight", n.weight.floats());
                if (n.scale != null) {
                    throw new SeprtFormatException("node '" + n.name + "': f32 weights take no scale section");
                }
                break;
            case I8: {
                expect(n, "weight", n.weight, Tensor.I8, kshape);
                expect(n, "scale", n.scale, Tensor.F32, k);
                for (float s : n.scale.floats()) {
                    if (!(finite(s) && s > 0)) {
                        throw new SeprtFormatException("node '" + n.name + "': weight scales must be finite and > 0");
                    }
                }
                break;
            }
            default: {   // BIN
                if (n.kernel < 2) {
                    throw new SeprtFormatException("node '" + n.name + "': binary patterns need a k x k kernel "
                            + "with k > 1");
                }
                int nbits = n.kernel * n.kernel * (cin / n.groups);
                int rowBytes = (nbits + 7) / 8;
                expect(n, "pattern", n.weight, Tensor.U8, k, rowBytes);
                expect(n, "alpha", n.scale, Tensor.F32, k);
                for (float a : n.scale.floats()) {
                    if (!(finite(a) && a >= 0)) {
                        throw new SeprtFormatException("node '" + n.name + "': alpha must be finite and >= 0");
                    }
                }
                int used = nbits % 8;
                if (used != 0) {
                    byte[] p = n.weight.bytes();
                    for (int o = 0; o < k; o++) {
                        if (((p[o * rowBytes + rowBytes - 1] & 0xFF) >> used) != 0) {
                            throw new SeprtFormatException("node '" + n.name + "': padding bits of packed "
                                    + "patterns must be 0");
                        }
                    }
                }
            }
        }
    }

    private static void expect(Node n, String what, Tensor t, int dtype, int... shape) throws SeprtFormatException {
        if (t == null) {
            throw new SeprtFormatException("node '" + n.name + "': missing " + what);
        }
        if (t.dtype != dtype || !Arrays.equals(t.shape, shape)) {
            throw new SeprtFormatException("node '" + n.name + "': " + what + " is " + Tensor.dtypeName(t.dtype)
                    + Value.shapeString(t.shape) + ", expected " + Tensor.dtypeName(dtype) + Value.shapeString(shape));
        }
    }

    private static void requireFinite(Node n, String what, float[] a) throws SeprtFormatException {
        for (float v : a) {
            if (!finite(v)) {
                throw new SeprtFormatException("node '" + n.name + "': " + what + " has NaN or Inf");
            }
        }
    }

    /** The shape rule of each op (docs/format.md); k is the output value's channel count. */
    private static int[] outputShape(Graph g, Node n, int[] x, int k) throws SeprtFormatException {
        String where = "node '" + n.name + "': ";
        boolean spatial = n.op == Node.Op.CONV || n.op == Node.Op.MAXPOOL || n.op == Node.Op.AVGPOOL
                || n.op == Node.Op.SHORTCUT_A || n.op == Node.Op.GAP;
        if (spatial && x.length != 3) {
            throw new SeprtFormatException(where + n.opName() + " needs an (H, W, C) input, got " + Value.shapeString(x));
        }
        switch (n.op) {
            case CONV:
                return new int[] {convOut(x[0], n), convOut(x[1], n), k};
            case MAXPOOL:
            case AVGPOOL:
                return new int[] {convOut(x[0], n), convOut(x[1], n), x[2]};
            case SHORTCUT_A:
                if (k < x[2] || (k - x[2]) % 2 != 0) {
                    throw new SeprtFormatException(where + "shortcut_a cannot pad " + x[2] + " channels to " + k);
                }
                return new int[] {ceilDiv(x[0], n.stride), ceilDiv(x[1], n.stride), k};
            case GAP:
                return new int[] {x[2]};
            case FC:
                if (x.length != 1) {
                    throw new SeprtFormatException(where + "fc needs a flat (C,) input, got " + Value.shapeString(x));
                }
                return new int[] {k};
            case ADD: {
                int[] y = g.value(n.inputs[1]).shape;
                if (!Arrays.equals(x, y)) {
                    throw new SeprtFormatException(where + "add of different shapes " + Value.shapeString(x)
                            + " and " + Value.shapeString(y));
                }
                return x;
            }
            default:   // RELU
                return x;
        }
    }

    /** Output length along one axis: floor((in + 2 pad - kernel) / stride) + 1. */
    static int convOut(int size, Node n) {
        int span = size + 2 * n.pad - n.kernel;
        return (span >= 0 ? span / n.stride : -((-span + n.stride - 1) / n.stride)) + 1;
    }

    /** Neither NaN nor infinite (Float.isFinite needs Android API 24). */
    static boolean finite(float v) {
        return Math.abs(v) <= Float.MAX_VALUE;
    }

    private static int ceilDiv(int a, int b) {
        return (a + b - 1) / b;
    }

    // ------------------------------------------------------------ metadata

    private static void checkMeta(Graph g) throws SeprtFormatException {
        Metadata m = g.meta;
        for (String key : new String[] {"arch", "variant", "labels", "preprocess.size", "preprocess.resize",
                "preprocess.mean", "preprocess.std"}) {
            if (!m.has(key)) {
                throw new SeprtFormatException("metadata key '" + key + "' is missing; re-export the model");
            }
        }
        m.string("arch", null);
        String variant = m.string("variant", null);
        if (!Arrays.asList("R", "B", "BQ").contains(variant)) {
            throw new SeprtFormatException("variant '" + variant + "' not in (R, B, BQ)");
        }
        List<String> labels = m.strings("labels");
        int classes = g.value(g.output).shape[0];
        if (labels.size() != classes) {
            throw new SeprtFormatException(labels.size() + " labels for a classifier of width " + classes);
        }
        long[] size = m.u32s("preprocess.size");
        int[] in = g.value(g.input).shape;
        if (size.length != 2 || size[0] != in[0] || size[1] != in[1]) {
            throw new SeprtFormatException("preprocess.size " + Arrays.toString(size) + " does not match the input ["
                    + in[0] + ", " + in[1] + "]");
        }
        String resize = m.string("preprocess.resize", null);
        if (!resize.equals("stretch") && !resize.equals("center_crop")) {
            throw new SeprtFormatException("preprocess.resize '" + resize + "' is not 'stretch' or 'center_crop'");
        }
        for (String key : new String[] {"preprocess.mean", "preprocess.std"}) {
            float[] a = m.f32s(key);
            if (a.length != 3 || !(finite(a[0]) && finite(a[1]) && finite(a[2]))) {
                throw new SeprtFormatException(key + " must be 3 finite numbers, got " + Arrays.toString(a));
            }
        }
        for (float s : m.f32s("preprocess.std")) {
            if (!(s > 0)) {
                throw new SeprtFormatException("preprocess.std must be > 0");
            }
        }
        String order = m.string("preprocess.channel_order", "RGB");
        if (!order.equals("RGB") && !order.equals("BGR")) {
            throw new SeprtFormatException("preprocess.channel_order '" + order + "' is not RGB or BGR");
        }
        float cf = m.f32("preprocess.crop_fraction", 0.875f);
        if (!(finite(cf) && cf > 0 && cf <= 1)) {
            throw new SeprtFormatException("preprocess.crop_fraction " + cf + " must be in (0, 1]");
        }
        // optional keys: checked for their documented type only
        m.u32("act_bits");
        for (String key : new String[] {"provenance.source", "provenance.converter", "provenance.stage",
                "provenance.binarize"}) {
            m.string(key, null);
        }
        m.f32("provenance.val_top1", null);
    }
}
