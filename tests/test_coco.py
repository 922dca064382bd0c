import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from odkd.data.coco import detections_summary, load_coco, load_detections
from odkd.errors import DataError
from odkd.keypoints import COCO_KEYPOINTS

K = 17


def kpts(n_visible: int, x0: float = 20.0, y0: float = 20.0) -> list[float]:
    out = []
    for i in range(K):
        v = 2 if i < n_visible else 0
        out += [x0 + i if v else 0.0, y0 + i if v else 0.0, v]
    return out


def ann(ann_id, image_id, bbox, n_visible=10, **extra):
    a = {"id": ann_id, "image_id": image_id, "category_id": 1, "bbox": bbox, "iscrowd": 0,
         "area": float(bbox[2] * bbox[3]), "num_keypoints": n_visible,
         "keypoints": kpts(n_visible), "segmentation": [[20, 20, 60, 20, 60, 80, 20, 80]]}
    a.update(extra)
    return a


def write_set(tmp_path: Path, annotations, images=None, *, write_images=True, name="set.json",
              raw: str | None = None) -> Path:
    images = images if images is not None else [
        {"id": 2, "file_name": "b.png", "width": 100, "height": 80},
        {"id": 1, "file_name": "a.png", "width": 100, "height": 80},
    ]
    if write_images:
        for img in images:
            cv2.imwrite(str(tmp_path / img["file_name"]),
                        np.zeros((img["height"], img["width"], 3), np.uint8))
    data = {"images": images, "annotations": annotations,
            "categories": [{"id": 1, "name": "person", "keypoints": COCO_KEYPOINTS,
                            "skeleton": [[16, 14], [14, 12]]}]}
    path = tmp_path / name
    path.write_text(raw if raw is not None else json.dumps(data))
    return path


def test_load_sorts_clips_and_counts_skips(tmp_path):
    anns = [
        ann(7, 2, [10, 10, 30, 40]),
        ann(5, 1, [-10, 50, 40, 50]),                     # partly outside: clipped
        ann(3, 1, [10, 10, 30, 40], iscrowd=1),           # crowd
        ann(4, 1, [10, 10, 30, 40], n_visible=0),         # nothing labelled
        ann(9, 1, [200, 10, 30, 40]),                     # entirely outside the 100x80 image
        ann(8, 1, [10, 10, 0, 40]),                       # zero width
        ann(2, 1, [10, 10, 30, 40]),
    ]
    path = write_set(tmp_path, anns)
    cs = load_coco(str(path), str(tmp_path), train=True)
    assert [(r.image_id, r.ann_id) for r in cs.records] == [(1, 2), (1, 5), (2, 7)]
    clipped = cs.records[1]
    assert clipped.bbox == pytest.approx([0.0, 50.0, 30.0, 30.0])
    assert clipped.file_name == str((tmp_path / "a.png").resolve())
    assert clipped.keypoints.shape == (K, 3) and clipped.keypoints.dtype == np.float32
    assert clipped.num_keypoints == 10 and clipped.score == 1.0
    assert cs.skipped == {"crowd": 1, "no_keypoints": 1, "bbox_outside_image": 1,
                          "degenerate_bbox": 1}
    assert cs.summary() == ("set.json: 3 persons from 2 images (skipped: 1 bbox outside image, "
                            "1 crowd, 1 degenerate bbox, 1 no keypoints)")
    assert [5, 6] in cs.flip_pairs and [15, 16] in cs.flip_pairs and len(cs.flip_pairs) == 8
    assert cs.upper_body_ids == list(range(11))
    assert cs.skeleton == [[16, 14], [14, 12]]

    # Evaluation skips unlabelled people too: COCOeval ignores them, so a GT-box
    # prediction for one could only be a false positive (HRNet does the same).
    ev = load_coco(str(path), str(tmp_path), train=False)
    assert [r.ann_id for r in ev.records] == [2, 5, 7]
    assert ev.skipped["no_keypoints"] == 1 and ev.skipped["crowd"] == 1


