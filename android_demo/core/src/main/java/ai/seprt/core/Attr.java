package ai.seprt.core;

/**
 * An op attribute of docs/format.md ("Node record"): an i32 with a default and an inclusive
 * range, or an f32 (act's slope) with a default and a finite inclusive range; the counterpart of
 * {@code Attr} in seprt/ops/base.py. Files omit attributes that hold their default. An f32
 * attribute is kept in {@link Node#attrs} as its raw IEEE bits ({@link Node#f32}); its dflt is
 * the bits of its default.
 */
final class Attr {
    /** Attribute record value types of format v2. */
    static final int TYPE_I32 = 1;
    static final int TYPE_F32 = 2;

    final String name;
    final int dflt;
    final int lo;
    final int hi;
    /** f32 attribute: default and range as floats (dflt holds the default's bits). */
    final boolean isFloat;
    final float fDflt;
    final float fLo;
    final float fHi;

    Attr(String name, int dflt, int lo, int hi) {
        this.name = name;
        this.dflt = dflt;
        this.lo = lo;
        this.hi = hi;
        this.isFloat = false;
        this.fDflt = 0;
        this.fLo = 0;
        this.fHi = 0;
    }

    private Attr(String name, float dflt, float lo, float hi) {
        this.name = name;
        this.dflt = Float.floatToIntBits(dflt);
        this.lo = 0;
        this.hi = 0;
        this.isFloat = true;
        this.fDflt = dflt;
        this.fLo = lo;
        this.fHi = hi;
    }

    static Attr f32(String name, float dflt, float lo, float hi) {
        return new Attr(name, dflt, lo, hi);
    }

    /** The v2 record type of this attribute's value. */
    int type() {
        return isFloat ? TYPE_F32 : TYPE_I32;
    }

    /** A raw record value (i32, or f32 bits) equals the default (f32: compared as floats, as Python does). */
    boolean isDefault(int raw) {
        return isFloat ? Float.intBitsToFloat(raw) == fDflt : raw == dflt;
    }

    /** A raw value is in range (f32: finite and within [lo, hi]; NaN is not). */
    boolean inRange(int raw) {
        if (isFloat) {
            float v = Float.intBitsToFloat(raw);
            return v >= fLo && v <= fHi;
        }
        return raw >= lo && raw <= hi;
    }

    /** The raw value as the file states it, for messages. */
    String show(int raw) {
        return isFloat ? String.valueOf(Float.intBitsToFloat(raw)) : String.valueOf(raw);
    }

    String range() {
        return isFloat ? fLo + ".." + fHi : lo + ".." + hi;
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
