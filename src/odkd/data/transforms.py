"""Train-time augmentation for top-down crops, following HRNet / mmpose.

Augmentation acts on the crop geometry (``center``, ``scale``, ``rotation``) plus the keypoints;
the image itself is only touched by the horizontal flip and the colour jitter. All randomness
comes from a ``numpy.random.Generator`` passed in, so a sample is reproducible from its seed.

Order (HRNet's): half-body box -> random scale/rotation -> horizontal flip. Colour jitter is
applied to the crop afterwards by :func:`color_jitter`.

Choices, where HRNet and mmpose differ:
- scale multiplier ``clip(N(0,1) * s + 1, 1 - s, 1 + s)`` (both agree);
- rotation ``clip(N(0,1), -1, 1) * r`` with probability ``rot_prob``: a normal clipped to
  ``[-r, r]`` as the config documents (mmpose 1.x truncates at 1 sigma too; HRNet clips at 2r);
- half-body needs ``>= half_body_min_joints`` visible joints (HRNet uses ``>``), picks the upper
  or lower body with equal probability, and pads the joints' box by 1.5 like HRNet.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from odkd.geometry import flip_keypoints

HALF_BODY_PADDING = 1.5


@dataclass
class AugmentParams:
    scale_factor: float = 0.35
    rotation_factor: float = 45.0
    rot_prob: float = 0.6
    flip: bool = True
    half_body_prob: float = 0.3
    half_body_min_joints: int = 8
    color_jitter: float = 0.0

    @classmethod
    def from_config(cls, cfg) -> "AugmentParams":
        """From an :class:`odkd.config.DataConfig`."""
        return cls(scale_factor=cfg.scale_factor, rotation_factor=cfg.rotation_factor,
                   rot_prob=cfg.rot_prob, flip=cfg.flip, half_body_prob=cfg.half_body_prob,
                   half_body_min_joints=cfg.half_body_min_joints, color_jitter=cfg.color_jitter)


def sample_scale_rotation(rng: np.random.Generator, scale_factor: float,
                          rotation_factor: float, rot_prob: float) -> tuple[float, float]:
    """Random (scale multiplier, rotation in degrees); see the module docstring."""
    s = float(np.clip(rng.standard_normal() * scale_factor + 1.0,
                      1.0 - scale_factor, 1.0 + scale_factor))
    r = float(np.clip(rng.standard_normal(), -1.0, 1.0) * rotation_factor)
    if rng.random() >= rot_prob:
        r = 0.0
    return s, r


def flip_sample(image: np.ndarray, kpts: np.ndarray, center: np.ndarray, flip_pairs
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mirror the image, the keypoints (swapping left/right pairs) and the crop centre.

    Pixel centres are integers, so x -> width - 1 - x for all three.
    """
    width = image.shape[1]
    flipped = np.ascontiguousarray(image[:, ::-1])
    kpts = flip_keypoints(kpts, width, flip_pairs)
    center = np.array([width - 1 - center[0], center[1]], dtype=np.float32)
    return flipped, kpts, center


def half_body_box(kpts: np.ndarray, upper_body_ids, aspect_ratio: float,
                  upper_first: bool, padding: float = HALF_BODY_PADDING
                  ) -> tuple[np.ndarray, np.ndarray] | None:
    """(center, scale) of a box around the visible upper- or lower-body joints, or None when
    the chosen half has fewer than 2 visible joints (no box to speak of). ``upper_first``
    picks which half is tried first."""
    visible = np.flatnonzero(kpts[:, 2] > 0)
    upper_set = set(int(i) for i in upper_body_ids)
    upper = [i for i in visible if i in upper_set]
    lower = [i for i in visible if i not in upper_set]
    # Fall back to the other half when the chosen one is (nearly) empty, like HRNet.
    if upper_first:
        chosen = upper if len(upper) > 2 else lower
    else:
        chosen = lower if len(lower) > 2 else upper
    if len(chosen) < 2:
        return None
    pts = kpts[chosen, :2].astype(np.float32)
    center = pts.mean(axis=0).astype(np.float32)
    w, h = pts.max(axis=0) - pts.min(axis=0)
    if w > aspect_ratio * h:
        h = w / aspect_ratio
    else:
        w = h * aspect_ratio
    return center, np.array([w * padding, h * padding], dtype=np.float32)


def color_jitter(image: np.ndarray, rng: np.random.Generator, amplitude: float) -> np.ndarray:
    """Random brightness and contrast factors in ``[1 - a, 1 + a]`` on a uint8 image."""
    if amplitude <= 0:
        return image
    brightness = 1.0 + rng.uniform(-amplitude, amplitude)
    contrast = 1.0 + rng.uniform(-amplitude, amplitude)
    img = image.astype(np.float32) * brightness
    mean = float(img.mean())
    img = (img - mean) * contrast + mean
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)


@dataclass
class Augmented:
    image: np.ndarray       # full image, flipped when ``flipped``
    keypoints: np.ndarray   # (K, 3) in the (possibly flipped) image
    center: np.ndarray      # (2,) crop centre in the (possibly flipped) image
    scale: np.ndarray       # (2,) crop size in image pixels
    rotation: float         # degrees
    flipped: bool


class TrainAugment:
    """Samples and applies the geometric augmentation of one training sample."""

    def __init__(self, params: AugmentParams, flip_pairs, upper_body_ids, aspect_ratio: float):
        self.p = params
        self.flip_pairs = [list(p) for p in flip_pairs]
        self.upper_body_ids = list(upper_body_ids)
        self.aspect_ratio = aspect_ratio

    def __call__(self, image: np.ndarray, kpts: np.ndarray, center: np.ndarray,
                 scale: np.ndarray, rng: np.random.Generator) -> Augmented:
        p = self.p
        center = np.asarray(center, np.float32).copy()
        scale = np.asarray(scale, np.float32).copy()
        kpts = np.asarray(kpts, np.float32).copy()
        # Always draw the same number of values so that toggling one option does not reshuffle
        # the randomness of the others.
        u_half, u_side, u_flip = rng.random(), rng.random(), rng.random()
        if (p.half_body_prob > 0 and u_half < p.half_body_prob
                and int((kpts[:, 2] > 0).sum()) >= p.half_body_min_joints):
            hb = half_body_box(kpts, self.upper_body_ids, self.aspect_ratio, u_side < 0.5)
            if hb is not None:
                center, scale = hb
        s, rot = sample_scale_rotation(rng, p.scale_factor, p.rotation_factor, p.rot_prob)
        scale = scale * np.float32(s)
        flipped = bool(p.flip and u_flip < 0.5)
        if flipped:
            image, kpts, center = flip_sample(image, kpts, center, self.flip_pairs)
        return Augmented(image=image, keypoints=kpts, center=center, scale=scale,
                         rotation=rot, flipped=flipped)
