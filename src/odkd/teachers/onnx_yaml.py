"""A user's own ONNX pose model as a teacher, described by a short YAML file.

``get_teacher("my_model.yaml")`` reads the file, runs the model with onnxruntime and puts it
behind the one teacher interface (:class:`odkd.teachers.base.Teacher`: re-crop at the model's
input size, map back into the student's frame). Every field is checked when the file is read;
a bad one is a one-line ConfigError naming the file and the field. Example
(docs/teachers.md)::

    onnx: my_pose.onnx              # relative to this file
    input_size: [192, 256]          # width, height of the model input
    layout: NCHW                    # NCHW or NHWC
    color: RGB                      # RGB or BGR
    normalize:                      # on 0-255 pixels: (x - mean) / std, or x * scale; omit: raw
      mean: [123.675, 116.28, 103.53]
      std: [58.395, 57.12, 57.375]
    output:
      kind: heatmaps                # heatmaps | keypoints_normalized | keypoints_pixels
      name: heatmaps                # optional: the output's name (default: the first output)
      stride: 4                     # heatmaps: heatmap pixel u sits at input pixel stride * u
    keypoints: [0, 1, 2, ...]       # the model's joint index of each COCO-17 joint (-1: none),
                                    # or the model's joint names in its output order
    mask:                           # optional: a person mask output
      name: mask
      activation: sigmoid           # sigmoid (logits) or none (probabilities)
"""
from __future__ import annotations

import os

import numpy as np

from odkd.config import ConfigError
from odkd.keypoints import COCO_KEYPOINTS
from odkd.teachers.base import Teacher
from odkd.teachers.runtime import OnnxRunner

SUFFIXES = (".yaml", ".yml")
KINDS = ("heatmaps", "keypoints_normalized", "keypoints_pixels")
LAYOUTS = ("NCHW", "NHWC")
COLORS = ("RGB", "BGR")
ACTIVATIONS = ("none", "sigmoid")
TOP_KEYS = {"onnx", "input_size", "layout", "color", "normalize", "output", "keypoints", "mask"}


def is_yaml_name(name: str) -> bool:
    return name.lower().endswith(SUFFIXES)


class _Fields:
    """Typed reads of a YAML mapping, each failure one line naming the file and the field."""

    def __init__(self, path: str):
        self.path = path

    def error(self, field: str, msg: str) -> ConfigError:
        return ConfigError(f"{self.path}: field {field}: {msg}")

    def mapping(self, d, field: str, keys: set, required: bool = True) -> dict:
        if d is None and not required:
            return {}
        if not isinstance(d, dict):
            raise self.error(field, f"expected a mapping, got {d!r}")
        unknown = sorted(set(d) - keys)
        if unknown:
            raise self.error(f"{field}.{unknown[0]}" if field else unknown[0],
                             f"unknown key; known: {', '.join(sorted(keys))}")
        return d

    def choice(self, d: dict, key: str, field: str, choices, default):
        v = d.get(key, default)
        if isinstance(v, str) and v.upper() in [c.upper() for c in choices]:
            return next(c for c in choices if c.upper() == v.upper())
        raise self.error(field, f"expected one of {', '.join(choices)}, got {v!r}")

    def numbers(self, v, field: str, n: int, positive: bool = False) -> list[float]:
        ok = isinstance(v, (list, tuple)) and len(v) == n and all(
            isinstance(x, (int, float)) and not isinstance(x, bool) for x in v)
        if not ok or (positive and min(v) <= 0):
            raise self.error(field, f"expected {n} {'positive ' if positive else ''}numbers, "
                                    f"got {v!r}")
        return [float(x) for x in v]


