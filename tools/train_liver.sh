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
mkdir -p "$RUN"
RESUME=""
[ -f "$RUN/checkpoint.pt" ] && RESUME="--resume"
( # keep each epoch's checkpoint as it is written
  while sleep 20; do
    [ -f "$RUN/log.csv" ] || continue
    n=$(($(wc -l < "$RUN/log.csv") - 1))
    [ "$n" -ge 1 ] && [ ! -f "$RUN/epoch$n.pt" ] && cp "$RUN/checkpoint.pt" "$RUN/epoch$n.pt.tmp" && mv "$RUN/epoch$n.pt.tmp" "$RUN/epoch$n.pt"
  done ) &
WATCH=$!
trap 'kill $WATCH 2>/dev/null || true' EXIT
$PY -m mre_core train --data "$PHYS" --data "$LEGACY" --out "$RUN" --arch unet_resnext50 --name "$NAME" \
    --outputs roi,liver --init-weights weights/$NAME --epochs "$EPOCHS" --batch 8 --micro-batch 8 --optimizer adamw \
    --lr 3e-4 --weight-decay 1e-4 --lr-schedule cosine --loss bce_dice --augment --bf16 --input-size 256 \
    --device "$DEVICE" --export "$RUN/weights" $RESUME
sleep 25  # the watcher copies the last epoch
