"""MoveNet (single pose) as a teacher: RGB crop at the model's input size, pixel values 0-255 in
whatever integer or float type the model's input declares (the TFLite export takes uint8, the
TF.js graph int32); output (1, 1, 17, 3) = (y, x, score) per COCO-17 joint, y and x normalised
to the input."""
from __future__ import annotations

import numpy as np

from odkd.teachers.runtime import Runner


class MoveNetCodec:
    """Pre- and post-processing of one MoveNet crop (no runtime of its own, so the parity
    test can run the model directly on the same input)."""

    has_mask = False

    def __init__(self, runner: Runner):
        d = runner.input_details[0]
        shape = d["shape"]
        if len(shape) != 4 or shape[3] != 3:
            raise ValueError(f"MoveNet input must be (1, H, W, 3), got {shape}")
        self.input_size = (int(shape[2]), int(shape[1]))    # (W, H)
        self.dtype = d["dtype"]
        self.runner = runner

    def preprocess(self, crop_rgb: np.ndarray) -> list[np.ndarray]:
        return [crop_rgb[None].astype(self.dtype)]

    def postprocess(self, outs: list[np.ndarray]) -> dict:
        """keypoints (17, 3): x, y in input pixels (pixel centres at integers) and score."""
        out = np.asarray(outs[0], dtype=np.float64).reshape(-1, 17, 3)[0]
        w, h = self.input_size
        kp = np.empty((17, 3))
        # normalised coordinates run edge to edge: 0 is the left edge of pixel 0 (-0.5)
        kp[:, 0] = out[:, 1] * w - 0.5
        kp[:, 1] = out[:, 0] * h - 0.5
        kp[:, 2] = out[:, 2]
        return {"keypoints": kp}
