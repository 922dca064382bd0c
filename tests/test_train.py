"""Training loop: resume after an interruption is exact; configs and checkpoints round-trip."""
import os

import pytest
import torch

from odkd.config import ConfigError, load_config
from odkd.engine.step import SupervisedObjective, lr_at
from odkd.engine.train import train
from odkd.models.checkpoint import read_checkpoint


@pytest.fixture(scope="module")
def tiny_synth(tmp_path_factory):
    from odkd.synth import generate_split

    root = tmp_path_factory.mktemp("synth")
    generate_split(str(root), "train", 6, seed=3, size=(128, 128), workers=1, progress=False)
    generate_split(str(root), "val", 3, seed=4, size=(128, 128), workers=1, progress=False)
    return root


def _cfg(root, workdir, *extra):
    return load_config(None, [
        f"workdir={workdir}",
        f"data.train_ann={root}/annotations/person_keypoints_train.json",
        f"data.train_images={root}/train",
        f"data.val_ann={root}/annotations/person_keypoints_val.json",
        f"data.val_images={root}/val",
        "data.input_size=[48,64]", "data.workers=0", "model.name=litehrnet_18",
        "train.batch_size=4", "train.max_iters_per_epoch=2", "train.eval_every=0",
        "eval.batch_size=16", *extra])


class CrashAfter(SupervisedObjective):
    """Simulates a kill after ``calls`` training steps (counts calls, whatever the step
    argument means)."""

    def __init__(self, calls):
        super().__init__()
        self.calls, self.n = calls, 0

    def __call__(self, *args):
        self.n += 1
        if self.n > self.calls:
            raise KeyboardInterrupt("simulated interruption")
        return super().__call__(*args)


def test_resume_after_interruption_is_exact(tiny_synth, tmp_path):
    ref = _cfg(tiny_synth, tmp_path / "ref", "train.epochs=3")
    out_ref = train(ref, progress=False)

    cut = _cfg(tiny_synth, tmp_path / "cut", "train.epochs=3")
    with pytest.raises(KeyboardInterrupt):
        train(cut, objective=CrashAfter(calls=5), progress=False)  # 2 steps/epoch: in epoch 3
    assert read_checkpoint(str(tmp_path / "cut" / "last.pt"))["epoch"] == 2
    out_cut = train(cut, resume=True, progress=False)

    a = read_checkpoint(out_ref["last"])
    b = read_checkpoint(out_cut["last"])
    assert a["epoch"] == b["epoch"] == 3 and a["it_global"] == b["it_global"] == 6
    for k, v in a["state_dict"].items():
        assert torch.equal(v, b["state_dict"][k]), k
    assert out_ref["metrics"] == out_cut["metrics"]
    # logs, resolved config and both checkpoints exist
    for f in ("config.yaml", "log.csv", "best.pt", "last.pt"):
        assert (tmp_path / "cut" / f).exists(), f
    assert load_config(str(tmp_path / "cut" / "config.yaml")).train.epochs == 3


def test_resume_without_checkpoint_is_a_clear_error(tiny_synth, tmp_path):
    cfg = _cfg(tiny_synth, tmp_path / "none", "train.epochs=1")
    with pytest.raises(ConfigError, match="last.pt"):
        train(cfg, resume=True, progress=False)


def test_missing_data_paths_are_named():
    with pytest.raises(ConfigError, match="data.train_ann"):
        train(load_config(None, ["workdir=/tmp/x"]), progress=False)


def test_lr_schedule_steps_and_warmup():
    cfg = load_config(None, ["train.lr=0.01", "train.lr_steps=[2,4]", "train.lr_factor=0.1",
                             "train.warmup_iters=10"])
    assert lr_at(cfg, 0, 0) == pytest.approx(1e-5)
    assert lr_at(cfg, 0, 5) == pytest.approx(0.01 * (0.001 + 0.999 * 0.5))
    assert lr_at(cfg, 1, 100) == pytest.approx(0.01)
    assert lr_at(cfg, 2, 100) == pytest.approx(0.001)
    assert lr_at(cfg, 5, 100) == pytest.approx(0.0001)


def test_resume_refuses_a_changed_config_and_names_the_keys(tiny_synth, tmp_path):
    wd = tmp_path / "run"
    one = "train.max_iters_per_epoch=1"
    train(_cfg(tiny_synth, wd, "train.epochs=2", one), progress=False)
    saved = (wd / "config.yaml").read_text()
    for extra, names in [(["data.input_size=[64,96]"], ["data.input_size"]),
                         (["train.lr=0.01"], ["train.lr"]),
                         (["train.batch_size=2", "train.seed=5"],
                          ["train.batch_size", "train.seed"])]:
        cfg = _cfg(tiny_synth, wd, "train.epochs=3", one, *extra)
        with pytest.raises(ConfigError, match="different config") as e:
            train(cfg, resume=True, progress=False)
        assert all(n in str(e.value) for n in names), str(e.value)
        assert "train.epochs" in str(e.value)  # says what may change
        assert (wd / "config.yaml").read_text() == saved  # not overwritten by the refused run
    with pytest.raises(ConfigError, match="finished 2 epochs, more than train.epochs=1"):
        train(_cfg(tiny_synth, wd, "train.epochs=1", one), resume=True, progress=False)
    # safe changes (more epochs, eval and log cadence) continue the run
    out = train(_cfg(tiny_synth, wd, "train.epochs=3", one, "train.eval_every=1",
                     "train.log_every=1"), resume=True, progress=False)
    assert read_checkpoint(out["last"])["epoch"] == 3


