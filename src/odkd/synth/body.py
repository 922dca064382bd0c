"""3D articulated body: proportions, joint-angle pose priors, forward kinematics, projection.

Body frame: x = the person's left, y = up, z = forward (the way the face points), pelvis at the
origin, metres. Camera frame (OpenCV): X right, Y down, Z away from the camera. A person with
yaw 0 faces the camera, so their left side appears on the image's right, as in real photos.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# Point indices: COCO-17 first (so keypoints are points[:17]), then helper points.
NOSE, L_EYE, R_EYE, L_EAR, R_EAR = 0, 1, 2, 3, 4
L_SHO, R_SHO, L_ELB, R_ELB, L_WRI, R_WRI = 5, 6, 7, 8, 9, 10
L_HIP, R_HIP, L_KNE, R_KNE, L_ANK, R_ANK = 11, 12, 13, 14, 15, 16
NECK, PELVIS, HEAD, L_TOE, R_TOE, L_HAND, R_HAND, FACE, HAIR = 17, 18, 19, 20, 21, 22, 23, 24, 25
TORSO0 = 26                     # 3 rings x 8 points outlining the torso (convex hull)
RING = 8
NUM_POINTS = TORSO0 + 3 * RING

POSE_KINDS = ("standing", "walking", "running", "sitting", "crouching", "arms_raised", "lying",
              "random")
POSE_WEIGHTS = np.array([0.20, 0.18, 0.10, 0.12, 0.10, 0.08, 0.06, 0.16])

def rot_x(deg: float) -> np.ndarray:
    """Positive angles tilt +y towards +z (forward lean / raising a limb backwards->forwards)."""
    t = math.radians(deg)
    c, s = math.cos(t), math.sin(t)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]], dtype=float)


def rot_y(deg: float) -> np.ndarray:
    t = math.radians(deg)
    c, s = math.cos(t), math.sin(t)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]], dtype=float)


def rot_z(deg: float) -> np.ndarray:
    """Positive angles swing a downward vector towards +x (the person's left)."""
    t = math.radians(deg)
    c, s = math.cos(t), math.sin(t)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]], dtype=float)


def limb_dir(abd: float, flex: float) -> np.ndarray:
    """``rot_z(abd) @ rot_x(-flex) @ down`` in closed form (called ~10 times per person)."""
    a, b = math.radians(flex), math.radians(abd)
    ca = math.cos(a)
    return np.array([math.sin(b) * ca, -math.cos(b) * ca, math.sin(a)])


def rot_axis(axis: np.ndarray, deg: float) -> np.ndarray:
    """Rodrigues rotation about a unit axis (used for the humeral twist of the forearm)."""
    t = math.radians(deg)
    x, y, z = axis
    k = np.array([[0, -z, y], [z, 0, -x], [-y, x, 0]])
    return np.eye(3) + math.sin(t) * k + (1 - math.cos(t)) * (k @ k)


@dataclass
class Proportions:
    """Segment lengths and radii in metres; sampled per person around an adult average."""
    height: float
    hip_hw: float
    thigh: float
    shin: float
    spine: float
    neck: float
    head_r: float
    sho_hw: float
    upper_arm: float
    forearm: float
    hand: float
    foot: float
    torso_hd: float          # torso half depth (front-back)
    build: float             # radius multiplier (thin .. heavy)


def sample_proportions(rng: np.random.Generator) -> Proportions:
    h = float(rng.uniform(1.5, 1.95))
    k = h / 1.75

    def j(v: float, spread: float = 0.06) -> float:
        return float(v * k * rng.uniform(1 - spread, 1 + spread))

    broad = float(rng.uniform(0.88, 1.12))   # shoulder vs hip width differs between people
    return Proportions(
        height=h, hip_hw=j(0.09) / broad ** 0.5, thigh=j(0.43), shin=j(0.42), spine=j(0.50),
        neck=j(0.12), head_r=j(0.108, 0.05), sho_hw=j(0.18) * broad, upper_arm=j(0.29),
        forearm=j(0.26), hand=j(0.085), foot=j(0.16), torso_hd=j(0.1, 0.15),
        build=float(rng.uniform(0.85, 1.2)))