def test_explicit_flip_pairs_are_validated(tmp_path):
    path = write_set(tmp_path, [ann(1, 1, [10, 10, 30, 40])])
    cs = load_coco(str(path), str(tmp_path), train=True, flip_pairs=[[1, 2]])
    assert cs.flip_pairs == [[1, 2]]
    with pytest.raises(DataError, match="flip_pairs"):
        load_coco(str(path), str(tmp_path), train=True, flip_pairs=[[1, 17]])


def test_malformed_json_names_file_and_position(tmp_path):
    path = write_set(tmp_path, [], raw='{"images": [\n  {"id": 1,,}\n]}')
    with pytest.raises(DataError, match=r"set\.json: invalid JSON at line 2 column"):
        load_coco(str(path), str(tmp_path), train=True)


def test_missing_annotation_file(tmp_path):
    with pytest.raises(DataError, match="nope.json"):
        load_coco(str(tmp_path / "nope.json"), str(tmp_path), train=True)


def test_missing_top_level_field(tmp_path):
    path = tmp_path / "x.json"
    path.write_text(json.dumps({"images": [], "categories": []}))
    with pytest.raises(DataError, match="x.json: field annotations"):
        load_coco(str(path), str(tmp_path), train=True)


def test_keypoints_of_wrong_length(tmp_path):
    bad = ann(42, 1, [10, 10, 30, 40])
    bad["keypoints"] = bad["keypoints"][:-1]
    path = write_set(tmp_path, [ann(1, 1, [10, 10, 30, 40]), bad])
    with pytest.raises(DataError) as e:
        load_coco(str(path), str(tmp_path), train=True)
    msg = str(e.value)
    assert "set.json" in msg and "annotation 42" in msg and "field keypoints" in msg
    assert "51" in msg and "length 50" in msg


@pytest.mark.parametrize("field,value", [("bbox", [1, 2, 3]), ("bbox", [1, 2, "a", 4]),
                                         ("image_id", 99), ("keypoints", None)])
def test_bad_annotation_fields(tmp_path, field, value):
    bad = ann(13, 1, [10, 10, 30, 40])
    bad[field] = value
    path = write_set(tmp_path, [bad])
    with pytest.raises(DataError, match=rf"set\.json: annotation 13 field {field}"):
        load_coco(str(path), str(tmp_path), train=True)


def test_missing_image_files_are_listed(tmp_path):
    images = [{"id": i, "file_name": f"img{i}.jpg", "width": 100, "height": 80}
              for i in range(1, 6)]
    path = write_set(tmp_path, [ann(i, i, [10, 10, 30, 40]) for i in range(1, 6)], images,
                     write_images=False)
    with pytest.raises(DataError) as e:
        load_coco(str(path), str(tmp_path), train=True)
    msg = str(e.value)
    assert "5 image file(s)" in msg and str(tmp_path / "img1.jpg") in msg and "..." in msg
    # check_images=False defers the problem to the dataset (e.g. for evaluation from results)
    assert len(load_coco(str(path), str(tmp_path), train=True, check_images=False).records) == 5


def test_no_person_category(tmp_path):
    path = tmp_path / "cats.json"
    path.write_text(json.dumps({"images": [], "annotations": [],
                                "categories": [{"id": 1, "name": "person"}]}))
    with pytest.raises(DataError, match="cats.json: field categories"):
        load_coco(str(path), str(tmp_path), train=True)


