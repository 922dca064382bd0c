"""Depth-ordered OpenCV rendering of one posed body into a colour image and a part label map.

Every part is drawn twice with the same polygon: shaded into the image and as a flat id into
the label map (``1 + slot * 16 + part``), so the label map is exactly what the image shows and
visibility can be read back per pixel. Polygons only (fillConvexPoly / circles): no per-pixel
Python work, which keeps generation at hundreds of images per second per core.
"""
from __future__ import annotations

import colorsys
from dataclasses import dataclass

import cv2
import numpy as np

from odkd.synth import body as B

SHIFT = 4                       # sub-pixel bits for OpenCV drawing
ONE = 1 << SHIFT
PARTS_PER_PERSON = 16
OCCLUDER_LABEL = 255

# part ids (lower 4 bits of a label)
TORSO, HEADP, NECKP = 0, 1, 2
L_UARM, R_UARM, L_FARM, R_FARM, L_THIGH, R_THIGH, L_SHIN, R_SHIN = 3, 4, 5, 6, 7, 8, 9, 10
L_HANDP, R_HANDP, L_FOOT, R_FOOT = 11, 12, 13, 14

# (joint a, joint b, radius at a, radius at b in metres for a 1.75 m person, part, colour key)
LIMBS = [
    (B.L_SHO, B.L_ELB, .050, .039, L_UARM, "sleeve_l"),
    (B.R_SHO, B.R_ELB, .050, .039, R_UARM, "sleeve_r"),
    (B.L_ELB, B.L_WRI, .038, .028, L_FARM, "forearm_l"),
    (B.R_ELB, B.R_WRI, .038, .028, R_FARM, "forearm_r"),
    (B.L_WRI, B.L_HAND, .032, .028, L_HANDP, "skin"),
    (B.R_WRI, B.R_HAND, .032, .028, R_HANDP, "skin"),
    (B.L_HIP, B.L_KNE, .078, .054, L_THIGH, "pants"),
    (B.R_HIP, B.R_KNE, .078, .054, R_THIGH, "pants"),
    (B.L_KNE, B.L_ANK, .052, .036, L_SHIN, "shin"),
    (B.R_KNE, B.R_ANK, .052, .036, R_SHIN, "shin"),
    (B.L_ANK, B.L_TOE, .040, .034, L_FOOT, "shoe_l"),
    (B.R_ANK, B.R_TOE, .040, .034, R_FOOT, "shoe_r"),
    (B.NECK, B.HEAD, .048, .048, NECKP, "skin"),
]
_LA = np.array([l[0] for l in LIMBS])
_LB = np.array([l[1] for l in LIMBS])
_RA = np.array([l[2] for l in LIMBS])
_RB = np.array([l[3] for l in LIMBS])

# Which parts may own a keypoint's pixel for it to count as visible (self-occlusion otherwise).
KEYPOINT_PARTS = [
    {HEADP}, {HEADP}, {HEADP}, {HEADP}, {HEADP},
    {TORSO, L_UARM, NECKP}, {TORSO, R_UARM, NECKP},
    {L_UARM, L_FARM}, {R_UARM, R_FARM}, {L_FARM, L_HANDP}, {R_FARM, R_HANDP},
    {TORSO, L_THIGH}, {TORSO, R_THIGH}, {L_THIGH, L_SHIN}, {R_THIGH, R_SHIN},
    {L_SHIN, L_FOOT}, {R_SHIN, R_FOOT},
]
# Minimum cos(angle) between a keypoint's surface normal and the direction to the camera.
FACING_MIN = np.array([-0.1, 0.05, 0.05, -0.3, -0.3] + [-0.55] * 2 + [-2.0] * 4
                      + [-0.55] * 2 + [-2.0] * 4)

_SKIN = np.array([(255, 226, 200), (241, 194, 167), (224, 172, 138), (198, 134, 100),
                  (161, 102, 71), (120, 75, 50), (88, 58, 40)], dtype=float)
