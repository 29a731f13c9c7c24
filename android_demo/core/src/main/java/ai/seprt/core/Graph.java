package ai.seprt.core;

import java.util.List;

/** A model: values, nodes in topological order, graph input/output/embed and metadata. */
final class Graph {
    final List<Value> values;
    final List<Node> nodes;
    final int input;
    final int output;
    final int embed;
    final Metadata meta;

    Graph(List<Value> values, List<Node> nodes, int input, int output, int embed, Metadata meta) {
        this.values = values;
        this.nodes = nodes;
        this.input = input;
        this.output = output;
        this.embed = embed;
        this.meta = meta;
    }

    Value value(int index) {
        return values.get(index);
    }

    /** True when the node runs on integers: i8/bin weights and a quantized input value. */
    boolean isInteger(Node n) {
        return n.wfmt.integer && value(n.inputs[0]).quantized();
    }
}
