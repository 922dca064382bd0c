"""Write a trained student as a shipped model: ``python tools/ship_weights.py RUN/last.pt
src/odkd/weights/odkd-lightning.pt``.

Keeps what inference needs (format, model name, the run's config, its metrics) and the weights
in float16 (half the size; loading casts them back to the model's float32, and the largest
difference that makes to the outputs is printed), drops the optimizer state. Refuses a
checkpoint whose weights are not finite.
"""
from __future__ import annotations

import argparse
import copy
import os
import sys

import torch

MASK_PREFIX = "mask_layer."   # the mask head of every odkd architecture that has one


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("src", help="odkd checkpoint of the run (last.pt or best.pt)")
    p.add_argument("dst", help="file to write (src/odkd/weights/<name>.pt)")
    p.add_argument("--keypoints-only", action="store_true",
                   help="drop a mask head (the student learned the ST's mask, but the shipped "
                        "model answers keypoints and should not pay for the mask head's time)")
    args = p.parse_args(argv)

    from odkd.models.checkpoint import build_from_checkpoint, read_checkpoint
    from odkd.utils import atomic_torch_save

    ck = read_checkpoint(args.src)
    sd = ck["state_dict"]
    bad = [k for k, v in sd.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        print(f"{args.src}: non-finite weights in {bad[0]}; not shipped", file=sys.stderr)
        return 2
    config = copy.deepcopy(ck.get("config", {}))
    if args.keypoints_only:
        sd = {k: v for k, v in sd.items() if not k.startswith(MASK_PREFIX)}
        config.setdefault("model", {})["with_mask"] = False
    half = {k: v.half() if v.is_floating_point() else v for k, v in sd.items()}
    out = {k: copy.deepcopy(ck[k]) for k in ("format", "version", "model") if k in ck}
    if args.keypoints_only and isinstance(out.get("model"), dict):
        out["model"]["with_mask"] = False
    out.update(state_dict=half, config=config, metrics=ck.get("metrics", {}),
               shipped_from=os.path.relpath(args.src))
    atomic_torch_save(out, args.dst)
    a = build_from_checkpoint(args.src).eval()
    b = build_from_checkpoint(args.dst).eval()
    x = torch.randn(2, 3, *reversed(ck["config"]["data"]["input_size"]))
    with torch.no_grad():
        d = (a(x)["heatmaps"] - b(x)["heatmaps"]).abs().max().item()
    print(f"wrote {args.dst}: {os.path.getsize(args.dst) / 1e6:.1f} MB; largest heatmap "
          f"difference from {args.src}: {d:.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
