import sys
import types

import pytest
import torch
from torch import nn

from odkd.config import ConfigError, DistillConfig, TeacherConfig
from odkd.distill.losses import DistillLoss
from odkd.distill.teachers import FrozenTeacher, load_teachers, run_teachers

K = 3


class TinyPose(nn.Module):
    """Stand-in for a pose model: conv + BatchNorm, returns the odkd output dict."""

    def __init__(self, with_mask: bool = False) -> None:
        super().__init__()
        self.with_mask = with_mask
        self.body = nn.Sequential(nn.Conv2d(3, 4, 3, stride=4, padding=1), nn.BatchNorm2d(4),
                                  nn.ReLU())
        self.head = nn.Conv2d(4, K, 1)
        self.mask_head = nn.Conv2d(4, 1, 1) if with_mask else None

    def forward(self, x):
        f = self.body(x)
        out = {"heatmaps": self.head(f)}
        if self.mask_head is not None:
            out["mask"] = self.mask_head(f)
        return out


def _images(n: int = 2) -> torch.Tensor:
    return torch.randn(n, 3, 32, 24, generator=torch.Generator().manual_seed(0))


def test_frozen_teacher_is_frozen_and_stays_in_eval():
    torch.manual_seed(0)
    teacher = FrozenTeacher(TinyPose(with_mask=True), fold_bn=False)  # keeps its BN to watch
    assert all(not p.requires_grad for p in teacher.parameters())
    teacher.train()                                    # a training loop's blanket .train()
    assert not teacher.training and not teacher.model.body[1].training
    bn = teacher.model.body[1]
    stats = bn.running_mean.clone()
    out = teacher(_images())
    assert torch.equal(bn.running_mean, stats)        # eval BN: running stats untouched
    assert out["heatmaps"].dtype == torch.float32 and out["mask"].shape == (2, 1, 8, 6)
    assert all(v.grad_fn is None for v in out.values())


def _randomise_bn(model: nn.Module) -> nn.Module:
    """Non-trivial running statistics and affine terms, so that a wrong fold shows."""
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g))
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.randn(m.num_features, generator=g))
            m.bias.data.copy_(torch.randn(m.num_features, generator=g))
    return model


@pytest.mark.parametrize("name", ["tiny", "litehrnet_18"])
def test_folded_teacher_matches_the_model_in_eval_mode(name):
    import copy

    from odkd.models import build_model

    torch.manual_seed(0)
    model = TinyPose(with_mask=True) if name == "tiny" else build_model(name, K, True)
    model = _randomise_bn(model).eval()
    x = _images() if name == "tiny" else torch.randn(2, 3, 96, 64)
    with torch.no_grad():
        want = model(x)
    teacher = FrozenTeacher(copy.deepcopy(model))
    n_bn = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    left = sum(isinstance(m, nn.BatchNorm2d) for m in teacher.modules())
    assert teacher.folded_bn > 0 and left == n_bn - teacher.folded_bn
    if name == "litehrnet_18":
        assert left == 0      # every BN of this model follows a conv in a Sequential
    got = teacher(x)
    for k in want:
        # one conv instead of conv + BN: equal up to float32 rounding
        scale = want[k].abs().max()
        assert torch.allclose(got[k], want[k], rtol=1e-4, atol=1e-4 * float(scale)), k
    # a teacher built without folding keeps the model's BN layers
    assert FrozenTeacher(copy.deepcopy(model), fold_bn=False).folded_bn == 0


