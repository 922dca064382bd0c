import json

import numpy as np
import pytest

from odkd.data.coco import load_coco
from odkd.errors import DataError
from odkd.eval.coco_eval import (METRIC_KEYS, evaluate_coco, evaluate_coco_detailed,
                                 rescore_and_nms)
from odkd.keypoints import COCO_KEYPOINTS


def _person(rng, x0, y0, w, h):
    kp = []
    for _ in range(17):
        kp += [float(x0 + rng.uniform(0, w)), float(y0 + rng.uniform(0, h)), 2]
    return kp


@pytest.fixture
def gt_file(tmp_path):
    """3 images, 5 people (medium and large); no 'info'/'licenses'/'num_keypoints'."""
    rng = np.random.default_rng(0)
    people = [(1, 10, 10, 60, 120), (1, 200, 30, 120, 250), (2, 50, 50, 50, 100),
              (3, 20, 20, 150, 300), (3, 250, 40, 60, 110)]
    anns = []
    for i, (img, x, y, w, h) in enumerate(people):
        anns.append({"id": i + 1, "image_id": img, "category_id": 1, "iscrowd": 0,
                     "bbox": [x, y, w, h], "area": float(w * h * 0.6),
                     "keypoints": _person(rng, x, y, w, h)})
    data = {"images": [{"id": i, "file_name": f"{i}.jpg", "width": 640, "height": 480}
                       for i in (1, 2, 3)],
            "annotations": anns,
            "categories": [{"id": 1, "name": "person", "keypoints": list(COCO_KEYPOINTS)}]}
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(data))
    return str(path), anns


def _as_results(anns, noise=0.0, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for a in anns:
        kp = np.array(a["keypoints"], dtype=float).reshape(-1, 3)
        kp[:, :2] += rng.normal(0, noise, (kp.shape[0], 2)) if noise else 0.0
        out.append({"image_id": a["image_id"], "category_id": 1,
                    "keypoints": kp.ravel().tolist(), "score": 1.0})
    return out


def test_gt_as_results_is_perfect_and_files_written(gt_file, tmp_path):
    path, anns = gt_file
    out = tmp_path / "out"
    metrics, summary = evaluate_coco_detailed(path, _as_results(anns), out_dir=str(out))
    assert set(metrics) == set(METRIC_KEYS)
    assert metrics["AP"] == pytest.approx(1.0) and metrics["AR"] == pytest.approx(1.0)
    assert "Average Precision" in summary
    written = json.loads((out / "metrics.json").read_text())
    assert sorted(written) == sorted(METRIC_KEYS)
    res = json.loads((out / "results.json").read_text())
    assert len(res) == 5 and set(res[0]) == {"image_id", "category_id", "keypoints", "score"}
    assert len(res[0]["keypoints"]) == 51


def test_perturbed_keypoints_lower_ap(gt_file):
    path, anns = gt_file
    ap = evaluate_coco(path, _as_results(anns, noise=8.0))["AP"]
    assert 0.0 <= ap < 0.9


def test_empty_results_give_zeros(gt_file, tmp_path):
    path, _ = gt_file
    metrics = evaluate_coco(path, [], out_dir=str(tmp_path / "e"))
    assert metrics == {k: 0.0 for k in METRIC_KEYS}
    assert json.loads((tmp_path / "e" / "metrics.json").read_text()) == metrics


def test_img_ids_restricts_evaluation(gt_file):
    path, anns = gt_file
    only1 = [r for r in _as_results(anns) if r["image_id"] == 1]
    assert evaluate_coco(path, only1)["AR"] < 0.5         # people in images 2, 3 missed
    assert evaluate_coco(path, only1, img_ids=[1])["AP"] == pytest.approx(1.0)


def test_bad_inputs_raise_data_error(gt_file, tmp_path):
    path, anns = gt_file
    res = _as_results(anns)
    res[0]["image_id"] = 99
    with pytest.raises(DataError, match="image_id 99"):
        evaluate_coco(path, res)
    with pytest.raises(DataError, match="not found"):
        evaluate_coco(str(tmp_path / "missing.json"), [])
    with pytest.raises(DataError, match="image ids"):
        evaluate_coco(path, [], img_ids=[42])


@pytest.mark.parametrize("field,value,message", [
    ("keypoints", ["x"] * 51, "annotation 1 field keypoints: expected numbers"),
    ("keypoints", [1.0] * 50, "annotation 1 field keypoints: expected a list of length 51"),
    ("bbox", [0, 0, 10], "annotation 1 field bbox"),
    ("area", "big", "annotation 1 field area"),
    ("image_id", 99, "annotation 1 field image_id"),
])
def test_evaluation_checks_the_gt_file_as_load_coco_does(gt_file, tmp_path, field, value,
                                                          message):
    """One set of rules for an annotation file: what load_coco refuses, COCO evaluation
    refuses with the same one-line message (its own checks let string keypoints, a short bbox,
    a string area and an unknown image id through to pycocotools)."""
    path, anns = gt_file
    data = json.loads(open(path).read())
    data["annotations"][0][field] = value
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data))
    with pytest.raises(DataError, match=message) as from_loader:
        load_coco(str(bad), str(tmp_path), train=False, check_images=False)
    with pytest.raises(DataError, match=message) as from_eval:
        evaluate_coco(str(bad), [])
    assert str(from_loader.value) == str(from_eval.value)


def test_evaluation_needs_the_keypoint_names_as_load_coco_does(gt_file, tmp_path):
    path, _ = gt_file
    data = json.loads(open(path).read())
    del data["categories"][0]["keypoints"]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data))
    with pytest.raises(DataError, match="no category with 'keypoints' names"):
        evaluate_coco(str(bad), [])


def test_rescore_and_nms():
    rng = np.random.default_rng(0)
    base = np.zeros((17, 3))
    base[:, 0] = rng.uniform(100, 160, 17)
    base[:, 1] = rng.uniform(100, 250, 17)
    base[:, 2] = 0.8
    base[0, 2] = 0.1                     # below in_vis_thr: ignored by the rescoring
    far = base.copy()
    far[:, 0] += 300
    kpts = np.stack([base, base + [0.5, 0.5, 0.0], far, base])
    out = rescore_and_nms(kpts, box_scores=[0.5, 0.9, 0.7, 1.0], areas=[9000.0] * 4,
                          image_ids=[7, 7, 7, 8], oks_thr=0.9, in_vis_thr=0.2)
    assert [r["image_id"] for r in out] == [7, 7, 8]
    assert [r["score"] for r in out] == pytest.approx([0.9 * 0.8, 0.7 * 0.8, 0.8])
    assert out[0]["keypoints"] == pytest.approx(kpts[1].ravel().tolist())
    assert out[0]["category_id"] == 1
    out = rescore_and_nms(kpts, [0.5, 0.9, 0.7, 1.0], [9000.0] * 4, [7, 7, 7, 8],
                          oks_thr=1.01, rescore=False)
    assert len(out) == 4 and out[0]["score"] == 0.9


def test_real_mini_gt_as_results(real_mini):
    path = real_mini / "coco" / "test_coco.json"
    anns = json.loads(path.read_text())["annotations"]
    anns = [a for a in anns if a.get("num_keypoints", 0) > 0 and not a.get("iscrowd", 0)]
    metrics = evaluate_coco(str(path), _as_results(anns))
    assert metrics["AP"] == pytest.approx(1.0)
