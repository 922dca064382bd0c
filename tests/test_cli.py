"""Command-line parsing (odkd.cli)."""
import os

import pytest

from odkd.cli import parse_args


def test_overrides_may_follow_options():
    """`odkd train CFG --resume key=value`: the override is kept, not rejected."""
    args = parse_args(["train", "demo_scale", "--resume", "train.epochs=3", "workdir=x"])
    assert args.resume and args.config == "demo_scale"
    assert args.overrides == ["train.epochs=3", "workdir=x"]
    args = parse_args(["distill", "demo", "a.b=1", "--resume", "c.d=2"])
    assert args.overrides == ["a.b=1", "c.d=2"]


def test_unknown_words_are_still_errors(capsys):
    with pytest.raises(SystemExit) as e:
        parse_args(["train", "demo_scale", "--resume", "--bogus"])
    assert e.value.code == 2
    assert "--bogus" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # a command without overrides takes no key=value words
        parse_args(["synth", "--out", "d", "--split", "val", "a=1"])


def test_synth_difficulty_choices_match_the_generator():
    """commands/synth.py writes the levels out (no OpenCV import to build the CLI); they and
    the default must stay those of odkd.synth.scene, as must the experiment's SynthSpec."""
    from odkd.experiment import SynthSpec
    from odkd.synth.scene import DEFAULT_DIFFICULTY, DIFFICULTIES

    args = parse_args(["synth", "--out", "d"])
    assert args.difficulty == DEFAULT_DIFFICULTY == SynthSpec().difficulty
    with pytest.raises(SystemExit):
        parse_args(["synth", "--out", "d", "--difficulty", "extreme"])
    for level in DIFFICULTIES:
        assert parse_args(["synth", "--out", "d", "--difficulty", level]).difficulty == level


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_train_without_config_says_config_is_required(capsys):
    from odkd.cli import main

    assert main(["train"]) == 2
    line = _one_error_line(capsys)
    assert "CONFIG is required" in line and "optional key=value" in line
    assert main(["train", "train.epochs=1"]) == 2
    assert "looks like an override" in _one_error_line(capsys)
    assert parse_args(["train", "demo_scale", "--no-progress"]).no_progress
    assert not parse_args(["distill", "demo_scale"]).no_progress


def test_configs_lists_the_shipped_configs(capsys):
    from odkd.cli import main

    assert main(["configs"]) == 0
    out = capsys.readouterr().out
    assert "demo_scale" in out and "odkd train" in out and "odkd experiment" in out


def test_folder_named_like_a_config_and_missing_demo_data(tmp_path, monkeypatch, capsys):
    """`mkdir demo_scale; odkd train demo_scale` without `make demo`: the shipped config is
    used and the missing data is one line that says how to get it."""
    from odkd.cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "demo_scale").mkdir()
    assert main(["train", "demo_scale"]) == 2
    line = _one_error_line(capsys)
    assert "data.train_ann: demo_out/data/annotations/person_keypoints_train.json" in line
    assert "make demo" in line
    assert not (tmp_path / "runs").exists()


def test_unreadable_image_in_a_worker_is_one_line(tmp_path, capsys):
    """A zero-byte image read by a DataLoader worker (data.workers=1): one line naming it."""
    from odkd.cli import main
    from odkd.synth import generate_split

    generate_split(str(tmp_path), "train", 2, seed=3, size=(96, 96), workers=1, progress=False)
    generate_split(str(tmp_path), "val", 1, seed=4, size=(96, 96), workers=1, progress=False)
    bad = sorted((tmp_path / "train").iterdir())[0]
    bad.write_bytes(b"")
    ann = tmp_path / "annotations"
    rc = main(["train", "demo_scale", f"workdir={tmp_path}/w", "data.workers=1",
               f"data.train_ann={ann}/person_keypoints_train.json",
               f"data.train_images={tmp_path}/train",
               f"data.val_ann={ann}/person_keypoints_val.json", f"data.val_images={tmp_path}/val",
               "data.input_size=[48,64]", "data.cache_images=false", "train.batch_size=64",
               "train.epochs=1", "--no-progress"])
    assert rc == 2
    assert _one_error_line(capsys) == f"odkd train: error: {bad}: cannot read image (missing, " \
                                      "unreadable or not an image file)"


