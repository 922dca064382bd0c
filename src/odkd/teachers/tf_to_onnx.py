"""TensorFlow graphs -> ONNX at set-up time, run as a script by the conversion environment's
python (tensorflow-cpu, tf2onnx, numpy: see :mod:`odkd.teachers.convert`). It imports nothing
from odkd, so that environment needs neither torch nor odkd installed::

    python tf_to_onnx.py tfjs GRAPH.json WEIGHTS.npz OUT.onnx REFERENCE.npz
    python tf_to_onnx.py ssd FROZEN.pb OUT.onnx REFERENCE.npz

``tfjs``: a TF.js graph model that odkd has read and patched (:func:`odkd.teachers.convert.
prepare_tfjs`: the topology, a GraphDef in JSON, and its weights) becomes a TensorFlow GraphDef,
each weight its Const node's value, runs in TensorFlow on fixed inputs and is converted by
tf2onnx. ``ssd``: the TF object detection API's SSD frozen graph, cut to its network (uint8
image in; raw box encodings, class logits and anchors out): its post-processor (per-class NMS in
while loops) takes tf2onnx minutes to convert and onnxruntime ~100 ms per image to run, and
odkd decodes person boxes itself (:mod:`odkd.teachers.detector`).

``REFERENCE.npz`` holds the fixed inputs (``input_*``, each (2, ...): two inputs in turn) and
TensorFlow's outputs (``output_*``) in the ONNX model's input and output order, so the caller
checks the ONNX model against TensorFlow in its own onnxruntime. Bad input: one line on stderr,
exit 2.
"""
from __future__ import annotations

import json
import os
import sys

import numpy as np

OPSET = 13


USAGE = ("usage: tf_to_onnx.py tfjs GRAPH.json WEIGHTS.npz OUT.onnx REFERENCE.npz | "
         "ssd FROZEN.pb OUT.onnx REFERENCE.npz")


class ConvertError(Exception):
    """Bad input to the conversion: one line naming the file."""


# ------------------------------------------------------------------ TF.js graph
def tfjs_graph_def(graph_json: str, weights_npz: str):
    """(GraphDef, input names, output names) from odkd's prepared TF.js graph: ``graph_json``
    ``{"node", "versions", "signature", "weight_names"}`` (the model.json topology, fused ops
    already patched) and ``weights_npz`` (``w0``, ``w1``, ... in ``weight_names`` order)."""
    import tensorflow as tf
    from google.protobuf import json_format

    try:
        with open(graph_json) as f:
            spec = json.load(f)
        with np.load(weights_npz) as z:
            weights = {n: z[f"w{i}"] for i, n in enumerate(spec["weight_names"])}
    except (OSError, ValueError, KeyError) as e:
        raise ConvertError(f"{graph_json}: unreadable prepared graph ({e})") from None
    try:
        gd = json_format.ParseDict({"node": spec["node"], "versions": spec.get("versions", {})},
                                   tf.compat.v1.GraphDef())
    except json_format.ParseError as e:
        raise ConvertError(f"{graph_json}: not a GraphDef ({e})") from None
    for n in gd.node:
        if n.op != "Const":
            continue
        if n.name not in weights:
            raise ConvertError(f"{graph_json}: Const node {n.name}: no weight of that name")
        dt = tf.dtypes.as_dtype(n.attr["dtype"].type).as_numpy_dtype
        n.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(weights[n.name].astype(dt)))
    sig = spec.get("signature") or {}
    inputs = [v["name"] for v in sig.get("inputs", {}).values()] or \
        [n.name + ":0" for n in gd.node if n.op == "Placeholder"]
    outputs = [v["name"] for v in sig.get("outputs", {}).values()]
    if not outputs:
        raise ConvertError(f"{graph_json}: field signature.outputs: absent")
    return gd, inputs, outputs


# ------------------------------------------------------------------ SSD frozen graph
SSD_SIZE = 300
# the TF object detection API's tensors: resized images (before the model's own scaling to
# [-1, 1]), box encodings (1, A, 1, 4), class logits (1, A, 91) and anchors (A, 4)
SSD_RESIZED = "Preprocessor/map/TensorArrayStack/TensorArrayGatherV3:0"
SSD_OUTPUTS = {"box_encodings": "concat:0", "class_logits": "concat_1:0",
               "anchors": "Concatenate/concat:0"}


