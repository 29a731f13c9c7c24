package ai.seprt.core;

import java.io.IOException;

/** A model file breaks a rule of docs/format.md (v1 or v2); the message says which. */
public final class SeprtFormatException extends IOException {
    private static final long serialVersionUID = 1L;

    public SeprtFormatException(String message) {
        super(message);
    }
}
