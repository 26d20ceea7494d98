#!/usr/bin/env bash
# Issue "A segmentation that finds the liver on data it was not trained on": the shipped recipe
# (tools/train_physics.sh: same data, augmentation, optimiser, schedule, bf16, 256²) with a second network
# output, the liver itself (--outputs roi,liver), fine-tuned from the shipped single-output weights (the liver
# channel starts as a copy of the ROI channel). At inference the ROI is kept inside the largest predicted liver
# piece eroded by Settings.liver_margin_mm (mre_core/analysis/guardrails.py: liver_region).
# Resumable: run it again after an interruption. Each finished epoch's checkpoint is copied to
# $RUN/epoch<N>.pt (the run itself keeps only its latest), so every epoch can be measured on the safety
# validation set (tools/select_checkpoint.py states the rule) before anything is measured on the unseen styles.
set -euo pipefail
cd "$(dirname "$0")/.."
. tools/train_cohorts.sh
RUN=${RUN:-runs/liver_ft}
EPOCHS=${EPOCHS:-4}
INIT=${INIT:-weights/$NAME}  # the run started from @e457655bcf5d: git show c37d893:weights/$NAME.{json,safetensors}
keep_epochs "$RUN"  # tools/train_cohorts.sh: sets RESUME, copies each epoch to $RUN/epoch<N>.pt
$PY -m mre_core train --data "$PHYS" --data "$LEGACY" --out "$RUN" --arch unet_resnext50 --name "$NAME" \
    --outputs roi,liver --init-weights "$INIT" --epochs "$EPOCHS" --batch 8 --micro-batch 8 --optimizer adamw \
    --lr 3e-4 --weight-decay 1e-4 --lr-schedule cosine --loss bce_dice --augment --bf16 --input-size 256 \
    --device "$DEVICE" --export "$RUN/weights" $RESUME
sleep 25  # the watcher copies the last epoch
