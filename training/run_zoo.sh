#!/usr/bin/env bash
# The whole model-zoo procedure per architecture, as models/README.md lists it:
# train Full -> binarize (BiPattern, no training; and with BN statistics
# re-estimated) -> refine (patterns frozen, distilled from Full) -> convert
# (seprt R from Full, B and BQ from Refined; TFLite fp32/int8 of Full and
# TFLite int8 of Refined, the BQ baseline), each conversion checked on the
# validation split.
#
#   training/run_zoo.sh [ARCH ...]          # default: resnet20 sepnet-cifar
#   nohup training/run_zoo.sh resnet20 > runs/zoo-resnet20.log 2>&1 &
#
# Every step is resumable/idempotent: rerun the same command after an
# interruption and it continues (train/refine resume from <out>.state.pt,
# finished steps print "already finished"; binarize and conversions are redone
# only if their output is missing or older than their input).
# Settings via environment: PY, THREADS (per process, default 1),
# EPOCHS (Full, default 60), REFINE_EPOCHS (default 15), TRAIN_ARGS (more
# `train` options, e.g. the ones a Full run was continued with), REFINE_ARGS
# (more `refine` options, e.g. --lr), DATA, WORK (default
# runs/: BiPattern checkpoints, validation and calibration images), MODELS
# (default models/).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
THREADS=${THREADS:-1}
EPOCHS=${EPOCHS:-60}
REFINE_EPOCHS=${REFINE_EPOCHS:-15}
DATA=${DATA:-/work/shared/datasets/cifar10-train.tar.gz}
WORK=${WORK:-runs}
MODELS=${MODELS:-models}
ARCHS=("$@")
[ ${#ARCHS[@]} -eq 0 ] && ARCHS=(resnet20 sepnet-cifar)
mkdir -p "$MODELS" "$WORK"
common=(--threads "$THREADS" --data "$DATA")
val=$WORK/val calib=$WORK/calib
[ -d "$val" ] || "$PY" -m training export-val --split val --out "$val" "${common[@]}"
[ -d "$calib" ] || "$PY" -m training export-val --split calib --out "$calib" "${common[@]}"

stale() { [ ! -f "$1" ] || [ "$1" -ot "$2" ]; }   # output $1 missing or older than input $2

for arch in "${ARCHS[@]}"; do
  case "$arch" in
    sepnet-*) mode=prb ;;   # the SEP-Net design: the PRBs' 3x3 convs become patterns
    *)        mode=all ;;   # the paper's ResNet experiment: every 3x3 conv
  esac
  full=$MODELS/$arch-full.pt
  bi=$WORK/$arch-bipattern-$mode.pt
  bibn=$WORK/$arch-bipattern-$mode-bn.pt
  ref=$MODELS/$arch-refined-$mode.pt
  echo "== $arch: Full, $EPOCHS epochs -> $full"
  # shellcheck disable=SC2086
  "$PY" -m training train --arch "$arch" --epochs "$EPOCHS" --out "$full" --progress-interval 60 "${common[@]}" \
    ${TRAIN_ARGS:-}
  if stale "$bi" "$full"; then
    echo "== $arch: binarize ($mode) -> $bi"
    "$PY" -m training binarize --ckpt "$full" --mode "$mode" --out "$bi" "${common[@]}"
  fi
  if stale "$bibn" "$full"; then
    echo "== $arch: binarize ($mode) + BN re-estimation -> $bibn"
    "$PY" -m training binarize --ckpt "$full" --mode "$mode" --bn-reestimate --out "$bibn" "${common[@]}"
  fi
  echo "== $arch: refine ($mode), $REFINE_EPOCHS epochs, distilled from Full -> $ref"
  # shellcheck disable=SC2086
  "$PY" -m training refine --ckpt "$bibn" --epochs "$REFINE_EPOCHS" --out "$ref" --teacher "$full" \
    --progress-interval 60 "${common[@]}" ${REFINE_ARGS:-}
  check=(--calib "$calib" --check "$val" --check-limit 5000)
  for v in R B BQ; do
    src=$ref; [ $v = R ] && src=$full
    out=$MODELS/$arch-$v.bin
    if stale "$out" "$src"; then
      "$PY" -m converters seprt "$src" -o "$out" --force --variant $v "${check[@]}"
    fi
  done
  for q in fp32 int8; do
    out=$MODELS/$arch-$q.tflite
    if stale "$out" "$full"; then "$PY" -m converters tflite "$full" -o "$out" --force --quant $q "${check[@]}"; fi
  done
  out=$MODELS/$arch-B-int8.tflite
  if stale "$out" "$ref"; then "$PY" -m converters tflite "$ref" -o "$out" --force --quant int8 --binarized "${check[@]}"; fi
done