@pytest.mark.slow
def test_demo_lists_only_the_files_it_wrote(tmp_path, capsys):
    """`odkd demo` ends with the list of its files; a config whose runs log no val AP during
    training (the shipped demo's) writes no curves.png, so it must not list one."""
    from odkd.cli import main

    cfg = tmp_path / "tiny_demo.yaml"
    cfg.write_text("""
name: tiny_demo
synth: {size: [96, 96], seed: 1, train: 6, val: 2, occluded: 2, difficulty: easy}
base:
  data: {input_size: [48, 64], workers: 0, cache_images: true}
  train: {batch_size: 4, epochs: 1, max_iters_per_epoch: 2, eval_every: 0}
  eval: {batch_size: 16}
pt: [model.name=litehrnet_18, model.with_mask=false]
st: [model.name=litehrnet_18, model.with_mask=true]
student: [model.with_mask=true]
students: [litehrnet_18]
methods: [scratch]
seeds: [0]
jobs: 1
""")
    out = tmp_path / "demo_out"
    assert main(["demo", "--out", str(out), "--config", str(cfg)]) == 0
    listed = capsys.readouterr().out.split("Files:")[-1].split()
    files = [p for p in listed if p.startswith(str(out)) and not p.endswith("/")]
    assert str(out / "results.csv") in files and str(out / "results.md") in files
    assert not (out / "curves.png").exists() and str(out / "curves.png") not in files
    for p in files:
        assert os.path.exists(p), p


# ------------------------------------------------------------------------------- odkd infer

def _infer_ckpt(tmp_path) -> str:
    """A small odkd checkpoint (shufflenetv2, random weights, 64x64 crops)."""
    import torch

    from odkd.config import Config
    from odkd.models import build_model
    from odkd.models.checkpoint import save_checkpoint

    torch.manual_seed(0)
    cfg = Config()
    cfg.data.input_size = [64, 64]
    path = str(tmp_path / "student.pt")
    save_checkpoint(path, build_model("shufflenetv2", 17).eval(), extra={"config": cfg.to_dict()})
    return path


@pytest.fixture(scope="module")
def infer_ckpt(tmp_path_factory) -> str:
    return _infer_ckpt(tmp_path_factory.mktemp("infer"))


def _detector_or_skip() -> None:
    from odkd.deploy.infer import DETECTOR, detector_status

    missing = detector_status()
    if missing:
        pytest.skip(f"the person detector {DETECTOR} is not usable here: {missing}")


def _results(out) -> list:
    import json

    return json.loads((out / "results.json").read_text())


def test_infer_defaults_run_the_shipped_model_with_auto_boxes():
    args = parse_args(["infer", "photo.jpg"])
    assert (args.input, args.input_option) == ("photo.jpg", None)
    assert (args.checkpoint, args.boxes, args.det_thr) == ("odkd-lightning", "auto", None)
    args = parse_args(["infer", "--input", "clip.mp4", "--boxes", "detect", "--det-thr", "0.7"])
    assert (args.input, args.input_option, args.boxes, args.det_thr) == \
        (None, "clip.mp4", "detect", 0.7)


def test_infer_positional_input_equals_input_option(infer_ckpt, real_mini, tmp_path, capsys):
    from odkd.cli import main

    img = str(real_mini / "coco" / "000000000785.jpg")
    base = ["--checkpoint", infer_ckpt, "--boxes", "full", "--no-progress"]
    assert main(["infer", img, *base, "--out", str(tmp_path / "a")]) == 0
    assert main(["infer", *base, "--input", img, "--out", str(tmp_path / "b")]) == 0
    assert (tmp_path / "a" / "000000000785.png").is_file()
    a, b = _results(tmp_path / "a"), _results(tmp_path / "b")
    assert len(a) == 1 and a == b
    # a folder given as the positional input
    assert main(["infer", str(real_mini / "coco"), *base, "--out", str(tmp_path / "c")]) == 0
    assert len(_results(tmp_path / "c")) == 4
    assert "4 frame(s), 4 person(s)" in capsys.readouterr().out


