package ai.seprt.core;

import java.util.Collections;
import java.util.Map;
import java.util.TreeMap;

/**
 * One op of the graph: inputs and output are value indices; attrs holds every attribute of the
 * op ({@link OpDef}) with defaults filled in; conv/fc carry the tensors of their weight format
 * ({@link WfmtDef}) in its declared order.
 */
final class Node {
    /** Names of the op table entries, kept from the v1 reader: {@code Node.Op.CONV == OpDef.CONV}. */
    static final class Op {
        static final OpDef CONV = OpDef.CONV;
        static final OpDef FC = OpDef.FC;
        static final OpDef ADD = OpDef.ADD;
        static final OpDef RELU = OpDef.RELU;
        static final OpDef MAXPOOL = OpDef.MAXPOOL;
        static final OpDef AVGPOOL = OpDef.AVGPOOL;
        static final OpDef GAP = OpDef.GAP;
        static final OpDef SHORTCUT_A = OpDef.SHORTCUT_A;
        static final OpDef CONCAT = OpDef.CONCAT;
        static final OpDef ACT = OpDef.ACT;
        static final OpDef MUL = OpDef.MUL;
        static final OpDef AFFINE = OpDef.AFFINE;
        static final OpDef SHUFFLE = OpDef.SHUFFLE;
        static final OpDef FLATTEN = OpDef.FLATTEN;
        static final OpDef SLICE = OpDef.SLICE;

        private Op() {
        }
    }

    /** Names of the weight-format table entries, kept from the v1 reader: {@code Node.WeightFormat.I8 == WfmtDef.I8}. */
    static final class WeightFormat {
        static final WfmtDef NONE = WfmtDef.NONE;
        static final WfmtDef F32 = WfmtDef.F32;
        static final WfmtDef I8 = WfmtDef.I8;
        static final WfmtDef BIN = WfmtDef.BIN;
        static final WfmtDef STACK = WfmtDef.STACK;
        static final WfmtDef STACK_PACKED = WfmtDef.STACK_PACKED;

        private WeightFormat() {
        }
    }

    final String name;
    final OpDef op;
    final int[] inputs;
    final int output;
    /** Every attribute of the op by name, defaults filled in (sorted by name). */
    final Map<String, Integer> attrs;
    /** The window attributes by name (their defaults for ops without them). */
    final int kernel;
    final int stride;
    final int pad;
    final int groups;
    final WfmtDef wfmt;
    /** The weight format's tensors in its order (empty without weights). */
    final Tensor[] tensors;
    /** The first tensor: float or int8 weights, or packed patterns (null without weights). */
    final Tensor weight;
    /** The integer path's per-channel multiplier: i8 scale or bin alpha (null for f32 and none). */
    final Tensor scale;
    final Tensor bias;

    /** given: the attributes the file states; the op's others take their defaults. */
    Node(String name, OpDef op, int[] inputs, int output, Map<String, Integer> given, WfmtDef wfmt, Tensor[] tensors) {
        this.name = name;
        this.op = op;
        this.inputs = inputs;
        this.output = output;
        Map<String, Integer> all = new TreeMap<>();
        for (Attr a : op.attrs) {
            all.put(a.name, a.dflt);
        }
        all.putAll(given);
        this.attrs = Collections.unmodifiableMap(all);
        this.kernel = attr("kernel", 1);
        this.stride = attr("stride", 1);
        this.pad = attr("pad", 0);
        this.groups = attr("groups", 1);
        this.wfmt = wfmt;
        this.tensors = tensors;
        this.weight = tensor(wfmt.tensors.length > 0 ? wfmt.tensors[0].name : "");
        this.scale = tensor(wfmt.scaleName);
        this.bias = tensor("bias");
    }

    /** An integer attribute of the op (its default filled in). */
    int i32(String key) {
        return attrs.get(key);
    }

    /** An f32 attribute of the op (kept as its IEEE bits in attrs). */
    float f32(String key) {
        return Float.intBitsToFloat(attrs.get(key));
    }

    private int attr(String key, int dflt) {
        Integer v = attrs.get(key);
        return v == null ? dflt : v;
    }

    /** The tensor called name of this node's weight format, or null. */
    Tensor tensor(String tensorName) {
        int i = wfmt.index(tensorName);
        return i >= 0 && i < tensors.length ? tensors[i] : null;
    }

    /** conv or fc: runs through a {@link ConvKernel} / {@link FastConv} (affine is weighted but is not one). */
    boolean convLike() {
        return op == OpDef.CONV || op == OpDef.FC;
    }

    boolean weighted() {
        return op.weighted;
    }

    String opName() {
        return op.opName;
    }
}