def test_diverged_training_saves_nothing(tiny_synth, tmp_path):
    """train.lr=1e9: the first step leaves finite but huge weights whose output overflows; no
    checkpoint of such a model may be written."""
    from odkd.errors import NonFiniteError, OdkdError

    cfg = _cfg(tiny_synth, tmp_path / "nan", "train.epochs=2", "train.max_iters_per_epoch=1",
               "train.lr=1e9")
    with pytest.raises(NonFiniteError, match="train.lr") as e:
        train(cfg, progress=False)
    assert isinstance(e.value, OdkdError) and isinstance(e.value, FloatingPointError)
    assert not (tmp_path / "nan" / "last.pt").exists()
    assert not (tmp_path / "nan" / "best.pt").exists()


@pytest.mark.parametrize("override, key", [("train.epochs=-1", "train.epochs"),
                                           ("train.epochs=0", "train.epochs"),
                                           ("train.batch_size=0", "train.batch_size"),
                                           ("train.lr=-1", "train.lr"),
                                           ("train.save_every=-1", "train.save_every")])
def test_values_that_train_nothing_are_refused(tiny_synth, tmp_path, override, key):
    with pytest.raises(ConfigError, match=key):
        train(_cfg(tiny_synth, tmp_path / "w", override), progress=False)
    assert not (tmp_path / "w").exists()  # refused before anything is written


def test_missing_data_file_is_named(tmp_path):
    ov = [f"workdir={tmp_path}/w", "data.train_ann=demo_out/data/annotations/x.json",
          f"data.train_images={tmp_path}", f"data.val_ann={tmp_path}",
          f"data.val_images={tmp_path}"]
    with pytest.raises(ConfigError, match=r"data.train_ann: demo_out/.*make demo"):
        train(load_config(None, ov), progress=False)


def test_save_every_best_weights_only_and_resume(tiny_synth, tmp_path):
    """last.pt every train.save_every epochs (a resume repeats the unsaved ones and log.csv
    keeps one row per epoch); best.pt carries no optimizer state."""
    import csv

    wd = tmp_path / "se"
    cfg = _cfg(tiny_synth, wd, "train.epochs=4", "train.save_every=2")
    with pytest.raises(KeyboardInterrupt):
        train(cfg, objective=CrashAfter(calls=6), progress=False)  # dies in epoch 4
    assert read_checkpoint(str(wd / "last.pt"))["epoch"] == 2
    out = train(cfg, resume=True, progress=False)
    last, best = read_checkpoint(out["last"]), read_checkpoint(out["best"])
    assert last["epoch"] == 4 and "optimizer" in last
    assert "optimizer" not in best and best["state_dict"].keys() == last["state_dict"].keys()
    epochs = [int(r["epoch"]) for r in csv.DictReader(open(wd / "log.csv"))]
    assert epochs == [1, 2, 3, 4]


def test_log_says_what_trains_and_progress_is_plain_off_a_terminal(tiny_synth, tmp_path,
                                                                   capsys):
    cfg = _cfg(tiny_synth, tmp_path / "p", "train.epochs=1", "train.log_every=1")
    train(cfg, progress=True, final_eval=False)  # pytest's captured stderr is not a TTY
    out = capsys.readouterr()
    assert "[odkd] model: litehrnet_18, 1.13 M parameters" in out.out
    assert "device cpu" in out.out
    assert "15 persons from 5 images (skipped: 6 no keypoints)" in out.out
    assert "[odkd] epoch 1/1 iter 1/2 loss" in out.out
    assert "it/s" not in out.err  # no progress bar redraws
    train(_cfg(tiny_synth, tmp_path / "q", "train.epochs=1", "train.log_every=1"),
          progress=False, final_eval=False)
    assert "iter 1/2" not in capsys.readouterr().out


def test_quantization_aware_training_rounds_the_forward_and_saves_a_plain_checkpoint(
        tiny_synth, tmp_path, capsys):
    plain = train(_cfg(tiny_synth, tmp_path / "fp", "train.epochs=1"), progress=False,
                  final_eval=False)
    capsys.readouterr()
    qat = train(_cfg(tiny_synth, tmp_path / "q", "train.epochs=1", "train.qat=true"),
                progress=False, final_eval=False)
    assert "[odkd] quantization-aware training:" in capsys.readouterr().out
    a, b = read_checkpoint(plain["last"])["state_dict"], read_checkpoint(qat["last"])["state_dict"]
    assert a.keys() == b.keys()             # the same layout: no observer state saved
    # same seed, same batches: only the rounding in the forward pass can make them differ
    assert any(not torch.equal(a[k], b[k]) for k in a if a[k].is_floating_point())
