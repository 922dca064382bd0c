#!/usr/bin/env bash
# int8 settings of the shipped student on validation data: one export per (layers kept in
# fp32, calibration method, calibration crops), each scored on LSP 1-1000 (validation: its
# labels are used nowhere in training) and on LSP 1001-2000 (test).
# Usage: run.sh TRAIN_JSON LSP_VAL_JSON LSP_TEST_JSON OUT_DIR [NAME...]
# NAME: LAYERS__METHOD__CROPS, e.g. declared__percentile99.99__256 (LAYERS: all, declared,
# s32_head_s4). MODEL (environment, default odkd-lightning): the checkpoint to export; the
# README's table used 17d5857's odkd-lightning.pt. One ORT thread each. Prints: name val_pck test_pck.
set -euo pipefail
train=$1; val=$2; lsp=$3; out=$4; shift 4
mkdir -p "$out"
last='/model/backbone/last/'
s32='/model/backbone/blocks\.1[3-6]/ /model/fpn/lat32/'
head='/model/heatmap_head/ /model/final_layer/ /model/Sigmoid$'
s4='/model/fpn/(lat4/|smooth4/|Add_2$|Resize_2$)'
declare -A layers=([all]="" [declared]="DEFAULT" [s32_head_s4]="$last $s32 $head $s4")
score() {  # score FILE TAG -> PCK on the set TAG (val|test)
  local f=$1 tag=$2 ann
  if [ "$tag" = val ]; then ann=$val; else ann=$lsp; fi
  odkd eval --checkpoint "$f" --metric pck --ann "$ann" --no-flip --threads 1 \
      --out "${f%.onnx}_$tag" > "${f%.onnx}_$tag.log" 2>&1
  grep -o '"pck": [0-9.]*' "${f%.onnx}_$tag.log" | grep -o '[0-9.]*$'
}
names=("$@")
if [ ${#names[@]} -eq 0 ]; then
  for l in all declared s32_head_s4; do for m in minmax percentile99.999 percentile99.99 entropy; do
    names+=("${l}__${m}__256"); done; done
fi
for name in "${names[@]}"; do
  l=${name%%__*}; rest=${name#*__}; m=${rest%%__*}; n=${rest#*__}
  mflag=(--calib-method "$m")
  case $m in percentile*) mflag=(--calib-method percentile --calib-percentile "${m#percentile}");; esac
  pats=${layers[$l]}
  if [ "$pats" = DEFAULT ]; then flag=(); else read -r -a p <<< "$pats"; flag=(--int8-fp32 "${p[@]}"); fi
  odkd export "${MODEL:-odkd-lightning}" --format onnx --out "$out/$name.onnx" --int8 --calib-ann "$train" \
      "${mflag[@]}" --calib-crops "$n" "${flag[@]}" > "$out/$name.export.log" 2>&1
  echo "$name $(score "$out/$name.int8.onnx" val) $(score "$out/$name.int8.onnx" test)"
done
if [ ! -f "$out/fp32_val.log" ]; then
  f=$(ls "$out"/*.onnx | grep -v int8 | head -1); cp "$f" "$out/fp32.onnx"
  echo "fp32 $(score "$out/fp32.onnx" val) $(score "$out/fp32.onnx" test)"
fi