_HAIR = np.array([(28, 24, 20), (60, 40, 28), (105, 70, 40), (195, 160, 100), (150, 150, 150),
                  (140, 60, 30)], dtype=float)
_PANTS = np.array([(55, 75, 125), (30, 30, 35), (90, 90, 95), (170, 150, 110), (40, 55, 40),
                   (110, 40, 40)], dtype=float)


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(h % 1.0, s, v)) * 255.0


@dataclass
class Appearance:
    """RGB colours of one person (converted to BGR at draw time)."""
    colors: dict
    stripes: int
    strap: bool
    bald: bool


def sample_appearance(rng: np.random.Generator) -> Appearance:
    i = rng.uniform(0, len(_SKIN) - 1)
    skin = _SKIN[int(i)] + (_SKIN[min(int(i) + 1, len(_SKIN) - 1)] - _SKIN[int(i)]) * (i % 1)
    hue = rng.random()
    shirt = _hsv(hue, rng.uniform(0.1, 0.9), rng.uniform(0.25, 0.95))
    # accent on the LEFT sleeve / shoe: a fixed convention so left-right is learnable from the back
    accent = _hsv(hue + rng.uniform(0.3, 0.7), rng.uniform(0.6, 1.0), rng.uniform(0.6, 1.0))
    pants = _PANTS[rng.integers(len(_PANTS))] if rng.random() < 0.7 else \
        _hsv(rng.random(), rng.uniform(0.1, 0.7), rng.uniform(0.15, 0.7))
    pants = np.clip(pants * rng.uniform(0.8, 1.2), 0, 255)
    shoe = _hsv(rng.random(), rng.uniform(0, 0.5), rng.uniform(0.08, 0.5))
    long_sleeve = rng.random() < 0.5
    shorts = rng.random() < 0.25
    hair = _HAIR[rng.integers(len(_HAIR))] * rng.uniform(0.85, 1.15)
    bald = bool(rng.random() < 0.07)
    colors = {
        "skin": skin, "shirt": shirt, "sleeve_l": accent, "sleeve_r": shirt,
        "forearm_l": shirt if long_sleeve else skin, "forearm_r": shirt if long_sleeve else skin,
        "pants": pants, "shin": skin if shorts else pants, "shoe_l": accent * 0.8,
        "shoe_r": shoe, "hair": skin * 0.8 if bald else np.clip(hair, 0, 255),
        "stripe": _hsv(rng.random(), rng.uniform(0, 1), rng.uniform(0.1, 1)),
        "strap": _hsv(rng.random(), rng.uniform(0, 0.6), rng.uniform(0.05, 0.5)),
    }
    # RGB -> BGR plain tuples (drawn thousands of times; see _bgr)
    colors = {k: (float(v[2]), float(v[1]), float(v[0])) for k, v in colors.items()}
    return Appearance(colors=colors, stripes=int(rng.choice([0, 0, 0, 2, 3, 4])),
                      strap=bool(rng.random() < 0.3), bald=bald)


def _bgr(c, k: float = 1.0, add: float = 0.0) -> tuple[int, int, int]:
    # plain Python: numpy call overhead dominates on 3-element colours
    b, g, r = (min(255, max(0, int(x * k + add))) for x in c)
    return b, g, r


_ARC = {k: (np.cos(t)[None, :, None], np.sin(t)[None, :, None])
        for k in (4, 6, 8) for t in [np.linspace(-np.pi / 2, np.pi / 2, k)]}


