"""Distillation from real teachers without labels: the training set of cached teacher views.

``distill.pt.name`` / ``distill.st.name`` name teachers of :mod:`odkd.teachers` (e.g.
``movenet-lightning`` and ``movenet-thunder+blazepose-heavy``). Every person box of
``data.train_ann`` (labelled or not) is a training person; its views and the teachers' outputs
come from :mod:`odkd.distill.cache`, the samples from :mod:`odkd.distill.views`. A teacher with
both ``name`` and ``checkpoint`` is run online for its heatmaps (classic distillation from its
soft maps), weighted by the cached confidences of ``name``.
"""
from __future__ import annotations

import os

import numpy as np

from odkd.config import Config, ConfigError, DistillConfig
from odkd.errors import DataError, OdkdError

TEACHER_THREADS = 1   # teachers label views one crop at a time: a second thread barely helps


def real_teachers_in_use(cfg: DistillConfig) -> bool:
    return bool(cfg.pt.name or cfg.st.name)


def teacher_view_set(cfg: Config, progress: bool = True, build: bool = True, log=print):
    """The :class:`~odkd.distill.views.TeacherViewDataset` of ``cfg`` (building the missing
    cache shards first when ``build``), followed by the labelled people of
    ``distill.mix_ann`` when it is set."""
    from odkd.codec import HeatmapCodec
    from odkd.data.coco import load_coco
    from odkd.data.dataset import read_image
    from odkd.distill.cache import build_cache, cache_spec, check_manifest, default_cache_dir
    from odkd.distill.views import TeacherViewDataset, check_conf_rule
    from odkd.teachers import get_teacher

    d, dc = cfg.data, cfg.distill
    check_conf_rule(dc.conf_rule, dc.conf_thr)
    if dc.views < 1:
        raise ConfigError(f"distill.views: expected >= 1, got {dc.views}")
    if not (d.train_ann and os.path.exists(d.train_ann)):
        raise ConfigError(f"data.train_ann: {d.train_ann or '(empty)'} does not exist; give "
                          "the images to distil on as a COCO json (`odkd data import`)")
    coco = load_coco(d.train_ann, d.train_images, train=False, flip_pairs=d.flip_pairs,
                     upper_body_ids=d.upper_body_ids, check_images=True, unlabelled=True)
    records = coco.records
    if not records:
        raise DataError(f"{d.train_ann}: no person boxes to distil on (field annotations); "
                        "import with --detect or --whole-image-box")
    spec = cache_spec(cfg, records)
    folder = dc.cache or default_cache_dir(spec)
    check_manifest(folder, spec)   # a folder made for something else: refused before loading
    teachers = {}
    for k in ("pt", "st"):
        name = getattr(dc, k).name
        try:
            teachers[k] = get_teacher(name, num_threads=TEACHER_THREADS) if name else None
        except OdkdError as e:
            raise type(e)(f"distill.{k}.name: {e}") from None
        if k == "st" and teachers[k] is not None and dc.seg_weight > 0 \
                and not teachers[k].has_mask and cfg.model.with_mask:
            raise ConfigError(f"distill.st.name: {name} gives no mask but distill.seg_weight "
                              f"is {dc.seg_weight}; add a mask teacher ({name}+blazepose-heavy) "
                              "or set distill.seg_weight=0")

    def image_of(rec):
        return read_image(rec.file_name)

    views = build_cache(folder, spec, records, teachers, image_of, coco.flip_pairs,
                        coco.upper_body_ids, hint_thr=dc.conf_thr, progress=progress, log=log)
    if dc.people < 0:
        raise ConfigError(f"distill.people: expected >= 0, got {dc.people}")
    if dc.people and dc.people < len(records):
        # evenly spaced people: every set of a merged json keeps its share
        keep = np.unique(np.linspace(0, len(records) - 1, dc.people).round().astype(np.int64))
        sel = np.isin(views["person"], keep)
        views = {k: v[sel] for k, v in views.items()}
    codec = HeatmapCodec.from_config(cfg)
    n_people = len(np.unique(views["person"]))
    view_set = TeacherViewDataset(
        records, views, codec, coco.flip_pairs, seed=cfg.train.seed,
        color_jitter_amp=d.color_jitter, occlusion=d.occlusion, conf_rule=dc.conf_rule,
        conf_thr=dc.conf_thr, cache_images=True,
        summary=f"{len(views['person'])} teacher views ({dc.views} per person) of "
                f"{n_people} people of {coco.summary()} (cache {folder})")
    return _mixed(cfg, view_set) if dc.mix_ann else view_set


def _mixed(cfg: Config, view_set):
    """``view_set`` followed by the labelled people of ``distill.mix_ann``
    (:class:`~odkd.distill.views.MixedViewDataset`)."""
    import dataclasses

    from odkd.data.dataset import build_datasets
    from odkd.distill.views import MixedViewDataset

    dc = cfg.distill
    if not os.path.exists(dc.mix_ann):
        raise ConfigError(f"distill.mix_ann: {dc.mix_ann} does not exist")
    if dc.gt_weight <= 0:
        raise ConfigError(f"distill.mix_ann: its people teach through their ground truth, but "
                          f"distill.gt_weight is {dc.gt_weight}; set distill.gt_weight > 0")
    mix_cfg = dataclasses.replace(cfg, data=dataclasses.replace(
        cfg.data, train_ann=dc.mix_ann, train_images=dc.mix_images, val_ann=""))
    labelled, _, _ = build_datasets(mix_cfg, val=False)
    if labelled is None or len(labelled) == 0:
        raise DataError(f"{dc.mix_ann}: no labelled people to mix in (field annotations)")
    return MixedViewDataset(view_set, labelled)
