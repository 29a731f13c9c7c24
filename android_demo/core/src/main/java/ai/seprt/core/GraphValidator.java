package ai.seprt.core;

import java.util.Arrays;
import java.util.HashSet;
import java.util.List;
import java.util.Set;

/**
 * The graph rules of docs/format.md (structure, shapes, weights, limits, metadata), the
 * counterpart of {@code Graph.validate} in seprt/graph.py. What each op and weight format takes
 * and checks comes from the tables {@link OpDef} and {@link WfmtDef}. Raises
 * {@link SeprtFormatException} on the first broken rule.
 */
final class GraphValidator {
    static final int MAX_VALUES = 65535;
    static final int MAX_NODES = 65535;
    static final int MAX_DIM = 1 << 16;
    static final long MAX_VALUE_ELEMS = 1L << 28;
    static final int MAX_KERNEL = 15;
    static final int MAX_STRIDE = 8;
    /** |weight|, |scale|, |alpha|, |bias|, activation scale. */
    static final float MAX_ABS_PARAM = 1e12f;
    /**
     * Activation memory a model may need: 5 bytes per element of every value (its float32 and
     * its quantized copy); {@code seprt.graph.MAX_ACTIVATION_BYTES} in Python.
     */
    static final long MAX_ACTIVATION_BYTES = 1L << 30;

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
        long need = 0;
        for (Value v : g.values) {
            checkValue(v);
            need += 5L * v.size();
        }
        if (need > MAX_ACTIVATION_BYTES) {
            throw new SeprtFormatException(String.format(java.util.Locale.ROOT, "model needs %.2f GiB of activation "
                    + "memory, over the limit of %.2f GiB", need / 1073741824.0, MAX_ACTIVATION_BYTES / 1073741824.0));
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
        if (!(v.qScale > 0 && v.qScale <= MAX_ABS_PARAM)) {
            throw new SeprtFormatException("value '" + v.name + "': activation scale " + v.qScale
                    + " must be in (0, 1e12]");
        }
        if (v.qZero < 0 || v.qZero > (1 << v.qBits) - 1) {
            throw new SeprtFormatException("value '" + v.name + "': zero point " + v.qZero + " outside 0.."
                    + ((1 << v.qBits) - 1));
        }
    }

    // ------------------------------------------------------------ nodes

    private static void checkNode(Graph g, Node n) throws SeprtFormatException {
        String where = "node '" + n.name + "': ";
        OpDef op = n.op;
        if (n.inputs.length < op.minInputs || n.inputs.length > op.maxInputs) {
            String want = op.minInputs == op.maxInputs ? String.valueOf(op.minInputs) : op.minInputs + ".." + op.maxInputs;
            throw new SeprtFormatException(where + op.opName + " takes " + want + " inputs, got " + n.inputs.length);
        }
        for (String key : n.attrs.keySet()) {
            if (op.attr(key) == null) {
                throw new SeprtFormatException(where + op.opName + " has no attribute '" + key
                        + "'; this file may need a newer seprt");
            }
        }
        for (Attr a : op.attrs) {
            int v = n.attrs.get(a.name);
            if (!a.inRange(v)) {
                throw new SeprtFormatException(where + "attribute " + a.name + "=" + a.show(v) + " out of range "
                        + a.range());
            }
        }
        try {
            op.check(n);
        } catch (SeprtFormatException e) {
            throw new SeprtFormatException(where + e.getMessage());
        }
        int[][] ins = new int[n.inputs.length][];
        for (int i = 0; i < ins.length; i++) {
            ins[i] = g.value(n.inputs[i]).shape;
        }
        int[] out = g.value(n.output).shape;
        int[] want;
        try {
            want = op.shape(n, ins, out[out.length - 1]);
        } catch (SeprtFormatException e) {
            throw new SeprtFormatException(where + e.getMessage());
        }
        if (!Arrays.equals(want, out)) {
            StringBuilder sb = new StringBuilder();
            for (int[] s : ins) {
                sb.append(sb.length() > 0 ? " and " : "").append(Value.shapeString(s));
            }
            throw new SeprtFormatException(where + "output shape " + Value.shapeString(out) + " does not match "
                    + op.opName + " of " + sb + " (expected " + Value.shapeString(want) + ")");
        }
        if (!op.weighted) {
            if (n.wfmt != WfmtDef.NONE || n.tensors.length != 0) {
                throw new SeprtFormatException(where + op.opName + " takes no weights");
            }
            return;
        }
        checkWeights(n, ins[0], out);
    }

    private static void checkWeights(Node n, int[] x, int[] out) throws SeprtFormatException {
        String where = "node '" + n.name + "': ";
        WfmtDef wf = n.wfmt;
        if (wf == WfmtDef.NONE) {
            throw new SeprtFormatException(where + n.opName() + " needs a weight format (f32, i8, bin, stack, stack_packed)");
        }
        if (n.tensors.length != wf.tensors.length) {
            throw new SeprtFormatException(where + "weight format " + wf.fmtName + " has " + wf.tensors.length
                    + " tensors, got " + n.tensors.length);
        }
        int k = out[out.length - 1];
        int cin = x[x.length - 1];
        int[] kshape = n.op == OpDef.FC ? new int[] {k, cin} : n.op == OpDef.AFFINE ? new int[] {k}
                : new int[] {k, n.kernel, n.kernel, cin / n.groups};
        if (n.kernel < wf.minKernel) {
            throw new SeprtFormatException(where + wf.fmtName + " weights need a k x k conv with k >= " + wf.minKernel);
        }
        for (int i = 0; i < wf.tensors.length; i++) {
            WfmtDef.Spec spec = wf.tensors[i];
            int[] shape = spec.shape(kshape);
            if (shape == null) {
                throw new SeprtFormatException(where + wf.fmtName + " weights need a k x k conv");
            }
            Tensor t = n.tensors[i];
            if (t.dtype != spec.dtype || (spec.rule != WfmtDef.Spec.FREE && !Arrays.equals(t.shape, shape))) {
                throw new SeprtFormatException(where + spec.name + " is " + Tensor.dtypeName(t.dtype)
                        + Value.shapeString(t.shape) + ", expected " + Tensor.dtypeName(spec.dtype)
                        + (spec.rule == WfmtDef.Spec.FREE ? "" : Value.shapeString(shape)));
            }
            if (t.dtype == Tensor.F32) {
                for (float v : t.floats()) {
                    if (!(Math.abs(v) <= MAX_ABS_PARAM)) {     // also false for NaN
                        throw new SeprtFormatException(where + spec.name + " has NaN, Inf or a magnitude over 1e12");
                    }
                }
            }
        }
        wf.check(n, kshape);
    }

    /** Neither NaN nor infinite (Float.isFinite needs Android API 24). */
    static boolean finite(float v) {
        return Math.abs(v) <= Float.MAX_VALUE;
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
        Long actBits = m.u32("act_bits");
        if (actBits != null && actBits != 8 && actBits != 4 && actBits != 2) {
            throw new SeprtFormatException("act_bits " + actBits + " not in (2, 4, 8)");
        }
        // optional keys: checked for their documented type only
        for (String key : new String[] {"provenance.source", "provenance.converter", "provenance.stage",
                "provenance.binarize"}) {
            m.string(key, null);
        }
        m.f32("provenance.val_top1", null);
        m.u32("provenance.val_images");
    }
}
