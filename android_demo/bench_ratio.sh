#!/usr/bin/env bash
# The Java core's fast path against the Python fast engine, 1 thread each, on the same model
# files, in interleaved rounds (Python, then Java, per model per round), as in the JVM table of
# android_demo/README.md.
#
#   android_demo/bench_ratio.sh [ROUNDS [RUNS]]      defaults: 5 rounds of 100 timed runs
#
# Prints each run's line, then per model: the minimum over all rounds and the median of the
# per-round medians of both engines, and Java / Python for each; the load average (uptime)
# before and after. Needs android_demo/build/seprt-core.jar and build/testmodels
# (android_demo/build.sh test) and a Python with seprt ($SEPRT_PYTHON, or the repo's .venv).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$HERE")
ROUNDS=${1:-5}
RUNS=${2:-100}
PY=${SEPRT_PYTHON:-$ROOT/.venv/bin/python}
JAR="$HERE/build/seprt-core.jar"
MODELS=("$ROOT/seprt/data/demo.bin" "$HERE/build/testmodels/sepnet-t8-BQ.bin")

for f in "$JAR" "${MODELS[@]}"; do
    [ -f "$f" ] || { echo "bench_ratio.sh: $f is missing: run android_demo/build.sh test" >&2; exit 1; }
done
"$PY" -c 'import seprt' 2>/dev/null || { echo "bench_ratio.sh: $PY cannot import seprt: set SEPRT_PYTHON" >&2; exit 1; }

LOG=$(mktemp)
trap 'rm -f "$LOG"' EXIT
echo "before: $(uptime)"
for round in $(seq "$ROUNDS"); do
    for m in "${MODELS[@]}"; do
        "$PY" "$HERE/bench_python.py" "$m" "$RUNS" | sed "s|^|python $(basename "$m") |" | tee -a "$LOG"
        java -jar "$JAR" --bench "$m" "$RUNS" | sed "s|^|java $(basename "$m") |" | tee -a "$LOG"
    done
done
echo "after:  $(uptime)"

# per model and engine: min of the minima, median of the medians; then Java / Python
awk '
    {
        eng = $1; model = $2
        for (i = 3; i < NF; i++) {
            if ($i == "median") med[model, eng, ++nm[model, eng]] = $(i + 1) + 0
            if ($i == "min") { v = $(i + 1) + 0; if (!((model, eng) in lo) || v < lo[model, eng]) lo[model, eng] = v }
        }
        models[model] = 1
    }
    function median(model, eng,    n, i, j, t, a) {
        n = nm[model, eng]
        for (i = 1; i <= n; i++) a[i] = med[model, eng, i]
        for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
        return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    END {
        for (m in models) {
            jm = median(m, "java"); pm = median(m, "python")
            printf "%s: java min %.2f ms, median %.2f ms; python min %.3f ms, median %.3f ms; java/python %.1fx (min), %.1fx (median)\n",
                m, lo[m, "java"], jm, lo[m, "python"], pm, lo[m, "java"] / lo[m, "python"], jm / pm
        }
    }' "$LOG"
