#!/usr/bin/env bash
# Are the teachers right on the images the students train on? Evaluates checkpoints on the
# first N training images of a SynthPose set (ground-truth boxes, flip test), so their AP can be
# set beside the held-out AP (results/converged/train_images.md).
#
#   bash tools/eval_train_subset.sh OUT NAME=CKPT [NAME=CKPT ...]
#   e.g. bash tools/eval_train_subset.sh /tmp/te st=runs/converged/teachers/st-*/best.pt
#
# DATA (default runs/converged/data) holds annotations/person_keypoints_train.json and train/;
# N (default 300). Writes OUT/train<N>.json and OUT/NAME/metrics.json; prints NAME AP.
set -eu
OUT=$1; shift
DATA=${DATA:-runs/converged/data}
N=${N:-300}
ODKD=${ODKD:-odkd}
mkdir -p "$OUT"
python - "$DATA/annotations/person_keypoints_train.json" "$OUT/train$N.json" "$N" <<'PY'
import json, sys
src, dst, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
d = json.load(open(src))
keep = {im["id"] for im in d["images"][:n]}
d["images"] = [im for im in d["images"] if im["id"] in keep]
d["annotations"] = [a for a in d["annotations"] if a["image_id"] in keep]
json.dump(d, open(dst, "w"))
print(f"{dst}: {len(d['images'])} images, {len(d['annotations'])} annotations")
PY
for pair in "$@"; do
  name=${pair%%=*}; ckpt=${pair#*=}
  OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} "$ODKD" eval --checkpoint "$ckpt" --ann "$OUT/train$N.json" \
    --images "$DATA/train" --boxes gt --out "$OUT/$name" > "$OUT/$name.log" 2>&1
  python -c "import json,sys; print(sys.argv[1], round(100 * json.load(open(sys.argv[2]))['AP'], 1))" \
    "$name" "$OUT/$name/metrics.json"
done
