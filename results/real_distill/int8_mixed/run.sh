#!/usr/bin/env bash
# Which layers of the shipped student to keep in fp32 when it is quantized: one export per
# set of --int8-fp32 patterns, each scored on LSP 1001-2000 (PCK@0.2 as `odkd eval --metric
# pck` reports it, the model's own DARK decoding). Usage: run.sh TRAIN_JSON LSP_TEST_JSON OUT_DIR (one torch/ORT thread each).
set -euo pipefail
train=$1; lsp=$2; out=$3
mkdir -p "$out"
last='/model/backbone/last/'
s32='/model/backbone/blocks\.1[3-6]/ /model/fpn/lat32/'
head='/model/heatmap_head/ /model/final_layer/ /model/Sigmoid$'
s4='/model/fpn/(lat4/|smooth4/|Add_2$|Resize_2$)'
declare -A sets=(
  [all_int8]=""
  [final]='/model/final_layer/ /model/Sigmoid$'
  [head]="$head"
  [head_s4]="$head $s4"
  [last]="$last"
  [s32]="$last $s32"
  [default]="DEFAULT"
  [s32_head_s4]="$last $s32 $head $s4"
)
for name in all_int8 final head head_s4 last s32 default s32_head_s4; do
  pats=${sets[$name]}
  if [ "$pats" = DEFAULT ]; then flag=(); else read -r -a p <<< "$pats"; flag=(--int8-fp32 "${p[@]}"); fi
  odkd export odkd-lightning --format onnx --out "$out/$name.onnx" --int8 --calib-ann "$train" \
      "${flag[@]}" > "$out/$name.export.log" 2>&1
  odkd eval --checkpoint "$out/$name.int8.onnx" --metric pck --ann "$lsp" --no-flip --threads 1 \
      --out "$out/eval_$name" > "$out/$name.eval.log" 2>&1
  echo "$name $(grep -o '"pck": [0-9.]*' "$out/$name.eval.log")"
done
odkd eval --checkpoint "$out/all_int8.onnx" --metric pck --ann "$lsp" --no-flip --threads 1 \
    --out "$out/eval_fp32" > "$out/fp32.eval.log" 2>&1
echo "fp32 $(grep -o '"pck": [0-9.]*' "$out/fp32.eval.log")"
