"""odkd.distill.cache / views / real: real teachers' outputs computed once per view, kept on
disk (atomic, resumable, refused when made for something else), and served as targets.

The teachers here are odkd checkpoints behind the real-teacher interface (``checkpoint:PATH``),
so the tests need no downloaded model."""
import json
import os

import numpy as np
import pytest
import torch

from odkd.config import Config, load_config
from odkd.distill import cache as cache_mod
from odkd.distill.real import teacher_view_set
from odkd.distill.views import confidence_weight, occlude, teacher_outputs_from_batch
from odkd.errors import DataError
from odkd.models import build_model
from odkd.models.checkpoint import save_checkpoint


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from odkd.synth import generate_split

    root = tmp_path_factory.mktemp("real")
    generate_split(str(root), "train", 4, seed=3, size=(128, 128), workers=1, progress=False)
    torch.manual_seed(0)
    paths = {}
    for name, mask in (("pt", False), ("st", True)):
        model = build_model("mobilenetv2", num_joints=17, with_mask=mask).eval()
        c = Config()
        c.data.input_size = [48, 64]
        paths[name] = str(root / f"{name}.pt")
        save_checkpoint(paths[name], model, extra={"config": c.to_dict()})
    # the people without their keypoints: label-free, as `odkd data import --detect` gives
    ann = root / "annotations" / "person_keypoints_train.json"
    d = json.loads(ann.read_text())
    for a in d["annotations"]:
        a["keypoints"] = [0] * 51
        a["num_keypoints"] = 0
    unl = root / "unlabelled.json"
    unl.write_text(json.dumps(d))
    return root, paths, str(unl)


def _cfg(setup, cache, *extra):
    root, paths, unl = setup
    return load_config(None, [
        f"data.train_ann={unl}", f"data.train_images={root}/train",
        "data.input_size=[48,64]", "distill.views=3", f"distill.cache={cache}",
        f"distill.pt.name=checkpoint:{paths['pt']}", f"distill.st.name=checkpoint:{paths['st']}",
        "model.name=mobilenetv2", "model.with_mask=true", *extra])


def _logs():
    lines = []
    return lines, lines.append


