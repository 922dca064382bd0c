"""``odkd.engine.bench_train``: one JSON object with every field, on CPU, tiny settings."""
import argparse
import json

import pytest

from odkd.engine import bench_train
from odkd.errors import OdkdError


def _args(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    bench_train.add_arguments(p)
    return p.parse_args(list(argv))


TINY = ("--device", "cpu", "--batch", "2", "--input-size", "64", "64", "--steps", "1",
        "--warmup", "0", "--workers", "0", "--images", "2", "--image-size", "96", "96")


@pytest.mark.slow
def test_bench_prints_one_json_object(capsys):
    assert bench_train.run(_args(*TINY, "--model", "litehrnet_18",
                                 "--teachers", "litehrnet_18")) == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.strip()]
    assert len(lines) == 1
    out = json.loads(lines[0])
    for key in ("naive_img_s", "optimized_img_s", "speedup", "kd_over_student", "peak_mem_mb",
                "loader_img_s", "loader_decode_img_s", "device_aug_img_s"):
        assert isinstance(out[key], (int, float)) and out[key] > 0, key
    assert out["speedup"] == pytest.approx(out["optimized_img_s"] / out["naive_img_s"], rel=0.01)
    steps = out["step_img_s"]
    assert set(steps) == {"student_naive", "student_optimized", "kd_naive", "kd_optimized"}
    for step in ("student", "kd"):
        assert out["step_speedup"][step] == pytest.approx(
            steps[f"{step}_optimized"] / steps[f"{step}_naive"], rel=0.02)
    assert out["optimized"]["channels_last"] is True and out["optimized"]["teacher_bn_folded"]
    assert out["device"] == "cpu" and out["optimized"]["device_aug"] is True
    assert out["optimized"]["compile"] is False  # auto: only on CUDA
    assert out["teachers"] == ["litehrnet_18"]


def test_bench_rejects_bad_arguments():
    with pytest.raises(OdkdError, match="at most two"):
        bench_train.run(_args(*TINY, "--teachers", "hrnet_w32,hrnet_w32,hrnet_w32"))
    with pytest.raises(OdkdError, match="--batch"):
        bench_train.run(_args("--device", "cpu", "--batch", "0"))


def test_bench_and_training_run_the_same_step_function(monkeypatch, tmp_path, capsys):
    """`odkd bench train` times odkd.engine.step.train_step, the step `odkd train` runs."""
    from odkd.config import load_config
    from odkd.distill.losses import DistillLoss
    from odkd.engine import step as st
    from odkd.engine import train as tr
    from odkd.synth import generate_split

    calls = []
    real = st.train_step

    def watched(*args, **kwargs):
        calls.append(type(args[3]).__name__)  # the objective
        return real(*args, **kwargs)

    monkeypatch.setattr(st, "train_step", watched)
    assert bench_train.run(_args(*TINY, "--model", "litehrnet_18",
                                 "--teachers", "litehrnet_18")) == 0
    # naive and optimized steps (both with the teacher), the KD and the student-only step of
    # kd_over_student, then the interleaved step_img_s round (student naive / optimized, KD
    # naive / optimized): one step each
    kd, sup = DistillLoss.__name__, "SupervisedObjective"
    assert calls == [kd, kd, kd, sup, sup, sup, kd, kd]
    calls.clear()
    generate_split(str(tmp_path), "train", 4, seed=3, size=(96, 96), workers=1, progress=False)
    generate_split(str(tmp_path), "val", 2, seed=4, size=(96, 96), workers=1, progress=False)
    cfg = load_config(None, [
        f"workdir={tmp_path / 'run'}",
        f"data.train_ann={tmp_path}/annotations/person_keypoints_train.json",
        f"data.train_images={tmp_path}/train",
        f"data.val_ann={tmp_path}/annotations/person_keypoints_val.json",
        f"data.val_images={tmp_path}/val", "data.input_size=[32,48]", "data.workers=0",
        "model.name=litehrnet_18", "train.batch_size=2", "train.max_iters_per_epoch=2",
        "train.epochs=2", "train.eval_every=0", "eval.batch_size=8"])
    tr.train(cfg, progress=False, final_eval=False)
    assert calls == ["SupervisedObjective"] * 4  # 2 epochs x 2 steps


def test_bench_amp_bf16_on_cpu_runs_the_optimized_student_step_in_bf16(monkeypatch, capsys):
    """--amp bf16: the optimized path trains under bf16 autocast on the CPU too (to measure it
    there); the naive path stays fp32. Default (auto) keeps fp32 on the CPU."""
    from odkd.engine import step as st

    amps = []
    real = st.train_step

    def watched(*args, **kwargs):
        amps.append(args[0].train.amp)
        return real(*args, **kwargs)

    monkeypatch.setattr(st, "train_step", watched)
    assert bench_train.run(_args(*TINY, "--model", "litehrnet_18", "--amp", "bf16")) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["optimized"]["amp"] == "bf16"
    # naive timing, optimized timing, then the interleaved round (naive, optimized); with no
    # teacher there is no KD step
    assert amps == ["none", "bf16", "none", "bf16"]
    amps.clear()
    assert bench_train.run(_args(*TINY, "--model", "litehrnet_18")) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["optimized"]["amp"] == "none"
    assert set(amps) == {"none"}
