#!/usr/bin/env bash
# One prepared call on a lent GPU machine (see docs/development.md, "GPU checks"): environment,
# the device-augmentation tests on CUDA, `odkd bench train` (eager, then torch.compile, then
# CUDA graphs), and a short real train + distill run on CUDA. Each step has its own time limit
# and the whole script a budget, so one failure or a slow compile never costs the rest.
#
#   bash tools/gpu_check.sh                    # on the GPU machine (repo root)
#   DEV=cpu SMALL=1 bash tools/gpu_check.sh    # dry run of the script itself, on a CPU
#
# Everything is appended to $OUT/log.txt; the bench JSON lines are copied to $OUT/bench.jsonl.
set -u
OUT=${OUT:-/tmp/odkd-gpu}
DEV=${DEV:-cuda}
SMALL=${SMALL:-0}                # 1: tiny sizes (dry run)
BATCH=${BATCH:-128}              # bench and train batch on the GPU
BUDGET=${BUDGET:-480}            # seconds for the whole script
mkdir -p "$OUT"
LOG=$OUT/log.txt
. "$(dirname "$0")/gpu_env.sh"   # gpu_env_setup: PYTHONPATH, the carried wheel, `odkd`, environment
T0=$(date +%s)
left() { echo $(( BUDGET - ($(date +%s) - T0) )); }

step() {  # step NAME LIMIT_S command...
  local name=$1 limit=$2 l s rc; shift 2
  l=$(left)
  if (( l < 20 )); then echo "== $name: SKIPPED (budget spent)" | tee -a "$LOG"; return; fi
  (( limit > l )) && limit=$l
  echo "== $name (limit ${limit}s) $*" | tee -a "$LOG"
  s=$(date +%s)
  timeout "$limit" "$@" >>"$LOG" 2>&1
  rc=$?
  echo "== $name: rc=$rc in $(( $(date +%s) - s ))s" | tee -a "$LOG"
}

gpu_env_setup "$LOG"

if [ "$SMALL" = 1 ]; then
  B=16; IMGS=32; STEPS=3; WARM=1; SIZE="64 96"; N_TRAIN=40; ITERS=4; CFG="input_size=[64,96]"
else
  B=$BATCH; IMGS=$(( B + 32 )); STEPS=30; WARM=5; SIZE="192 256"; N_TRAIN=600; ITERS=60
  CFG="input_size=[192,256]"
fi
W=$(( $(nproc) > 2 ? $(nproc) - 2 : 1 ))
BENCH=(bench train --device "$DEV" --model hrnet_w16 --teachers hrnet_w32 --batch "$B"
       --input-size $SIZE --images "$IMGS" --steps "$STEPS" --warmup "$WARM" --workers "$W")

[ "$DEV" = cuda ] && step device_aug_tests 60 env ODKD_TEST_DEVICE=cuda \
  python3 -m pytest -q -p no:cacheprovider tests/test_device_aug.py
step bench_eager 150 odkd "${BENCH[@]}" --compile off

# a short real run on the device: train (device aug, bf16, channels_last), then distil from it
D=/tmp/odkd-gpu-data
step synth 60 bash -c "odkd synth --out $D --split train --num-images \
$N_TRAIN --seed 0 --difficulty easy && odkd synth --out $D --split val --num-images 50 --seed 1 \
--difficulty easy"
COMMON=(data.train_ann=$D/annotations/person_keypoints_train.json data.train_images=$D/train
        data.val_ann=$D/annotations/person_keypoints_val.json data.val_images=$D/val
        "data.$CFG" data.workers=$W data.device_aug=true train.device=$DEV train.amp=bf16
        train.batch_size=$B train.lr=0.002 train.epochs=2 train.max_iters_per_epoch=$ITERS
        train.eval_every=2 eval.batch_size=256)
step train 150 odkd train demo_scale "${COMMON[@]}" model.name=hrnet_w16 workdir=/tmp/odkd-gpu-t
step distill 150 odkd distill demo_scale "${COMMON[@]}" model.name=litehrnet_18 \
  distill.schedule=pt_only distill.pt.checkpoint=/tmp/odkd-gpu-t/last.pt workdir=/tmp/odkd-gpu-d
for w in /tmp/odkd-gpu-t /tmp/odkd-gpu-d; do
  [ -f $w/log.csv ] && { echo "-- $w/log.csv"; cat $w/log.csv; } | tee -a "$LOG"
done

step bench_compile 240 odkd "${BENCH[@]}" --compile on
step bench_cudagraphs 200 odkd "${BENCH[@]}" --compile on --compile-mode reduce-overhead

grep -a '^{"model"' "$LOG" >"$OUT/bench.jsonl"
echo "== bench JSON lines:"; cat "$OUT/bench.jsonl"
echo "== total $(( $(date +%s) - T0 ))s"
