"""odkd.teachers.detector: SSD box decoding, person scores and NMS on made outputs, box
matching and recall / precision on made boxes, and the converted ssd-mobilenet-v2 on a real
photo (skipped when it has not been fetched)."""
import os

import cv2
import numpy as np
import pytest

from odkd.config import ConfigError
from odkd.teachers import store
from odkd.teachers.detector import (BOX_SCALES, MultiPoseDetector, SSDPersonDetector, box_iou,
                                    decode_boxes, evaluate_detections, get_detector,
                                    match_boxes)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PF_IMAGE = os.path.join(ROOT, "..", "shared", "data", "real", "pennfudan", "PNGImages",
                        "FudanPed00001.png")


def test_decode_boxes_inverts_the_box_coder():
    anchors = np.array([[0.2, 0.3, 0.6, 0.5], [0.0, 0.0, 1.0, 1.0]])   # ymin xmin ymax xmax
    assert np.allclose(decode_boxes(np.zeros((2, 4)), anchors), anchors)
    # centre moves by 0.1 anchor heights / 0.2 anchor widths; height x2, width x0.5
    enc = np.array([[0.1 * BOX_SCALES[0], 0.2 * BOX_SCALES[1], np.log(2.0) * BOX_SCALES[2],
                     np.log(0.5) * BOX_SCALES[3]]])
    (y0, x0, y1, x1), = decode_boxes(enc, anchors[:1])
    assert np.isclose((y0 + y1) / 2, 0.4 + 0.1 * 0.4) and np.isclose(y1 - y0, 0.8)
    assert np.isclose((x0 + x1) / 2, 0.4 + 0.2 * 0.2) and np.isclose(x1 - x0, 0.1)


class FakeSSD:
    """Three anchors: two nearly the same box (NMS keeps the better), one elsewhere."""
    output_details = [{"name": "box_encodings:0"}, {"name": "class_logits:0"},
                      {"name": "anchors:0"}]

    def __init__(self, person_logits):
        self.logits = np.full((1, 3, 91), -9.0, np.float32)
        self.logits[0, :, 1] = person_logits
        self.logits[0, 2, 5] = 9.0                    # a confident non-person at anchor 2
        self.inputs = []

    def run(self, inputs):
        self.inputs.append(inputs[0])
        anchors = np.array([[0.1, 0.1, 0.5, 0.3], [0.11, 0.1, 0.5, 0.31], [0.5, 0.6, 0.9, 0.9]],
                           np.float32)
        return [np.zeros((1, 3, 1, 4), np.float32), self.logits, anchors]


def test_detector_scores_people_scales_boxes_and_suppresses_duplicates():
    det = SSDPersonDetector(FakeSSD([2.0, 1.0, -1.0]), score_threshold=0.3)
    image = np.zeros((200, 400, 3), np.uint8)
    boxes, scores = det(image)
    assert det.runner.inputs[0].shape == (1, 300, 300, 3)
    # anchor 1 overlaps anchor 0 (IoU ~0.93): suppressed; anchor 2: sigmoid(-1) < 0.3
    assert np.allclose(scores, [1 / (1 + np.exp(-2.0))])
    assert np.allclose(boxes, [[0.1 * 400, 0.1 * 200, 0.2 * 400, 0.4 * 200]], atol=1e-3)
    boxes, scores = det(image, score_threshold=0.25)          # sigmoid(-1) = 0.269
    assert len(boxes) == 2 and np.allclose(boxes[1], [240, 100, 120, 80], atol=1e-3)
    assert scores[0] > scores[1]
    assert len(det(image, score_threshold=0.95)[0]) == 0
    with pytest.raises(ValueError, match="RGB uint8"):
        det(np.zeros((10, 10), np.uint8))
    with pytest.raises(ValueError, match="not odkd's SSD detector"):
        SSDPersonDetector(type("R", (), {"output_details": [{"name": "Identity"}]})())


class FakeMultiPose:
    input_details = [{"name": "input:0", "shape": (1, 256, 256, 3), "dtype": np.dtype(np.int32)}]

    def __init__(self):
        self.inputs = []

    def run(self, inputs):
        self.inputs.append(inputs[0])
        out = np.zeros((1, 6, 56), np.float32)
        out[0, 0, 51:] = [0.25, 0.1, 0.75, 0.5, 0.4]          # ymin xmin ymax xmax score
        out[0, 1, 51:] = [0.0, 0.5, 0.5, 0.9, 0.8]
        out[0, 2, 51:] = [0.1, 0.1, 0.2, 0.2, 0.1]
        return [out]