@dataclass
class Pose:
    """Joint angles in degrees (see :func:`forward_kinematics` for each sign)."""
    kind: str
    sho_flex: np.ndarray      # (2,) left, right: raise the arm forwards (180 = straight up)
    sho_abd: np.ndarray       # raise the arm sideways
    elbow: np.ndarray         # 0 = straight
    twist: np.ndarray         # rotates the forearm's bending plane about the upper arm
    hip_flex: np.ndarray      # thigh forwards
    hip_abd: np.ndarray       # thigh sideways
    knee: np.ndarray          # 0 = straight
    lean: float = 0.0         # spine forward
    side: float = 0.0         # spine sideways
    spine_twist: float = 0.0
    head_yaw: float = 0.0
    head_pitch: float = 0.0   # positive looks down
    head_roll: float = 0.0
    lie: str = ""             # "", "back", "front", "side"


def _arm_style(rng: np.random.Generator, style: str) -> tuple[float, float, float, float]:
    u = rng.uniform
    if style == "down":
        return u(-15, 20), u(3, 22), u(0, 35), u(-20, 20)
    if style == "forward":
        return u(40, 110), u(0, 35), u(0, 70), u(-40, 40)
    if style == "raised":
        if rng.random() < 0.5:
            return u(120, 178), u(0, 40), u(0, 50), u(-30, 30)
        return u(0, 40), u(90, 170), u(0, 60), u(-30, 30)
    if style == "akimbo":
        return u(-15, 10), u(30, 55), u(80, 120), u(-100, -70)
    if style == "head":
        return u(60, 120), u(40, 90), u(115, 150), u(-60, 0)
    # "random": anywhere inside rough joint limits
    return u(-40, 180), u(0, 150), u(0, 150), u(-90, 90)


def sample_pose(rng: np.random.Generator, kind: str | None = None) -> Pose:
    """Draw a pose from a per-kind joint-angle prior (arms chosen independently per side)."""
    if kind is None:
        kind = str(rng.choice(POSE_KINDS, p=POSE_WEIGHTS))
    u = rng.uniform
    flex, abd, elb, tw = (np.zeros(2) for _ in range(4))
    hip, habd, knee = np.zeros(2), np.zeros(2), np.zeros(2)
    arm_styles = ["down", "forward", "raised", "akimbo", "head", "random"]
    arm_p = np.array([0.45, 0.2, 0.1, 0.08, 0.05, 0.12])
    lean = float(u(-6, 10))
    lie = ""
    if kind == "walking" or kind == "running":
        run = kind == "running"
        phase = u(0, 2 * math.pi)
        amp = u(30, 55) if run else u(12, 30)
        s = math.sin(phase)
        hip[:] = amp * s, -amp * s
        knee[:] = [u(5, 20) + (u(40, 110) if run else u(10, 45)) * max(0.0, -v / amp)
                   for v in hip]
        # the swinging (forward) leg bends too when running
        knee += (u(10, 40) if run else u(0, 10)) * np.clip(hip / amp, 0, 1)
        flex[:] = -0.9 * hip + rng.normal(0, 6, 2)
        elb[:] = u(70, 110, 2) if run else u(5, 35, 2)
        abd[:] = u(5, 20, 2)
        tw[:] = u(-30, 10, 2)
        habd[:] = u(0, 8, 2)
        lean = float(u(8, 22) if run else u(-3, 8))
    else:
        for side in range(2):
            style = "raised" if kind == "arms_raised" and rng.random() < 0.85 else \
                str(rng.choice(arm_styles, p=arm_p))
            flex[side], abd[side], elb[side], tw[side] = _arm_style(rng, style)
        if kind == "standing" or kind == "arms_raised":
            hip[:] = rng.normal(0, 6, 2)
            habd[:] = u(0, 14, 2)
            knee[:] = u(0, 12, 2)
        elif kind == "sitting":
            base = u(70, 100)
            hip[:] = base + u(-12, 12, 2)
            knee[:] = u(60, 115, 2)
            habd[:] = u(0, 20, 2)
            lean = float(u(-15, 15))
        elif kind == "crouching":
            if rng.random() < 0.35:   # kneeling on one knee
                front = int(rng.integers(2))
                hip[front], knee[front] = u(70, 100), u(80, 110)
                hip[1 - front], knee[1 - front] = u(-15, 10), u(80, 110)
            else:
                hip[:] = u(90, 130) + u(-10, 10, 2)
                knee[:] = u(100, 145, 2)
            habd[:] = u(5, 30, 2)
            lean = float(u(10, 45))
        elif kind == "lying":
            hip[:] = u(-10, 40, 2)
            knee[:] = u(0, 70, 2)
            habd[:] = u(0, 25, 2)
            lean = float(u(-10, 10))
            lie = str(rng.choice(["back", "front", "side"], p=[0.45, 0.25, 0.3]))
        else:   # "random": dance / sport / stretching
            hip[:] = u(-30, 100, 2)
            habd[:] = u(0, 45, 2)
            knee[:] = u(0, 110, 2)
            lean = float(u(-20, 35))
    return Pose(kind=kind, sho_flex=flex, sho_abd=abd, elbow=elb, twist=tw, hip_flex=hip,
                hip_abd=habd, knee=knee, lean=lean, side=float(u(-10, 10)),
                spine_twist=float(u(-20, 20)), head_yaw=float(u(-55, 55)),
                head_pitch=float(u(-20, 30)), head_roll=float(u(-12, 12)), lie=lie)


