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