def test_load_detections(tmp_path):
    cs = load_coco(str(write_set(tmp_path, [ann(1, 1, [10, 10, 30, 40])])), str(tmp_path),
                   train=False)
    dets = [
        {"image_id": 2, "category_id": 1, "bbox": [5, 5, 20, 20], "score": 0.9},
        {"image_id": 1, "category_id": 1, "bbox": [90, 5, 20, 20], "score": 0.8},  # clipped
        {"image_id": 1, "category_id": 1, "bbox": [5, 5, 20, 20], "score": 0.1},   # low score
        {"image_id": 1, "category_id": 3, "bbox": [5, 5, 20, 20], "score": 0.9},   # not person
        {"image_id": 77, "category_id": 1, "bbox": [5, 5, 20, 20], "score": 0.9},  # unknown
    ]
    det_path = tmp_path / "dets.json"
    det_path.write_text(json.dumps(dets))
    skipped: dict = {}
    recs = load_detections(str(det_path), cs, 0.5, skipped=skipped)
    assert [(r.image_id, r.score) for r in recs] == [(1, pytest.approx(0.8)),
                                                     (2, pytest.approx(0.9))]
    assert recs[0].bbox == pytest.approx([90, 5, 10, 20])
    assert not recs[0].keypoints.any() and recs[0].keypoints.shape == (K, 3)
    assert skipped == {"low_score": 1, "other_category": 1, "unknown_image": 1}
    assert detections_summary(str(det_path), recs, skipped).startswith(
        "dets.json: 2 boxes from 2 images (skipped: ")

    dets[3]["score"] = "high"
    det_path.write_text(json.dumps(dets))
    with pytest.raises(DataError, match=r"dets\.json: detection 3 field score"):
        load_detections(str(det_path), cs, 0.5)
    det_path.write_text(json.dumps({"image_id": 1}))
    with pytest.raises(DataError, match="dets.json: expected a list"):
        load_detections(str(det_path), cs, 0.5)


def test_real_mini_coco_and_ochuman(real_mini):
    coco_json = real_mini / "coco" / "test_coco.json"
    tr = load_coco(str(coco_json), str(real_mini / "coco"), train=True)
    ev = load_coco(str(coco_json), str(real_mini / "coco"), train=False)
    assert len(ev.records) == 12 and len(tr.records) == 12
    assert tr.skipped == {"no_keypoints": 2}
    assert ev.summary() == "test_coco.json: 12 persons from 4 images (skipped: 2 no keypoints)"
    assert all(isinstance(r.segmentation, list) for r in ev.records)
    assert [(r.image_id, r.ann_id) for r in ev.records] == sorted(
        (r.image_id, r.ann_id) for r in ev.records)

    och = load_coco(str(real_mini / "ochuman" / "test_ochuman.json"),
                    str(real_mini / "ochuman"), train=True)
    assert len(och.records) == 5
    assert all(isinstance(r.segmentation, dict) for r in och.records)

    recs = load_detections(str(real_mini / "coco" / "test_coco_det_AP_H_56.json"), ev, 0.0)
    assert len(recs) == 118 and {r.image_id for r in recs} <= set(ev.images)


def test_clip_box_hrnet_rule():
    from odkd.data.coco import clip_box
    # official HRNet: x2 = min(W - 1, max(0, x) + max(0, w - 1))
    assert clip_box([10, 20, 30, 40], 100, 100, "hrnet") == ([10, 20, 29, 39], "")
    assert clip_box([-5, 0, 30, 200], 100, 100, "hrnet") == ([0, 0, 29, 99], "")
    assert clip_box([10, 20, 30, 40], 100, 100) == ([10, 20, 30, 40], "")
    assert clip_box([-5, 0, 30, 200], 100, 100) == ([0, 0, 25, 100], "")
    assert clip_box([150, 0, 30, 40], 100, 100, "hrnet")[1] == "bbox_outside_image"


def test_detections_unclipped_for_hrnet(tmp_path):
    path = write_set(tmp_path, [ann(1, 1, [10, 10, 30, 40])], write_images=False)
    coco = load_coco(str(path), str(tmp_path), train=False, check_images=False)
    dets = tmp_path / "d.json"
    dets.write_text(json.dumps([{"image_id": 1, "category_id": 1, "score": 0.9,
                                 "bbox": [-10, -10, 50, 60]}]))
    assert load_detections(str(dets), coco, check_images=False)[0].bbox == [0, 0, 40, 50]
    assert load_detections(str(dets), coco, check_images=False, clip=False)[0].bbox == \
        [-10, -10, 50, 60]
