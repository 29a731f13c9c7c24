package ai.seprt.core;

/** Runs a validated graph on one image: the reference {@link Executor} or the {@link FastExecutor}. */
interface Runner {
    /** input (H, W, 3) float32 -> a new array holding the requested value (logits or embed). */
    float[] run(float[] input, int wanted);

    /** Kernel that runs node i (e.g. conv_exact_f32_planar, BinaryConv, relu). */
    String kernelName(int node);

    /** Per node, wall time summed over the runs since profiling was switched on; null when off. */
    long[] nodeNanos();

    /** Switches per-node timing on (and clears it) or off. */
    void profile(boolean on);
}
