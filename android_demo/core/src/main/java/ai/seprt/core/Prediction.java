package ai.seprt.core;

import java.util.Locale;

/** One class of a top-k answer: its index in logit order, its label and softmax probability. */
public final class Prediction {
    public final int index;
    public final String label;
    public final double probability;

    Prediction(int index, String label, double probability) {
        this.index = index;
        this.label = label;
        this.probability = probability;
    }

    @Override
    public String toString() {
        return String.format(Locale.ROOT, "%s %.3f", label, probability);
    }
}
