package ai.seprt.core;

import java.util.ArrayDeque;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * The fast path: runs a validated graph with the kernels of {@link FastKernels} and buffers
 * planned once per model. Values of rank 3 are kept planar, (C, H, W): conv kernels then read
 * and write whole rows of one channel (no transposes), and the image input is transposed once. Every value gets a float32 array when the model is loaded, shared by
 * values whose lifetimes do not overlap (same size); an inference allocates only the array it
 * returns. Ops without weights run the reference {@link Ops} code (same float32 order) into
 * these buffers.
 */
final class FastExecutor implements Runner {
    private final Graph g;
    private final FastConv[] convs;         // per node; null for ops without weights
    private final float[][] env;            // per value: its buffer (the input's is the caller's array)
    private final boolean[] reluAfter;      // per node: a relu is fused into it (its output is the relu's)
    private final boolean[] fused;          // per node: a relu (or max-pool) that runs inside a conv or add before it
    private final boolean[] poolAfter;      // per node: a relu and a max-pool are fused into it (output: the pool's)
    private final float[] input;            // (C, H, W) the image input, transposed from the caller's (H, W, C)
    private final float[][] poolRows;       // (2)(longest maxpool row) row buffers of OpsChw.maxpool
    private long[] nanos;

    /** threads: for one image, inside the conv kernels (1: everything on the calling thread). */
    FastExecutor(Graph g, int threads) {
        this.g = g;
        Parallel par = threads == 1 ? Parallel.SERIAL : new Parallel(threads);
        Scratch scratch = new Scratch();
        List<Node> nodes = g.nodes;
        convs = new FastConv[nodes.size()];
        env = new float[g.values.size()][];
        reluAfter = new boolean[nodes.size()];
        fused = new boolean[nodes.size()];
        int poolRow = 0;
        int[] lastUse = new int[g.values.size()];
        int[] readers = new int[g.values.size()];
        java.util.Arrays.fill(lastUse, -1);
        for (int i = 0; i < nodes.size(); i++) {
            Node n = nodes.get(i);
            if (n.convLike()) {
                convs[i] = FastKernels.create(g, n, par, scratch);
            } else if (n.op == Node.Op.MAXPOOL) {
                int[] s = g.value(n.inputs[0]).shape;
                int wo = g.value(n.output).shape[1];
                poolRow = Math.max(poolRow, OpsChw.maxpoolRowLength(s[1], n.kernel, n.stride, n.pad, wo));
            }
            for (int v : n.inputs) {
                lastUse[v] = i;
                readers[v]++;
            }
        }
        for (int i = 0; i + 1 < nodes.size(); i++) {
            Node n = nodes.get(i);
            Node next = nodes.get(i + 1);
            boolean fusable = n.convLike() || n.op == Node.Op.ADD;
            if (fusable && next.op == Node.Op.RELU && next.inputs[0] == n.output && readers[n.output] == 1
                    && n.output != g.output && n.output != g.embed) {
                reluAfter[i] = true;
                fused[i + 1] = true;
            }
        }
        // conv -> relu -> maxpool (no padding, windows inside the input, the relu's only reader):
        // the planar conv pools in its epilogue (ConvExactPlanar.fusePool)
        // (seprt.fusePool=false: max-pools run on their own; tests, timing)
        poolAfter = new boolean[nodes.size()];
        boolean fusePool = !"false".equals(System.getProperty("seprt.fusePool"));
        for (int i = 0; i + 2 < nodes.size(); i++) {
            Node pool = nodes.get(i + 2);
            int r = nodes.get(i + 1).output;
            if (fusePool && reluAfter[i] && convs[i] instanceof ConvExactPlanar
                    && !((ConvExactPlanar) convs[i]).whole1x1()
                    && pool.op == Node.Op.MAXPOOL && pool.inputs[0] == r && readers[r] == 1 && r != g.output
                    && r != g.embed && pool.pad == 0) {
                ConvGeometry geo = convs[i].geo;
                int[] ps = g.value(pool.output).shape;
                int k = pool.kernel;
                int s = pool.stride;
                if (geo.ho >= k && geo.wo >= k && ps[0] == (geo.ho - k) / s + 1 && ps[1] == (geo.wo - k) / s + 1) {
                    ((ConvExactPlanar) convs[i]).fusePool(k, s, ps[0], ps[1]);
                    poolAfter[i] = true;
                    fused[i + 2] = true;
                }
            }
        }
        poolRows = new float[2][poolRow];
        // buffers: a value's array returns to the pool after its last reader (never the outputs)
        Map<Integer, ArrayDeque<float[]>> pool = new HashMap<>();
        input = new float[g.value(g.input).size()];
        env[g.input] = input;
        for (int i = 0; i < nodes.size(); i++) {
            Node n = nodes.get(i);
            if (fused[i]) {
                continue;                   // its output buffer was given to the node before
            }
            int out = poolAfter[i] ? nodes.get(i + 2).output : reluAfter[i] ? nodes.get(i + 1).output : n.output;
            int size = g.value(out).size();
            ArrayDeque<float[]> free = pool.get(size);
            env[out] = free != null && !free.isEmpty() ? free.pop() : new float[size];
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
    public float[] run(float[] hwcInput, int wanted) {
        final long[] t = nanos;
        int[] s = g.value(g.input).shape;
        OpsChw.fromHwc(hwcInput, s[0], s[1], s[2], input);
        for (int i = 0; i < g.nodes.size(); i++) {
            if (fused[i]) {
                continue;
            }
            long t0 = t != null ? System.nanoTime() : 0;
            runNode(i, g.nodes.get(i));
            if (t != null) {
                t[i] += System.nanoTime() - t0;
            }
        }
        int[] ws = g.value(wanted).shape;
        if (ws.length == 3) {
            float[] out = new float[env[wanted].length];
            OpsChw.toHwc(env[wanted], ws[0], ws[1], ws[2], out);
            return out;
        }
        return env[wanted].clone();
    }

    private void runNode(int i, Node n) {
        float[] x = env[n.inputs[0]];
        boolean relu = reluAfter[i];
        float[] y = env[poolAfter[i] ? g.nodes.get(i + 2).output : relu ? g.nodes.get(i + 1).output : n.output];
        int[] s = g.value(n.inputs[0]).shape;
        int[] out = g.value(n.output).shape;
        switch (n.op) {
            case CONV:
            case FC:
                convs[i].forward(x, y, relu);
                break;
            case ADD:
                if (relu) {
                    addRelu(x, env[n.inputs[1]], y);
                } else {
                    Ops.add(x, env[n.inputs[1]], y);
                }
                break;
            case RELU:
                Ops.relu(x, y);
                break;
            case MAXPOOL:
                OpsChw.maxpool(x, s[0], s[1], s[2], n.kernel, n.stride, n.pad, out[0], out[1], poolRows, y);
                break;
            case AVGPOOL:
                OpsChw.avgpool(x, s[0], s[1], s[2], n.kernel, n.stride, n.pad, out[0], out[1],
                        n.i32("count_include_pad") != 0, y);
                break;
            case GAP:
                OpsChw.gap(x, s[0] * s[1], s[2], y);
                break;
            case SHORTCUT_A:
                OpsChw.shortcutA(x, s[0], s[1], s[2], n.stride, out[2], y);
                break;
            case CONCAT: {                    // planar (C, H, W): the inputs' channel planes, one after another
                int at = 0;
                for (int v : n.inputs) {
                    int len = g.value(v).shape[0] * g.value(v).shape[1] * g.value(v).shape[2];
                    System.arraycopy(env[v], 0, y, at, len);
                    at += len;
                }
                break;
            }
            case ACT:                       // elementwise: the layout does not matter
                Ops.act(x, n.i32("kind"), n.f32("slope"), y);
                break;
            case MUL: {                       // planar: channel plane ch times s[ch]
                float[] sc = env[n.inputs[1]];
                int hw = s[0] * s[1];
                for (int ch = 0; ch < s[2]; ch++) {
                    float v = sc[ch];
                    for (int p = ch * hw, e = p + hw; p < e; p++) {
                        y[p] = x[p] * v;
                    }
                }
                break;
            }
            case AFFINE: {                    // planar (C, H, W) or flat (C,): plane ch is x * w[ch] + b[ch]
                float[] w = n.weight.floats();
                float[] b = n.bias.floats();
                int hw = s.length == 3 ? s[0] * s[1] : 1;
                for (int ch = 0; ch < w.length; ch++) {
                    float wc = w[ch];
                    float bc = b[ch];
                    for (int p = ch * hw, e = p + hw; p < e; p++) {
                        y[p] = x[p] * wc + bc;
                    }
                }
                break;
            }
            case SHUFFLE: {                   // planar: output plane i*G + g is input plane g*(C/G) + i
                int hw = s[0] * s[1];
                int per = s[2] / n.groups;
                for (int g2 = 0; g2 < n.groups; g2++) {
                    for (int i2 = 0; i2 < per; i2++) {
                        System.arraycopy(x, (g2 * per + i2) * hw, y, (i2 * n.groups + g2) * hw, hw);
                    }
                }
                break;
            }
            case FLATTEN:                     // (C, H, W) -> the (H, W, C) order of the flat value
                OpsChw.toHwc(x, s[0], s[1], s[2], y);
                break;
            case SLICE: {                     // planar: planes start..start+K-1, contiguous
                int hw = s[0] * s[1];
                System.arraycopy(x, n.i32("start") * hw, y, 0, out[2] * hw);
                break;
            }
            default:
                throw new IllegalStateException("unknown op " + n.op);
        }
    }

    /**
     * y = relu(a + b): Math.max equals the reference relu on every non-NaN float; a + b is NaN
     * only for Inf + -Inf, which finite inputs do not produce.
     */
    static void addRelu(float[] a, float[] b, float[] y) {
        for (int i = 0; i < y.length; i++) {
            y[i] = Math.max(a[i] + b[i], 0f);
        }
    }

    /** The fast conv of node i (null for ops without weights). */
    FastConv conv(int node) {
        return convs[node];
    }

    @Override
    public String kernelName(int node) {
        String k = convs[node] != null ? convs[node].kernelName() : g.nodes.get(node).opName();
        return fused[node] ? "(fused)" : poolAfter[node] ? k + "+relu+maxpool" : reluAfter[node] ? k + "+relu" : k;
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