def capsules(pa: np.ndarray, pb: np.ndarray, ra: np.ndarray, rb: np.ndarray,
             k: int = 6) -> np.ndarray:
    """Tapered capsule outlines (n, 2k, 2): a half circle around each end, in pixels."""
    d = pb - pa
    ln = np.hypot(d[:, 0], d[:, 1])[:, None]
    d = np.where(ln > 1e-6, d / np.maximum(ln, 1e-6), np.array([1.0, 0.0]))
    n = np.stack([-d[:, 1], d[:, 0]], 1)
    c, s = _ARC[k]
    arc_b = pb[:, None] + rb[:, None, None] * (c * d[:, None] + s * n[:, None])
    arc_a = pa[:, None] + ra[:, None, None] * (-c * d[:, None] - s * n[:, None])
    return np.concatenate([arc_b, arc_a], 1)


def _fix(p: np.ndarray) -> np.ndarray:
    return np.round(p * ONE).astype(np.int32)


def facing(points: np.ndarray, normals: np.ndarray) -> np.ndarray:
    """cos(angle) between each keypoint's normal and the direction to the camera."""
    v = -points[:17]
    v = v / np.linalg.norm(v, axis=1, keepdims=True)
    return (normals * v).sum(1)


def render_person(img: np.ndarray, label: np.ndarray, uv: np.ndarray, z: np.ndarray,
                  points: np.ndarray, normals: np.ndarray, props: B.Proportions,
                  app: Appearance, slot: int, f: float, light: np.ndarray,
                  shade: float = 1.0) -> None:
    """Draw one person far-to-near part by part into ``img`` and ``label`` (in place)."""
    base = 1 + slot * PARTS_PER_PERSON
    k = props.height / 1.75 * props.build
    col = app.colors
    # --- limbs (vectorised outlines, then one draw call per polygon)
    ra = _RA * k * f / z[_LA]
    rb = _RB * k * f / z[_LB]
    ra[-1] = rb[-1] = 0.048 * props.height / 1.75 * f / z[B.NECK]
    polys = capsules(uv[_LA], uv[_LB], ra, rb)
    off = light[None, :] * (0.3 * (ra + rb))[:, None]
    hl = capsules(uv[_LA] + off, uv[_LB] + off, 0.45 * ra, 0.45 * rb)
    depth = 0.5 * (z[_LA] + z[_LB])
    depth[-1] += 0.06   # the neck sits behind the head and the torso's top
    items: list[tuple[float, int]] = [(float(d), i) for i, d in enumerate(depth)]
    # --- torso: convex hull of three body rings; its depth is pushed to the back surface so
    # arms hanging at the sides are painted over it in front and back views
    ring = uv[B.TORSO0:]
    tz = z[B.TORSO0:]
    items.append((float(tz.mean() + 0.35 * (tz.max() - tz.min())), -1))
    # --- head: face and hair disks in their own depth order, ears/eyes/nose on top
    items.append((float(min(z[B.FACE], z[B.HAIR])), -2))
    items.sort(key=lambda t: -t[0])
    polys, hl = _fix(polys), _fix(hl)
    fc = facing(points, normals)
    hr = props.head_r * f / z[B.HEAD]
    for _, i in items:
        if i >= 0:
            c = col[LIMBS[i][5]]
            lab = base + LIMBS[i][4]
            pts = polys[i]
            cv2.fillConvexPoly(img, pts, _bgr(c, 0.8 * shade), cv2.LINE_AA, SHIFT)
            if ra[i] > 1.5:   # the highlight is invisible on limbs a few pixels wide
                cv2.fillConvexPoly(img, hl[i], _bgr(c, 1.05 * shade, 12), cv2.LINE_AA, SHIFT)
            cv2.fillConvexPoly(label, pts, lab, cv2.LINE_8, SHIFT)
        elif i == -1:
            hull = cv2.convexHull(_fix(ring))
            c = col["shirt"]
            cv2.fillConvexPoly(img, hull, _bgr(c, 0.8 * shade), cv2.LINE_AA, SHIFT)
            cen = ring.mean(0)
            inner = (ring - cen) * 0.72 + cen + light * 0.12 * np.ptp(ring[:, 0])
            cv2.fillConvexPoly(img, cv2.convexHull(_fix(inner)), _bgr(c, 1.02 * shade, 10),
                               cv2.LINE_AA, SHIFT)
            cv2.fillConvexPoly(label, hull, base + TORSO, cv2.LINE_8, SHIFT)
            _torso_details(img, uv, app, shade, cen)
        else:
            _draw_head(img, label, uv, z, fc, hr, app, base, shade)


