#!/usr/bin/env bash
# Senior-teacher schedule probe: trains only the ST of `odkd experiment converged` with another
# schedule, on the same data, and evaluates it on every split (val to choose; the held-out
# splits report), so an ST schedule can be chosen without running the whole table. The
# converged table wants an ST at least 1.5x the scratch student's held-out AP; the schedule in
# converged.yaml (8,000 steps, LR x0.1 after 6,400) was chosen with it (results/st_probe/).
#
#   EPOCHS=80 DROP=64 bash tools/st_probe.sh     # 8,000 steps, LR x0.1 after 6,400
#   EPOCHS=65 DROP=52 bash tools/st_probe.sh
#
# It reuses the PT (and the data) of SRC (default runs/converged, e.g. restored with
# `odkd results restore results/converged/logs runs/converged`): the PT is copied into OUT so
# the experiment skips it; without one it is trained too (~15 min). One
# thread (`OMP_NUM_THREADS=1`): two probes can share the 2 cores. Output: OUT/results.md and
# OUT/teachers/st-*/ (log.csv with val AP every 1,000 steps, eval_*/summary.json). Resumable.
set -euf  # -f: no globbing ('train.lr_steps=[64]' is an override, not a pattern)
EPOCHS=${EPOCHS:-80}
DROP=${DROP:-$((EPOCHS * 4 / 5))}
SRC=${SRC:-runs/converged}
OUT=${OUT:-runs/st_probe/e${EPOCHS}_d${DROP}}
ODKD=${ODKD:-odkd}
EXTRA=${EXTRA:-}                  # further experiment overrides, e.g. for a dry run
mkdir -p "$OUT/teachers"
set +f
for d in "$SRC"/teachers/pt-*; do
  if [ -d "$d" ] && [ ! -e "$OUT/teachers/$(basename "$d")" ]; then cp -r "$d" "$OUT/teachers/"; fi
done
set -f
# shellcheck disable=SC2086  # EXTRA is a list of overrides
OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} "$ODKD" experiment converged "out=$OUT" \
  "synth.root=$SRC/data" 'methods=[]' jobs=1 \
  "st=[model.name=litehrnet_18, model.with_mask=true, train.epochs=$EPOCHS, 'train.lr_steps=[$DROP]', train.eval_every=10]" \
  $EXTRA
