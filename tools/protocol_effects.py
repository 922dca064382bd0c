"""Effect of each official-HRNet evaluation rule, switched on one at a time in odkd's pipeline,
on the real-mini images (results/bad_inputs_eval.md, section b). The single-rule rows hand
run_evaluation a HeatmapCodec with only the decoding rules or only the flip shift of HRNet;
eval.protocol=hrnet does all at once.

    python tools/protocol_effects.py runs/protocol_fit/last.pt   (after tools/protocol_fit.yaml)
"""
import json, os, sys
from dataclasses import replace
import torch
import odkd.engine.evaluate as E
from odkd.codec import HeatmapCodec
from odkd.config import load_config
from odkd.models.checkpoint import build_from_checkpoint
torch.set_num_threads(1)
R = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data", "real-mini", "coco")
ANN = f"{R}/test_coco.json"
ckpt = sys.argv[1]
ck = torch.load(ckpt, weights_only=True)
base = ck["config"]; base.pop("distill", None)
model = build_from_checkpoint(ckpt, verbose=False).eval()

def run(boxes, box_rule="odkd", decode="odkd", shift="odkd", amp="none", oracle=False):
    cfg = load_config(None, [], base=json.loads(json.dumps(base)))
    cfg.eval.amp = amp
    cfg.eval.protocol = box_rule
    coco, recs = E.build_eval_records(cfg, ANN, R, boxes, oracle=oracle)
    cfg.eval.protocol = "odkd"
    codec = HeatmapCodec.from_config(cfg)   # odkd's; then one rule of HRNet's at a time
    if shift == "hrnet":
        codec = replace(codec, flip_shift=1.0)
    codec = replace(codec, protocol=decode)
    with torch.inference_mode():
        m = E.run_evaluation(cfg, None if oracle else model, coco, recs, torch.device("cpu"),
                             oracle=oracle, progress=False, codec=codec)
    return m["AP"], m["AR"]

rows = []
for bx, name in (("gt", "GT boxes"), (f"{R}/test_coco_det_AP_H_56.json", "detection boxes")):
    for label, kw in (("odkd (default)", {}), ("hrnet (all rules)", dict(box_rule="hrnet", decode="hrnet", shift="hrnet")),
                      ("odkd + hrnet boxes only", dict(box_rule="hrnet")),
                      ("odkd + hrnet decode only (border rule, max<=0 at corner)", dict(decode="hrnet")),
                      ("odkd + hrnet 1-px flip shift only", dict(shift="hrnet")),
                      ("odkd, eval.amp=bf16", dict(amp="bf16")),
                      ("oracle odkd", dict(oracle=True)),
                      ("oracle hrnet", dict(oracle=True, box_rule="hrnet", decode="hrnet", shift="hrnet"))):
        ap, ar = run(bx, **kw)
        print(f"| {name} | {label} | {ap:.4f} | {ar:.4f} |", flush=True)