def _torso_details(img: np.ndarray, uv: np.ndarray, app: Appearance, shade: float,
                   cen: np.ndarray) -> None:
    """Stripes and a shoulder strap, kept inside the torso by shrinking towards its centre."""
    ls, rs, lh, rh = (uv[j] * 0.8 + cen * 0.2 for j in (B.L_SHO, B.R_SHO, B.L_HIP, B.R_HIP))
    width = max(1, int(0.05 * np.hypot(*(ls - rs))))
    for t in np.linspace(0.25, 0.85, app.stripes) if app.stripes else ():
        a, b = ls + (lh - ls) * t, rs + (rh - rs) * t
        cv2.line(img, tuple(_fix(a)), tuple(_fix(b)), _bgr(app.colors["stripe"], shade), width,
                 cv2.LINE_AA, SHIFT)
    if app.strap:
        cv2.line(img, tuple(_fix(ls)), tuple(_fix(rh)), _bgr(app.colors["strap"], shade),
                 max(1, int(width * 1.5)), cv2.LINE_AA, SHIFT)


def _draw_head(img: np.ndarray, label: np.ndarray, uv: np.ndarray, z: np.ndarray,
               fc: np.ndarray, hr: float, app: Appearance, base: int, shade: float) -> None:
    col = app.colors
    lab = base + HEADP
    disks = [(z[B.HAIR], uv[B.HAIR], 1.0 * hr, col["hair"]),
             (z[B.FACE], uv[B.FACE], 0.93 * hr, col["skin"])]
    disks.sort(key=lambda t: -t[0])
    for _, c, r, colour in disks:
        ctr, rad = tuple(_fix(c)), int(round(r * ONE))
        cv2.circle(img, ctr, rad, _bgr(colour, shade), -1, cv2.LINE_AA, SHIFT)
        cv2.circle(label, ctr, rad, lab, -1, cv2.LINE_8, SHIFT)
    skin = col["skin"]
    for e in (B.L_EAR, B.R_EAR):
        if fc[e] > -0.2:
            ctr = tuple(_fix(uv[e]))
            axes = (max(ONE, int(0.2 * hr * ONE)), max(ONE, int(0.3 * hr * ONE)))
            cv2.ellipse(img, ctr, axes, 0, 0, 360, _bgr(skin, 0.9 * shade), -1, cv2.LINE_AA,
                        SHIFT)
            cv2.ellipse(label, ctr, axes, 0, 0, 360, lab, -1, cv2.LINE_8, SHIFT)
    eye_r = max(int(0.8 * ONE), int(0.13 * hr * ONE))
    for e in (B.L_EYE, B.R_EYE):
        if fc[e] > 0.05:
            cv2.circle(img, tuple(_fix(uv[e])), eye_r, (25, 20, 20), -1, cv2.LINE_AA, SHIFT)
    if fc[B.NOSE] > -0.1:
        nose = uv[B.NOSE]
        cv2.circle(img, tuple(_fix(nose)), max(ONE, int(0.16 * hr * ONE)),
                   _bgr(skin, 0.72 * shade), -1, cv2.LINE_AA, SHIFT)
        eyes = 0.5 * (uv[B.L_EYE] + uv[B.R_EYE])
        mouth = nose + (nose - eyes) * 0.75
        half = (uv[B.L_EYE] - uv[B.R_EYE]) * 0.35
        cv2.line(img, tuple(_fix(mouth - half)), tuple(_fix(mouth + half)), (50, 40, 120),
                 max(1, int(0.08 * hr)), cv2.LINE_AA, SHIFT)