def test_infer_bad_input_is_one_line(infer_ckpt, tmp_path, capsys):
    from odkd.cli import main

    img = tmp_path / "a.jpg"
    img.write_bytes(b"")
    notes = tmp_path / "notes.txt"
    notes.write_text("x")
    ck = ["--checkpoint", infer_ckpt, "--no-progress", "--out", str(tmp_path / "o")]
    for argv, want in [
        ([str(img), "--input", str(img)], "two inputs given"),
        ([], "no input: give an image, a folder of images or a video"),
        ([str(tmp_path / "missing.jpg")], "missing.jpg: no such image, folder or video"),
        ([str(notes)], "notes.txt: unknown file type"),
        ([str(img), "--boxes", "detections.json"], "--boxes detections.json: neither auto, "
                                                    "detect, full nor an existing"),
        ([str(img), "--boxes", "full"], "a.jpg: cannot read image"),
    ]:
        assert main(["infer", *argv, *ck]) == 2, argv
        line = _one_error_line(capsys)
        assert line.startswith("odkd infer: error: ") and want in line, (argv, line)


def test_infer_auto_without_the_detector_takes_the_whole_image(infer_ckpt, real_mini, tmp_path,
                                                               monkeypatch, capsys):
    from odkd.cli import main

    monkeypatch.setenv("ODKD_CACHE", str(tmp_path / "empty_cache"))   # no detector fetched
    root = str(real_mini / "coco")
    assert main(["infer", root, "--checkpoint", infer_ckpt, "--no-progress",
                 "--out", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out.splitlines()
    notes = [ln for ln in out if "no person detector" in ln]
    assert len(notes) == 1 and "whole image" in notes[0]
    assert "`odkd teachers fetch ssd-mobilenet-v2`" in notes[0]
    assert len(_results(tmp_path / "o")) == 4   # one person per image
    # asking for the detector explicitly is a one-line error saying how to get it
    assert main(["infer", root, "--checkpoint", infer_ckpt, "--boxes", "detect",
                 "--no-progress", "--out", str(tmp_path / "p")]) == 2
    line = _one_error_line(capsys)
    assert "ssd-mobilenet-v2: model not found" in line
    assert "odkd teachers fetch ssd-mobilenet-v2" in line


def test_infer_detect_gives_several_people_per_photo(infer_ckpt, real_mini, tmp_path, capsys):
    """--boxes detect on real photos: a skeleton per detected person; the detections are those
    of odkd.teachers.detector at score 0.5; auto means detect when the detector is present."""
    _detector_or_skip()
    from collections import Counter

    import numpy as np

    from odkd.cli import main
    from odkd.data.dataset import read_image
    from odkd.teachers.detector import get_detector

    root = real_mini / "coco"
    base = ["infer", str(root), "--checkpoint", infer_ckpt, "--no-progress"]
    assert main([*base, "--boxes", "detect", "--out", str(tmp_path / "d")]) == 0
    out = capsys.readouterr().out
    assert "person boxes: ssd-mobilenet-v2 detections scoring >= 0.5" in out
    res = _results(tmp_path / "d")
    per_image = Counter(r["image_id"] for r in res)
    detector = get_detector("ssd-mobilenet-v2")
    found = {int(p.stem): len(detector(read_image(str(p)), 0.5)[0])
             for p in sorted(root.glob("*.jpg"))}
    assert sum(found.values()) >= 6 and max(found.values()) >= 3   # several people per photo
    for img_id, n in found.items():
        assert 1 <= per_image[img_id] <= n, (img_id, per_image[img_id], n)
    assert max(per_image.values()) >= 3
    assert sorted(p.name for p in (tmp_path / "d").glob("*.png")) == \
        sorted(p.stem + ".png" for p in root.glob("*.jpg"))
    # the default (auto) is detect here: the same results
    assert main([*base, "--out", str(tmp_path / "auto")]) == 0
    assert "no person detector" not in capsys.readouterr().out
    auto = _results(tmp_path / "auto")
    assert [r["image_id"] for r in auto] == [r["image_id"] for r in res]
    np.testing.assert_array_equal([r["keypoints"] for r in auto], [r["keypoints"] for r in res])
    # a higher threshold keeps fewer people
    assert main([*base, "--boxes", "detect", "--det-thr", "0.95",
                 "--out", str(tmp_path / "hi")]) == 0
    assert len(_results(tmp_path / "hi")) < len(res)
