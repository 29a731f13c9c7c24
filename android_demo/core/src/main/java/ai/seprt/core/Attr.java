package ai.seprt.core;

/**
 * An op attribute of docs/format.md ("Node record"): an i32 with a default and an inclusive
 * range, the counterpart of {@code Attr} in seprt/ops/base.py. Files omit attributes that hold
 * their default. (All current attributes are integers; an f32 attribute would add a type here.)
 */
final class Attr {
    /** Attribute record value types of format v2. */
    static final int TYPE_I32 = 1;
    static final int TYPE_F32 = 2;

    final String name;
    final int dflt;
    final int lo;
    final int hi;

    Attr(String name, int dflt, int lo, int hi) {
        this.name = name;
        this.dflt = dflt;
        this.lo = lo;
        this.hi = hi;
    }

    /** The v2 record type of this attribute's value. */
    int type() {
        return TYPE_I32;
    }

    /** kernel / stride / pad of a square window (conv, pools): kernel 1..15, stride 1..8, pad 0..14. */
    static Attr[] window() {
        return new Attr[] {new Attr("kernel", 1, 1, GraphValidator.MAX_KERNEL),
                new Attr("stride", 1, 1, GraphValidator.MAX_STRIDE),
                new Attr("pad", 0, 0, GraphValidator.MAX_KERNEL - 1)};
    }

    static Attr[] plus(Attr[] a, Attr b) {
        Attr[] out = java.util.Arrays.copyOf(a, a.length + 1);
        out[a.length] = b;
        return out;
    }
}
