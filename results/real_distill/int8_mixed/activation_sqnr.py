"""Per-tensor quantization error of an int8 export against its fp32 graph, with onnxruntime's
qdq_loss_debug: for every activation, the SQNR (dB) of quantize-dequantize alone ("qdq") and
of the whole int8 model up to there ("xmodel"), on 64 evaluation crops of the training people.
Usage: python activation_sqnr.py FP32.onnx INT8.onnx TRAIN.json > sqnr.txt"""
import os
import sys
import tempfile

from onnxruntime.quantization.qdq_loss_debug import (collect_activations,
                                                     compute_activation_error,
                                                     create_activation_matching,
                                                     modify_model_output_intermediate_tensors)

import onnx
from odkd.deploy.loader import load_pose
from odkd.deploy.quantize import calibration_crops

fp32, int8, train = sys.argv[1:4]
spec = load_pose(fp32, backend="onnxruntime").spec
crops = calibration_crops(spec, train, "", 64)
name = onnx.load(fp32, load_external_data=False).graph.input[0].name


def batches():
    for i in range(0, len(crops), 16):
        yield {name: crops[i:i + 16]}


with tempfile.TemporaryDirectory() as tmp:
    acts = {}
    for key, path in (("f", fp32), ("q", int8)):
        aug = os.path.join(tmp, key + ".onnx")
        modify_model_output_intermediate_tensors(path, aug)
        acts[key] = collect_activations(aug, batches())
err = compute_activation_error(create_activation_matching(acts["q"], acts["f"]))
for node in onnx.load(fp32).graph.node:
    for t in node.output:
        if t in err:
            e = err[t]
            print(f"{t:70s} xmodel {e.get('xmodel_err', float('nan')):6.2f} dB  "
                  f"qdq {e.get('qdq_err', float('nan')):6.2f} dB")
