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
    assert out["device"] == "cpu" and out["optimized"]["device_aug"] is True
    assert out["optimized"]["compile"] is False  # auto: only on CUDA
    assert out["teachers"] == ["litehrnet_18"]


def test_bench_rejects_bad_arguments():
    with pytest.raises(OdkdError, match="at most two"):
        bench_train.run(_args(*TINY, "--teachers", "hrnet_w32,hrnet_w32,hrnet_w32"))
    with pytest.raises(OdkdError, match="--batch"):
        bench_train.run(_args("--device", "cpu", "--batch", "0"))
