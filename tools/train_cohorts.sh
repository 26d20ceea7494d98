# Sourced by tools/train_physics.sh, tools/train_liver.sh and tools/train_magnitude.sh: the interpreter and the two training cohorts
# (physics style: 240 patients, seed 0, 85 % train; legacy style: 90 patients, seed 7, all train), written once
# under $ROOT (default data/train) and cached there.
PY=.venv/bin/python
ROOT=${ROOT:-data/train}
PHYS=${PHYS:-$ROOT/physics240}
LEGACY=${LEGACY:-$ROOT/legacy90}
DEVICE=${DEVICE:-auto}
NAME=unet_resnext50_32x4d
[ -f "$PHYS/cohort.csv" ] || $PY -m mre_core phantom --style physics --out "$PHYS" --patients 240 --seed 0 --train-fraction 0.85
[ -f "$LEGACY/cohort.csv" ] || $PY -m mre_core phantom --out "$LEGACY" --patients 90 --seed 7 --train-fraction 1.0

# keep_epochs RUN: RESUME=--resume when RUN holds a checkpoint, and (in the background, stopped at exit) a copy of
# each finished epoch's checkpoint as RUN/epoch<N>.pt, so every epoch can be measured on the safety validation set
# (tools/select_checkpoint.py) after the run; the run itself keeps only its latest checkpoint.
keep_epochs() {
  local run=$1
  mkdir -p "$run"
  RESUME=""
  [ -f "$run/checkpoint.pt" ] && RESUME="--resume"
  ( while sleep 20; do
      [ -f "$run/log.csv" ] || continue
      n=$(($(wc -l < "$run/log.csv") - 1))
      [ "$n" -ge 1 ] && [ ! -f "$run/epoch$n.pt" ] && cp "$run/checkpoint.pt" "$run/epoch$n.pt.tmp" \
        && mv "$run/epoch$n.pt.tmp" "$run/epoch$n.pt"
    done ) &
  WATCH=$!
  trap 'kill $WATCH 2>/dev/null || true' EXIT
}

# train_four_plane RUN INIT EPOCHS LR DATA...: the four-plane (stiffness, confidence, known, magnitude), two-output
# (ROI, liver) recipe of tools/train_magnitude.sh on the given cohorts (AdamW, cosine, BCE + Dice, --augment, bf16,
# 256²), fine-tuned from INIT, every epoch kept (keep_epochs); resumable.
train_four_plane() {
  local run=$1 init=$2 epochs=$3 lr=$4
  shift 4
  local data=()
  for d in "$@"; do data+=(--data "$d"); done
  keep_epochs "$run"
  $PY -m mre_core train "${data[@]}" --out "$run" --arch unet_resnext50 --name "$NAME" \
      --channels kpa_confident,confidence,kpa_known,magnitude --outputs roi,liver --init-weights "$init" \
      --epochs "$epochs" --batch 8 --micro-batch 8 --optimizer adamw --lr "$lr" --weight-decay 1e-4 \
      --lr-schedule cosine --loss bce_dice --augment --bf16 --input-size 256 \
      --device "$DEVICE" --export "$run/weights" $RESUME
  sleep 25  # the watcher copies the last epoch
}
