"""Training samples from cached teacher views: the student's crop and what each teacher says.

One sample is one cached view (:mod:`odkd.distill.cache`) of one person: the crop at the view's
centre, scale, rotation and flip, then, drawn afresh each epoch from (seed, epoch, index), a
colour jitter and (``data.occlusion``) one or two occluding patches, which the teachers never
saw. Targets per teacher ``t`` in ``pt``/``st``:

* ``t_heatmap`` (K, h, w): the codec's Gaussians at the teacher's keypoints, peak 1 (or, with
  ``distill.t.own_heatmaps``, the teacher's own heatmaps);
* ``t_weight`` (K, 1): :func:`confidence_weight` of the teacher's confidence, 0 for a joint
  outside the heatmap;
* ``t_mask`` (1, h, w): the teacher's person probability, for a teacher with a mask.

Ground truth, where the person has labelled keypoints, is encoded as usual (``heatmap``,
``target_weight``); where it has none, both are zero and the GT term teaches nothing.
"""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from odkd.codec import HeatmapCodec
from odkd.config import ConfigError
from odkd.data.dataset import normalize_crop, read_image, warp_crop
from odkd.data.transforms import color_jitter
from odkd.geometry import affine_points, flip_keypoints, get_affine_transform

CONF_RULES = ("hard", "soft")


def check_conf_rule(rule: str, thr: float) -> None:
    if rule not in CONF_RULES:
        raise ConfigError(f"distill.conf_rule: unknown {rule!r}; choose one of {list(CONF_RULES)}")
    if not 0.0 <= thr < 1.0:
        raise ConfigError(f"distill.conf_thr: expected 0 <= thr < 1, got {thr!r}")


def confidence_weight(conf: np.ndarray, rule: str, thr: float) -> np.ndarray:
    """Per-joint weight of a teacher's target from its confidence: ``hard`` 1 where
    ``conf >= thr``; ``soft`` the confidence itself there; 0 below ``thr`` in both."""
    conf = np.asarray(conf, np.float32)
    keep = conf >= thr
    return np.where(keep, 1.0 if rule == "hard" else conf, 0.0).astype(np.float32)


def occlude(crop: np.ndarray, rng: np.random.Generator, prob: float) -> np.ndarray:
    """With probability ``prob``, paint 1 or 2 rectangles (each 5-20 % of the crop's area,
    aspect 0.5-2) of uniform random colour: a person hidden by something the teachers did not
    see (they labelled the clean view)."""
    u, n_extra = rng.random(), rng.random()
    boxes = [rng.random(4) for _ in range(2)]   # always drawn: toggling prob keeps the stream
    colours = rng.integers(0, 256, size=(2, 3))
    if prob <= 0 or u >= prob:
        return crop
    out = crop.copy()
    h, w = crop.shape[:2]
    for b, c in list(zip(boxes, colours))[:1 + int(n_extra < 0.5)]:
        area = (0.05 + 0.15 * b[0]) * h * w
        aspect = 0.5 * 4.0 ** b[1]
        bw = int(min(w, max(1, round(np.sqrt(area * aspect)))))
        bh = int(min(h, max(1, round(np.sqrt(area / aspect)))))
        x0 = int(b[2] * (w - bw + 1))
        y0 = int(b[3] * (h - bh + 1))
        out[y0:y0 + bh, x0:x0 + bw] = c.astype(np.uint8)
    return out