def ssd_graph_def(path: str):
    """The SSD frozen graph from a (1, 300, 300, 3) uint8 ``image`` to box encodings, class
    logits and anchors."""
    import tensorflow as tf

    gd = tf.compat.v1.GraphDef()
    try:
        with open(path, "rb") as f:
            gd.ParseFromString(f.read())
    except OSError as e:
        raise ConvertError(f"{path}: unreadable ({e.strerror})") from None
    except Exception as e:  # protobuf's DecodeError
        raise ConvertError(f"{path}: not a TensorFlow GraphDef ({e})") from None
    names = {n.name for n in gd.node}
    missing = [t for t in [SSD_RESIZED, *SSD_OUTPUTS.values()] if t.split(":")[0] not in names]
    if missing:
        raise ConvertError(f"{path}: not a TF object detection SSD graph (no {missing[0]})")
    g = tf.Graph()
    with g.as_default():
        image = tf.compat.v1.placeholder(tf.uint8, (1, SSD_SIZE, SSD_SIZE, 3), name="image")
        tf.graph_util.import_graph_def(gd, name="",
                                       input_map={SSD_RESIZED: tf.cast(image, tf.float32)})
        for out, t in SSD_OUTPUTS.items():
            tf.identity(g.get_tensor_by_name(t), name=out)
    cut = tf.compat.v1.graph_util.extract_sub_graph(g.as_graph_def(), list(SSD_OUTPUTS))
    return cut, ["image:0"], [o + ":0" for o in SSD_OUTPUTS]


# ------------------------------------------------------------------ run, convert
def fixed_inputs(graph_def, inputs: list[str]) -> list[np.ndarray]:
    """Two deterministic inputs per model input (a seeded random image and a smooth ramp), in
    0-255 of the placeholder's dtype."""
    import tensorflow as tf

    by_name = {n.name: n for n in graph_def.node}
    out = []
    for name in inputs:
        n = by_name[name.split(":")[0]]
        shape = [d.size for d in n.attr["shape"].shape.dim]
        if any(s < 0 for s in shape):
            raise ConvertError(f"input {name}: shape {shape} is not fixed")
        dt = tf.dtypes.as_dtype(n.attr["dtype"].type).as_numpy_dtype
        rng = np.random.default_rng(0)
        noise = rng.integers(0, 256, shape)
        if len(shape) == 4:     # NHWC images: a smooth ramp
            h, w, c = shape[1:]
            yy, xx = np.arange(h)[:, None, None], np.arange(w)[None, :, None]
            ramp = np.broadcast_to(((3 * yy + 2 * xx + 60 * np.arange(c)) % 256)[None], shape)
        else:
            ramp = 255 - noise
        out.append(np.stack([noise[0], ramp[0]])[:, None].astype(dt))   # (2, 1, ...)
    return out


def run_tf(graph_def, inputs: list[str], outputs: list[str], values: list[np.ndarray]):
    """TensorFlow's outputs, one (2, ...) array per output (each fixed input in turn)."""
    import tensorflow as tf

    g = tf.Graph()
    with g.as_default():
        tf.graph_util.import_graph_def(graph_def, name="")
    results = [[] for _ in outputs]
    with tf.compat.v1.Session(graph=g) as s:
        for k in range(len(values[0])):
            got = s.run(outputs, {i: v[k] for i, v in zip(inputs, values)})
            for r, o in zip(results, got):
                r.append(o)
    return [np.stack(r) for r in results]


def convert(kind: str, sources: list[str], out: str, reference: str) -> dict:
    import tf2onnx

    if kind == "tfjs" and len(sources) == 2:
        gd, inputs, outputs = tfjs_graph_def(*sources)
    elif kind == "ssd" and len(sources) == 1:
        gd, inputs, outputs = ssd_graph_def(*sources)
    else:
        raise ConvertError(USAGE)
    values = fixed_inputs(gd, inputs)
    expected = run_tf(gd, inputs, outputs, values)
    tf2onnx.convert.from_graph_def(gd, input_names=inputs, output_names=outputs, opset=OPSET,
                                   output_path=out)
    np.savez(reference, **{f"input_{i}": v for i, v in enumerate(values)},
             **{f"output_{i}": v for i, v in enumerate(expected)})
    return {"inputs": inputs, "outputs": outputs, "nodes": len(gd.node)}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) < 4:
        print(USAGE, file=sys.stderr)
        return 2
    try:
        info = convert(argv[0], argv[1:-2], argv[-2], argv[-1])
    except ConvertError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(info))
    return 0


if __name__ == "__main__":
    sys.exit(main())
