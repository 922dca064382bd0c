"""BlazePose GHUM 3D landmark models (MediaPipe Pose lite / full / heavy) as teachers.

Input (1, 256, 256, 3) float32 RGB in [0, 1] (MediaPipe's ImageToTensorCalculator range for
the pose landmark model). Outputs by name:
- ``Identity`` (1, 195): 39 landmarks x (x, y, z, visibility, presence), x and y in input
  pixels, visibility and presence logits; the first 33 are BlazePose's body landmarks.
- ``Identity_1`` (1, 1): pose presence flag, already a probability.
- ``Identity_2`` (1, 256, 256, 1): person segmentation logits at input resolution.
- ``Identity_3`` (1, 64, 64, 39): per-landmark heatmap logits.
- ``Identity_4`` (1, 117): world landmarks (metres), unused here.
"""
from __future__ import annotations

import numpy as np

from odkd.teachers.runtime import Runner

# BlazePose-33 landmark index of each COCO-17 joint (nose, eyes, ears, shoulders, elbows,
# wrists, hips, knees, ankles; BlazePose's eye centre for COCO's eye).
BLAZEPOSE_TO_COCO = [0, 2, 5, 7, 8, 11, 12, 13, 14, 15, 16, 23, 24, 25, 26, 27, 28]

CONFIDENCES = ("visibility", "visibility*presence", "visibility*flag")
# where the keypoints come from: MediaPipe's refined landmarks, the raw regressed landmarks,
# or the model's own heatmaps decoded by odkd (argmax + quarter offset)
KEYPOINT_SOURCES = ("refined", "landmarks", "heatmaps")


def sigmoid(x):
    # tanh form: no overflow warning for the segmentation's large logits
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(x, dtype=np.float64)))


def refine_from_heatmaps(xy: np.ndarray, heat: np.ndarray, input_size, kernel: int = 7,
                         min_confidence: float = 0.5) -> np.ndarray:
    """MediaPipe's RefineLandmarksFromHeatmapCalculator (the pose graph's step after the model,
    kernel 7, threshold 0.5): each landmark (continuous input coordinates, ``xy`` (J, 2))
    moves to the confidence-weighted mean of the heatmap pixels (``heat`` (J, h, w), sigmoid)
    in the kernel x kernel window around it, when the window's peak reaches
    ``min_confidence``. Heatmap pixel c sits at input coordinate c * input / h (MediaPipe
    normalises by the heatmap size)."""
    j_, h, w = heat.shape
    out = np.array(xy, dtype=np.float64, copy=True)
    off = (kernel - 1) // 2
    for j in range(j_):
        # int() truncates toward zero like the calculator's C++ cast
        col, row = int(xy[j, 0] / input_size[0] * w), int(xy[j, 1] / input_size[1] * h)
        if not (0 <= col < w and 0 <= row < h):
            continue
        r0, r1, c0, c1 = max(0, row - off), min(h, row + off + 1), max(0, col - off), \
            min(w, col + off + 1)
        win = heat[j, r0:r1, c0:c1].astype(np.float64)
        total = win.sum()
        if win.max() < min_confidence or total <= 0:
            continue
        out[j, 0] = (win.sum(0) * np.arange(c0, c1)).sum() / total * input_size[0] / w
        out[j, 1] = (win.sum(1) * np.arange(r0, r1)).sum() / total * input_size[1] / h
    return out


