package ai.seprt.core;

import java.util.Collections;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

/**
 * The META section: key -> value, where a value is a Long (u32), Float (f32), String (str),
 * List&lt;String&gt; (str[]), float[] (f32[]) or long[] (u32[]). Typed getters reject a key
 * whose stored type differs from the one docs/format.md gives it.
 */
public final class Metadata {
    private final Map<String, Object> map;

    Metadata(Map<String, Object> map) {
        this.map = Collections.unmodifiableMap(new TreeMap<>(map));
    }

    public boolean has(String key) {
        return map.containsKey(key);
    }

    public String string(String key, String dflt) throws SeprtFormatException {
        return typed(key, String.class, "str", dflt);
    }

    @SuppressWarnings("unchecked")
    public List<String> strings(String key) throws SeprtFormatException {
        return typed(key, List.class, "str[]", null);
    }

    public Long u32(String key) throws SeprtFormatException {
        return typed(key, Long.class, "u32", null);
    }

    public Float f32(String key, Float dflt) throws SeprtFormatException {
        return typed(key, Float.class, "f32", dflt);
    }

    public float[] f32s(String key) throws SeprtFormatException {
        return typed(key, float[].class, "f32[]", null);
    }

    public long[] u32s(String key) throws SeprtFormatException {
        return typed(key, long[].class, "u32[]", null);
    }

    private <T> T typed(String key, Class<T> type, String typeName, T dflt) throws SeprtFormatException {
        Object v = map.get(key);
        if (v == null) {
            return dflt;
        }
        if (!type.isInstance(v)) {
            throw new SeprtFormatException("metadata key '" + key + "' must be of type " + typeName);
        }
        return type.cast(v);
    }
}
