"""One interface for a teacher on real images.

``teacher(image, centers, scales, rotations, codec)`` takes the source image and the student's
crops (odkd's geometry: ``center`` (x, y) and ``scale`` (w, h) in image pixels, rotation in
degrees) and returns what the student imitates, in the student's heatmap frame:

- ``keypoints`` (N, 17, 3): x, y in heatmap pixels and the teacher's confidence;
- ``heatmaps`` (N, 17, h, w): Gaussians (sigma from the codec) at those positions, scaled by the
  confidence;
- ``mask`` (N, 1, h, w) person probability in [0, 1], for teachers that give one.

The teacher does not look at the student's crop: it re-crops the same region (same centre and
rotation, the scale widened to its own aspect ratio so the student's region lies inside) from
the source image at its own input size, then maps its output back through the two affines.
"""
from __future__ import annotations

import time

import cv2
import numpy as np

from odkd.geometry import affine_points, get_affine_transform

DEFAULT_SIGMA = 2.0


def teacher_scale(scale, aspect: float) -> np.ndarray:
    """The student's crop size (w, h) widened to ``aspect`` (w / h) so it contains it."""
    w, h = float(scale[0]), float(scale[1])
    if w > aspect * h:
        h = w / aspect
    else:
        w = h * aspect
    return np.array([w, h], dtype=np.float32)


def _h(m: np.ndarray) -> np.ndarray:
    """2x3 affine -> 3x3."""
    return np.vstack([np.asarray(m, dtype=np.float64), [0.0, 0.0, 1.0]])


def _heatmap_spec(codec_or_size):
    """(heatmap (w, h), sigma) from a HeatmapCodec or a (w, h) pair."""
    if hasattr(codec_or_size, "heatmap_size"):
        return tuple(int(v) for v in codec_or_size.heatmap_size), float(codec_or_size.sigma)
    w, h = codec_or_size
    return (int(w), int(h)), DEFAULT_SIGMA


def render_heatmaps(kpts: np.ndarray, heatmap_size, sigma: float) -> np.ndarray:
    """(N, K, 3) heatmap-frame keypoints with confidence -> (N, K, h, w) Gaussians scaled by
    the confidence (the codec's encoding: same window and pixel convention)."""
    from odkd.codec import encode_heatmaps

    w, h = heatmap_size
    out = np.zeros((len(kpts), kpts.shape[1], h, w), dtype=np.float32)
    for i, k in enumerate(kpts):
        vis = np.c_[k[:, :2], np.ones(len(k))]
        hm, _ = encode_heatmaps(vis, (w, h), sigma)
        out[i] = hm * k[:, 2, None, None].astype(np.float32)
    return out


