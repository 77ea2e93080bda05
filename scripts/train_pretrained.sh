#!/usr/bin/env bash
# Trains the pretrained model that ships in saved_models/phantom-sa-enc-cl-sn/ (README, "Pretrained model"):
# the realistic phantom only (1 mm, MPRAGE T1w / TSE T2w, half the subjects with the head on), 128x128 axial
# slices, the demo's model with the library's default recipe (the structure term on; the demo leaves it
# out). 2672 s on 2 CPU cores (simulate 327 s, 3 epochs of 483 steps about 38 min, evaluation with the real
# ICBM 2009c pair 150 s).
# Usage: scripts/train_pretrained.sh WORK_DIR [EPOCHS]
set -euo pipefail
work=${1:?usage: scripts/train_pretrained.sh WORK_DIR [EPOCHS]}
epochs=${2:-3}
gan-mri simulate --subjects 20 --resolution 1 --seed 0 --out "$work/phantom"
gan-mri prepare "$work/phantom" --size 128 --seed 0 --out "$work/dataset"
gan-mri train --preset sa-enc-cl-sn --width 16 --data "$work/dataset" --epochs "$epochs" --batch-size 4 \
    --eval-epochs "$epochs" --seed 0 --out "$work/run"
gan-mri evaluate "$work/run" --data "$work/dataset"
