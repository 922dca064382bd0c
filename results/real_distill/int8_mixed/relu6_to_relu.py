"""Replace every Clip (ReLU6) of an ONNX export by Relu, keeping its odkd metadata: what
cross-layer equalization would need. Usage: python relu6_to_relu.py IN.onnx OUT.onnx"""
import sys

import onnx

model = onnx.load(sys.argv[1])
for node in model.graph.node:
    if node.op_type == "Clip":
        node.op_type = "Relu"
        del node.input[1:]   # Relu takes no bounds
onnx.save(model, sys.argv[2])
