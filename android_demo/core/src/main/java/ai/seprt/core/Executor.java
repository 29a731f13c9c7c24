package ai.seprt.core;

import java.util.List;

/**
 * The reference path: runs a validated graph on one image, nodes in file order, each value freed
 * after its last reader. Weighted nodes are prepared once ({@link ConvKernel#create}). Plain
 * code that the {@link FastExecutor} is tested against.
 */
final class Executor implements Runner {
    private final Graph g;
    private final ConvKernel[] kernels;     // per node; null for ops without weights
    private final int[] lastUse;            // per value: index of the last node reading it
    private long[] nanos;

    Executor(Graph g) {
        this.g = g;
        List<Node> nodes = g.nodes;
        kernels = new ConvKernel[nodes.size()];
        lastUse = new int[g.values.size()];
        java.util.Arrays.fill(lastUse, -1);
        for (int i = 0; i < nodes.size(); i++) {
            Node n = nodes.get(i);
            if (n.convLike()) {
                kernels[i] = ConvKernel.create(g, n);
            }
            for (int v : n.inputs) {
                lastUse[v] = i;
            }
        }
    }

    /** input (H, W, 3) float32 -> the requested value (logits or embed). */
    @Override
    public float[] run(float[] input, int wanted) {
        float[][] env = new float[g.values.size()][];
        env[g.input] = input;
        final long[] t = nanos;
        for (int i = 0; i < g.nodes.size(); i++) {
            Node n = g.nodes.get(i);
            long t0 = t != null ? System.nanoTime() : 0;
            env[n.output] = runNode(i, n, env);
            if (t != null) {
                t[i] += System.nanoTime() - t0;
            }
            for (int v : n.inputs) {
                if (lastUse[v] == i && v != wanted) {
                    env[v] = null;
                }
            }
        }
        return env[wanted] == input ? input.clone() : env[wanted];
    }

    @Override
    public String kernelName(int node) {
        return kernels[node] != null ? kernels[node].getClass().getSimpleName() : g.nodes.get(node).opName();
    }

    @Override
    public long[] nodeNanos() {
        return nanos;
    }

    @Override
    public void profile(boolean on) {
        nanos = on ? new long[g.nodes.size()] : null;
    }

    /** One node through its op table entry ({@link OpDef#run}). */
    private float[] runNode(int i, Node n, float[][] env) {
        float[][] xs = new float[n.inputs.length][];
        int[][] shapes = new int[n.inputs.length][];
        for (int k = 0; k < xs.length; k++) {
            xs[k] = env[n.inputs[k]];
            shapes[k] = g.value(n.inputs[k]).shape;
        }
        return n.op.run(n, xs, shapes, g.value(n.output).shape, kernels[i]);
    }
}