@dataclass
class Body3D:
    """A posed body in camera coordinates plus what the renderer and annotator need."""
    points: np.ndarray        # (NUM_POINTS, 3) camera frame, metres
    normals: np.ndarray       # (17, 3) outward surface normal per COCO keypoint (camera frame)
    props: Proportions
    pose: Pose


def forward_kinematics(props: Proportions, pose: Pose) -> tuple[np.ndarray, np.ndarray]:
    """Joint positions (NUM_POINTS, 3) and keypoint normals (17, 3) in the body frame."""
    p = np.zeros((NUM_POINTS, 3))
    nrm = np.zeros((17, 3))
    pr = props
    r_sp = rot_y(pose.spine_twist) @ rot_x(pose.lean) @ rot_z(pose.side)
    neck = r_sp @ np.array([0.0, pr.spine, 0.0])
    p[NECK] = neck
    p[PELVIS] = 0.0
    for side, sign in ((0, 1.0), (1, -1.0)):
        sho = neck + r_sp @ np.array([sign * pr.sho_hw, -0.035 * pr.height / 1.75, -0.01])
        abd = sign * pose.sho_abd[side]
        d_up = r_sp @ limb_dir(abd, pose.sho_flex[side])
        d_fo = r_sp @ limb_dir(abd, pose.sho_flex[side] + pose.elbow[side])
        d_fo = rot_axis(d_up, sign * pose.twist[side]) @ d_fo
        elb = sho + d_up * pr.upper_arm
        wri = elb + d_fo * pr.forearm
        p[L_SHO + side], p[L_ELB + side], p[L_WRI + side] = sho, elb, wri
        p[L_HAND + side] = wri + d_fo * pr.hand
        nrm[L_SHO + side] = r_sp @ np.array([sign, 0.0, 0.0])
        hip = np.array([sign * pr.hip_hw, 0.0, 0.0])
        abd = sign * pose.hip_abd[side]
        d_th = limb_dir(abd, pose.hip_flex[side])
        d_sh = limb_dir(abd, pose.hip_flex[side] - pose.knee[side])
        d_ft = limb_dir(abd, pose.hip_flex[side] - pose.knee[side] + 80.0)
        kne = hip + d_th * pr.thigh
        ank = kne + d_sh * pr.shin
        p[L_HIP + side], p[L_KNE + side], p[L_ANK + side] = hip, kne, ank
        p[L_TOE + side] = ank + d_ft * pr.foot
        nrm[L_HIP + side] = np.array([sign, 0.0, 0.0])
        # limbs and the hip/shoulder have no single outward normal; lateral is good enough
        for k in (L_ELB, L_WRI):
            nrm[k + side] = nrm[L_SHO + side]
        for k in (L_KNE, L_ANK):
            nrm[k + side] = nrm[L_HIP + side]
    r_face = r_sp @ rot_y(pose.head_yaw) @ rot_x(pose.head_pitch) @ rot_z(pose.head_roll)
    hr = pr.head_r
    head = neck + r_sp @ rot_x(0.5 * pose.head_pitch) @ np.array([0.0, pr.neck, 0.015])
    p[HEAD] = head
    p[NOSE] = head + r_face @ (np.array([0.0, -0.2, 1.08]) * hr)
    nrm[NOSE] = r_face @ np.array([0.0, 0.0, 1.0])
    for side, sign in ((0, 1.0), (1, -1.0)):
        p[L_EYE + side] = head + r_face @ (np.array([sign * 0.36, 0.12, 0.9]) * hr)
        nrm[L_EYE + side] = r_face @ np.array([sign * 0.4, 0.05, 0.92])
        p[L_EAR + side] = head + r_face @ (np.array([sign * 0.98, 0.0, -0.08]) * hr)
        nrm[L_EAR + side] = r_face @ np.array([sign * 1.0, 0.0, -0.15])
    p[FACE] = head + r_face @ (np.array([0.0, -0.08, 0.18]) * hr)
    p[HAIR] = head + r_face @ (np.array([0.0, 0.16, -0.2]) * hr)
    # torso: rings at shoulders, mid-chest and hips; the renderer takes their convex hull
    t = np.linspace(0, 2 * math.pi, RING, endpoint=False)
    ring = np.stack([np.cos(t), np.zeros(RING), np.sin(t)], 1)
    arm_r = 0.045 * pr.build * pr.height / 1.75
    thigh_r = 0.07 * pr.build * pr.height / 1.75
    rings = [
        (neck + r_sp @ np.array([0, -0.06 * pr.spine, -0.01]), pr.sho_hw + 0.5 * arm_r,
         0.8 * pr.torso_hd * pr.build, r_sp),
        (r_sp @ np.array([0, 0.45 * pr.spine, 0]), 0.86 * pr.sho_hw * pr.build ** 0.5,
         pr.torso_hd * pr.build, r_sp),
        (np.array([0, -0.02, -0.01]), pr.hip_hw + 0.85 * thigh_r, 0.95 * pr.torso_hd * pr.build,
         np.eye(3)),
    ]
    for i, (c, w, d, r) in enumerate(rings):
        p[TORSO0 + i * RING: TORSO0 + (i + 1) * RING] = c + (ring * [w, 0, d]) @ r.T
    return p, nrm


