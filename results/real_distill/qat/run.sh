#!/usr/bin/env bash
# Quantization-aware fine-tuning of the shipped student, and its control: 200 more steps of
# the real recipe (ODKD) from odkd-lightning's weights, with and without train.qat, then
# each exported to int8 twice (MoveNet's declared layers in fp32 / every layer int8) and
# scored on the validation split (LSP 1-1000). The test split is scored separately, for the
# file the rule in README.md picks.
# Usage: run.sh TRAIN_JSON CACHE LSP_VAL_JSON OUT_DIR SEED START_PT   (one torch thread per run)
# START_PT: the student to fine-tune (the runs of README.md started from the odkd-lightning.pt of
# commit 17d5857: `git show 17d5857:src/odkd/weights/odkd-lightning.pt > start.pt`).
set -euo pipefail
train=$1; cache=$2; val=$3; out=$4; seed=$5; start=$6
mkdir -p "$out"
for v in qat ctl; do
  q=(); [ "$v" = qat ] && q=(train.qat=true)
  odkd demo real --out "$out/ft_$v" --train "$train" --people 0 --methods odkd --seeds "$seed" \
      --jobs 1 train.max_iters_per_epoch=200 distill.cache="$cache" \
      model.init="$start" "${q[@]}" > "$out/ft_${v}_s$seed.log" 2>&1 &
done
wait
for v in qat ctl; do
  ck="$out/ft_$v/runs/odkd-s$seed/last.pt"
  for l in declared all; do
    flag=(); [ "$l" = all ] && flag=(--int8-fp32)
    f="$out/${v}_s${seed}_$l.onnx"
    odkd export "$ck" --format onnx --out "$f" --int8 --calib-ann "$train" "${flag[@]}" \
        > "${f%.onnx}.export.log" 2>&1
    for g in "$f" "${f%.onnx}.int8.onnx"; do
      [ "$l" = all ] && [ "$g" = "$f" ] && continue   # the fp32 file is the same for both
      odkd eval --checkpoint "$g" --metric pck --ann "$val" --no-flip --threads 1 \
          --out "${g%.onnx}_val" > "${g%.onnx}_val.log" 2>&1
      echo "$(basename "$g") val $(grep -o '"pck": [0-9.]*' "${g%.onnx}_val.log" | grep -o '[0-9.]*$')"
    done
  done
done