class TeacherViewDataset(Dataset):
    """Samples of the cached ``views`` (arrays of :func:`odkd.distill.cache.build_cache`) of
    ``records``. ``teachers``: the keys (``pt``/``st``) present in the cache."""

    def __init__(self, records, views: dict, codec: HeatmapCodec, flip_pairs, *, seed: int,
                 color_jitter_amp: float, occlusion: float, conf_rule: str, conf_thr: float,
                 cache_images: bool = True, summary: str = ""):
        check_conf_rule(conf_rule, conf_thr)
        self.records = list(records)
        self.views = views
        self.codec = codec
        self.flip_pairs = [list(p) for p in flip_pairs]
        self.seed, self.epoch = int(seed), 0
        self.color_jitter, self.occlusion = float(color_jitter_amp), float(occlusion)
        self.conf_rule, self.conf_thr = conf_rule, float(conf_thr)
        self.input_size, self.heatmap_size = codec.input_size, codec.heatmap_size
        self.teachers = [k for k in ("pt", "st") if f"{k}_keypoints" in views]
        self.masks = [k for k in self.teachers if f"{k}_mask" in views]
        self.cache_images = cache_images
        self._images: dict[str, np.ndarray] = {}
        n = len(views["person"])
        self.summary = summary or f"{n} teacher views of {len(self.records)} people"

    def __len__(self) -> int:
        return len(self.views["person"])

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _image(self, rec) -> np.ndarray:
        img = self._images.get(rec.file_name)
        if img is None:
            img = read_image(rec.file_name)
            if self.cache_images:
                self._images[rec.file_name] = img
        return img

    def __getitem__(self, index: int) -> dict:
        v = self.views
        rec = self.records[int(v["person"][index])]
        image = self._image(rec)
        center, scale = v["center"][index], v["scale"][index]
        rot, flipped = float(v["rotation"][index]), bool(v["flipped"][index])
        if flipped:
            image = np.ascontiguousarray(image[:, ::-1])
        crop = warp_crop(image, center, scale, rot, self.input_size)
        rng = np.random.default_rng([self.seed, self.epoch, int(index)])
        crop = color_jitter(crop, rng, self.color_jitter)
        crop = occlude(crop, rng, self.occlusion)

        kpts = rec.keypoints.astype(np.float32).copy()
        if flipped:
            kpts = flip_keypoints(kpts, rec.width, self.flip_pairs)
        kp_hm = kpts.copy()
        kp_hm[:, :2] = affine_points(kpts[:, :2], get_affine_transform(
            center, scale, rot, self.heatmap_size))
        heatmap, target_weight = self.codec.encode(kp_hm)

        w, h = self.heatmap_size
        sample = {
            "image": torch.from_numpy(normalize_crop(crop)),
            "heatmap": torch.from_numpy(heatmap),
            "target_weight": torch.from_numpy(target_weight),
            "mask": torch.zeros((1, h, w)),
            "mask_weight": torch.tensor(0.0),
            "index": torch.tensor(index, dtype=torch.int64),
        }
        for k in self.teachers:
            kp = v[f"{k}_keypoints"][index]
            hm, inside = self.codec.encode(np.c_[kp[:, :2], np.ones(len(kp), np.float32)])
            if f"{k}_heatmaps" in v:   # the teacher's own maps instead of Gaussians
                hm = v[f"{k}_heatmaps"][index].astype(np.float32) / 255.0
            weight = inside * confidence_weight(kp[:, 2], self.conf_rule, self.conf_thr)
            sample[f"{k}_heatmap"] = torch.from_numpy(hm)
            sample[f"{k}_weight"] = torch.from_numpy(weight.astype(np.float32))
        for k in self.masks:
            m = v[f"{k}_mask"][index].astype(np.float32) / 255.0
            sample[f"{k}_mask"] = torch.from_numpy(m)[None]
            sample[f"{k}_mask_weight"] = torch.tensor(1.0)
        return sample


class MixedViewDataset(Dataset):
    """The teacher ``views`` followed by ``labelled`` people (a
    :class:`~odkd.data.dataset.TopDownDataset`, e.g. SynthPose): a labelled sample carries its
    ground truth and every teacher target at weight 0, so it teaches through the GT term only
    and a real view through the teachers only."""

    KEYS = ("image", "heatmap", "target_weight", "mask", "mask_weight")

    def __init__(self, views: TeacherViewDataset, labelled: Dataset, summary: str = ""):
        self.views, self.labelled = views, labelled
        self.records = views.records   # the real people (the labelled ones are extra)
        self.n_views = len(views)
        if self.n_views == 0:
            raise ConfigError("distill.mix_ann: there are no teacher views to mix it into")
        # zero teacher targets shaped as a view's; weights 0 make their values irrelevant
        self._zero = {k: torch.zeros_like(v) for k, v in views[0].items()
                      if k.startswith(("pt_", "st_"))}
        n = len(labelled)
        self.summary = summary or (f"{views.summary} + {n} labelled people "
                                   f"({n / (n + self.n_views):.0%} of the samples)")

    def __len__(self) -> int:
        return self.n_views + len(self.labelled)

    def set_epoch(self, epoch: int) -> None:
        self.views.set_epoch(epoch)
        self.labelled.set_epoch(epoch)

    def __getitem__(self, index: int) -> dict:
        if index < self.n_views:
            return self.views[index]
        s = self.labelled[index - self.n_views]
        sample = {k: s[k] for k in self.KEYS}
        sample["index"] = torch.tensor(index, dtype=torch.int64)
        sample.update(self._zero)
        return sample


TEACHER_BATCH_KEYS = ("heatmap", "weight", "mask")


def teacher_outputs_from_batch(gt: dict) -> dict:
    """``{"pt": {...} or None, "st": ...}`` from a batch's cached teacher targets, in the form
    :class:`odkd.distill.losses.DistillLoss` takes: ``heatmaps``, ``target_weight`` and the
    mask as logits (the loss compares logits; probabilities are clamped to 1e-4..1-1e-4)."""
    out: dict = {"pt": None, "st": None}
    for k in ("pt", "st"):
        if f"{k}_heatmap" not in gt:
            continue
        o = {"heatmaps": gt[f"{k}_heatmap"], "target_weight": gt[f"{k}_weight"]}
        if f"{k}_mask" in gt:
            p = gt[f"{k}_mask"].clamp(1e-4, 1 - 1e-4)
            o["mask"] = torch.log(p) - torch.log1p(-p)
            if f"{k}_mask_weight" in gt:   # 0 for crops the teacher did not see
                o["mask_weight"] = gt[f"{k}_mask_weight"]
        out[k] = o
    return out
