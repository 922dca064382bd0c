"""Real teachers' outputs, computed once per augmented view and kept on disk.

Real teachers (:mod:`odkd.teachers`: TFLite / ONNX models with their own crops) cost 5-25 ms a
crop on a CPU, about what a student step costs, and they give the same answer for the same view
every epoch. So each person of ``data.train_ann`` gets ``distill.views`` views: view 0 is the
plain box, the others a random scale, rotation, horizontal flip and half-body box (the
augmentation of :mod:`odkd.data.transforms`, whose half-body box is found from the PT's
keypoints on view 0, since there are no labels). Each teacher runs once on each view, on the
clean image; what it says is stored in the student's heatmap frame: keypoints (x, y,
confidence) and, for a teacher with a mask, the mask as uint8. The colour jitter and occluding
patches are drawn afresh every epoch on the student's crop only (:mod:`odkd.distill.views`): the
student learns to see through them what the teacher saw without them.

Layout of a cache folder::

    manifest.json       what it was made from: data (sha256 of the json), views, sizes, teachers
    shard-00000.npz     people [0, SHARD) with all their views and every teacher's outputs
    ...

Each shard is written atomically once all its people are done, so a kill loses at most the
shard in progress; a rerun computes only missing or unreadable shards. A folder made for other
teachers, data or views is refused with one line.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import time
import zipfile
from dataclasses import asdict, dataclass, field

import numpy as np

from odkd.config import Config
from odkd.data.coco import PersonRecord
from odkd.data.transforms import AugmentParams, TrainAugment
from odkd.errors import DataError
from odkd.geometry import affine_points, box_to_center_scale, get_affine_transform
from odkd.teachers.store import cache_root, sha256_file
from odkd.utils import atomic_write_bytes, atomic_write_text

FORMAT = "odkd-teacher-views"
VERSION = 1
SHARD = 32        # people per shard: a kill loses at most this many people's views
TEACHER_KEYS = ("pt", "st")


@dataclass
class CacheSpec:
    """Everything the cached outputs depend on; a folder holds outputs for exactly one spec."""
    data: str                   # data.train_ann (as given)
    data_sha256: str
    people: int
    views: int
    seed: int
    input_size: list
    heatmap_size: list
    padding: float
    augment: dict
    teachers: dict              # {"pt": name or "", "st": name or ""}
    format: str = FORMAT
    version: int = VERSION
    own_heatmaps: list = field(default_factory=list)   # teachers whose own heatmaps are kept

    def key(self) -> str:
        return hashlib.sha1(json.dumps(_comparable(asdict(self)), sort_keys=True).encode()
                            ).hexdigest()[:12]

    def describe(self) -> str:
        t = ", ".join(f"{k.upper()} {v}" for k, v in self.teachers.items() if v)
        return (f"{t}; {self.people} people of {os.path.basename(self.data)} "
                f"(sha256 {self.data_sha256[:12]}); {self.views} views, seed {self.seed}, "
                f"input {self.input_size[0]}x{self.input_size[1]}")


def _comparable(d: dict) -> dict:
    """What must match for a folder to serve a run: not the json's path (the same file
    elsewhere is the same data) and not the crop size, only its aspect ratio (outputs are
    rescaled from the stored heatmap frame to the run's, :func:`rescale`)."""
    d = dict(d)
    d.pop("data", None)
    if not d.get("own_heatmaps"):
        d.pop("own_heatmaps", None)   # folders from before the field hold none
    size = d.pop("input_size", None)
    d.pop("heatmap_size", None)
    if size:
        d["aspect"] = round(float(size[0]) / float(size[1]), 6)
    return d


def rescale(arrays: dict, have, want) -> dict:
    """Outputs stored in heatmap frame ``have`` (w, h) -> frame ``want`` of the same aspect
    ratio: keypoints scaled (odkd.geometry maps the crop's edges to 0 and w in every frame, so
    x' = x * w' / w), masks resized."""
    import cv2

    if tuple(have) == tuple(want):
        return arrays
    s = np.array([want[0] / have[0], want[1] / have[1]], np.float32)
    out = dict(arrays)
    for k, a in arrays.items():
        if k.endswith("_keypoints"):
            b = a.copy()
            b[..., :2] = a[..., :2] * s
            out[k] = b
        elif k.endswith("_mask"):
            out[k] = np.stack([cv2.resize(m, tuple(int(v) for v in want),
                                          interpolation=cv2.INTER_LINEAR) for m in a])
        elif k.endswith("_heatmaps"):
            out[k] = np.stack([[cv2.resize(c, tuple(int(v) for v in want),
                                           interpolation=cv2.INTER_LINEAR) for c in m]
                               for m in a])
    return out


def cache_spec(cfg: Config, records: list[PersonRecord]) -> CacheSpec:
    d = cfg.data
    stride = d.heatmap_stride
    params = AugmentParams.from_config(d)
    aug = {k: v for k, v in asdict(params).items() if k != "color_jitter"}  # jitter is online
    return CacheSpec(
        data=d.train_ann, data_sha256=sha256_file(d.train_ann), people=len(records),
        views=int(cfg.distill.views), seed=int(cfg.distill.views_seed),
        input_size=[int(v) for v in d.input_size],
        heatmap_size=[int(d.input_size[0]) // stride, int(d.input_size[1]) // stride],
        padding=float(d.padding), augment=aug,
        teachers={k: getattr(cfg.distill, k).name for k in TEACHER_KEYS},
        own_heatmaps=[k for k in TEACHER_KEYS
                      if getattr(cfg.distill, k).name and getattr(cfg.distill, k).own_heatmaps])


def default_cache_dir(spec: CacheSpec) -> str:
    root = cache_root()
    stem = os.path.splitext(os.path.basename(spec.data))[0]
    return os.path.join(root, "views", f"{stem}-{spec.key()}")


def check_manifest(folder: str, spec: CacheSpec) -> CacheSpec:
    """The spec the folder's outputs were made with (``spec`` for a new folder); refuse a
    folder made for another data set, teachers or views (one line naming what differs)."""
    path = os.path.join(folder, "manifest.json")
    if not os.path.exists(path):
        return spec
    try:
        with open(path) as f:
            have = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise DataError(f"{path}: unreadable teacher-cache manifest ({e}); delete the folder "
                        "or choose another distill.cache") from None
    stored = dict(have)
    have, want = _comparable(have), _comparable(asdict(spec))
    # a folder with more views per person serves a run that wants fewer: views are numbered
    # per person and seeded by (seed, person, view), so its first ones are that run's views
    if isinstance(have.get("views"), int) and have["views"] >= want["views"]:
        have["views"] = want["views"]
    # likewise a folder that keeps a teacher's own heatmaps serves a run that wants its
    # keypoints only (the heatmaps are then dropped on reading)
    if set(want.get("own_heatmaps", [])) <= set(have.get("own_heatmaps", [])):
        if want.get("own_heatmaps"):
            have["own_heatmaps"] = want["own_heatmaps"]
        else:
            have.pop("own_heatmaps", None)
    if have != want:
        diff = sorted(k for k in set(have) | set(want) if have.get(k) != want.get(k))
        what = {"teachers": "other teachers", "data_sha256": "another data set",
                "people": "another data set"}
        why = ", ".join(dict.fromkeys(what.get(k, k) for k in diff))
        raise DataError(f"{path}: this teacher cache was made for {why} "
                        f"({', '.join(f'{k}: {have.get(k)!r}' for k in diff)}); this run wants "
                        f"{', '.join(f'{k}: {want.get(k)!r}' for k in diff)}; set "
                        "distill.cache to another folder (or delete this one)")
    try:
        return CacheSpec(**stored)
    except TypeError:
        raise DataError(f"{path}: not a teacher-cache manifest of this odkd version; delete "
                        "the folder or choose another distill.cache") from None


# ------------------------------------------------------------------------------------- views
def image_keypoints(kp_hm: np.ndarray, center, scale, heatmap_size) -> np.ndarray:
    """Heatmap-frame keypoints of an unrotated view -> image pixels (confidence kept)."""
    inv = get_affine_transform(center, scale, 0.0, tuple(heatmap_size), inv=True)
    out = kp_hm.copy()
    out[:, :2] = affine_points(kp_hm[:, :2], inv)
    return out


def plain_view(rec: PersonRecord, spec: CacheSpec) -> dict:
    """View 0 of a person: its box at the crop's aspect ratio, padded, upright, unflipped."""
    aspect = spec.input_size[0] / spec.input_size[1]
    center, scale = box_to_center_scale(rec.bbox, aspect, spec.padding)
    return {"center": center, "scale": scale, "rotation": 0.0, "flipped": False}


def sample_views(image: np.ndarray, plain: dict, hint: np.ndarray, spec: CacheSpec,
                 augment: TrainAugment, index: int, hint_thr: float) -> list[dict]:
    """The views of person ``index``: ``plain`` (view 0), then random ones (seeded by
    (seed, index, view)). ``hint``: (K, 3) image keypoints + confidence for the half-body
    box (confidence >= ``hint_thr`` counts as visible)."""
    center, scale = plain["center"], plain["scale"]
    views = [plain]
    kp = np.c_[hint[:, :2], (hint[:, 2] >= hint_thr).astype(np.float32)]
    for v in range(1, spec.views):
        rng = np.random.default_rng([spec.seed, index, v])
        a = augment(image, kp, center, scale, rng)
        views.append({"center": a.center, "scale": a.scale, "rotation": a.rotation,
                      "flipped": a.flipped})
    return views


def _flip(image: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(image[:, ::-1])


def _shard_path(folder: str, i: int) -> str:
    return os.path.join(folder, f"shard-{i:05d}.npz")


def _expected_keys(teachers: dict) -> set[str]:
    keys = {"person", "center", "scale", "rotation", "flipped"}
    for k, t in teachers.items():
        keys.add(f"{k}_keypoints")
        if t.has_mask:
            keys.add(f"{k}_mask")
    return keys


def read_shard(path: str, first: int, n_people: int, spec: CacheSpec, mask_keys
               ) -> dict | None:
    """A shard's arrays, or None when it is missing, truncated, corrupt or not the expected
    content (then it is recomputed, never trained on)."""
    if not os.path.exists(path):
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}   # reads every member: zip CRCs are checked
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, KeyError):
        return None
    n = n_people * spec.views
    hw = (spec.heatmap_size[1], spec.heatmap_size[0])
    want = {"person": (n,), "center": (n, 2), "scale": (n, 2), "rotation": (n,),
            "flipped": (n,)}
    for k in TEACHER_KEYS:
        if spec.teachers.get(k):
            want[f"{k}_keypoints"] = (n, 17, 3)
    for k in mask_keys:
        want[f"{k}_mask"] = (n,) + hw
    for k in spec.own_heatmaps:
        want[f"{k}_heatmaps"] = (n, 17) + hw
    if set(arrays) != set(want) or any(arrays[k].shape != s for k, s in want.items()):
        return None
    if not np.array_equal(arrays["person"], np.repeat(np.arange(first, first + n_people),
                                                      spec.views)):
        return None
    for k, a in arrays.items():
        if a.dtype.kind == "f" and not np.isfinite(a).all():
            return None
    return arrays


def build_cache(folder: str, spec: CacheSpec, records: list[PersonRecord], teachers: dict,
                read_image, flip_pairs, upper_body_ids, hint_thr: float = 0.3,
                progress: bool = True, log=print) -> dict:
    """Compute the missing shards of ``folder`` and return all arrays concatenated.

    ``teachers``: {"pt": Teacher or None, "st": Teacher or None} (the names of ``spec``).
    ``read_image(record) -> RGB uint8``.
    """
    from tqdm import tqdm

    want_hm, want_views, want_own = list(spec.heatmap_size), spec.views, spec.own_heatmaps
    spec = check_manifest(folder, spec)   # outputs are computed in the folder's own frame
    os.makedirs(folder, exist_ok=True)
    manifest = os.path.join(folder, "manifest.json")
    if not os.path.exists(manifest):
        atomic_write_text(manifest, json.dumps(asdict(spec), indent=1) + "\n")
    teachers = {k: t for k, t in teachers.items() if t is not None}
    mask_keys = [k for k, t in teachers.items() if t.has_mask]
    t_names = {k: t.name for k, t in teachers.items()}
    hint_key = "pt" if "pt" in teachers else next(iter(teachers))
    aspect = spec.input_size[0] / spec.input_size[1]
    augment = TrainAugment(AugmentParams(**spec.augment), flip_pairs, upper_body_ids, aspect)
    hm_size = tuple(spec.heatmap_size)
    n_shards = (len(records) + SHARD - 1) // SHARD
    shards, todo = [None] * n_shards, []
    for s in range(n_shards):
        first = s * SHARD
        n = min(SHARD, len(records) - first)
        shards[s] = read_shard(_shard_path(folder, s), first, n, spec, mask_keys)
        if shards[s] is None:
            todo.append(s)
    if todo:
        done_people = sum(min(SHARD, len(records) - s * SHARD) for s in range(n_shards)
                          if shards[s] is not None)
        log(f"[odkd] teacher cache {folder}: {len(records) - done_people} of {len(records)} "
            f"people to label ({spec.views} views each; {spec.describe()})")
    t0 = time.time()
    bar = tqdm(total=sum(min(SHARD, len(records) - s * SHARD) for s in todo),
               desc="teacher views", disable=not progress or not todo, dynamic_ncols=True)
    for s in todo:
        first = s * SHARD
        n = min(SHARD, len(records) - first)
        out: dict[str, list] = {k: [] for k in ("person", "center", "scale", "rotation",
                                                 "flipped")}
        for k in teachers:
            out[f"{k}_keypoints"] = []
        for k in mask_keys:
            out[f"{k}_mask"] = []
        for k in spec.own_heatmaps:
            out[f"{k}_heatmaps"] = []
        for i in range(first, first + n):
            rec = records[i]
            image = read_image(rec)
            plain = plain_view(rec, spec)
            h0 = teachers[hint_key](image, plain["center"][None], plain["scale"][None], [0.0],
                                    hm_size)
            hint = image_keypoints(h0["keypoints"][0], plain["center"], plain["scale"], hm_size)
            views = sample_views(image, plain, hint, spec, augment, i, hint_thr)
            flipped = None
            per = {k: [] for k in teachers}
            for v in views:
                src = image
                if v["flipped"]:
                    flipped = _flip(image) if flipped is None else flipped
                    src = flipped
                for k, t in teachers.items():
                    own = k in spec.own_heatmaps
                    if k == hint_key and v is views[0] and not t.has_mask and not own:
                        per[k].append(h0)   # view 0 of the hint teacher is already known
                        continue
                    per[k].append(t(src, v["center"][None], v["scale"][None],
                                    [v["rotation"]], hm_size, own_heatmaps=own))
            for j, v in enumerate(views):
                out["person"].append(i)
                out["center"].append(np.asarray(v["center"], np.float32))
                out["scale"].append(np.asarray(v["scale"], np.float32))
                out["rotation"].append(np.float32(v["rotation"]))
                out["flipped"].append(bool(v["flipped"]))
                for k in teachers:
                    out[f"{k}_keypoints"].append(per[k][j]["keypoints"][0].astype(np.float32))
                for k in mask_keys:
                    m = per[k][j]["mask"][0, 0]
                    out[f"{k}_mask"].append(np.round(np.clip(m, 0, 1) * 255).astype(np.uint8))
                for k in spec.own_heatmaps:
                    if "own_heatmaps" not in per[k][j]:
                        raise DataError(f"distill.{k}.own_heatmaps: teacher {t_names[k]} gives "
                                        "no heatmaps of its own (BlazePose does; MoveNet's "
                                        "runtimes give keypoints only)")
                    hmo = per[k][j]["own_heatmaps"][0]
                    out[f"{k}_heatmaps"].append(
                        np.round(np.clip(hmo, 0, 1) * 255).astype(np.uint8))
            bar.update(1)
        arrays = {k: np.stack(v) for k, v in out.items()}
        arrays["person"] = arrays["person"].astype(np.int64)
        for k, a in arrays.items():
            if a.dtype.kind == "f" and not np.isfinite(a).all():
                raise DataError(f"teacher cache {folder}: non-finite {k} for people "
                                f"{first}-{first + n - 1}; a teacher gave NaN/inf")
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        atomic_write_bytes(_shard_path(folder, s), buf.getvalue())
        shards[s] = arrays
    bar.close()
    if todo:
        log(f"[odkd] teacher cache: {len(todo)} shard(s) written in {time.time() - t0:.0f} s")
    if not shards:
        return {}
    arrays = {k: np.concatenate([sh[k] for sh in shards]) for k in shards[0]}
    if want_views < spec.views:
        keep = np.arange(len(arrays["person"])) % spec.views < want_views
        arrays = {k: v[keep] for k, v in arrays.items()}
    for k in set(spec.own_heatmaps) - set(want_own):
        arrays.pop(f"{k}_heatmaps", None)
    return rescale(arrays, spec.heatmap_size, want_hm)
