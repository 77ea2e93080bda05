#!/usr/bin/env bash
# Trains the pretrained model that ships in saved_models/ (README, "Pretrained model"): the realistic
# phantom only (1 mm, MPRAGE/TSE, half the subjects with the head on), 128x128 axial slices.
# Usage: scripts/train_pretrained.sh WORK_DIR [EPOCHS]
set -euo pipefail
work=${1:?usage: scripts/train_pretrained.sh WORK_DIR [EPOCHS]}
epochs=${2:-5}
gan-mri simulate --subjects 30 --resolution 1 --seed 0 --out "$work/phantom"
gan-mri prepare "$work/phantom" --size 128 --test-fraction 0.1 --seed 0 --out "$work/dataset"
gan-mri train --preset sa-enc-cl-sn --width 16 --data "$work/dataset" --epochs "$epochs" --batch-size 4 \
    --flip --eval-epochs "$epochs" --seed 0 --out "$work/run"
