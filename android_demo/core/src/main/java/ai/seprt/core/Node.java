package ai.seprt.core;

/** One op of the graph: inputs and output are value indices; conv/fc carry weights. */
final class Node {
    enum Op { CONV, FC, ADD, RELU, MAXPOOL, AVGPOOL, GAP, SHORTCUT_A }

    /** Weight formats of docs/format.md: code 0 none, 1 f32, 2 i8, 3 bin. */
    enum WeightFormat { NONE, F32, I8, BIN }

    final String name;
    final Op op;
    final int[] inputs;
    final int output;
    final int kernel;
    final int stride;
    final int pad;
    final int groups;
    final WeightFormat wfmt;
    final Tensor weight;
    /** i8: per-channel weight scale; bin: alpha. */
    final Tensor scale;
    final Tensor bias;

    Node(String name, Op op, int[] inputs, int output, int kernel, int stride, int pad, int groups,
         WeightFormat wfmt, Tensor weight, Tensor scale, Tensor bias) {
        this.name = name;
        this.op = op;
        this.inputs = inputs;
        this.output = output;
        this.kernel = kernel;
        this.stride = stride;
        this.pad = pad;
        this.groups = groups;
        this.wfmt = wfmt;
        this.weight = weight;
        this.scale = scale;
        this.bias = bias;
    }

    boolean weighted() {
        return op == Op.CONV || op == Op.FC;
    }

    String opName() {
        return op.name().toLowerCase(java.util.Locale.ROOT);
    }
}