def pose_body(props: Proportions, pose: Pose, yaw: float, view_pitch: float,
              roll: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Body-frame joints rotated by the lying posture, yaw and camera elevation, centred at 0.

    Returned in camera axes (X right, Y down, Z away) but not yet translated.
    """
    p, n = forward_kinematics(props, pose)
    r = np.eye(3)
    if pose.lie == "back":
        r = rot_x(-90)
    elif pose.lie == "front":
        r = rot_x(90)
    elif pose.lie == "side":
        r = rot_z(90) @ rot_y(90)
    r = rot_x(view_pitch) @ rot_y(yaw) @ rot_z(roll) @ r
    # body frame (x left, y up, z to camera) -> camera frame (X right, Y down, Z away)
    to_cam = np.diag([1.0, -1.0, -1.0]) @ r
    p = p @ to_cam.T
    n = n @ to_cam.T
    p -= 0.5 * (p[:17].min(0) + p[:17].max(0))
    return p, n


def project(points: np.ndarray, f: float, cx: float, cy: float) -> tuple[np.ndarray, np.ndarray]:
    """Pinhole projection -> (N, 2) pixel coordinates (pixel centres on integers), depths."""
    z = points[:, 2]
    uv = np.empty((len(points), 2))
    uv[:, 0] = f * points[:, 0] / z + cx
    uv[:, 1] = f * points[:, 1] / z + cy
    return uv, z
