"""odkd.eval.pck: PCK@alpha with the right-shoulder-to-left-hip normaliser over the 12 limb
joints, the protocol box, and OKS AP over the labelled joints; values worked out by hand."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from odkd.errors import DataError
from odkd.eval.pck import LIMB_IDS, LIMB_JOINTS, evaluate_pck, oks_ap, pck, protocol_box
from odkd.keypoints import COCO_KEYPOINTS, COCO_SIGMAS

REAL_LSP = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real" / "lsp"
J = {n: i for i, n in enumerate(COCO_KEYPOINTS)}


@pytest.fixture
def real_lsp() -> Path:
    """Path to ../shared/data/real/lsp; the test is skipped when it is absent."""
    if not (REAL_LSP / "joints.mat").exists():
        pytest.skip("../shared/data/real not present")
    return REAL_LSP


def person(r_sho=(0.0, 0.0), l_hip=(0.0, 50.0)) -> np.ndarray:
    """(17, 3) GT: limb joints labelled at (100 + i, 100), the torso pair where given."""
    g = np.zeros((17, 3))
    for i in LIMB_IDS:
        g[i] = (100 + i, 100, 2)
    g[J["right_shoulder"]] = (*r_sho, 2)
    g[J["left_hip"]] = (*l_hip, 2)
    return g


def test_protocol_box_is_the_square_joint_extent_enlarged():
    joints = np.array([[0, 0, 2], [10, 0, 2], [0, 20, 1], [500, 500, 0]], float)
    # labelled extent x 0..10, y 0..20 -> side 20 x 1.25 = 25 about the centre (5, 10)
    np.testing.assert_allclose(protocol_box(joints), [-7.5, -2.5, 25, 25])
    np.testing.assert_allclose(protocol_box(joints[:3, :2], enlarge=1.0), [-5, 0, 20, 20])
    with pytest.raises(ValueError, match="no labelled joint"):
        protocol_box(np.zeros((14, 3)))


def test_pck_hand_computed():
    g = person()                                    # torso 50 -> threshold 10 at alpha 0.2
    p = g[:, :2].copy()
    p[J["left_shoulder"]] += (9.9, 0)               # 9.9: correct
    p[J["right_shoulder"]] += (6, 8)                # exactly 10: correct
    p[J["left_elbow"]] += (6, 8.1)                  # 10.06: wrong
    p[J["right_elbow"]] = np.nan                    # no prediction: wrong
    g[J["left_wrist"], 2] = 0                       # unlabelled: not scored
    p[J["left_wrist"]] += 1000
    g[J["right_wrist"], 2] = 1                      # occluded but labelled: scored (exact)
    p[J["nose"]] += 1000                            # face joints are not limb joints
    no_torso = person()
    no_torso[J["right_shoulder"], 2] = 0
    zero_torso = person(r_sho=(3, 3), l_hip=(3, 3))
    gt = np.stack([g, no_torso, zero_torso])
    pred = np.stack([p, no_torso[:, :2] + 500, zero_torso[:, :2]])

    r = pck(pred, gt)
    assert (r.people, r.skipped_no_torso) == (1, 2)
    assert sum(r.scored.values()) == 11
    assert r.pck == pytest.approx(9 / 11)
    assert r.per_joint["left_elbow"] == 0 and r.per_joint["right_shoulder"] == 1
    assert math.isnan(r.per_joint["left_wrist"])
    assert r.summary().startswith("PCK@0.2 0.818 over 11 joints of 1 people (2 left out")
    # a looser threshold (12.5) takes in the 10.06 elbow
    assert pck(pred, gt, alpha=0.25).pck == pytest.approx(10 / 11)
    assert pck(pred, gt, alpha=0.1).pck == pytest.approx(7 / 11)   # 9.9 and 10 now miss


def test_pck_scale_is_each_persons_own_torso():
    small, big = person(l_hip=(0, 20)), person(l_hip=(0, 200))   # thresholds 4 and 40
    pred = np.stack([small[:, :2] + (5, 0), big[:, :2] + (5, 0)])
    r = pck(pred, np.stack([small, big]))
    assert r.pck == pytest.approx(0.5)
    assert all(v == pytest.approx(0.5) for v in r.per_joint.values())


def write_set(path: Path, people: list[np.ndarray], image_of: list[int]) -> None:
    images = [{"id": i, "file_name": f"{i}.jpg", "width": 400, "height": 400}
              for i in sorted(set(image_of))]
    anns = [{"id": k + 1, "image_id": img, "category_id": 1, "iscrowd": 0,
             "bbox": [0, 0, 200, 200], "area": 40000.0, "num_keypoints": int((g[:, 2] > 0).sum()),
             "keypoints": g.ravel().tolist()} for k, (g, img) in enumerate(zip(people, image_of))]
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": [
        {"id": 1, "name": "person", "keypoints": COCO_KEYPOINTS}]}))


def result(image_id, kp, score=1.0, **extra):
    k = np.zeros((17, 3))
    k[:, :2] = kp[:, :2]
    return {"image_id": image_id, "keypoints": k.ravel().tolist(), "score": score, **extra}


def test_evaluate_pck_from_a_coco_file(tmp_path):
    g = person()
    write_set(tmp_path / "gt.json", [g, g, g], [1, 2, 3])
    res = [result(1, g),
           result(2, g + (30, 0, 0), score=0.2),    # the lower-scored result of image 2: unused
           result(2, g, score=0.9)]                 # image 3 has no result: 12 joints wrong
    r = evaluate_pck(str(tmp_path / "gt.json"), res)
    assert r.pck == pytest.approx(24 / 36)
    assert r.missing_predictions == 1 and r.people == 3


def test_evaluate_pck_needs_ann_id_when_an_image_has_several_people(tmp_path):
    g = person()
    write_set(tmp_path / "gt.json", [g, g + (50, 0, 0)], [1, 1])
    with pytest.raises(DataError, match="image 1 has 2 people"):
        evaluate_pck(str(tmp_path / "gt.json"), [result(1, g)])
    r = evaluate_pck(str(tmp_path / "gt.json"),
                     [result(1, g, ann_id=1), result(1, g + (50, 0, 0), ann_id=2)])
    assert r.pck == 1.0


def test_oks_ap_over_the_labelled_joints(tmp_path):
    g = person(r_sho=(110, 90), l_hip=(105, 140))
    g[J["left_knee"], 2] = 0                        # unlabelled: OKS leaves it out
    write_set(tmp_path / "gt.json", [g], [1])
    assert oks_ap(str(tmp_path / "gt.json"), [result(1, g)])["AP"] == pytest.approx(1.0)
    # every joint 22 px off (the unlabelled knee 300 px off): OKS by COCO's formula over the
    # 11 labelled joints, area 40000
    shifted = g + (22, 0, 0)
    shifted[J["left_knee"]] += (300, 0, 0)
    lab = [i for i in LIMB_IDS if g[i, 2] > 0]
    oks = np.mean([math.exp(-22 ** 2 / (2 * 40000 * (2 * COCO_SIGMAS[i]) ** 2)) for i in lab])
    assert 0.76 < oks < 0.79                        # clear of the 0.75 and 0.8 thresholds
    ap = oks_ap(str(tmp_path / "gt.json"), [result(1, shifted)])["AP"]
    # one person, one result: AP is the share of the ten thresholds 0.5..0.95 that OKS passes
    assert ap == pytest.approx(6 / 10)


def test_real_lsp_pck_of_the_ground_truth(real_lsp, tmp_path):
    from odkd.data.importers import run_import

    run_import("lsp", str(real_lsp), str(tmp_path / "lsp.json"), split="test")
    coco = json.loads((tmp_path / "lsp.json").read_text())
    res = [{"image_id": a["image_id"], "keypoints": a["keypoints"], "score": 1.0}
           for a in coco["annotations"]]
    r = evaluate_pck(str(tmp_path / "lsp.json"), res)
    assert (r.pck, r.people, r.skipped_no_torso, sum(r.scored.values())) == (1.0, 1000, 0,
                                                                             12000)
    assert set(r.per_joint) == set(LIMB_JOINTS)
    for a in coco["annotations"][:20]:
        lsp = np.array(a["lsp_joints"]).reshape(14, 3)
        x, y, w, h = protocol_box(lsp)
        ext = lsp[:, :2].max(0) - lsp[:, :2].min(0)
        assert w == h == pytest.approx(1.25 * ext.max())
