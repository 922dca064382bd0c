"""Scenes: backgrounds (procedural or photos), person-like clutter, people, occluders.

``render_scene`` is a pure function of its random generator (plus the optional background
photos), so every image can be regenerated from ``(seed, split, index)`` alone.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from functools import lru_cache

import cv2
import numpy as np

from odkd.errors import DataError
from odkd.synth import body as B
from odkd.synth import render as R

SPLITS = ("train", "val", "occluded")
# How varied the people are. Pose and viewpoint variety, not clutter, is what keeps a model on
# the early "mean pose" plateau (measured: removing clutter and occluders changed PCK by 3
# points, upright front-facing people took AP from 0.003 to 0.18 at the same budget), so the
# levels change only those. `hard`: every pose kind (lying, sitting, crouching, ...) at any yaw,
# left/right learnable only from face and clothing cues; `easy`: upright people (standing,
# walking, arms raised) within 45 degrees of facing the camera; `medium`: every pose kind, but
# within 60 degrees of facing the camera (no back views, so left/right is never ambiguous).
DIFFICULTIES = ("easy", "medium", "hard")
# The default is the level that separates model sizes at demo scale (docs/results.md "Model
# size": HRNet-W32 ahead of Lite-HRNet-18 on every seed; `easy` barely separates them,
# and on `hard` nothing leaves AP ~0 within a CPU budget). commands/synth.py and
# experiment.SynthSpec repeat the name (no OpenCV import to build the CLI); a test checks it.
DEFAULT_DIFFICULTY = "medium"
_MAX_YAW = {"easy": 45.0, "medium": 60.0}
_EASY_KINDS = ("standing", "walking", "arms_raised")
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
_TILE = 512


@dataclass
class PersonInstance:
    slot: int                     # draw order (0 = farthest); label ids 1 + slot*16 + part
    keypoints: np.ndarray         # (17, 3) x, y, v in COCO convention
    kind: str


@dataclass
class Scene:
    image: np.ndarray             # (H, W, 3) uint8 BGR
    label: np.ndarray             # (H, W) uint8 part labels, 0 background, 255 occluder
    people: list[PersonInstance] = field(default_factory=list)

    def person_map(self) -> np.ndarray:
        """(H, W) uint8: 0 background / clutter, slot + 1 for people, 255 for occluders."""
        return cv2.LUT(self.label, _PERSON_LUT)


_PERSON_LUT = np.zeros(256, np.uint8)
for _v in range(1, 1 + 6 * R.PARTS_PER_PERSON):
    _PERSON_LUT[_v] = (_v - 1) // R.PARTS_PER_PERSON + 1
_PERSON_LUT[R.OCCLUDER_LABEL] = 255
_PART_LUT = np.zeros(256, np.int16) - 1
for _v in range(1, 1 + 6 * R.PARTS_PER_PERSON):
    _PART_LUT[_v] = (_v - 1) % R.PARTS_PER_PERSON


@lru_cache(maxsize=1)
def texture_bank() -> tuple[np.ndarray, ...]:
    """Grey 3-channel texture tiles, built once per process from a fixed seed (deterministic)."""
    rng = np.random.default_rng(12345)
    yy, xx = np.mgrid[0:_TILE, 0:_TILE].astype(np.float32)
    tiles = []

    def norm(a: np.ndarray) -> np.ndarray:
        a = (a - a.min()) / max(float(np.ptp(a)), 1e-6)
        return cv2.cvtColor((a * 255).astype(np.uint8), cv2.COLOR_GRAY2BGR)

    for cells in (6, 16, 40):        # smooth blobs at three scales
        a = cv2.resize(rng.random((cells, cells)).astype(np.float32), (_TILE, _TILE),
                       interpolation=cv2.INTER_CUBIC)
        tiles.append(norm(a + 0.15 * rng.random((_TILE, _TILE)).astype(np.float32)))
    for period, ang in ((14, 0.3), (30, 1.2), (9, 2.4)):   # stripes
        tiles.append(norm(np.sin((xx * math.cos(ang) + yy * math.sin(ang)) * 2 * math.pi
                                 / period)))
    brick = np.full((_TILE, _TILE), 0.8, np.float32)     # bricks / tiles
    for y in range(0, _TILE, 24):
        brick[y:y + 3] = 0.2
        off = 24 if (y // 24) % 2 else 0
        for x in range(off, _TILE, 48):
            brick[y:y + 24, x:x + 3] = 0.2
    tiles.append(norm(brick + 0.2 * rng.random((_TILE, _TILE)).astype(np.float32)))
    tiles.append(norm(((xx // 32 + yy // 32) % 2).astype(np.float32)))       # checker
    wobble = cv2.resize(rng.random((8, 8)).astype(np.float32), (_TILE, _TILE))
    tiles.append(norm(np.sin(yy / 5.0 + 6 * wobble)))                          # wood grain
    tiles.append(norm(rng.random((_TILE, _TILE)).astype(np.float32)))          # grain
    return tuple(tiles)


_GRAIN_STD = 32.0


@lru_cache(maxsize=1)
def grain_bank() -> np.ndarray:
    """Sensor-noise tile (uint8 around 128), added to every image at a random offset."""
    rng = np.random.default_rng(54321)
    return np.clip(128 + _GRAIN_STD * rng.normal(0, 1, (_TILE, _TILE, 3)), 0, 255
                   ).astype(np.uint8)


def list_backgrounds(folder: str) -> list[str]:
    """Sorted image paths in ``folder`` (sorted so the choice per image is reproducible)."""
    if not os.path.isdir(folder):
        raise DataError(f"--backgrounds {folder}: not a directory")
    files = sorted(os.path.join(folder, f) for f in os.listdir(folder)
                   if f.lower().endswith(IMAGE_EXTS))
    if not files:
        raise DataError(f"--backgrounds {folder}: no images ({', '.join(IMAGE_EXTS)})")
    return files


@lru_cache(maxsize=64)
def _load_photo(path: str, max_side: int) -> np.ndarray:
    img = cv2.imread(path, cv2.IMREAD_COLOR)
    if img is None:
        raise DataError(f"--backgrounds: cannot read image {path}")
    s = max_side / max(img.shape[:2])
    if s < 1:
        img = cv2.resize(img, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
    return img


def _color(rng: np.random.Generator, lo: float = 0.1, hi: float = 0.95) -> np.ndarray:
    """A scene colour: mostly muted (indoor/outdoor scenes are rarely fully saturated)."""
    return R._hsv(rng.random(), rng.uniform(0.0, 0.85) ** 1.5, rng.uniform(lo, hi))


def _tex(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    bank = texture_bank()
    tile = bank[rng.integers(len(bank))]
    if w > _TILE or h > _TILE:
        tile = cv2.resize(tile, (max(w, _TILE), max(h, _TILE)))
    x0 = int(rng.integers(tile.shape[1] - w + 1))
    y0 = int(rng.integers(tile.shape[0] - h + 1))
    c1, c2 = _color(rng), _color(rng)
    ramp = np.linspace(0, 1, 256)[:, None]
    lut = (c1 + (c2 - c1) * ramp * rng.uniform(0.2, 1.0)).clip(0, 255).astype(np.uint8)
    return cv2.LUT(tile[y0:y0 + h, x0:x0 + w], lut[None])


def _gradient(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    corners = np.clip(_color(rng)[None, None] + rng.normal(0, 40, (2, 2, 3)), 0, 255)
    return cv2.resize(corners.astype(np.uint8), (w, h), interpolation=cv2.INTER_LINEAR)


def background(rng: np.random.Generator, w: int, h: int,
               photos: list[str] | None) -> np.ndarray:
    if photos and rng.random() < 0.6:
        img = _load_photo(photos[int(rng.integers(len(photos)))], 2 * max(w, h))
        s = max(w / img.shape[1], h / img.shape[0]) * rng.uniform(1.0, 1.6)
        img = cv2.resize(img, (max(w, math.ceil(img.shape[1] * s)),
                               max(h, math.ceil(img.shape[0] * s))))
        x0 = int(rng.integers(img.shape[1] - w + 1))
        y0 = int(rng.integers(img.shape[0] - h + 1))
        img = np.ascontiguousarray(img[y0:y0 + h, x0:x0 + w])
        if rng.random() < 0.5:
            img = np.ascontiguousarray(img[:, ::-1])
        return img
    img = _gradient(rng, w, h)
    if rng.random() < 0.65:
        a = rng.uniform(0.2, 0.7)
        img = cv2.addWeighted(img, a, _tex(rng, w, h), 1 - a, 0.0)
    if rng.random() < 0.5:       # a floor below a horizon line
        y = int(rng.uniform(0.35, 0.8) * h)
        floor = _tex(rng, w, h - y) if rng.random() < 0.6 else _gradient(rng, w, h - y)
        img[y:] = floor
    return img


def draw_clutter(img: np.ndarray, rng: np.random.Generator, n: int, scale: float) -> None:
    """Background shapes, including limb- and head-like strokes that look like body parts."""
    h, w = img.shape[:2]
    for _ in range(n):
        kind = rng.random()
        col = R._bgr(_color(rng)) if rng.random() < 0.6 else \
            R._bgr(R._SKIN[rng.integers(len(R._SKIN))][::-1], rng.uniform(0.7, 1.1))
        x, y = int(rng.integers(w)), int(rng.integers(h))
        s = scale * rng.uniform(0.05, 0.35)
        if kind < 0.2:
            cv2.rectangle(img, (x, y), (int(x + s * rng.uniform(0.3, 2)),
                                        int(y + s * rng.uniform(0.3, 2))), col, -1)
        elif kind < 0.35:
            cv2.ellipse(img, (x, y), (int(s * 0.5) + 1, int(s * rng.uniform(0.1, 0.5)) + 1),
                        float(rng.uniform(0, 180)), 0, 360, col, -1, cv2.LINE_AA)
        elif kind < 0.45:
            pts = (np.array([x, y]) + rng.normal(0, s, (int(rng.integers(3, 7)), 2)))
            cv2.fillPoly(img, [pts.astype(np.int32)], col, cv2.LINE_AA)
        elif kind < 0.55:
            pts = (np.array([x, y]) + np.cumsum(rng.normal(0, s * 0.5, (4, 2)), 0))
            cv2.polylines(img, [pts.astype(np.int32)], False, col,
                          int(rng.integers(1, 4)), cv2.LINE_AA)
        else:   # limb-like: one or two tapered capsules, sometimes with a "head" disk
            segs = int(rng.integers(1, 3))
            p = np.array([x, y], float)
            r = s * rng.uniform(0.08, 0.18)
            ang = rng.uniform(0, 2 * math.pi)
            for _ in range(segs):
                q = p + s * rng.uniform(0.6, 1.2) * np.array([math.cos(ang), math.sin(ang)])
                poly = R.capsules(p[None], q[None], np.array([r]), np.array([r * 0.75]))[0]
                cv2.fillConvexPoly(img, R._fix(poly), col, cv2.LINE_AA, R.SHIFT)
                p, r, ang = q, r * 0.75, ang + rng.uniform(-1.8, 1.8)
            if rng.random() < 0.25:
                cv2.circle(img, (x, y), int(r * 2.2) + 1, col, -1, cv2.LINE_AA)


def draw_occluder(img: np.ndarray, label: np.ndarray, rng: np.random.Generator,
                  box: tuple[float, float, float, float]) -> None:
    """An object over (part of) ``box`` = (x0, y0, x1, y1); label 255."""
    h, w = img.shape[:2]
    x0, y0, x1, y1 = box
    bw, bh = max(x1 - x0, 4.0), max(y1 - y0, 4.0)
    cx, cy = rng.uniform(x0, x1), rng.uniform(y0, y1)
    col = R._bgr(_color(rng, 0.1, 0.9))
    kind = rng.random()
    if kind < 0.3:     # pole / post
        hw = bw * rng.uniform(0.06, 0.18)
        pts = np.array([[cx - hw, -5], [cx + hw, -5], [cx + hw, h + 5], [cx - hw, h + 5]])
    elif kind < 0.6:   # table / wall / box in the lower part of the person
        top = cy + rng.uniform(0, 0.3) * bh
        pts = np.array([[cx - bw * rng.uniform(0.4, 1.5), top], [cx + bw * rng.uniform(0.4, 1.5),
                        top], [cx + bw, h + 5], [cx - bw, h + 5]])
    elif kind < 0.8:   # box
        a, b = bw * rng.uniform(0.25, 0.6), bh * rng.uniform(0.15, 0.35)
        pts = np.array([[cx - a, cy - b], [cx + a, cy - b], [cx + a, cy + b], [cx - a, cy + b]])
    else:
        ax = (int(bw * rng.uniform(0.2, 0.5)) + 1, int(bh * rng.uniform(0.1, 0.3)) + 1)
        ang = float(rng.uniform(0, 180))
        cv2.ellipse(img, (int(cx), int(cy)), ax, ang, 0, 360, col, -1, cv2.LINE_AA)
        cv2.ellipse(label, (int(cx), int(cy)), ax, ang, 0, 360, R.OCCLUDER_LABEL, -1)
        return
    p = R._fix(pts)
    cv2.fillConvexPoly(img, p, col, cv2.LINE_AA, R.SHIFT)
    cv2.fillConvexPoly(label, p, R.OCCLUDER_LABEL, cv2.LINE_8, R.SHIFT)


@dataclass
class _Placed:
    points: np.ndarray
    normals: np.ndarray
    props: B.Proportions
    pose: B.Pose
    uv: np.ndarray
    z: np.ndarray
    box: tuple[float, float, float, float]


def _place(rng: np.random.Generator, f: float, cx: float, cy: float, h_px: float,
           center: tuple[float, float], difficulty: str = DEFAULT_DIFFICULTY) -> _Placed:
    """Pose a new person so that its keypoint box is centred at ``center`` (pixels)."""
    props = B.sample_proportions(rng)
    easy = difficulty == "easy"
    pose = B.sample_pose(rng, _EASY_KINDS[int(rng.integers(len(_EASY_KINDS)))] if easy else None)
    lying = bool(pose.lie)
    pitch = rng.uniform(30, 65) if lying else rng.uniform(-8, 22)
    max_yaw = _MAX_YAW.get(difficulty)  # None: any yaw (hard)
    yaw = rng.uniform(-max_yaw, max_yaw) if max_yaw else rng.uniform(0, 360)
    pts, nrm = B.pose_body(props, pose, yaw=yaw, view_pitch=pitch, roll=rng.normal(0, 4))
    # lying people span their height horizontally; scale them like standing ones
    depth = f * props.height / h_px
    pts[:, 2] += depth
    uv, z = B.project(pts, f, cx, cy)
    kp = uv[:17]
    uc, vc = 0.5 * (kp.min(0) + kp.max(0))
    pts[:, 0] += (center[0] - uc) * depth / f
    pts[:, 1] += (center[1] - vc) * depth / f
    uv, z = B.project(pts, f, cx, cy)
    lo, hi = uv[:17].min(0), uv[:17].max(0)
    return _Placed(pts, nrm, props, pose, uv, z, (lo[0], lo[1], hi[0], hi[1]))


def _layout(rng: np.random.Generator, split: str, w: int, h: int, f: float,
            difficulty: str = DEFAULT_DIFFICULTY) -> list[_Placed]:
    cx, cy = (w - 1) / 2, (h - 1) / 2
    s = min(w, h) / 256.0
    people: list[_Placed] = []
    if split == "occluded":
        # OCHuman analogue: every extra person is placed over an earlier one at a similar size
        n = int(rng.choice([2, 3, 4, 5], p=[0.4, 0.3, 0.2, 0.1]))
        for i in range(n):
            if i == 0 or rng.random() > 0.9:
                hp = float(np.exp(rng.uniform(math.log(80), math.log(220)))) * s
                ctr = (rng.uniform(0.2, 0.8) * w, rng.uniform(0.25, 0.75) * h)
            else:
                a = people[int(rng.integers(len(people)))]
                aw, ah = a.box[2] - a.box[0], a.box[3] - a.box[1]
                hp = float(np.clip(a.props.height * f / a.z[B.PELVIS]
                                   * rng.uniform(0.8, 1.2), 40 * s, 230 * s))
                ctr = (0.5 * (a.box[0] + a.box[2]) + rng.uniform(-0.45, 0.45) * max(aw, 0.3 * ah),
                       0.5 * (a.box[1] + a.box[3]) + rng.uniform(-0.2, 0.2) * ah)
            people.append(_place(rng, f, cx, cy, hp, ctr, difficulty))
    else:
        n = int(rng.choice([1, 2, 3, 4, 5, 6], p=[0.28, 0.24, 0.18, 0.13, 0.09, 0.08]))
        hmax = 230 if n <= 2 else (190 if n <= 4 else 150)
        for _ in range(n):
            # mostly COCO "medium"/"large" people; the smallest ones end up unlabelled
            hp = float(np.exp(rng.uniform(math.log(60), math.log(hmax)))) * s
            ctr = (rng.uniform(0.08, 0.92) * w, rng.uniform(0.15, 0.85) * h)
            people.append(_place(rng, f, cx, cy, hp, ctr, difficulty))
    return people


def keypoint_visibility(label: np.ndarray, uv: np.ndarray, fc: np.ndarray, slot: int
                        ) -> np.ndarray:
    """(17, 3) COCO keypoints from the final label map (what is actually drawn on top)."""
    h, w = label.shape
    kps = np.zeros((17, 3))
    base = 1 + slot * R.PARTS_PER_PERSON
    for k in range(17):
        x, y = uv[k]
        if not (0.0 <= x <= w - 1 and 0.0 <= y <= h - 1):
            continue                                     # outside: not labelled (v=0)
        lab = int(label[int(round(y)), int(round(x))])
        own = base <= lab < base + R.PARTS_PER_PERSON
        vis = own and (lab - base) in R.KEYPOINT_PARTS[k] and fc[k] > R.FACING_MIN[k]
        kps[k] = (x, y, 2 if vis else 1)
    return kps


def render_scene(rng: np.random.Generator, split: str, size: tuple[int, int] = (256, 256),
                 photos: list[str] | None = None, difficulty: str = DEFAULT_DIFFICULTY) -> Scene:
    """Draw one image: background, clutter, people far-to-near with occluders in between."""
    w, h = size
    f = float(rng.uniform(0.9, 2.2)) * max(w, h)
    img = background(rng, w, h, photos)
    draw_clutter(img, rng, int(rng.integers(2, 14)), min(w, h))
    if rng.random() < 0.3:
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.6, 1.8))
    label = np.zeros((h, w), np.uint8)
    people = _layout(rng, split, w, h, f, difficulty)
    people.sort(key=lambda p: -float(p.z[B.PELVIS]))            # far to near
    n_occ = int(rng.choice([0, 1, 2], p=[0.55, 0.3, 0.15])) if people else 0
    occ_after = sorted(int(i) for i in rng.integers(0, len(people) + 1, n_occ))
    ang = rng.uniform(0, 2 * math.pi)
    light = np.array([math.cos(ang), math.sin(ang)])
    out: list[PersonInstance] = []
    for slot, p in enumerate(people):
        while occ_after and occ_after[0] == slot:
            occ_after.pop(0)
            target = people[int(rng.integers(slot))] if slot else p    # over someone drawn
            draw_occluder(img, label, rng, target.box)
        app = R.sample_appearance(rng)
        R.render_person(img, label, p.uv, p.z, p.points, p.normals, p.props, app, slot, f, light,
                        shade=float(rng.uniform(0.8, 1.12)))
        out.append(PersonInstance(slot=slot, keypoints=np.zeros((17, 3)), kind=p.pose.kind))
    for _ in occ_after:
        draw_occluder(img, label, rng, people[int(rng.integers(len(people)))].box)
    for inst, p in zip(out, people):
        inst.keypoints = keypoint_visibility(label, p.uv, R.facing(p.points, p.normals),
                                             inst.slot)
    # global photometric variation + sensor noise (a cached noise tile, no per-pixel RNG)
    alpha, beta = rng.uniform(0.75, 1.25), rng.uniform(-30, 30)
    grain = grain_bank()
    gx, gy = int(rng.integers(_TILE - w + 1)) if w <= _TILE else 0, \
        int(rng.integers(_TILE - h + 1)) if h <= _TILE else 0
    if w <= _TILE and h <= _TILE:
        # one saturating OpenCV op: img * alpha + (grain - 128) * amp + beta
        amp = rng.uniform(1, 7) / _GRAIN_STD
        img = cv2.addWeighted(img, alpha, grain[gy:gy + h, gx:gx + w], amp, beta - 128 * amp)
    else:
        img = cv2.convertScaleAbs(img, alpha=alpha, beta=beta)
    return Scene(image=img, label=label, people=out)