class Teacher:
    """A model with its own pre- and post-processing (``self.codec``: ``input_size``,
    ``preprocess(crop) -> inputs``, ``postprocess(outputs) -> dict``) behind the interface.

    ``model_seconds`` collects the time of each model call (batch 1, runtime only).
    """

    def __init__(self, name: str, codec):
        self.name = name
        self.codec = codec
        self.runner = codec.runner
        self.input_size = codec.input_size
        self.has_mask = bool(getattr(codec, "has_mask", False))
        self.model_seconds: list[float] = []

    # ---------------------------------------------------------------- crops in image space
    def crop_affine(self, center, scale, rotation: float) -> tuple[np.ndarray, np.ndarray]:
        """(image -> teacher input affine, the teacher's crop size in image pixels)."""
        tw, th = self.input_size
        ts = teacher_scale(scale, tw / th)
        return get_affine_transform(center, ts, rotation, (tw, th)), ts

    def crop(self, image: np.ndarray, center, scale, rotation: float = 0.0):
        """The teacher's own input crop (H, W, 3) of ``image`` and its affine."""
        mat, _ = self.crop_affine(center, scale, rotation)
        crop = cv2.warpAffine(image, mat, tuple(self.input_size), flags=cv2.INTER_LINEAR)
        return crop, mat

    def infer_crop(self, crop: np.ndarray) -> dict:
        """The model's post-processed output on one input crop, in input pixels."""
        inputs = self.codec.preprocess(crop)
        t0 = time.perf_counter()
        outs = self.runner.run(inputs)
        self.model_seconds.append(time.perf_counter() - t0)
        return self.codec.postprocess(outs)

    def predict(self, image: np.ndarray, centers, scales, rotations=None) -> list[dict]:
        """Per crop: the model's output plus ``input_to_image`` (3x3) and ``keypoints_image``
        (17, 3) in image pixels."""
        centers = np.asarray(centers, dtype=np.float32).reshape(-1, 2)
        scales = np.asarray(scales, dtype=np.float32).reshape(-1, 2)
        n = len(centers)
        rotations = np.zeros(n) if rotations is None else np.asarray(rotations,
                                                                     np.float64).reshape(n)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"teacher input must be an RGB uint8 image (H, W, 3), got "
                             f"{image.dtype} {image.shape}")
        results = []
        for c, s, r in zip(centers, scales, rotations):
            crop, mat = self.crop(image, c, s, float(r))
            out = self.infer_crop(crop)
            inv = np.linalg.inv(_h(mat))
            out["input_to_image"] = inv
            kp = out["keypoints"].copy()
            kp[:, :2] = affine_points(kp[:, :2], inv[:2])
            out["keypoints_image"] = kp
            results.append(out)
        return results

    # ---------------------------------------------------------------- the student's frame
    @staticmethod
    def to_student(pred: dict, center, scale, rotation: float, heatmap_size,
                   own_heatmaps: bool = False) -> dict:
        """One :meth:`predict` result mapped into the student crop's heatmap frame
        (``heatmap_size`` (w, h)): keypoints (17, 3), mask (h, w) and own heatmaps
        (17, h, w) where the model gives them."""
        w, h = heatmap_size
        to_hm = _h(get_affine_transform(center, scale, rotation, (w, h)))
        input_to_hm = to_hm @ pred["input_to_image"]
        kp = np.array(pred["keypoints"], dtype=np.float32, copy=True)
        kp[:, :2] = affine_points(kp[:, :2], input_to_hm[:2])
        out = {"keypoints": kp}
        if "mask" in pred:
            m = (input_to_hm @ _h(pred["mask_to_input"]))[:2]
            out["mask"] = cv2.warpAffine(pred["mask"], m, (w, h), flags=cv2.INTER_LINEAR,
                                         borderValue=0.0)
        if own_heatmaps and "heatmaps" in pred:
            m = (input_to_hm @ _h(pred["heatmap_to_input"]))[:2]
            out["own_heatmaps"] = np.stack([
                cv2.warpAffine(c, m, (w, h), flags=cv2.INTER_LINEAR, borderValue=0.0)
                for c in pred["heatmaps"]])
        return out

    def __call__(self, image: np.ndarray, centers, scales, rotations, codec_or_heatmap_size,
                 own_heatmaps: bool = False) -> dict:
        """See the module docstring. ``own_heatmaps``: also return the model's own heatmaps
        (``own_heatmaps``, warped into the student's frame) where it has them."""
        (w, h), sigma = _heatmap_spec(codec_or_heatmap_size)
        centers = np.asarray(centers, dtype=np.float32).reshape(-1, 2)
        scales = np.asarray(scales, dtype=np.float32).reshape(-1, 2)
        rotations = np.zeros(len(centers)) if rotations is None else \
            np.asarray(rotations, np.float64).reshape(len(centers))
        preds = self.predict(image, centers, scales, rotations)
        kps = np.zeros((len(preds), 17, 3), dtype=np.float32)
        masks, owns = [], []
        for i, p in enumerate(preds):
            o = self.to_student(p, centers[i], scales[i], float(rotations[i]), (w, h),
                                own_heatmaps)
            kps[i] = o["keypoints"]
            if "mask" in o:
                masks.append(o["mask"])
            if "own_heatmaps" in o:
                owns.append(o["own_heatmaps"])
        out = {"keypoints": kps, "heatmaps": render_heatmaps(kps, (w, h), sigma)}
        if masks:
            out["mask"] = np.clip(np.stack(masks)[:, None], 0.0, 1.0).astype(np.float32)
        if owns:
            out["own_heatmaps"] = np.stack(owns).astype(np.float32)
        return out


class CompositeTeacher:
    """Keypoints (and their heatmaps) from one teacher, the mask from another."""

    def __init__(self, keypoints, mask):
        if not getattr(mask, "has_mask", False):
            raise ValueError(f"{getattr(mask, 'name', mask)} gives no mask")
        self.keypoints_teacher, self.mask_teacher = keypoints, mask
        self.name = f"{keypoints.name}+{mask.name}"
        self.has_mask = True

    def __call__(self, image, centers, scales, rotations, codec_or_heatmap_size,
                 own_heatmaps: bool = False) -> dict:
        out = self.keypoints_teacher(image, centers, scales, rotations, codec_or_heatmap_size,
                                     own_heatmaps=own_heatmaps)
        if self.mask_teacher is not self.keypoints_teacher:
            out["mask"] = self.mask_teacher(image, centers, scales, rotations,
                                            codec_or_heatmap_size)["mask"]
        return out
