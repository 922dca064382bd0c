#!/usr/bin/env bash
# Model size at demo scale (docs/results.md#model-size): does SynthPose let a
# large model score clearly above a small one at the demo's 64x96 crops? Generates the data
# (800 train / 100 val / 100 occluded, seed 0) unless present, trains every MODEL for every
# SEED with the `demo_scale` config (20 epochs of at most 100 steps of 16 crops, LR x0.1 after
# epoch 16, val AP every 4 epochs on the 100 val images), then evaluates each last checkpoint
# on two larger held-out sets drawn with another seed (1,000 val-like and 1,000 occluded
# images: about 2,000 people each, so the comparison is not decided by evaluation noise) and
# prints the table (tools/sizes_table.py). Finished runs and evaluations are not redone; an
# interrupted run resumes from its last.pt, so the script can be stopped and started again.
#
#   bash tools/model_sizes.sh                         # medium, W32 vs Lite-HRNet-18, 3 seeds
#   DIFFICULTY=easy SEEDS="0" bash tools/model_sizes.sh
#   EPOCHS=30 SEEDS=0 OUT=runs/sizes/medium_30ep bash tools/model_sizes.sh   # longer schedule
#   SMALL=1 OUT=/tmp/sizes DATA=/tmp/sizes/data bash tools/model_sizes.sh   # dry run (a minute)
#
# On the 2-core development container one HRNet-W32 run takes about 28 min and one
# Lite-HRNet-18 run about 12 min.
set -euf  # -f: no globbing (train.lr_steps=[16] is an override, not a pattern)
DIFFICULTY=${DIFFICULTY:-medium}
MODELS=${MODELS:-"hrnet_w32 litehrnet_18"}
SEEDS=${SEEDS:-"0 1 2"}
SMALL=${SMALL:-0}
OUT=${OUT:-runs/sizes/$DIFFICULTY}
DATA=${DATA:-demo_out/data_$DIFFICULTY}
ODKD=${ODKD:-odkd}
EVAL_N=${EVAL_N:-1000}
EPOCHS=${EPOCHS:-20}              # LR x0.1 after 80% of them, as HRNet's 170 of 210
N="800 100 100"; ITERS=100; EVERY=4
if [ "$SMALL" = 1 ]; then N="8 2 2"; EVAL_N=3; EPOCHS=2; ITERS=2; EVERY=2; fi
SCHED="train.epochs=$EPOCHS train.max_iters_per_epoch=$ITERS train.lr_steps=[$(( EPOCHS * 4 / 5 ))] train.eval_every=$EVERY"

synth() {  # synth ROOT SPLIT N SEED
  if [ ! -f "$1/annotations/person_keypoints_$2.json" ]; then
    "$ODKD" synth --out "$1" --split "$2" --num-images "$3" --seed "$4" \
      --difficulty "$DIFFICULTY" --no-progress
  fi
}
set -- $N
synth "$DATA" train "$1" 0; synth "$DATA" val "$2" 0; synth "$DATA" occluded "$3" 0
HELD=${DATA}_heldout
synth "$HELD" val "$EVAL_N" 1; synth "$HELD" occluded "$EVAL_N" 1

DATA_OV="data.train_ann=$DATA/annotations/person_keypoints_train.json data.train_images=$DATA/train
data.val_ann=$DATA/annotations/person_keypoints_val.json data.val_images=$DATA/val"
mkdir -p "$OUT"
last_epoch() {  # last epoch in a run's log.csv (0 when none)
  python3 -c "import csv,sys; r=list(csv.DictReader(open(sys.argv[1]))); print(r[-1]['epoch'] if r else 0)" "$1" 2>/dev/null || echo 0
}
for seed in $SEEDS; do
  for model in $MODELS; do
    wd=$OUT/${model}_s$seed
    if [ "$(last_epoch "$wd/log.csv")" != "$EPOCHS" ]; then
      resume=""; [ -f "$wd/last.pt" ] && resume=--resume
      echo "[sizes] train $model seed $seed -> $wd"
      s=$(date +%s)
      # shellcheck disable=SC2086  # word splitting of the override lists is intended
      "$ODKD" train demo_scale $resume model.name="$model" $SCHED train.seed="$seed" $DATA_OV \
        workdir="$wd" > "$wd.log" 2>&1 || { echo "[sizes] FAILED, see $wd.log"; exit 1; }
      echo $(( $(date +%s) - s )) >> "$wd/wall_s"  # one line per (re)start
    fi
    for split in val occluded; do
      if [ ! -f "$wd/heldout_$split/metrics.json" ]; then
        "$ODKD" eval --checkpoint "$wd/last.pt" --out "$wd/heldout_$split" \
          --ann "$HELD/annotations/person_keypoints_$split.json" --images "$HELD/$split" \
          > "$wd/heldout_$split.log" 2>&1 || { echo "[sizes] eval FAILED: $wd/heldout_$split.log"; exit 1; }
      fi
    done
  done
done
python3 "$(dirname "$0")/sizes_table.py" "$OUT" --models $MODELS --seeds $SEEDS
