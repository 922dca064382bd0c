#!/usr/bin/env bash
# The paper's sizes on one lent H100 / H200 as one prepared call
# (`odkd experiment gpu_quick`: PT HRNet-W32, ST HRNet-W48 + mask, students HRNet-W16 and
# Lite-HRNet-18, one seed), data generation included, under a time limit.
#
#   bash tools/gpu_table.sh                     # on the GPU machine (repo root); carry [".whl"]
#   DEV=cpu SMALL=1 bash tools/gpu_table.sh     # dry run of the call itself on a CPU
#
# Brings back under $OUT: results.csv, results.md, ablation.png, curves.png (partial tables
# are written after every finished run, so a run cut by the limit still returns the rest),
# log.txt (environment + the experiment's log) and logs/ (`odkd results save
# --no-weights`: each finished run's config, logs and evaluation summaries; no weights, the
# W48 alone is 250 MB).
set -u
OUT=${OUT:-/tmp/odkd-gpu-table-out}
DEV=${DEV:-cuda}
SMALL=${SMALL:-0}
BUDGET=${BUDGET:-460}            # seconds for the experiment (the device call's limit: 480+)
WORK=${WORK:-/tmp/odkd-gpu-table}
mkdir -p "$OUT"
LOG=$OUT/log.txt
. "$(dirname "$0")/gpu_env.sh"   # PYTHONPATH, the carried wheel, `odkd` on PATH, environment
gpu_env_setup "$LOG"

W=$(( $(nproc) > 4 ? $(nproc) / 2 : 1 ))       # loader workers; the rest for COCO eval
ARGS=(out="$WORK" synth.root="$WORK/data" base.train.device="$DEV" base.data.workers="$W")
if [ "$SMALL" = 1 ]; then  # tiny data and a few steps: checks the call, not the numbers
  ARGS+=(synth.train=16 synth.val=4 synth.occluded=4 synth.heldout=4 'base.data.input_size=[64,96]'
         base.data.workers=0 base.data.device_aug=false base.train.amp=none
         base.train.batch_size=4 base.train.max_iters_per_epoch=2 base.eval.batch_size=8)
fi
echo "== odkd experiment gpu_quick ${ARGS[*]} (limit ${BUDGET}s)" | tee -a "$LOG"
s=$(date +%s)
timeout "$BUDGET" odkd experiment gpu_quick "${ARGS[@]}" >>"$LOG" 2>&1
rc=$?
echo "== rc=$rc in $(( $(date +%s) - s ))s" | tee -a "$LOG"
(( rc == 124 )) && echo "== cut by the ${BUDGET}s limit: the table holds the runs that finished" \
  | tee -a "$LOG"

for f in results.csv results.md ablation.png curves.png; do
  [ -f "$WORK/$f" ] && cp "$WORK/$f" "$OUT/"
done
# every finished run's config, logs and evaluation summaries, without weights
odkd results save --no-weights "$WORK" "$OUT/logs" 2>&1 | tee -a "$LOG"
[ -f "$OUT/results.md" ] && cat "$OUT/results.md"
tail -5 "$LOG"
exit $rc
