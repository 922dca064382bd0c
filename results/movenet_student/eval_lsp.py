"""LSP PCK@0.2 of the PyTorch MoveNet loaded from its TF.js weights, through `odkd teachers eval`'s
own loop (protocol box, PCK, interleaving), beside the TFLite MoveNet Lightning.

The PyTorch model is wrapped as a teacher (odkd.teachers.base.Teacher over a small runner) and
offered to that loop under extra names; keypoints come from
  torch-heatmaps       its keypoint heatmaps decoded by odkd's codec (argmax + quarter offset),
                       as any odkd student is decoded
  torch-heatmaps-flip  the same with odkd's flip test (odkd.codec.predict_heatmaps)
  torch-movenet        MoveNet's own decoding (odkd.models.movenet.movenet_decode)

usage: python results/movenet_student/eval_lsp.py MODEL_JSON ANN [--limit N] [--out FILE]
"""
from __future__ import annotations

import argparse
import sys

import numpy as np
import torch

import odkd.teachers as teachers_pkg
from odkd.codec import HeatmapCodec, predict_heatmaps
from odkd.data.dataset import IMAGENET_MEAN, IMAGENET_STD
from odkd.keypoints import COCO_KEYPOINTS, flip_pairs_from_names
from odkd.models.movenet import build_movenet_tfjs, movenet_decode
from odkd.teachers.base import Teacher


class TorchMoveNetCodec:
    has_mask = False

    def __init__(self, model, mode: str):
        self.model, self.mode = model, mode
        w, h = model.default_cfg["input_size"]
        self.input_size = (w, h)
        self.codec = HeatmapCodec(input_size=(w, h), heatmap_stride=4)
        self.runner = self   # Teacher times runner.run: the model call, flips included
        self.pairs = flip_pairs_from_names(COCO_KEYPOINTS)

    def run(self, inputs):
        x = inputs[0]
        with torch.no_grad():
            if self.mode == "movenet":
                return [movenet_decode(self.model(x, all_heads=True))[0].numpy()]
            heat, _ = predict_heatmaps(self.model, x, self.codec, self.pairs,
                                       flip_test=self.mode == "heatmaps-flip")
            return [heat.numpy()]

    def preprocess(self, crop):
        x = (crop.astype(np.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
        return [torch.from_numpy(x.transpose(2, 0, 1).copy())[None]]

    def postprocess(self, outs):
        w, h = self.input_size
        if self.mode == "movenet":
            o = outs[0]   # (17, 3) y, x in [0, 1], score; as odkd's MoveNetCodec maps them
            return {"keypoints": np.stack([o[:, 1] * w - 0.5, o[:, 0] * h - 0.5, o[:, 2]], 1)}
        # odkd's codec: heatmaps of a crop with centre (w/2, h/2) and size (w, h) -> input px
        pts, scores = self.codec.decode(outs[0], np.array([[w / 2, h / 2]]),
                                        np.array([[w, h]], dtype=np.float32))
        return {"keypoints": np.concatenate([pts[0], scores[0][:, None]], 1)}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("model_json")
    ap.add_argument("ann")
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--out", default=None)
    ap.add_argument("--names", default="movenet-lightning,torch-heatmaps,torch-heatmaps-flip,"
                                       "torch-movenet")
    a = ap.parse_args()
    torch.set_num_threads(1)
    model = build_movenet_tfjs(a.model_json).eval()
    original = teachers_pkg.get_teacher

    def get_teacher(name, num_threads=1, cache=None, **options):
        if name.startswith("torch-"):
            return Teacher(name, TorchMoveNetCodec(model, name[len("torch-"):]))
        return original(name, num_threads, cache, **options)

    teachers_pkg.get_teacher = get_teacher
    from odkd.commands.teachers import run_eval
    return run_eval(argparse.Namespace(
        names=a.names.split(","), ann=a.ann, images=None, limit=a.limit, threads=1,
        confidence=None, keypoints=None, mask_size=64, out=a.out))


if __name__ == "__main__":
    sys.exit(main())
