"""Read a TensorFlow.js graph model (``model.json`` + ``*.bin`` shards) with json and numpy.

A TF.js graph model is ``{"modelTopology": GraphDef as JSON, "weightsManifest": [{"paths":
[shard files], "weights": [{"name", "shape", "dtype", "quantization"?}]}]}``; each group's
shards, concatenated in order, hold its weights back to back, stored in the quantization dtype
when there is one (``float16`` as is; ``uint8``/``uint16`` as ``q * scale + min``).

Written here rather than taken from ``tensorflowjs`` because that package pulls in TensorFlow
(hundreds of MB) to do what is a few lines of manifest parsing. It sits in ``odkd.models`` so
that models and teachers can both use it; ``odkd/teachers/tf_to_onnx.py`` keeps its own copy
because it runs in the conversion environment, which has no odkd installed.
"""
from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from odkd.errors import CheckpointError

_DTYPES = {"float32": np.float32, "int32": np.int32, "bool": np.bool_, "float16": np.float16,
           "uint8": np.uint8, "uint16": np.uint16, "int8": np.int8}


def read_model_json(path: str) -> dict:
    """The parsed ``model.json``; CheckpointError when it is missing or not a TF.js model."""
    p = os.fspath(path)
    try:
        with open(p) as f:
            data = json.load(f)
    except FileNotFoundError:
        raise CheckpointError(f"{p}: TF.js model.json not found") from None
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{p}: not readable as JSON ({e})") from None
    if not isinstance(data, dict) or not isinstance(data.get("weightsManifest"), list):
        raise CheckpointError(f"{p}: not a TF.js model (no weightsManifest list)")
    return data


def is_tfjs_model(path: Any) -> bool:
    """Whether ``path`` names a TF.js ``model.json`` (cheap check: a .json file whose start
    mentions ``weightsManifest`` or ``modelTopology``)."""
    if not isinstance(path, (str, os.PathLike)):
        return False
    p = os.fspath(path)
    if not p.endswith(".json") or not os.path.isfile(p):
        return False
    with open(p, "rb") as f:
        head = f.read(1 << 16)
    return b'"weightsManifest"' in head or b'"modelTopology"' in head


def graph_nodes(model: dict) -> list[dict]:
    """The GraphDef nodes (``name``, ``op``, ``input``, ``attr``) of a parsed model.json."""
    return list((model.get("modelTopology") or {}).get("node") or [])


def read_weights(path: str, model: dict | None = None) -> dict[str, np.ndarray]:
    """name -> array (the manifest's dtype, dequantized) for every weight of ``path``."""
    p = os.fspath(path)
    model = model if model is not None else read_model_json(p)
    root = os.path.dirname(os.path.abspath(p))
    out: dict[str, np.ndarray] = {}
    for gi, group in enumerate(model["weightsManifest"]):
        chunks = []
        for shard in group.get("paths", []):
            sp = os.path.join(root, shard)
            try:
                with open(sp, "rb") as f:
                    chunks.append(f.read())
            except OSError as e:
                raise CheckpointError(f"{p}: weights shard {shard} unreadable ({e})") from None
        buf = b"".join(chunks)
        offset = 0
        for w in group.get("weights", []):
            name, shape, dtype = w["name"], [int(v) for v in w["shape"]], w["dtype"]
            q = w.get("quantization") or {}
            stored = q.get("dtype", dtype)
            if stored not in _DTYPES or dtype not in _DTYPES:
                raise CheckpointError(f"{p}: weight {name}: unsupported dtype {stored}/{dtype}")
            dt = np.dtype(_DTYPES[stored])
            n = int(np.prod(shape)) if shape else 1
            if offset + n * dt.itemsize > len(buf):
                raise CheckpointError(f"{p}: weights group {gi} is truncated at {name} "
                                      f"(needs {offset + n * dt.itemsize} bytes, shards hold "
                                      f"{len(buf)})")
            a = np.frombuffer(buf, dt, n, offset).reshape(shape)
            offset += n * dt.itemsize
            if stored in ("uint8", "uint16") and "scale" in q:
                a = a.astype(np.float32) * np.float32(q["scale"]) + np.float32(q.get("min", 0.0))
            out[name] = a.astype(_DTYPES[dtype])
        if offset != len(buf):
            raise CheckpointError(f"{p}: weights group {gi}: shards hold {len(buf)} bytes, the "
                                  f"manifest describes {offset}")
    return out
