#!/usr/bin/env bash
# The whole model-zoo procedure per architecture: train Full -> binarize
# (BiPattern, no training) -> refine (patterns frozen, distilled from Full).
#
#   training/run_zoo.sh [ARCH ...]          # default: resnet20 sepnet-cifar
#   nohup training/run_zoo.sh resnet20 > runs/zoo-resnet20.log 2>&1 &
#
# Every step is resumable/idempotent: rerun the same command after an
# interruption and it continues (train/refine resume from <out>.state.pt,
# finished steps print "already finished"; binarize is redone only if its
# output is missing or older than the Full checkpoint).
# Settings via environment: PY, THREADS (per process, default 1),
# EPOCHS (Full, default 60), REFINE_EPOCHS (default 15), DATA.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
THREADS=${THREADS:-1}
EPOCHS=${EPOCHS:-60}
REFINE_EPOCHS=${REFINE_EPOCHS:-15}
DATA=${DATA:-/work/shared/datasets/cifar10-train.tar.gz}
ARCHS=("$@")
[ ${#ARCHS[@]} -eq 0 ] && ARCHS=(resnet20 sepnet-cifar)
mkdir -p models runs
common=(--threads "$THREADS" --data "$DATA")

for arch in "${ARCHS[@]}"; do
  case "$arch" in
    sepnet-*) modes=(prb all) ;;   # PRB 3x3 only (the SEP-Net design) and every k x k conv
    *)        modes=(all) ;;       # the paper's ResNet experiment: every 3x3 conv
  esac
  full=models/$arch-full.pt
  echo "== $arch: Full, $EPOCHS epochs -> $full"
  "$PY" -m training train --arch "$arch" --epochs "$EPOCHS" --out "$full" --progress-interval 60 "${common[@]}"
  for mode in "${modes[@]}"; do
    bi=models/$arch-bipattern-$mode.pt
    ref=models/$arch-refined-$mode.pt
    if [ ! -f "$bi" ] || [ "$bi" -ot "$full" ]; then
      echo "== $arch: binarize ($mode) -> $bi"
      "$PY" -m training binarize --ckpt "$full" --mode "$mode" --out "$bi" "${common[@]}"
    fi
    echo "== $arch: refine ($mode), $REFINE_EPOCHS epochs, distilled from Full -> $ref"
    "$PY" -m training refine --ckpt "$bi" --epochs "$REFINE_EPOCHS" --out "$ref" --teacher "$full" \
      --progress-interval 60 "${common[@]}"
    "$PY" -m training eval --ckpt "$ref" "${common[@]}"
  done
done
