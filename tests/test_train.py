"""Training loop: resume after an interruption is exact; configs and checkpoints round-trip."""
import os

import pytest
import torch

from odkd.config import ConfigError, load_config
from odkd.engine.train import SupervisedObjective, lr_at, train
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


class CrashAt(SupervisedObjective):
    """Simulates a kill in the middle of an epoch."""

    def __init__(self, epoch, calls):
        super().__init__()
        self.epoch, self.calls, self.n = epoch, calls, 0

    def __call__(self, out, gt, t_out, epoch):
        if epoch == self.epoch:
            self.n += 1
            if self.n > self.calls:
                raise KeyboardInterrupt("simulated interruption")
        return super().__call__(out, gt, t_out, epoch)


def test_resume_after_interruption_is_exact(tiny_synth, tmp_path):
    ref = _cfg(tiny_synth, tmp_path / "ref", "train.epochs=3")
    out_ref = train(ref, progress=False)

    cut = _cfg(tiny_synth, tmp_path / "cut", "train.epochs=3")
    with pytest.raises(KeyboardInterrupt):
        train(cut, objective=CrashAt(epoch=2, calls=1), progress=False)
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
