package ai.seprt.core;

import java.util.ArrayDeque;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * The fast path: runs a validated graph with the kernels of {@link FastKernels} and buffers
 * planned once per model. Every value gets a float32 array when the model is loaded, shared by
 * values whose lifetimes do not overlap (same size); an inference allocates only the array it
 * returns. Ops without weights run the reference {@link Ops} code (same float32 order) into
 * these buffers.
 */
final class FastExecutor implements Runner {
    private final Graph g;
    private final FastConv[] convs;         // per node; null for ops without weights
    private final float[][] env;            // per value: its buffer (the input's is the caller's array)
    private long[] nanos;

    FastExecutor(Graph g) {
        this.g = g;
        List<Node> nodes = g.nodes;
        convs = new FastConv[nodes.size()];
        env = new float[g.values.size()][];
        int[] lastUse = new int[g.values.size()];
        java.util.Arrays.fill(lastUse, -1);
        for (int i = 0; i < nodes.size(); i++) {
            Node n = nodes.get(i);
            if (n.weighted()) {
                convs[i] = FastKernels.create(g, n);
            }
            for (int v : n.inputs) {
                lastUse[v] = i;
            }
        }
        // buffers: a value's array returns to the pool after its last reader (never the outputs)
        Map<Integer, ArrayDeque<float[]>> pool = new HashMap<>();
        for (int i = 0; i < nodes.size(); i++) {
            Node n = nodes.get(i);
            int size = g.value(n.output).size();
            ArrayDeque<float[]> free = pool.get(size);
            env[n.output] = free != null && !free.isEmpty() ? free.pop() : new float[size];
            for (int j = 0; j < n.inputs.length; j++) {
                int v = n.inputs[j];
                boolean firstMention = true;
                for (int k = 0; k < j; k++) {
                    firstMention &= n.inputs[k] != v;
                }
                if (lastUse[v] == i && firstMention && v != g.input && v != g.output && v != g.embed) {
                    int vs = g.value(v).size();
                    if (!pool.containsKey(vs)) {
                        pool.put(vs, new ArrayDeque<float[]>());
                    }
                    pool.get(vs).push(env[v]);
                }
            }
        }
    }

    @Override
    public float[] run(float[] input, int wanted) {
        env[g.input] = input;
        final long[] t = nanos;
        for (int i = 0; i < g.nodes.size(); i++) {
            long t0 = t != null ? System.nanoTime() : 0;
            runNode(i, g.nodes.get(i));
            if (t != null) {
                t[i] += System.nanoTime() - t0;
            }
        }
        env[g.input] = null;
        return env[wanted].clone();
    }

    private void runNode(int i, Node n) {
        float[] x = env[n.inputs[0]];
        float[] y = env[n.output];
        int[] s = g.value(n.inputs[0]).shape;
        int[] out = g.value(n.output).shape;
        switch (n.op) {
            case CONV:
            case FC:
                convs[i].forward(x, y);
                break;
            case ADD:
                Ops.add(x, env[n.inputs[1]], y);
                break;
            case RELU:
                Ops.relu(x, y);
                break;
            case MAXPOOL:
                Ops.maxpool(x, s[0], s[1], s[2], n.kernel, n.stride, n.pad, out[0], out[1], y);
                break;
            case AVGPOOL:
                Ops.avgpool(x, s[0], s[1], s[2], n.kernel, n.stride, n.pad, out[0], out[1], y);
                break;
            case GAP:
                Ops.gap(x, s[0] * s[1], s[2], y);
                break;
            case SHORTCUT_A:
                Ops.shortcutA(x, s[0], s[1], s[2], n.stride, out[2], y);
                break;
            default:
                throw new IllegalStateException("unknown op " + n.op);
        }
    }

    @Override
    public String kernelName(int node) {
        return convs[node] != null ? convs[node].kernelName() : g.nodes.get(node).opName();
    }

    @Override
    public long[] nodeNanos() {
        return nanos;
    }

    @Override
    public void profile(boolean on) {
        nanos = on ? new long[g.nodes.size()] : null;
    }
}
