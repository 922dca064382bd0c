"""engine/evaluate.py: every image scored, eval.amp, eval.protocol hrnet vs an independent
reference of the official HRNet test rules, empty sets rejected, metric printing."""
import contextlib
import copy
import io
import json
import math
import os

import cv2
import numpy as np
import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torch import nn

from odkd.config import Config, ConfigError
from odkd.engine.evaluate import build_eval_records, format_metrics, run_evaluation
from odkd.errors import DataError

DET = "test_coco_det_AP_H_56.json"


def _cfg(**eval_kw) -> Config:
    cfg = Config()
    cfg.data.input_size = [96, 128]
    cfg.data.workers = 0
    cfg.eval.batch_size = 32
    for k, v in eval_kw.items():
        setattr(cfg.eval, k, v)
    return cfg


def _pycocotools(ann_file: str, results: list) -> COCOeval:
    """COCOeval exactly as the official tools run it: the whole annotation file."""
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(ann_file)
        ev = COCOeval(gt, gt.loadRes(copy.deepcopy(results)), "keypoints")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


# ------------------------------------------------------------------------ image set of COCOeval

def test_images_without_boxes_count_as_misses(real_mini, tmp_path):
    coco_dir = real_mini / "coco"
    ann = str(coco_dir / "test_coco.json")
    dets = json.loads((coco_dir / DET).read_text())
    dropped = [d for d in dets if d["image_id"] != 40083]  # the detector "missed" one image
    det_file = tmp_path / "dets.json"
    det_file.write_text(json.dumps(dropped))
    cfg = _cfg()
    coco, records = build_eval_records(cfg, ann, str(coco_dir), str(det_file), oracle=True)
    assert 40083 not in {r.image_id for r in records}
    m = run_evaluation(cfg, None, coco, records, torch.device("cpu"), out_dir=str(tmp_path),
                       oracle=True, progress=False)
    results = json.loads((tmp_path / "results.json").read_text())
    ev = _pycocotools(ann, results)
    assert m["AP"] == pytest.approx(ev.stats[0], abs=1e-12)
    assert m["AR"] == pytest.approx(ev.stats[5], abs=1e-12)
    # the person in image 40083 is a miss, so AR cannot reach 1 (it did when that image
    # was left out of COCOeval)
    assert m["AR"] < 0.95
    assert json.loads((tmp_path / "metrics.json").read_text())["AR"] == m["AR"]


# ---------------------------------------------------------------------------------- eval.amp

class _DtypeProbe(nn.Module):
    """Records the dtype its conv computes in; heatmaps from a fixed conv. ``seen`` is a class
    attribute: evaluation runs an eval copy of the model (odkd.models.fold.inference_copy)."""
    seen: set = set()

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 17, 4, stride=4)
        _DtypeProbe.seen = set()

    def forward(self, x):
        y = self.conv(x)
        _DtypeProbe.seen.add(y.dtype)
        return {"heatmaps": y}


@pytest.mark.parametrize("eval_amp, expected", [("none", torch.float32), ("bf16", torch.bfloat16)])
def test_eval_amp_not_train_amp(real_mini, eval_amp, expected):
    coco_dir = real_mini / "coco"
    cfg = _cfg(amp=eval_amp, flip_test=False)
    cfg.train.amp = "bf16"  # a bf16-trained config must still evaluate in fp32 by default
    coco, records = build_eval_records(cfg, str(coco_dir / "test_coco.json"), str(coco_dir), "gt")
    model = _DtypeProbe()
    with torch.inference_mode():
        run_evaluation(cfg, model, coco, records[:2], torch.device("cpu"), progress=False)
    assert _DtypeProbe.seen == {expected}


def test_evaluation_leaves_a_training_model_as_it_was(real_mini):
    # Scoring runs a folded channels_last copy; the model being trained keeps its mode, its
    # BatchNorm layers and its weights (a fold in place would break the next training step).
    from odkd.models import build_model

    coco_dir = real_mini / "coco"
    cfg = _cfg(flip_test=True)
    coco, records = build_eval_records(cfg, str(coco_dir / "test_coco.json"), str(coco_dir), "gt")
    torch.manual_seed(0)
    model = build_model("litehrnet_18", 17, True).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    n_bn = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    run_evaluation(cfg, model, coco, records[:2], torch.device("cpu"), progress=False)
    assert model.training and n_bn == sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_bad_eval_settings_are_config_errors(real_mini):
    coco_dir = real_mini / "coco"
    for kw, field in ((dict(amp="fp16"), "eval.amp"), (dict(protocol="mmpose"), "eval.protocol"),
                      (dict(protocol="hrnet", decode="dark"), "eval.protocol")):
        with pytest.raises(ConfigError, match=field):
            build_eval_records(_cfg(**kw), str(coco_dir / "test_coco.json"), str(coco_dir), "gt")


