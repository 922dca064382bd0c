"""Annotate rendered scenes in COCO person_keypoints format and write whole splits.

Each image is a pure function of ``(seed, split, index)`` (its own SeedSequence), images are
JPEG-encoded at a fixed quality and the json is written with sorted keys and rounded floats,
so the output is byte-identical for the same arguments whatever the number of workers.
"""
from __future__ import annotations

import json
import multiprocessing as mp
import os
import time
from typing import Any

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from odkd._version import __version__ as odkd_version
from odkd.errors import OdkdError
from odkd.keypoints import COCO_KEYPOINTS, COCO_SKELETON
from odkd.synth.scene import (DEFAULT_DIFFICULTY, DIFFICULTIES, SPLITS, Scene, list_backgrounds,
                              render_scene)

GENERATOR_VERSION = "synthpose-2"
JPEG_QUALITY = 90
MIN_VISIBLE_FRACTION = 0.001    # of the image area (65 px at 256x256): smaller people dropped
MIN_LABELLED = 3                # fewer labelled keypoints: dropped
# COCO labels keypoints only for people of at least medium size (area >= 32^2 px); smaller
# people keep their box and mask but get num_keypoints 0 (ignored by OKS evaluation). The
# threshold is for 256 px images and scales with --size so that every size is the same data.
KEYPOINT_MIN_AREA = 32 * 32
_SPLIT_CODE = {s: i for i, s in enumerate(SPLITS)}

CATEGORIES = [{"id": 1, "name": "person", "supercategory": "person",
               "keypoints": list(COCO_KEYPOINTS), "skeleton": [list(s) for s in COCO_SKELETON]}]


def _check(split: str, num_images: int, seed: int, size: tuple[int, int],
           difficulty: str = DEFAULT_DIFFICULTY) -> None:
    if split not in SPLITS:
        raise OdkdError(f"--split {split!r}: expected one of {', '.join(SPLITS)}")
    if difficulty not in DIFFICULTIES:
        raise OdkdError(f"--difficulty {difficulty!r}: expected one of {', '.join(DIFFICULTIES)}")
    if num_images < 1:
        raise OdkdError(f"--num-images {num_images}: must be at least 1")
    if seed < 0:
        raise OdkdError(f"--seed {seed}: must be >= 0")
    if len(size) != 2 or min(size) < 32 or max(size) > 4096:
        raise OdkdError(f"--size {size}: expected W H between 32 and 4096")


def image_rng(seed: int, split: str, index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, _SPLIT_CODE[split], index]))


def make_scene(seed: int, split: str, index: int, size: tuple[int, int] = (256, 256),
               photos: list[str] | None = None, difficulty: str = DEFAULT_DIFFICULTY) -> Scene:
    return render_scene(image_rng(seed, split, index), split, tuple(size), photos, difficulty)


def annotate(scene: Scene) -> list[tuple[int, dict]]:
    """(slot, COCO annotation without ids) for every person worth labelling."""
    h, w = scene.label.shape
    pmap = scene.person_map()
    people = scene.people
    if not people:
        return []
    # pycocotools wants (h, w, n) Fortran order: that is a C-order (n, w, h) stack of the
    # transposed map, which numpy fills with contiguous compares
    pmap_t = np.ascontiguousarray(pmap.T)
    stack = np.empty((len(people), w, h), np.uint8)
    for j, p in enumerate(people):
        np.equal(pmap_t, p.slot + 1, out=stack[j], casting="unsafe")
    masks = stack.transpose(2, 1, 0)
    rles = mask_utils.encode(masks)
    areas = mask_utils.area(rles)
    boxes = mask_utils.toBbox(rles)
    out = []
    for p, rle, area, box in zip(people, rles, areas, boxes):
        kps = p.keypoints
        labelled = int((kps[:, 2] > 0).sum())
        if area < MIN_VISIBLE_FRACTION * w * h or labelled < MIN_LABELLED:
            continue
        if area < KEYPOINT_MIN_AREA * (min(w, h) / 256.0) ** 2:
            kps = np.zeros_like(kps)
            labelled = 0
        flat: list[float | int] = []
        for (x, y), v in zip(np.round(kps[:, :2], 2).tolist(), kps[:, 2].astype(int).tolist()):
            flat += [x, y, v]
        out.append((p.slot, {
            "category_id": 1, "iscrowd": 0, "num_keypoints": labelled, "keypoints": flat,
            "area": int(area), "bbox": [round(float(b), 2) for b in box],
            "segmentation": {"size": [int(h), int(w)], "counts": rle["counts"].decode("ascii")},
        }))
    return out


