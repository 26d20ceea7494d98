#!/usr/bin/env bash
# Issue "A segmentation that finds the liver on data it was not trained on", domain randomisation of the stored
# grid: scanners store the elastogram either interpolated to 256 columns or at the acquired matrix (64-256
# columns; 1.2-7.5 mm pixels over a 300-480 mm field of view). Until now every physics-style study was stored
# at 256 columns (the acquired matrix only blurred it), so a coarse stored grid was seen only through the
# augmentation's coarse_grid (90-256 pixels across). This run adds a third cohort of the physics style with 60 %
# of its studies stored at the acquired matrix (`phantom --style physics --stored-acquired 0.6`, seed 11, all
# train) to the shipped recipe's two cohorts and fine-tunes the shipped four-plane weights from there at a
# lower learning rate (1e-4: a continuation, not a new start). Everything else is tools/train_magnitude.sh.
# Epochs are measured on both safety validation sets (seed 21, stored at 256; seed 22, half stored at the
# acquired matrix; neither trained on) before anything is measured on the unseen styles. Resumable.
set -euo pipefail
cd "$(dirname "$0")/.."
. tools/train_cohorts.sh
ACQ=${ACQ:-$ROOT/physics_acq160}
[ -f "$ACQ/cohort.csv" ] || $PY -m mre_core phantom --style physics --out "$ACQ" --patients 160 --seed 11 \
    --train-fraction 1.0 --stored-acquired 0.6
RUN=${RUN:-runs/stored_grid_ft}
EPOCHS=${EPOCHS:-3}
INIT=${INIT:-weights/$NAME}  # the recorded run started from @170ba2124c6b (git show <this commit>^:weights/…)
train_four_plane "$RUN" "$INIT" "$EPOCHS" 1e-4 "$PHYS" "$LEGACY" "$ACQ"
