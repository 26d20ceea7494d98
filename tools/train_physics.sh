#!/usr/bin/env bash
# Train the next segmentation model on the physics phantom style (plus the legacy style, so the model keeps
# what it knew) and measure it on styles it never saw (issue "A segmentation that finds the liver on data it
# was not trained on"). Resumable: run it again after an interruption and training continues from
# $RUN/checkpoint.pt; cohorts and input arrays are cached on disk.
#
# Recipe: fine-tune the shipped weights (--init-weights) for $EPOCHS epochs, AdamW lr 3e-4 with a cosine
# schedule, BCE + soft Dice, the full augmentation (mre_core.model.augment; no flips), bf16 autocast, 256².
# Data: 240 physics-style patients (seed 0, 85 % train = 204) and 90 legacy-style patients (seed 7, all
# train); 15 % of each style's training patients are the validation set that picks the best epoch.
# Never in training or model selection: the physics-style test split of seed 3 ($PHYS_TEST) and the
# independently written hold-out style ($HOLDOUT), on which the result is measured once at the end.
#
# Cost measured on the 2-core CPU (2026-12-02): physics phantom ~1.2-2 s per study; one forward+backward of
# UNet-ResNeXt50 at 256², batch 8, bf16: ~2.7 s. On a CUDA GPU set DEVICE=cuda.
#
# The run keeps only its latest checkpoint (and best.pt, by validation Dice): copy $RUN/checkpoint.pt after each
# epoch to keep candidates, and choose among them by ROI safety on a validation set of the training style that no
# epoch was trained on (tools/select_checkpoint.py states the rule).
# Ship the new weights only if, on the unseen styles, ROI outside the liver and Dice beat the current
# weights (docs/GENERALISATION.md has the current numbers); then update the model card, RESULTS.md and goldens.
# 2026-12-02: epochs 4-8 run; the safety-selected epoch 5 did not beat the shipped weights on Dice: not shipped.
#
# The shipped @e457655bcf5d (2026-12-02): this recipe with EPOCHS=8, stopped after epoch 3 for time (about 24 min
# per epoch on the shared 2-core CPU), then run again with EPOCHS=3, which resumes from the checkpoint, trains no
# further and exports the best validation epoch (2). Its card was written from the evaluate outputs
# (python -m mre_core.model.card --eval <like-paper eval> --update-weights-json, plus card.generalisation).
set -euo pipefail
cd "$(dirname "$0")/.."
. tools/train_cohorts.sh
PHYS_TEST=${PHYS_TEST:-$ROOT/physics40}
HOLDOUT=${HOLDOUT:-$ROOT/holdout20}
RUN=${RUN:-runs/physics_ft}
EPOCHS=${EPOCHS:-8}

[ -f "$PHYS_TEST/cohort.csv" ] || $PY -m mre_core phantom --style physics --out "$PHYS_TEST" --patients 40 --seed 3
[ -f "$HOLDOUT/cohort.csv" ] || $PY -m mre_core phantom --style holdout --out "$HOLDOUT" --patients 20 --seed 1

RESUME=""
[ -f "$RUN/checkpoint.pt" ] && RESUME="--resume"
$PY -m mre_core train --data "$PHYS" --data "$LEGACY" --out "$RUN" --arch unet_resnext50 --name "$NAME" \
    --init-weights weights/$NAME --epochs "$EPOCHS" --batch 8 --micro-batch 8 --optimizer adamw --lr 3e-4 \
    --weight-decay 1e-4 --lr-schedule cosine --loss bce_dice --augment --bf16 --input-size 256 \
    --device "$DEVICE" --export "$RUN/weights" $RESUME

for cohort in "$PHYS_TEST" "$HOLDOUT"; do
  name=$(basename "$cohort")
  [ -f "$RUN/eval_new_$name/metrics_$NAME.json" ] || $PY -m mre_core evaluate --data "$cohort" --split test \
      --device "$DEVICE" --out "$RUN/eval_new_$name" --weights-dir "$RUN/weights" --model "$NAME"
  [ -f "$RUN/eval_shipped_$name/metrics_$NAME.json" ] || $PY -m mre_core evaluate --data "$cohort" --split test \
      --device "$DEVICE" --out "$RUN/eval_shipped_$name"
done
