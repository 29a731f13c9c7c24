package ai.seprt.core;

/**
 * Sizes of one conv or fc node. An fc on (C,) is run as a 1x1 conv on a 1x1xC image, since
 * its (K, C) weight is the OHWI layout of such a conv.
 */
final class ConvGeometry {
    final int h, w, c;          // input (H, W, C)
    final int ho, wo, k;        // output (Ho, Wo, K)
    final int kernel, stride, pad, groups;
    final int cg, kg;           // input and output channels per group

    ConvGeometry(Graph g, Node n) {
        int[] x = g.value(n.inputs[0]).shape;
        int[] y = g.value(n.output).shape;
        boolean conv = n.op == Node.Op.CONV;
        h = conv ? x[0] : 1;
        w = conv ? x[1] : 1;
        c = x[x.length - 1];
        ho = conv ? y[0] : 1;
        wo = conv ? y[1] : 1;
        k = y[y.length - 1];
        kernel = conv ? n.kernel : 1;
        stride = conv ? n.stride : 1;
        pad = conv ? n.pad : 0;
        groups = conv ? n.groups : 1;
        cg = c / groups;
        kg = k / groups;
    }

    /** Weights per output channel: kernel * kernel * Cg. */
    int taps() {
        return kernel * kernel * cg;
    }
}