# ------------------------------------------------------ eval.protocol hrnet vs the official rules
# An independent reference, written from the official HRNet test code's rules (pixel_std 200,
# clean_bbox, _box2cs, get_affine_transform, flip_back + SHIFT_HEATMAP, get_final_preds with
# POST_PROCESS, rescoring); it shares no code with odkd.

def _ref_affine(center, scale200, output_size, inv=False):
    scale_tmp = np.asarray(scale200, np.float32) * 200.0
    dst_w, dst_h = output_size
    src = np.zeros((3, 2), np.float32)
    dst = np.zeros((3, 2), np.float32)
    src[0] = center
    src[1] = center + np.array([0, scale_tmp[0] * -0.5], np.float32)
    dst[0] = [dst_w * 0.5, dst_h * 0.5]
    dst[1] = dst[0] + np.array([0, dst_w * -0.5], np.float32)
    for m in (src, dst):
        d = m[0] - m[1]
        m[2] = m[1] + np.array([-d[1], d[0]], np.float32)
    return cv2.getAffineTransform(dst, src) if inv else cv2.getAffineTransform(src, dst)


def _ref_box2cs(box, aspect):
    x, y, w, h = box
    center = np.array([x + w * 0.5, y + h * 0.5], np.float32)
    if w > aspect * h:
        h = w * 1.0 / aspect
    elif w < aspect * h:
        w = h * aspect
    return center, np.array([w / 200.0, h / 200.0], np.float32) * 1.25


def _ref_boxes(ann_file, det_file):
    """(image_id, box, score) per instance, the official way."""
    data = json.loads(open(ann_file).read())
    size = {im["id"]: (im["width"], im["height"]) for im in data["images"]}
    out = []
    if det_file is None:
        for obj in data["annotations"]:
            if obj.get("iscrowd", 0) or max(obj["keypoints"]) == 0:
                continue
            width, height = size[obj["image_id"]]
            x, y, w, h = obj["bbox"]
            x1, y1 = np.max((0, x)), np.max((0, y))
            x2 = np.min((width - 1, x1 + np.max((0, w - 1))))
            y2 = np.min((height - 1, y1 + np.max((0, h - 1))))
            if obj["area"] > 0 and x2 >= x1 and y2 >= y1:
                out.append((obj["image_id"], [x1, y1, x2 - x1, y2 - y1], 1.0))
    else:
        for d in json.loads(open(det_file).read()):
            if d["category_id"] == 1 and d["score"] >= 0.0:
                out.append((d["image_id"], d["bbox"], d["score"]))
    return out, {im["id"]: im["file_name"] for im in data["images"]}


def _ref_final_preds(hm, center, scale200):
    k, h, w = hm.shape
    flat = hm.reshape(k, -1)
    idx, maxvals = np.argmax(flat, 1), np.amax(flat, 1)
    coords = np.stack([idx % w, np.floor(idx / w)], 1).astype(np.float32)
    coords *= (maxvals > 0.0)[:, None]
    for p in range(k):
        px, py = int(math.floor(coords[p][0] + 0.5)), int(math.floor(coords[p][1] + 0.5))
        if 1 < px < w - 1 and 1 < py < h - 1:
            diff = np.array([hm[p][py][px + 1] - hm[p][py][px - 1],
                             hm[p][py + 1][px] - hm[p][py - 1][px]])
            coords[p] += np.sign(diff) * .25
    t = _ref_affine(center, scale200, (w, h), inv=True)
    pts = np.concatenate([coords, np.ones((k, 1), np.float32)], 1) @ t.T
    return pts, maxvals


def _reference(model, image_dir, ann_file, det_file, input_size, flip_pairs):
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    boxes, names = _ref_boxes(ann_file, det_file)
    out = []
    for image_id, box, score in boxes:
        img = cv2.cvtColor(cv2.imread(str(image_dir / names[image_id])), cv2.COLOR_BGR2RGB)
        c, s = _ref_box2cs(box, input_size[0] / input_size[1])
        crop = cv2.warpAffine(img, _ref_affine(c, s, input_size), tuple(input_size),
                              flags=cv2.INTER_LINEAR)
        x = torch.from_numpy(((crop / 255.0 - mean) / std).transpose(2, 0, 1)[None]).float()
        with torch.no_grad():
            hm = model(x)["heatmaps"].numpy()
            fl = model(torch.flip(x, [3]))["heatmaps"].numpy()[:, :, :, ::-1].copy()
        for a, b in flip_pairs:
            fl[:, [a, b]] = fl[:, [b, a]]
        fl[:, :, :, 1:] = fl.copy()[:, :, :, 0:-1]   # SHIFT_HEATMAP
        pts, maxvals = _ref_final_preds(((hm + fl) * 0.5)[0], c, s)
        vis = maxvals[maxvals > 0.2]
        kpt_score = vis.mean() if vis.size else 0.0
        out.append({"image_id": image_id, "score": float(kpt_score * score),
                    "keypoints": np.concatenate([pts, maxvals[:, None]], 1)})
    return out