def test_views_are_labelled_once_and_a_killed_or_corrupt_shard_is_recomputed(
        setup, tmp_path, monkeypatch):
    monkeypatch.setattr(cache_mod, "SHARD", 2)   # several shards from a few people
    folder = tmp_path / "cache"
    lines, log = _logs()
    ds = teacher_view_set(_cfg(setup, folder), progress=False, log=log)
    n_people = len(ds.records)
    assert n_people >= 3 and len(ds) == 3 * n_people
    shards = sorted(p for p in os.listdir(folder) if p.startswith("shard-"))
    assert len(shards) == (n_people + 1) // 2
    first = {k: v.copy() for k, v in ds.views.items()}
    assert first["pt_keypoints"].shape == (len(ds), 17, 3)
    assert first["st_mask"].shape == (len(ds), 16, 12) and first["st_mask"].dtype == np.uint8
    assert "pt_mask" not in first            # the PT has no mask head
    assert not first["flipped"][::3].any()   # view 0 is the plain box
    assert (first["rotation"][::3] == 0).all()

    lines, log = _logs()
    teacher_view_set(_cfg(setup, folder), progress=False, log=log)
    assert not any("to label" in ln for ln in lines)   # nothing recomputed

    # a kill before the last shard was renamed into place: it is simply missing
    os.remove(folder / shards[-1])
    # a corrupt entry: bytes flipped inside the compressed arrays
    p = folder / shards[0]
    raw = bytearray(p.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    p.write_bytes(bytes(raw))
    lines, log = _logs()
    again = teacher_view_set(_cfg(setup, folder), progress=False, log=log)
    assert any("to label" in ln for ln in lines)
    assert any("2 shard(s) written" in ln for ln in lines)
    for k, v in first.items():
        np.testing.assert_allclose(again.views[k], v, atol=1e-5, err_msg=k)


def test_a_cache_of_other_teachers_or_other_data_is_refused_in_one_line(setup, tmp_path):
    folder = tmp_path / "cache"
    teacher_view_set(_cfg(setup, folder), progress=False, log=lambda s: None)
    root, paths, unl = setup
    with pytest.raises(DataError, match="other teachers") as e:
        teacher_view_set(_cfg(setup, folder, f"distill.st.name=checkpoint:{paths['pt']}",
                              "distill.seg_weight=0"), progress=False)
    assert "\n" not in str(e.value) and "manifest.json" in str(e.value)
    other = tmp_path / "other.json"
    d = json.loads(open(unl).read())
    d["annotations"] = d["annotations"][:-1]
    other.write_text(json.dumps(d))
    with pytest.raises(DataError, match="another data set"):
        teacher_view_set(_cfg(setup, folder, f"data.train_ann={other}"), progress=False)
    with pytest.raises(DataError, match="views"):
        teacher_view_set(_cfg(setup, folder, "distill.views=4"), progress=False)
    with pytest.raises(DataError, match="seed"):
        teacher_view_set(_cfg(setup, folder, "distill.views_seed=1"), progress=False)
    # another training seed shares the views (the data); only distill.views_seed changes them
    teacher_view_set(_cfg(setup, folder, "train.seed=5"), progress=False)
    # fewer views than the folder holds: its first views of each person
    full = teacher_view_set(_cfg(setup, folder), progress=False)
    two = teacher_view_set(_cfg(setup, folder, "distill.views=2"), progress=False)
    assert len(two) == 2 * len(full.records)
    np.testing.assert_array_equal(two.views["center"], np.delete(
        full.views["center"], np.arange(2, len(full), 3), axis=0))


def test_the_same_cache_serves_another_crop_size_of_the_same_aspect(setup, tmp_path):
    folder = tmp_path / "cache"
    small = teacher_view_set(_cfg(setup, folder), progress=False, log=lambda s: None)
    big = teacher_view_set(_cfg(setup, folder, "data.input_size=[96,128]"), progress=False,
                           log=lambda s: None)
    np.testing.assert_allclose(big.views["pt_keypoints"][..., :2],
                               small.views["pt_keypoints"][..., :2] * 2, rtol=1e-6)
    assert big.views["st_mask"].shape[1:] == (32, 24)
    with pytest.raises(DataError, match="aspect"):
        teacher_view_set(_cfg(setup, folder, "data.input_size=[64,64]"), progress=False)


def test_a_sample_carries_each_teachers_targets_weighted_by_confidence(setup, tmp_path):
    ds = teacher_view_set(_cfg(setup, tmp_path / "c", "distill.conf_thr=0.05"), progress=False,
                          log=lambda s: None)
    s = ds[1]
    assert s["image"].shape == (3, 64, 48)
    assert s["pt_heatmap"].shape == (17, 16, 12) and s["st_mask"].shape == (1, 16, 12)
    assert float(s["target_weight"].sum()) == 0        # no labels: the GT term is off
    kp = ds.views["pt_keypoints"][1]
    inside = (kp[:, 0] >= -0.5) & (kp[:, 0] < 11.5) & (kp[:, 1] >= -0.5) & (kp[:, 1] < 15.5)
    want = np.where((kp[:, 2] >= 0.05) & inside, 1.0, 0.0)
    np.testing.assert_array_equal(s["pt_weight"].numpy(), want)
    batch = {k: v[None] for k, v in s.items() if k.startswith(("pt_", "st_"))}
    out = teacher_outputs_from_batch(batch)
    p = torch.sigmoid(out["st"]["mask"])
    torch.testing.assert_close(p, s["st_mask"][None].clamp(1e-4, 1 - 1e-4), atol=1e-5,
                               rtol=1e-4)


def test_confidence_rules_and_occlusion():
    c = np.array([0.1, 0.3, 0.9], np.float32)
    np.testing.assert_array_equal(confidence_weight(c, "hard", 0.3), [0, 1, 1])
    np.testing.assert_allclose(confidence_weight(c, "soft", 0.3), [0, 0.3, 0.9])
    crop = np.full((64, 48, 3), 7, np.uint8)
    rng = np.random.default_rng(0)
    assert occlude(crop, rng, 0.0) is crop
    hit = [int((occlude(crop, np.random.default_rng(i), 1.0) != 7).any(axis=2).sum())
           for i in range(20)]
    assert min(hit) > 0.04 * 64 * 48 * 0.5 and max(hit) <= 64 * 48


def test_distill_trains_on_cached_real_teachers(setup, tmp_path):
    from odkd.engine.distill import distill

    root, _, _ = setup
    cfg = _cfg(setup, tmp_path / "c", f"workdir={tmp_path / 'run'}",
               f"data.val_ann={root}/annotations/person_keypoints_train.json",
               f"data.val_images={root}/train", "data.workers=0", "data.occlusion=0.5",
               "train.epochs=2", "train.batch_size=4", "train.eval_every=0",
               "distill.gt_weight=0", "distill.conf_thr=0.0")
    out = distill(cfg, progress=False, final_eval=False)
    rows = open(tmp_path / "run" / "log.csv").read().splitlines()
    head = rows[0].split(",")
    last = dict(zip(head, rows[-1].split(",")))
    first = dict(zip(head, rows[1].split(",")))
    assert float(first["pt_kpt"]) > 0 and float(first["st_kpt"]) == 0   # PT first
    assert float(last["st_kpt"]) > 0 and float(last["st_seg"]) > 0      # then ST + mask
    assert os.path.exists(out["last"])


def test_people_trains_on_an_even_share_of_the_cached_people(setup, tmp_path):
    folder = tmp_path / "c"
    full = teacher_view_set(_cfg(setup, folder), progress=False, log=lambda s: None)
    part = teacher_view_set(_cfg(setup, folder, "distill.people=2"), progress=False,
                            log=lambda s: None)
    people = sorted(set(part.views["person"].tolist()))
    assert people == [0, len(full.records) - 1] and len(part) == 2 * 3


def test_own_heatmaps_are_cached_and_become_the_target(setup, tmp_path):
    ds = teacher_view_set(_cfg(setup, tmp_path / "c", "distill.st.own_heatmaps=true"),
                          progress=False, log=lambda s: None)
    own = ds.views["st_heatmaps"]
    assert own.shape == (len(ds), 17, 16, 12) and own.dtype == np.uint8
    assert "pt_heatmaps" not in ds.views
    s = ds[2]
    np.testing.assert_allclose(s["st_heatmap"].numpy(), own[2] / 255.0, atol=1e-6)
    # the Gaussian target of the other teacher is unchanged
    assert float(s["pt_heatmap"].max()) == pytest.approx(1.0, abs=0.05) or \
        float(s["pt_weight"].sum()) == 0
    # a folder made without them is not served to a run that wants them
    teacher_view_set(_cfg(setup, tmp_path / "d"), progress=False, log=lambda s: None)
    with pytest.raises(DataError, match="own_heatmaps"):
        teacher_view_set(_cfg(setup, tmp_path / "d", "distill.st.own_heatmaps=true"),
                         progress=False)


def test_a_folder_with_own_heatmaps_serves_a_run_without_them(setup, tmp_path):
    with_own = teacher_view_set(_cfg(setup, tmp_path / "c", "distill.st.own_heatmaps=true"),
                                progress=False, log=lambda s: None)
    lines, log = _logs()
    plain = teacher_view_set(_cfg(setup, tmp_path / "c"), progress=False, log=log)
    assert not any("to label" in s for s in lines)        # nothing recomputed
    assert "st_heatmaps" not in plain.views
    np.testing.assert_array_equal(plain.views["st_keypoints"], with_own.views["st_keypoints"])
    # its target is the Gaussian at the teacher's keypoints, as in a folder made without them
    fresh = teacher_view_set(_cfg(setup, tmp_path / "e"), progress=False, log=lambda s: None)
    np.testing.assert_array_equal(plain[1]["st_heatmap"].numpy(), fresh[1]["st_heatmap"].numpy())


def test_labelled_people_mix_in_through_their_ground_truth_only(setup, tmp_path):
    from odkd.config import ConfigError
    from odkd.distill.views import MixedViewDataset

    root, _, _ = setup
    labelled = root / "annotations" / "person_keypoints_train.json"
    mix = [f"distill.mix_ann={labelled}", f"distill.mix_images={root}/train"]
    folder = tmp_path / "c"
    views = teacher_view_set(_cfg(setup, folder), progress=False, log=lambda s: None)
    ds = teacher_view_set(_cfg(setup, folder, *mix), progress=False, log=lambda s: None)
    assert isinstance(ds, MixedViewDataset) and len(ds.records) == len(views.records)
    n_people = len(json.loads(labelled.read_text())["annotations"])
    # the training filter keeps people with labelled joints
    assert 0 < len(ds.labelled) <= n_people and len(ds) == len(views) + len(ds.labelled)
    assert "labelled people" in ds.summary
    real, synth = ds[0], ds[len(views)]
    assert real.keys() == synth.keys()   # one batch can hold both
    assert float(real["target_weight"].sum()) == 0 and float(real["st_mask_weight"]) == 1
    assert float(synth["target_weight"].sum()) > 0 and float(synth["heatmap"].max()) > 0.9
    for k in ("pt_weight", "st_weight", "st_mask_weight"):
        assert float(synth[k].sum()) == 0   # no teacher saw this crop
    ds.set_epoch(1)
    with pytest.raises(ConfigError, match="distill.gt_weight"):
        teacher_view_set(_cfg(setup, folder, *mix, "distill.gt_weight=0"), progress=False,
                         log=lambda s: None)
    with pytest.raises(ConfigError, match="distill.mix_ann"):
        teacher_view_set(_cfg(setup, folder, f"distill.mix_ann={tmp_path}/none.json"),
                         progress=False, log=lambda s: None)