class BlazePoseCodec:
    has_mask = True
    # Own-heatmap pixel c sits at continuous input coordinate 4c (MediaPipe's convention, see
    # refine_from_heatmaps; on LSP the regressed landmarks lie 0.2-0.5 input px from the
    # heatmaps' local soft-argmax under it), i.e. pixel-centre coordinate 4c - 0.5.
    heatmap_stride = 4.0
    heatmap_origin = -0.5

    # Default confidence: visibility x the pose flag. On LSP 1001-2000 it tells correct joints
    # (PCK@0.2) from wrong ones with ROC AUC 0.74 / 0.78 / 0.65 (lite / full / heavy), against
    # 0.63 / 0.65 / 0.58 for visibility alone; presence changes it by < 0.005
    # (results/real_teachers).
    def __init__(self, runner: Runner, confidence: str = "visibility*flag",
                 keypoints: str = "refined"):
        if confidence not in CONFIDENCES:
            raise ValueError(f"confidence must be one of {CONFIDENCES}, got {confidence!r}")
        d = runner.input_details[0]
        shape = d["shape"]
        if len(shape) != 4 or shape[3] != 3:
            raise ValueError(f"BlazePose input must be (1, H, W, 3), got {shape}")
        self.input_size = (int(shape[2]), int(shape[1]))
        self.confidence = confidence
        if keypoints not in KEYPOINT_SOURCES:
            raise ValueError(f"keypoints must be one of {KEYPOINT_SOURCES}, got {keypoints!r}")
        self.keypoints = keypoints
        names = [o["name"] for o in runner.output_details]
        want = ["Identity", "Identity_1", "Identity_2", "Identity_3"]
        missing = [n for n in want if n not in names]
        if missing:
            raise ValueError(f"not a BlazePose landmark model: outputs {names} lack {missing}")
        self.out_index = {n: names.index(n) for n in want}
        self.runner = runner

    def preprocess(self, crop_rgb: np.ndarray) -> list[np.ndarray]:
        return [crop_rgb[None].astype(np.float32) * np.float32(1.0 / 255.0)]

    def _decode_own(self, hm: np.ndarray) -> np.ndarray:
        """(17, h, w) own heatmaps -> (17, 2) input pixel-centre coordinates, by odkd's decoder:
        a crop of centre c and size s over the h x w map maps u to c + (u - w / 2) s / w, which
        is stride * u + origin for c = (w * stride / 2 + origin), s = w * stride."""
        from odkd.codec import decode_heatmaps

        h, w = hm.shape[1:]
        st, o = self.heatmap_stride, self.heatmap_origin
        center = np.array([[w * st / 2 + o, h * st / 2 + o]])
        xy, _ = decode_heatmaps(hm[None], center, np.array([[w * st, h * st]]),
                                method="quarter")
        return xy[0].astype(np.float64)

    def postprocess(self, outs: list[np.ndarray]) -> dict:
        """keypoints (17, 3) x, y in input pixels (pixel centres at integers; from
        ``self.keypoints``, see KEYPOINT_SOURCES) and confidence;
        mask (H, W) person probability on the input pixels; heatmaps (17, 64, 64) the model's
        own heatmaps (sigmoid) in COCO order, ``heatmap_to_input`` the 2x3 affine from their
        pixels to input pixels; presence (17,) and flag ()."""
        o = self.out_index
        lm = np.asarray(outs[o["Identity"]], dtype=np.float64).reshape(-1, 5)
        sel = lm[BLAZEPOSE_TO_COCO]
        hm = np.asarray(outs[o["Identity_3"]], dtype=np.float32)[0]
        hm = sigmoid(hm[:, :, BLAZEPOSE_TO_COCO].transpose(2, 0, 1)).astype(np.float32)
        if self.keypoints == "refined":
            xy = refine_from_heatmaps(sel[:, :2], hm, self.input_size)
        elif self.keypoints == "heatmaps":
            xy = self._decode_own(hm) + 0.5       # continuous, like the landmarks
        else:
            xy = sel[:, :2]
        vis, pres = sigmoid(sel[:, 3]), sigmoid(sel[:, 4])
        flag = float(np.asarray(outs[o["Identity_1"]]).reshape(-1)[0])
        conf = {"visibility": vis, "visibility*presence": vis * pres,
                "visibility*flag": vis * flag}[self.confidence]
        kp = np.empty((17, 3))
        # landmarks are in continuous input coordinates (MediaPipe divides by the input size
        # to normalise them edge to edge); pixel centres sit half a pixel in
        kp[:, :2] = xy - 0.5
        kp[:, 2] = conf
        seg = np.asarray(outs[o["Identity_2"]], dtype=np.float32)[0, :, :, 0]
        sh = self.input_size[1] / seg.shape[0]
        s, c = self.heatmap_stride, self.heatmap_origin
        return {"keypoints": kp, "mask": sigmoid(seg).astype(np.float32),
                "mask_to_input": np.array([[sh, 0, (sh - 1) / 2], [0, sh, (sh - 1) / 2]]),
                "heatmaps": hm, "heatmap_to_input": np.array([[s, 0, c], [0, s, c]]),
                "presence": pres, "flag": flag}
