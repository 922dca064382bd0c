"""Leeds Sports Pose (``joints.mat`` + ``images/imNNNN.jpg``) -> COCO person_keypoints.

``joints`` is 3 x 14 x N: x, y and a flag that is 1 for an occluded joint and 0 for a visible
one (93 % are 0; checked on the images: the flagged joints are the ones hidden by the body).
Every joint is labelled, occluded ones at their estimated position. One person per image.

COCO gets LSP's 12 limb joints (same names); nose, eyes and ears stay unlabelled (v=0).
Each annotation keeps the original 14 joints in ``lsp_joints`` (x, y, v in LSP order, v as in
COCO: 2 visible, 1 occluded) for the neck and head top, which COCO has no place for.
``bbox`` is the tight extent of the 14 joints clipped to the image, ``area`` its area (the OKS
scale; LSP has no masks).
"""
from __future__ import annotations

import os
import re

import numpy as np

from odkd.data.importers.common import (ImportResult, annotation_entry, image_entry, new_coco,
                                        read_image)
from odkd.data.importers.matfile import load_mat
from odkd.errors import DataError
from odkd.keypoints import COCO_KEYPOINTS

LSP_JOINTS = ["right_ankle", "right_knee", "right_hip", "left_hip", "left_knee", "left_ankle",
              "right_wrist", "right_elbow", "right_shoulder", "left_shoulder", "left_elbow",
              "left_wrist", "neck", "head_top"]
# LSP index -> COCO index for the 12 limb joints (their names are COCO's)
LSP_TO_COCO = {i: COCO_KEYPOINTS.index(n) for i, n in enumerate(LSP_JOINTS)
               if n in COCO_KEYPOINTS}
# the standard protocol's halves (1-based image numbers, inclusive)
SPLITS = {"train": (1, 1000), "test": (1001, 2000)}


def parse_split(split: str, n: int) -> tuple[int, int]:
    """``all``, ``train`` (1-1000), ``test`` (1001-2000) or ``A-B`` -> 1-based inclusive range."""
    if split in (None, "", "all"):
        return 1, n
    if split in SPLITS:
        lo, hi = SPLITS[split]
    else:
        m = re.fullmatch(r"\s*(\d+)\s*-\s*(\d+)\s*", split)
        if not m:
            raise DataError(f"--split: expected all, train, test or A-B (1-based image numbers, "
                            f"e.g. 1001-2000), got {split!r}")
        lo, hi = int(m.group(1)), int(m.group(2))
    if not 1 <= lo <= hi <= n:
        raise DataError(f"--split {split}: images {lo}-{hi} are not within the file's 1-{n}")
    return lo, hi


def _locate(src: str) -> tuple[str, str]:
    """(joints.mat, image folder) from the LSP folder or the .mat file itself."""
    if os.path.isdir(src):
        mat, folder = os.path.join(src, "joints.mat"), src
    else:
        mat, folder = src, os.path.dirname(os.path.abspath(src))
    if not os.path.isfile(mat):
        raise DataError(f"LSP joints file not found: {mat} (give the LSP folder or its "
                        "joints.mat)")
    images = os.path.join(folder, "images")
    if not os.path.isdir(images):
        raise DataError(f"{folder}: no images/ folder next to joints.mat")
    return mat, images


def read_joints(mat: str) -> np.ndarray:
    """The checked ``joints`` array, 3 x 14 x N float64."""
    data = load_mat(mat)
    if "joints" not in data:
        names = ", ".join(sorted(data)) or "none"
        raise DataError(f"{mat}: field joints: no numeric variable 'joints' (variables: {names})")
    j = np.asarray(data["joints"], dtype=np.float64)
    if j.ndim == 2 and j.shape == (3, 14):  # MATLAB drops a trailing singleton dimension
        j = j[:, :, None]
    if j.ndim != 3 or j.shape[:2] != (3, 14) or j.shape[2] == 0:
        raise DataError(f"{mat}: field joints: expected 3 x 14 x N (x, y, occluded flag for "
                        f"LSP's 14 joints), got {' x '.join(map(str, j.shape))}")
    if not np.isfinite(j).all():
        raise DataError(f"{mat}: field joints: non-finite values")
    flags = np.unique(j[2])
    if not np.isin(flags, (0.0, 1.0)).all():
        raise DataError(f"{mat}: field joints: row 3 (occluded flag) must be 0 or 1, got "
                        f"{flags[~np.isin(flags, (0.0, 1.0))][:5].tolist()}")
    return j


def _image_file(images: str, number: int) -> str:
    # LSP names are im0001.jpg; its 10,000-image extension uses five digits
    for name in (f"im{number:04d}.jpg", f"im{number:05d}.jpg"):
        if os.path.isfile(os.path.join(images, name)):
            return name
    return f"im{number:04d}.jpg"


def import_lsp(src: str, split: str = "all") -> ImportResult:
    """LSP folder (or its joints.mat) -> COCO dict; image ids are LSP's image numbers."""
    mat, images = _locate(src)
    joints = read_joints(mat)
    lo, hi = parse_split(split, joints.shape[2])
    names = {i: _image_file(images, i) for i in range(lo, hi + 1)}
    missing = [n for n in names.values() if not os.path.isfile(os.path.join(images, n))]
    if missing:
        shown = ", ".join(missing[:3]) + (", ..." if len(missing) > 3 else "")
        raise DataError(f"{images}: {len(missing)} image(s) of {mat} field joints not found: "
                        f"{shown}")
    coco = new_coco(f"Leeds Sports Pose images {lo}-{hi}, imported by odkd data import lsp",
                    mat)
    coco["info"]["lsp_joint_names"] = list(LSP_JOINTS)
    coco["info"]["split"] = f"{lo}-{hi}"
    for number in range(lo, hi + 1):
        path = os.path.join(images, names[number])
        h, w = read_image(path, "LSP image").shape[:2]
        coco["images"].append(image_entry(number, names[number], w, h))
        xy = joints[:2, :, number - 1].T                        # (14, 2)
        v = np.where(joints[2, :, number - 1] > 0, 1.0, 2.0)   # flag 1 = occluded
        lsp = np.concatenate([xy, v[:, None]], axis=1)
        kp = np.zeros((len(COCO_KEYPOINTS), 3))
        for li, ci in LSP_TO_COCO.items():
            kp[ci] = lsp[li]
        x1, y1 = np.clip(xy.min(0), 0, [w, h])
        x2, y2 = np.clip(xy.max(0), 0, [w, h])
        coco["annotations"].append(annotation_entry(
            number, number, [x1, y1, x2 - x1, y2 - y1], kp,
            lsp_joints=[round(float(t), 2) if i % 3 < 2 else int(t)
                        for i, t in enumerate(lsp.ravel())]))
    return ImportResult(coco, images)
