# Sourced by tools/train_physics.sh and tools/train_liver.sh: the interpreter and the two training cohorts
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
