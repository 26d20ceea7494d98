#!/usr/bin/env bash
# Train the next segmentation model on the physics phantom style and measure it on the unseen holdout style
# (issue "A segmentation that finds the liver on data it was not trained on"). Resumable: run it again after an
# interruption and training continues from runs/physics_256/checkpoint.pt; cohorts are cached on disk.
#
# Cost measured on the 2-core CPU (2026-12-01): physics phantom ~1.8 s per study (0.37 s per slice); one
# forward+backward of UNet-ResNeXt50 at 256², batch 8, bf16: 30-40 s -> ~1.8 h per epoch of ~1,500 slices.
# On a CUDA GPU add --device cuda (and drop --bf16 if the GPU prefers fp16/fp32).
#
# Ship the new weights only if, on the holdout style, ROI outside the liver and Dice beat the current weights
# (docs/GENERALISATION.md has the current numbers); then update the model card, RESULTS.md and the goldens.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
DATA=${DATA:-data/physics_paper}
HOLDOUT=${HOLDOUT:-data/holdout60}
RUN=${RUN:-runs/physics_256}
DEVICE=${DEVICE:-auto}

[ -f "$DATA/cohort.csv" ] || $PY -m mre_core phantom --style physics --like-paper --out "$DATA" --seed 0
[ -f "$HOLDOUT/cohort.csv" ] || $PY -m mre_core phantom --style holdout --out "$HOLDOUT" --patients 60 --seed 1

RESUME=""
[ -f "$RUN/checkpoint.pt" ] && RESUME="--resume"
$PY -m mre_core train --data "$DATA" --out "$RUN" --arch unet_resnext50 --name unet_resnext50_32x4d_physics \
    --augment --bf16 --device "$DEVICE" --export "$RUN/weights" $RESUME

for cohort in "$DATA" "$HOLDOUT"; do
  name=$(basename "$cohort")
  $PY -m mre_core evaluate --data "$cohort" --split test --device "$DEVICE" --out "$RUN/eval_new_$name" \
      --weights-dir "$RUN/weights" --model unet_resnext50_32x4d_physics
  $PY -m mre_core evaluate --data "$cohort" --split test --device "$DEVICE" --out "$RUN/eval_shipped_$name"
done