def read_teacher_yaml(path: str) -> dict:
    """The checked settings of a teacher YAML file (paths resolved)."""
    import yaml

    f = _Fields(path)
    if not os.path.isfile(path):
        raise ConfigError(f"{path}: teacher YAML file not found")
    try:
        with open(path) as fh:
            d = yaml.safe_load(fh)
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({' '.join(str(e).split())[:120]})") from None
    d = f.mapping(d, "", TOP_KEYS)
    for key in ("onnx", "input_size", "output", "keypoints"):
        if key not in d:
            raise f.error(key, "missing")
    if not isinstance(d["onnx"], str) or not d["onnx"]:
        raise f.error("onnx", f"expected the path of an .onnx file, got {d['onnx']!r}")
    onnx = os.path.join(os.path.dirname(os.path.abspath(path)), os.path.expanduser(d["onnx"]))
    if not os.path.isfile(onnx):
        raise f.error("onnx", f"{onnx} not found")
    size = d["input_size"]
    if not (isinstance(size, list) and len(size) == 2 and all(
            isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size)):
        raise f.error("input_size", f"expected [width, height] of positive integers, got {size!r}")
    s = {"onnx": onnx, "input_size": (size[0], size[1]),
         "layout": f.choice(d, "layout", "layout", LAYOUTS, "NCHW"),
         "color": f.choice(d, "color", "color", COLORS, "RGB")}

    norm = f.mapping(d.get("normalize"), "normalize", {"mean", "std", "scale"}, required=False)
    if "scale" in norm and ({"mean", "std"} & set(norm)):
        raise f.error("normalize", "give mean and std, or scale, not both")
    if "scale" in norm:
        sc = norm["scale"]
        if not isinstance(sc, (int, float)) or isinstance(sc, bool) or sc <= 0:
            raise f.error("normalize.scale", f"expected a positive number, got {sc!r}")
        s["mean"], s["std"] = [0.0] * 3, [1.0 / float(sc)] * 3
    elif norm:
        for k in ("mean", "std"):
            if k not in norm:
                raise f.error(f"normalize.{k}", "missing (mean and std go together)")
        s["mean"] = f.numbers(norm["mean"], "normalize.mean", 3)
        s["std"] = f.numbers(norm["std"], "normalize.std", 3, positive=True)
    else:
        s["mean"], s["std"] = None, None

    out = f.mapping(d["output"], "output", {"kind", "name", "stride", "activation", "order"})
    if "kind" not in out:
        raise f.error("output.kind", f"missing; one of {', '.join(KINDS)}")
    kind = f.choice(out, "kind", "output.kind", KINDS, None)
    s.update(kind=kind, output_name=out.get("name"),
             activation=f.choice(out, "activation", "output.activation", ACTIVATIONS, "none"))
    if s["output_name"] is not None and not isinstance(s["output_name"], str):
        raise f.error("output.name", f"expected a string, got {s['output_name']!r}")
    if kind == "heatmaps":
        st = out.get("stride")
        if not isinstance(st, (int, float)) or isinstance(st, bool) or st <= 0:
            raise f.error("output.stride", f"heatmaps need a positive stride (input pixels per "
                                           f"heatmap pixel), got {st!r}")
        s["stride"] = float(st)
        if "order" in out:
            raise f.error("output.order", "only for keypoint outputs")
    else:
        if "stride" in out:
            raise f.error("output.stride", "only for heatmap outputs")
        # MoveNet's normalised keypoints are (y, x, score); pixel keypoints are usually (x, y)
        s["order"] = f.choice(out, "order", "output.order", ("yx", "xy"),
                              "yx" if kind == "keypoints_normalized" else "xy")

    s["joint_index"] = _joint_index(f, d["keypoints"])
    mask = d.get("mask")
    if mask is not None:
        m = f.mapping(mask, "mask", {"name", "activation"})
        if not isinstance(m.get("name"), str):
            raise f.error("mask.name", f"expected the mask output's name, got {m.get('name')!r}")
        s["mask_name"] = m["name"]
        s["mask_activation"] = f.choice(m, "activation", "mask.activation", ACTIVATIONS,
                                        "sigmoid")
    else:
        s["mask_name"] = None
    return s


def _joint_index(f: _Fields, v) -> list[int]:
    """COCO-17 joint -> the model's joint index (-1: the model has none)."""
    k = len(COCO_KEYPOINTS)
    if isinstance(v, list) and v and all(isinstance(x, str) for x in v):
        if len(set(v)) != len(v):
            raise f.error("keypoints", "a joint name appears twice")
        idx = [v.index(n) if n in v else -1 for n in COCO_KEYPOINTS]
        if max(idx) < 0:
            raise f.error("keypoints", f"no COCO-17 joint name among {v[:5]}...; COCO names: "
                                       f"{', '.join(COCO_KEYPOINTS)}")
        return idx
    if isinstance(v, list) and len(v) == k and all(
            isinstance(x, int) and not isinstance(x, bool) and x >= -1 for x in v):
        if max(v) < 0:
            raise f.error("keypoints", "every joint is -1")
        return list(v)
    raise f.error("keypoints", f"expected {k} model joint indices (-1 for none) in COCO order, "
                               f"or the model's joint names in its output order; got {v!r}")