class _FixedNet(nn.Module):
    """A fixed random conv: arbitrary maps with argmaxes everywhere; channel 3 never positive."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.conv = nn.Conv2d(3, 17, 8, stride=4, padding=2)
        with torch.no_grad():
            self.conv.weight.copy_(torch.randn(self.conv.weight.shape, generator=g) * 0.05)
            self.conv.bias.copy_(torch.rand(17, generator=g) * 0.3)
            self.conv.bias[3] = -100.0

    def forward(self, x):
        return {"heatmaps": self.conv(x)}


def _match(got, want):
    """For each reference instance, the (keypoint, score) errors of the nearest unused result of
    the same image (results carry no box to pair them by)."""
    pool = {}
    for r in got:
        pool.setdefault(r["image_id"], []).append(r)
    errs = []
    for w in want:
        cands = pool.get(w["image_id"], [])
        assert cands, f"image {w['image_id']}: fewer results than reference instances"
        d = [np.abs(np.reshape(c["keypoints"], (-1, 3)) - w["keypoints"]).max() for c in cands]
        j = int(np.argmin(d))
        errs.append((d[j], abs(cands[j]["score"] - w["score"])))
        cands.pop(j)
    assert not any(pool.values()), "more results than reference instances"
    return np.array(errs)


@pytest.mark.parametrize("boxes", ["gt", DET])
def test_hrnet_protocol_matches_official_reference(real_mini, tmp_path, boxes):
    coco_dir = real_mini / "coco"
    ann = str(coco_dir / "test_coco.json")
    det = None if boxes == "gt" else str(coco_dir / DET)
    model = _FixedNet().eval()
    results = {}
    for protocol in ("hrnet", "odkd"):
        cfg = _cfg(protocol=protocol, oks_nms_thr=1.0)  # NMS off: compare every instance
        coco, records = build_eval_records(cfg, ann, str(coco_dir), det or "gt")
        out = tmp_path / protocol
        with torch.inference_mode():
            run_evaluation(cfg, model, coco, records, torch.device("cpu"), out_dir=str(out),
                           progress=False)
        results[protocol] = json.loads((out / "results.json").read_text())
    ref = _reference(model, coco_dir, ann, det, (96, 128), coco.flip_pairs)

    errs = _match(results["hrnet"], ref)
    assert errs[:, 0].max() < 2e-3 and errs[:, 1].max() < 1e-4  # float32 vs float64
    # the rules matter here: odkd's own protocol gives other keypoints for the same model
    assert len(results["odkd"]) != len(ref) or _match(results["odkd"], ref)[:, 0].max() > 0.2


# ---------------------------------------------------------------------- empty sets, printing

def test_nothing_to_evaluate_is_an_error(real_mini, tmp_path):
    coco_dir = real_mini / "coco"
    data = json.loads((coco_dir / "test_coco.json").read_text())
    data["annotations"] = []
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps(data))
    with pytest.raises(DataError, match=r"empty\.json: field annotations: no person"):
        build_eval_records(_cfg(), str(empty), str(coco_dir), "gt")
    outside = tmp_path / "outside.json"
    outside.write_text(json.dumps([{"image_id": 785, "category_id": 1, "score": 0.9,
                                    "bbox": [5000, 5000, 10, 10]}]))
    with pytest.raises(DataError, match=r"outside\.json: field bbox: no usable detection box "
                                        r".*1 bbox outside image"):
        build_eval_records(_cfg(), str(coco_dir / "test_coco.json"), str(coco_dir),
                           str(outside))


def test_format_metrics_no_data_is_na():
    text = format_metrics({"AP": 0.5, "AP50": 0.6, "AP75": 0.4, "APm": 0.5, "APl": -1.0,
                           "AR": 0.55})
    head, vals = text.splitlines()
    assert "PCK" not in head
    assert vals.split(" | ")[4].strip() == "n/a" and "-1" not in vals


def test_pck_in_metrics_json_with_gt_boxes_only(real_mini, tmp_path):
    coco_dir = real_mini / "coco"
    ann = str(coco_dir / "test_coco.json")
    cfg = _cfg()
    for boxes, has_pck in (("gt", True), (str(coco_dir / DET), False)):
        coco, records = build_eval_records(cfg, ann, str(coco_dir), boxes)
        m = run_evaluation(cfg, None if has_pck else _FixedNet(), coco, records,
                           torch.device("cpu"), out_dir=str(tmp_path), oracle=has_pck,
                           progress=False)
        written = json.loads((tmp_path / "metrics.json").read_text())
        assert written == m and ("PCK" in m) == has_pck
        assert ("PCK" in format_metrics(m)) == has_pck


# ------------------------------------------------------- teachers and students, one pipeline
@pytest.fixture(scope="module")
def small_ckpt(tmp_path_factory):
    from odkd.models import build_model
    from odkd.models.checkpoint import save_checkpoint

    torch.manual_seed(0)
    cfg = Config()
    cfg.data.input_size = [48, 64]
    path = tmp_path_factory.mktemp("ckpt") / "best.pt"
    save_checkpoint(path, build_model("mobilenetv2", num_joints=17).eval(),
                    extra={"config": cfg.to_dict()})
    return str(path)


def test_eval_checkpoint_as_teacher_matches_checkpoint(real_mini, tmp_path, small_ckpt):
    """`odkd eval --model checkpoint:PATH` (the real-image teacher path: its own crop, batch 1)
    writes the keypoints `odkd eval --checkpoint PATH` (DataLoader, folded BN) does: the crop
    of a 48x64 teacher on a box is the evaluation crop."""
    from odkd.cli import main

    coco_dir = real_mini / "coco"
    common = ["--ann", str(coco_dir / "test_coco.json"), "--images", str(coco_dir),
              "--boxes", "gt", "data.workers=0"]
    assert main(["eval", "--model", f"checkpoint:{small_ckpt}", "--out",
                 str(tmp_path / "t"), *common]) == 0
    assert main(["eval", "--checkpoint", small_ckpt, "--out", str(tmp_path / "c"),
                 *common]) == 0
    got = json.loads((tmp_path / "t" / "results.json").read_text())
    want = json.loads((tmp_path / "c" / "results.json").read_text())
    assert len(got) == len(want) > 0
    key = lambda r: (r["image_id"], r["keypoints"][0])  # noqa: E731
    for g, w in zip(sorted(got, key=key), sorted(want, key=key)):
        assert g["image_id"] == w["image_id"]
        np.testing.assert_allclose(g["keypoints"], w["keypoints"], atol=2e-2)
    m = json.loads((tmp_path / "t" / "metrics.json").read_text())
    assert {"AP", "AR", "PCK"} <= set(m)


def _lsp_like(tmp_path, n=3):
    """A 14-joint-style set: COCO-17 with the 12 limb joints labelled, random photos."""
    rng = np.random.default_rng(0)
    from odkd.keypoints import COCO_KEYPOINTS

    images, anns = [], []
    for i in range(1, n + 1):
        cv2.imwrite(str(tmp_path / f"im{i}.jpg"), rng.integers(0, 255, (160, 120, 3),
                                                                 dtype=np.uint8))
        kp = np.zeros((17, 3))
        kp[5:, 0] = rng.uniform(30, 90, 12)
        kp[5:, 1] = np.linspace(30, 140, 12)
        kp[5:, 2] = 2
        images.append({"id": i, "file_name": f"im{i}.jpg", "width": 120, "height": 160})
        anns.append({"id": 10 + i, "image_id": i, "category_id": 1, "iscrowd": 0,
                     "bbox": [30, 30, 60, 110], "area": 6600.0, "num_keypoints": 12,
                     "keypoints": kp.ravel().tolist()})
    ann = tmp_path / "lsp.json"
    ann.write_text(json.dumps({"images": images, "annotations": anns, "categories": [
        {"id": 1, "name": "person", "keypoints": COCO_KEYPOINTS, "skeleton": []}]}))
    return str(ann)


def test_metric_pck_is_teachers_eval(tmp_path, small_ckpt, capsys):
    """`odkd eval --metric pck` scores a checkpoint and the same checkpoint as a teacher
    exactly as `odkd teachers eval` does (one code path), and adds OKS AP."""
    from odkd.cli import main

    ann = _lsp_like(tmp_path)
    assert main(["teachers", "eval", f"checkpoint:{small_ckpt}", "--ann", ann, "--images",
                 str(tmp_path), "--out", str(tmp_path / "t.json")]) == 0
    written = json.loads((tmp_path / "t.json").read_text())
    want, want_results = written["reports"][0], next(iter(written["results"].values()))
    for how, out in ((["--checkpoint", small_ckpt], "c"),
                     (["--model", f"checkpoint:{small_ckpt}"], "m")):
        assert main(["eval", *how, "--ann", ann, "--images", str(tmp_path), "--metric", "pck",
                     "--out", str(tmp_path / out)]) == 0
        m = json.loads((tmp_path / out / "metrics.json").read_text())
        assert m["PCK@0.2"] == want["pck"] and {"AP", "AP50", "AR"} <= set(m)
        res = json.loads((tmp_path / out / "results.json").read_text())
        assert [r["keypoints"] for r in res] == [r["keypoints"] for r in want_results]
    assert "PCK@0.2" in capsys.readouterr().out


@pytest.mark.parametrize("extra, msg", [
    (["--boxes", "dets.json"], "--boxes does not apply"),
    (["--oracle"], "--oracle"),
    (["data.padding=1.5"], "do not apply"),
])
def test_metric_pck_bad_combinations_are_one_line(tmp_path, small_ckpt, capsys, extra, msg):
    from odkd.cli import main

    ann = _lsp_like(tmp_path, 1)
    assert main(["eval", "--model", f"checkpoint:{small_ckpt}", "--ann", ann, "--metric", "pck",
                 *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert msg in err and len(err.splitlines()) == 1, err


def test_no_flip_reaches_a_checkpoint_teacher_and_refuses_others(tmp_path, small_ckpt,
                                                                  capsys):
    from odkd.cli import main

    ann = _lsp_like(tmp_path, 2)
    outs = {}
    for flip in ([], ["--no-flip"]):
        out = tmp_path / f"o{len(flip)}"
        assert main(["eval", "--checkpoint", small_ckpt, "--ann", ann, "--images",
                     str(tmp_path), "--metric", "pck", "--out", str(out), *flip]) == 0
        outs[len(flip)] = json.loads((out / "results.json").read_text())
    assert outs[0][0]["keypoints"] != outs[1][0]["keypoints"]
    assert main(["eval", "--model", "movenet-lightning", "--ann", ann, "--metric", "pck",
                 "--no-flip"]) == 2
    assert "--no-flip" in capsys.readouterr().err


def test_metric_pck_scores_an_onnx_export_like_its_checkpoint(tmp_path, real_mini):
    """An `odkd export` file goes through the same crop and decoding as its checkpoint, so
    fp32 ONNX and PyTorch give the same keypoints (to float tolerance) and the same PCK.

    The shipped model on real people: its heatmaps have clear peaks (the top two pixels of
    every map differ by 1.2e-4 or more, against ~1e-6 between the runtimes), so no argmax can
    flip between them on any CPU, as it could on a random-weight model's flat maps."""
    pytest.importorskip("onnxruntime")
    from odkd.cli import main
    from odkd.models import zoo

    ckpt = os.path.join(zoo.WEIGHTS_DIR, zoo.SHIPPED["odkd-lightning"]["file"])
    if not os.path.isfile(ckpt):
        pytest.skip("src/odkd/weights/odkd-lightning.pt is not in this tree")
    ann = str(real_mini / "coco" / "test_coco.json")
    onnx_path = str(tmp_path / "m.onnx")
    assert main(["export", ckpt, "--out", onnx_path]) == 0
    res, pck = {}, {}
    for name, ck in (("pt", ckpt), ("onnx", onnx_path)):
        out = tmp_path / name
        assert main(["eval", "--checkpoint", ck, "--ann", ann, "--images",
                     str(real_mini / "coco"), "--metric", "pck", "--no-flip", "--threads", "1",
                     "--out", str(out)]) == 0
        res[name] = json.loads((out / "results.json").read_text())
        pck[name] = json.loads((out / "metrics.json").read_text())["PCK@0.2"]
    assert len(res["pt"]) == len(res["onnx"]) > 0
    for a, b in zip(res["pt"], res["onnx"]):
        np.testing.assert_allclose(a["keypoints"], b["keypoints"], atol=1e-2)
    assert pck["pt"] == pck["onnx"]
    # the same file is a teacher anywhere teachers are named (`odkd teachers eval`, distill)
    from odkd.data.dataset import read_image
    from odkd.teachers import get_teacher

    img = read_image(str(real_mini / "coco" / "000000000785.jpg"))
    h, w = img.shape[:2]
    kps = [get_teacher("checkpoint:" + p, num_threads=1, flip_test=False).predict(
        img, [(w / 2, h / 2)], [(w, h)])[0]["keypoints"] for p in (ckpt, onnx_path)]
    np.testing.assert_allclose(kps[0], kps[1], atol=1e-2)
