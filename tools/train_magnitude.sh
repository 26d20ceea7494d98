#!/usr/bin/env bash
# Issue "A segmentation that finds the liver on data it was not trained on": the magnitude image as a fourth
# input channel (the anatomy a reader draws on; the elastogram does not show the liver's edge), with the liver
# output of tools/train_liver.sh. Same data, recipe and schedule as tools/train_physics.sh / train_liver.sh
# (AdamW 3e-4, cosine, BCE + Dice, --augment, bf16, 256²), fine-tuned from the shipped three-channel,
# single-output weights: the first convolution is widened for the magnitude plane with the mean of the other
# channels' weights (mre_core/model/network.py: adapt_input; zero weights, tried first, left the plane almost
# unused after two epochs) and the liver channel starts as a copy of the ROI channel. The magnitude plane has its
# own augmentation and is zeroed
# for a quarter of the slices (mre_core/model/augment.py, MAGNITUDE_DROPOUT in train.py).
# Resumable: run it again after an interruption. Each finished epoch's checkpoint is kept as $RUN/epoch<N>.pt
# so every epoch can be measured on the safety validation set (tools/select_checkpoint.py states the rule)
# before anything is measured on the unseen styles.
set -euo pipefail
cd "$(dirname "$0")/.."
. tools/train_cohorts.sh
RUN=${RUN:-runs/magnitude_ft}
EPOCHS=${EPOCHS:-5}  # the shipped @170ba2124c6b: 5 epochs, epoch 5 selected
INIT=${INIT:-weights/$NAME}  # the run started from @e457655bcf5d: git show c37d893:weights/$NAME.{json,safetensors}
train_four_plane "$RUN" "$INIT" "$EPOCHS" 3e-4 "$PHYS" "$LEGACY"