class YamlOnnxCodec:
    """Pre- and post-processing of a model described by :func:`read_teacher_yaml`."""

    def __init__(self, path: str, num_threads: int = 1):
        s = read_teacher_yaml(path)
        self.settings, self.path = s, path
        self.input_size = s["input_size"]
        self.has_mask = s["mask_name"] is not None
        self.runner = OnnxRunner(s["onnx"], num_threads)
        f = _Fields(path)
        d = self.runner.input_details[0]
        w, h = self.input_size
        want = (1, 3, h, w) if s["layout"] == "NCHW" else (1, h, w, 3)
        shape = d["shape"]
        if len(shape) != 4 or any(a not in (-1, b) for a, b in zip(shape, want)):
            raise f.error("input_size", f"{s['layout']} input {list(want)} does not fit the "
                                        f"model's input {d['name']!r} {list(shape)}")
        self.dtype = d["dtype"]
        names = [o["name"] for o in self.runner.output_details]
        self.out_index = self._output(f, names, s["output_name"], "output.name") \
            if s["output_name"] is not None else 0
        self.mask_index = self._output(f, names, s["mask_name"], "mask.name") \
            if self.has_mask else None

    @staticmethod
    def _output(f: _Fields, names, name, field) -> int:
        if name not in names:
            raise f.error(field, f"the model has no output {name!r}; its outputs: "
                                 f"{', '.join(names)}")
        return names.index(name)

    def preprocess(self, crop_rgb: np.ndarray) -> list[np.ndarray]:
        s = self.settings
        x = crop_rgb[:, :, ::-1] if s["color"] == "BGR" else crop_rgb
        if s["mean"] is not None:
            x = (x.astype(np.float32) - np.float32(s["mean"])) / np.float32(s["std"])
        if s["layout"] == "NCHW":
            x = x.transpose(2, 0, 1)
        return [np.ascontiguousarray(x[None]).astype(self.dtype)]

    def _activate(self, x, activation):
        from odkd.teachers.blazepose import sigmoid

        return sigmoid(x) if activation == "sigmoid" else np.asarray(x, np.float64)

    def _select(self, per_joint: np.ndarray, fill) -> np.ndarray:
        """Model joints (J, ...) -> COCO-17 (17, ...), ``fill`` where the model has none."""
        j = per_joint.shape[0]
        idx = self.settings["joint_index"]
        if max(idx) >= j:
            raise _Fields(self.path).error("keypoints", f"index {max(idx)} but the model gives "
                                                        f"{j} joints")
        out = np.full((len(idx),) + per_joint.shape[1:], fill, dtype=np.float64)
        for c, m in enumerate(idx):
            if m >= 0:
                out[c] = per_joint[m]
        return out

    def postprocess(self, outs: list[np.ndarray]) -> dict:
        """keypoints (17, 3) x, y in input pixels (pixel centres at integers) and score; the
        model's heatmaps and mask where it gives them."""
        from odkd.codec import decode_heatmaps

        s = self.settings
        w, h = self.input_size
        y = np.asarray(outs[self.out_index])
        res: dict = {}
        if s["kind"] == "heatmaps":
            hm = y.reshape((-1,) + y.shape[-3:])[0]
            if s["layout"] == "NHWC":
                hm = hm.transpose(2, 0, 1)
            hm = self._activate(hm, s["activation"]).astype(np.float32)
            st = s["stride"]
            size = np.array([[hm.shape[2] * st, hm.shape[1] * st]])
            # heatmap pixel u -> input pixel st * u (odkd's / HRNet's geometry)
            xy, conf = decode_heatmaps(hm[None], size / 2, size)
            kp = self._select(np.c_[xy[0], conf[0]], 0.0)
            res["heatmaps"] = self._select(hm, 0.0).astype(np.float32)
            res["heatmap_to_input"] = np.array([[st, 0.0, 0.0], [0.0, st, 0.0]])
        else:
            v = y.reshape(-1, y.shape[-1]) if y.ndim >= 2 else y.reshape(1, -1)
            if v.shape[1] < 2:
                raise _Fields(self.path).error(
                    "output.kind", f"keypoints need >= 2 values per joint, output has shape "
                                   f"{list(y.shape)}")
            v = v.astype(np.float64)
            a, b = (1, 0) if s["order"] == "yx" else (0, 1)
            pts = np.c_[v[:, a], v[:, b]]
            if s["kind"] == "keypoints_normalized":
                # normalised coordinates run edge to edge (MoveNet): 0 is pixel 0's left edge
                pts = pts * np.array([w, h]) - 0.5
            score = self._activate(v[:, 2], s["activation"]) if v.shape[1] > 2 \
                else np.ones(len(v))
            kp = self._select(np.c_[pts, score], 0.0)
        missing = np.array(s["joint_index"]) < 0
        kp[missing, :2] = [(w - 1) / 2, (h - 1) / 2]   # no joint: crop centre, score 0
        res["keypoints"] = kp
        if self.has_mask:
            m = np.asarray(outs[self.mask_index])
            m = m.reshape(m.shape[-2:]) if s["layout"] == "NCHW" or m.shape[-1] != 1 else \
                m.reshape(m.shape[-3:-1])
            res["mask"] = self._activate(m, s["mask_activation"]).astype(np.float32)
            sh = h / m.shape[0]
            # mask pixel i covers input pixels [i sh, (i + 1) sh): its centre (sh - 1) / 2 in
            res["mask_to_input"] = np.array([[sh, 0, (sh - 1) / 2], [0, sh, (sh - 1) / 2]])
        return res


def yaml_teacher(path: str, num_threads: int = 1) -> Teacher:
    return Teacher(os.path.splitext(os.path.basename(path))[0],
                   YamlOnnxCodec(path, num_threads))