def encode_jpeg(img: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return buf.tobytes()


def render_image(seed: int, split: str, index: int, size: tuple[int, int] = (256, 256),
                 photos: list[str] | None = None, difficulty: str = DEFAULT_DIFFICULTY
                 ) -> tuple[bytes, list[dict], Scene]:
    """JPEG bytes, annotations (no ids) and the scene (image + label map) of one image."""
    scene = make_scene(seed, split, index, size, photos, difficulty)
    anns = [a for _, a in annotate(scene)]
    return encode_jpeg(scene.image), anns, scene


def file_name(index: int) -> str:
    return f"{index:06d}.jpg"


def _work(job: tuple[int, str, int, tuple[int, int], list[str] | None, str, str]
          ) -> tuple[int, list[dict]]:
    seed, split, index, size, photos, img_dir, difficulty = job
    data, anns, _ = render_image(seed, split, index, size, photos, difficulty)
    with open(os.path.join(img_dir, file_name(index)), "wb") as f:
        f.write(data)
    return index, anns


def _init_worker() -> None:
    cv2.setNumThreads(1)    # one process per core; OpenCV threads would only oversubscribe


def mean_max_iou(images: list[dict], anns: list[dict]) -> float:
    """Mean over annotations of the largest box IoU with another person in the same image."""
    by_img: dict[int, list[list[float]]] = {}
    for a in anns:
        by_img.setdefault(a["image_id"], []).append(a["bbox"])
    vals: list[float] = []
    for boxes in by_img.values():
        if len(boxes) < 2:
            vals += [0.0] * len(boxes)
            continue
        iou = np.array(mask_utils.iou(boxes, boxes, [0] * len(boxes)))
        np.fill_diagonal(iou, 0.0)
        vals += iou.max(1).tolist()
    return float(np.mean(vals)) if vals else 0.0


def generate_split(out_dir: str, split: str, num_images: int, seed: int,
                   size: tuple[int, int] = (256, 256), backgrounds: str | None = None,
                   workers: int | None = None, progress: bool = True,
                   difficulty: str = DEFAULT_DIFFICULTY) -> dict[str, Any]:
    """Write ``out_dir/annotations/person_keypoints_{split}.json`` and ``out_dir/{split}/*.jpg``.

    Returns a summary dict (counts, mean max-IoU between boxes, paths, timing).
    """
    from tqdm import tqdm

    from odkd.utils import atomic_write_text

    size = (int(size[0]), int(size[1]))
    _check(split, num_images, seed, size, difficulty)
    photos = list_backgrounds(backgrounds) if backgrounds else None
    img_dir = os.path.join(out_dir, split)
    os.makedirs(img_dir, exist_ok=True)
    ann_path = os.path.join(out_dir, "annotations", f"person_keypoints_{split}.json")
    workers = max(1, min(workers or os.cpu_count() or 1, num_images))
    jobs = [(seed, split, i, size, photos, img_dir, difficulty) for i in range(num_images)]
    t0 = time.perf_counter()
    results: list[tuple[int, list[dict]]] = []
    bar = tqdm(total=num_images, desc=f"synth {split}", unit="img", disable=not progress)
    if workers == 1:
        _init_worker()
        for job in jobs:
            results.append(_work(job))
            bar.update()
    else:
        chunk = max(1, min(32, num_images // (workers * 8)))
        with mp.get_context().Pool(workers, initializer=_init_worker) as pool:
            for r in pool.imap(_work, jobs, chunksize=chunk):
                results.append(r)
                bar.update()
    bar.close()
    elapsed = time.perf_counter() - t0
    images, anns = [], []
    for index, img_anns in sorted(results, key=lambda r: r[0]):
        image_id = index + 1
        images.append({"id": image_id, "file_name": file_name(index), "width": size[0],
                       "height": size[1]})
        for a in img_anns:
            anns.append({**a, "id": len(anns) + 1, "image_id": image_id})
    miou = mean_max_iou(images, anns)
    info = {
        "description": "SynthPose: odkd's synthetic multi-person pose dataset",
        "version": GENERATOR_VERSION, "odkd_version": odkd_version,
        "args": {"split": split, "num_images": num_images, "seed": seed, "size": list(size),
                 "backgrounds": backgrounds, "difficulty": difficulty},
        "mean_max_iou": round(miou, 4), "num_annotations": len(anns),
    }
    doc = {"info": info, "licenses": [], "images": images, "annotations": anns,
           "categories": CATEGORIES}
    atomic_write_text(ann_path, json.dumps(doc, sort_keys=True, separators=(",", ":")))
    n_vis = sum(1 for a in anns for v in a["keypoints"][2::3] if v == 2)
    n_occ = sum(1 for a in anns for v in a["keypoints"][2::3] if v == 1)
    return {
        "split": split, "num_images": num_images, "num_annotations": len(anns),
        "people_per_image": round(len(anns) / num_images, 3), "mean_max_iou": round(miou, 4),
        "visible_keypoints": n_vis, "occluded_keypoints": n_occ,
        "ann_file": ann_path, "image_dir": img_dir, "seconds": round(elapsed, 2),
        "images_per_s": round(num_images / max(elapsed, 1e-9), 1), "workers": workers,
    }