def test_multipose_boxes_undo_the_letterbox():
    det = MultiPoseDetector(FakeMultiPose(), score_threshold=0.3)
    image = np.full((100, 200, 3), 200, np.uint8)          # wide: scale 256 / 200, pad below
    boxes, scores = det(image)
    x = det.runner.inputs[0]
    assert x.shape == (1, 256, 256, 3) and x.dtype == np.int32
    assert (x[0, :128] == 200).all() and (x[0, 128:] == 0).all()
    assert np.allclose(scores, [0.8, 0.4])                  # best first, 0.1 dropped
    s = 256 / 200
    assert np.allclose(boxes[0], [0.5 * 256 / s, 0.0, 0.4 * 256 / s, 0.5 * 256 / s],
                       atol=1e-3)
    # ymax 0.75 * 256 / s = 150 lies in the padding: clipped to the image's height, 100
    assert np.allclose(boxes[1], [0.1 * 256 / s, 0.25 * 256 / s, 0.4 * 256 / s, 50.0],
                       atol=1e-3)


def test_box_iou_and_greedy_matching():
    gt = np.array([[0, 0, 10, 10], [20, 0, 10, 10]], np.float64)
    assert np.allclose(box_iou(gt, gt), np.eye(2))
    assert np.isclose(box_iou([[5, 0, 10, 10]], gt[:1])[0, 0], 50 / 150)
    pred = np.array([[0, 0, 10, 10], [1, 0, 10, 10], [20, 0, 10, 9], [40, 40, 5, 5]])
    # the duplicate of box 0 (lower score) and the stray box are false positives
    tp = match_boxes(pred, np.array([0.9, 0.8, 0.7, 0.95]), gt)
    assert tp.tolist() == [True, False, True, False]
    # the higher score takes the ground truth first
    tp = match_boxes(pred[:2], np.array([0.5, 0.6]), gt)
    assert tp.tolist() == [False, True]
    assert match_boxes(pred, np.ones(4), np.zeros((0, 4))).tolist() == [False] * 4
    assert not match_boxes([[5, 0, 10, 10]], [1.0], gt[:1]).any()         # IoU 0.33 < 0.5


def test_recall_and_precision_per_threshold():
    gt = np.array([[0, 0, 10, 10], [20, 0, 10, 10]], np.float64)
    per_image = [(np.array([[0, 0, 10, 10], [20, 0, 10, 10], [50, 50, 5, 5]]),
                  np.array([0.9, 0.4, 0.35]), gt),
                 (np.zeros((0, 4)), np.zeros(0), gt[:1])]
    r3, r5 = evaluate_detections(per_image, thresholds=(0.3, 0.5))
    assert (r3["true_positives"], r3["detections"], r3["ground_truth"]) == (2, 3, 3)
    assert np.isclose(r3["recall"], 2 / 3) and np.isclose(r3["precision"], 2 / 3)
    assert (r5["true_positives"], r5["detections"]) == (1, 1)
    assert np.isclose(r5["recall"], 1 / 3) and r5["precision"] == 1.0


def test_unknown_detector_is_one_line():
    with pytest.raises(ConfigError, match="unknown person detector 'yolo'"):
        get_detector("yolo")


def test_ssd_finds_the_pedestrians():
    pytest.importorskip("onnxruntime")
    if not store.is_present("ssd-mobilenet-v2"):
        pytest.skip(f"ssd-mobilenet-v2 not in {store.cache_dir()}: run `odkd teachers fetch "
                    "ssd-mobilenet-v2` (make teachers)")
    if not os.path.isfile(PF_IMAGE):
        pytest.skip(f"{PF_IMAGE} absent (../shared/data/real)")
    image = np.ascontiguousarray(cv2.imread(PF_IMAGE)[:, :, ::-1])
    boxes, scores = get_detector("ssd-mobilenet-v2")(image, 0.5)
    # FudanPed00001's two annotated pedestrians (PASCAL boxes, x y w h)
    gt = np.array([[160, 182, 142, 249], [420, 171, 115, 315]], np.float64)
    print(np.round(boxes), scores)
    assert match_boxes(boxes, scores, gt).sum() == 2
    assert ((boxes[:, :2] >= 0) & (boxes[:, :2] + boxes[:, 2:] <= [image.shape[1],
                                                                    image.shape[0]])).all()
