"""Why fine-tuning from MoveNet's weights needs its BatchNorms recalibrated: train-mode output
(BN on batch statistics, as in `odkd train`) against the loaded eval-mode function, with the
identity BNs the TF.js loader writes and after odkd.models.movenet.recalibrate_bn on other
crops. Crops: LSP 1-1000 (odkd data import lsp --split train), odkd's evaluation crop at
192x192; a joint agrees when its train-mode heatmap argmax is within one heatmap cell of the
eval-mode one.

usage: python results/movenet_student/bn_trainmode.py MODEL_JSON LSP_TRAIN_JSON IMAGES
"""
from __future__ import annotations

import sys

import torch

from odkd.config import DataConfig
from odkd.data.coco import load_coco
from odkd.data.dataset import TopDownDataset
from odkd.models.movenet import build_movenet_tfjs, recalibrate_bn


def main() -> int:
    model_json, ann, images = sys.argv[1:4]
    torch.manual_seed(0)
    coco = load_coco(ann, images, train=False)
    cfg = DataConfig(input_size=[192, 192])
    ds = TopDownDataset(coco.records, coco.flip_pairs, coco.upper_body_ids, cfg, train=False,
                        return_image_mask=False)
    x = torch.stack([ds[i]["image"] for i in range(0, 512, 2)])       # 256 crops
    calib = torch.stack([ds[i]["image"] for i in range(1, 512, 2)])   # 256 others
    batches = x.split(32)
    model = build_movenet_tfjs(model_json)

    def outputs(train: bool):
        model.train(train)
        # momentum 0: train mode normalises with batch statistics but leaves the running ones
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.momentum = 0.0
        with torch.no_grad():
            return torch.cat([model(b)["heatmaps"] for b in batches])

    def agree(a, b):
        w = a.shape[-1]
        ia, ib = a.flatten(2).argmax(2), b.flatten(2).argmax(2)
        d = torch.maximum((ia // w - ib // w).abs(), (ia % w - ib % w).abs())
        return float((d <= 1).float().mean())

    ref = outputs(False)
    ident = outputs(True)
    n = recalibrate_bn(model, calib.split(32))
    after_eval = outputs(False)
    recal = outputs(True)
    print(f"{len(x)} crops, batch 32, {n} BatchNorms")
    print(f"eval mode after recalibration vs before: max |heatmap diff| "
          f"{float((after_eval - ref).abs().max()):.1e}")
    for name, out in (("identity BN (as loaded)", ident), ("recalibrated BN", recal)):
        print(f"train mode, {name}: max |heatmap diff| {float((out - ref).abs().max()):.3f}, "
              f"mean {float((out - ref).abs().mean()):.4f}; joints within 1 cell of the eval "
              f"argmax {agree(out, ref):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