def test_distill_backward_leaves_teachers_without_gradients():
    torch.manual_seed(0)
    teachers = {"pt": FrozenTeacher(TinyPose()), "st": FrozenTeacher(TinyPose(with_mask=True))}
    student = TinyPose(with_mask=True)
    images = _images()
    gt = {"heatmap": torch.rand(2, K, 8, 6), "target_weight": torch.ones(2, K),
          "mask": torch.ones(2, 1, 8, 6), "mask_weight": torch.ones(2)}
    loss_fn = DistillLoss(DistillConfig(schedule="simultaneous"), 4)
    t_out = run_teachers(teachers, images, loss_fn.needed_teachers(0))
    loss, logs = loss_fn(student(images), gt, t_out, 0)
    loss.backward()
    assert logs["pt_kpt"] > 0 and logs["st_seg"] > 0
    for t in teachers.values():
        assert all(p.grad is None for p in t.parameters())
    assert all(p.grad is not None for p in student.parameters())


def test_run_teachers_runs_only_the_needed_ones():
    calls = []

    class Counting(TinyPose):
        def forward(self, x):
            calls.append(1)
            return super().forward(x)

    teachers = {"pt": FrozenTeacher(Counting()), "st": None}
    out = run_teachers(teachers, _images(), {"pt"})
    assert out["st"] is None and out["pt"]["heatmaps"].shape == (2, K, 8, 6) and len(calls) == 1
    assert run_teachers(teachers, _images(), set()) == {"pt": None, "st": None}
    assert len(calls) == 1
    with pytest.raises(ValueError, match="'st' is needed but was not loaded"):
        run_teachers(teachers, _images(), {"st"})


@pytest.fixture
def fake_checkpoint_module(monkeypatch):
    """Replace odkd.models.checkpoint so these tests do not depend on real checkpoints."""
    built = []

    def build_from_checkpoint(path, name=None, num_joints=None, with_mask=None, verbose=True):
        built.append((path, name, with_mask))
        return TinyPose(with_mask="mask" in str(path))

    fake = types.ModuleType("odkd.models.checkpoint")
    fake.build_from_checkpoint = build_from_checkpoint
    monkeypatch.setitem(sys.modules, "odkd.models.checkpoint", fake)
    return built


def _files(tmp_path):
    pt, st, st_nomask = tmp_path / "pt.pth", tmp_path / "st_mask.pth", tmp_path / "st.pth"
    for f in (pt, st, st_nomask):
        f.write_bytes(b"")
    return str(pt), str(st), str(st_nomask)


def test_load_teachers_loads_what_the_schedule_uses(tmp_path, fake_checkpoint_module):
    pt, st, _ = _files(tmp_path)
    cfg = DistillConfig(schedule="orderly", pt=TeacherConfig(checkpoint=pt, model="hrnet_w32"),
                        st=TeacherConfig(checkpoint=st, with_mask=True))
    teachers = load_teachers(cfg, "cpu")
    assert isinstance(teachers["pt"], FrozenTeacher) and isinstance(teachers["st"], FrozenTeacher)
    assert teachers["st"].with_mask and not teachers["pt"].training
    assert fake_checkpoint_module == [(pt, "hrnet_w32", None), (st, None, None)]
    # an unused teacher is not loaded even when its checkpoint is given
    cfg.schedule = "pt_only"
    assert load_teachers(cfg, "cpu")["st"] is None


def test_load_teachers_errors_name_the_field(tmp_path, fake_checkpoint_module):
    pt, _, st_nomask = _files(tmp_path)
    assert load_teachers(DistillConfig(schedule="none"), "cpu") == {"pt": None, "st": None}
    with pytest.raises(ConfigError, match="distill.pt.checkpoint.*no checkpoint"):
        load_teachers(DistillConfig(schedule="orderly"), "cpu")
    with pytest.raises(ConfigError, match="distill.st.checkpoint: file not found"):
        load_teachers(DistillConfig(schedule="st_only",
                                    st=TeacherConfig(checkpoint=str(tmp_path / "nope.pth"))), "cpu")
    with pytest.raises(ConfigError, match="distill.st.with_mask"):
        load_teachers(DistillConfig(schedule="st_only",
                                    st=TeacherConfig(checkpoint=st_nomask, with_mask=True)), "cpu")
    assert fake_checkpoint_module == [(st_nomask, None, None)]
