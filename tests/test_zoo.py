"""Shipped models (odkd.models.zoo): the registry, loading by name, `odkd infer IMAGE` out of
the box. The real weights file is added for releases; until it is in src/odkd/weights/ these
tests point the registry at a checkpoint they make (MoveNet Lightning's architecture, random
weights)."""
from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import odkd
from odkd.cli import main
from odkd.config import Config
from odkd.errors import CheckpointError
from odkd.models import build_model, zoo
from odkd.models.checkpoint import save_checkpoint

ROOT = Path(__file__).resolve().parents[1]
IMG = "000000000785.jpg"


@pytest.fixture(scope="module")
def lightning_ckpt(tmp_path_factory) -> str:
    """An odkd checkpoint of the shipped architecture (random weights, eval settings stored)."""
    torch.manual_seed(0)
    cfg = Config()
    cfg.data.input_size = [192, 192]
    cfg.model.name = "movenet_lightning"
    path = str(tmp_path_factory.mktemp("zoo") / "odkd-lightning.pt")
    save_checkpoint(path, build_model("movenet_lightning").eval(),
                    extra={"config": cfg.to_dict()})
    return path


@pytest.fixture
def shipped(lightning_ckpt, tmp_path, monkeypatch) -> str:
    """The registry's weights folder pointed at a temporary one holding the test checkpoint;
    the path of its odkd-lightning file."""
    d = tmp_path / "weights"
    d.mkdir()
    path = d / zoo.SHIPPED["odkd-lightning"]["file"]
    shutil.copy(lightning_ckpt, path)
    monkeypatch.setattr(zoo, "WEIGHTS_DIR", str(d))
    return str(path)


# ------------------------------------------------------------------------------- registry

def test_registry_entries_are_complete():
    assert zoo.DEFAULT in zoo.SHIPPED
    for name, entry in zoo.SHIPPED.items():
        assert set(entry) >= {"file", "description", "license"}, name
        assert entry["file"].endswith((".pt", ".onnx")) and os.sep not in entry["file"]
        assert entry["description"] and entry["license"]
    assert zoo.SHIPPED["odkd-lightning"]["file"] == "odkd-lightning.pt"
    # the weights folder is the package's own, beside its modules (package data)
    assert os.path.samefile(os.path.dirname(zoo.WEIGHTS_DIR), os.path.dirname(odkd.__file__))
    assert os.path.isfile(os.path.join(zoo.WEIGHTS_DIR, "README.md"))


def test_registry_errors_are_one_line_naming_the_shipped_models(tmp_path, monkeypatch):
    with pytest.raises(CheckpointError) as e:
        zoo.shipped_path("odkd-thunder")
    msg = str(e.value)
    assert "\n" not in msg and "'odkd-thunder'" in msg and "shipped: odkd-lightning" in msg
    monkeypatch.setattr(zoo, "WEIGHTS_DIR", str(tmp_path))   # a tree without the file
    with pytest.raises(CheckpointError) as e:
        zoo.shipped_path("odkd-lightning")
    msg = str(e.value)
    assert "\n" not in msg and "odkd-lightning.pt is not in this installation" in msg
    assert "shipped: odkd-lightning" in msg
    # through the API and the CLI: the same one line
    with pytest.raises(CheckpointError, match="is not in this installation"):
        odkd.load("odkd-lightning")


def test_missing_checkpoint_names_the_shipped_models(tmp_path, capsys):
    with pytest.raises(CheckpointError, match=r"nope\.pt: checkpoint file not found \(nor the "
                                              r"name of a shipped model: odkd-lightning, odkd-lightning-int8\)"):
        odkd.load(tmp_path / "nope.pt")
    img = tmp_path / "a.jpg"
    img.write_bytes(b"")
    assert main(["infer", str(img), "--checkpoint", "odkd-thunder", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "odkd-thunder: checkpoint file not found" in err[0]


def test_resolve_prefers_an_existing_path(tmp_path, monkeypatch, shipped):
    assert zoo.resolve_checkpoint("odkd-lightning") == shipped
    monkeypatch.chdir(tmp_path)
    (tmp_path / "odkd-lightning").write_bytes(b"x")   # a file of that name wins
    assert zoo.resolve_checkpoint("odkd-lightning") == "odkd-lightning"
    assert zoo.resolve_checkpoint(tmp_path / "other.pt") == str(tmp_path / "other.pt")


# ---------------------------------------------------------------------------- loading by name

def test_load_by_shipped_name(shipped, lightning_ckpt, real_mini):
    model = odkd.load("odkd-lightning", device="cpu")
    assert model.spec.name == "movenet_lightning" and tuple(model.spec.input_size) == (192, 192)
    assert type(model.model).__name__ == "MoveNet"
    img = str(real_mini / "coco" / IMG)
    by_name = model.predict(img, boxes="full")
    by_path = odkd.load(lightning_ckpt, device="cpu").predict(img, boxes="full")
    assert len(by_name) == len(by_path) == 1
    np.testing.assert_array_equal(by_name[0].keypoints, by_path[0].keypoints)


def test_a_shipped_name_is_a_teacher_too(shipped, lightning_ckpt):
    """`odkd eval --checkpoint odkd-lightning --metric pck` and distillation from it go
    through the checkpoint teacher, which takes shipped names as the loaders do."""
    from odkd.teachers import get_teacher

    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (240, 200, 3), dtype=np.uint8)
    args = (image, [[100.0, 120.0]], [[150.0, 150.0]], [0.0], (48, 48))
    by_name = get_teacher("checkpoint:odkd-lightning")(*args)
    by_path = get_teacher(f"checkpoint:{lightning_ckpt}")(*args)
    np.testing.assert_array_equal(by_name["keypoints"], by_path["keypoints"])
    with pytest.raises(CheckpointError, match="nor the name of a shipped model"):
        get_teacher("checkpoint:odkd-thunder")


def test_infer_image_out_of_the_box(shipped, real_mini, tmp_path):
    """`odkd infer photo.jpg`: no --checkpoint (the shipped model), positional input."""
    img = str(real_mini / "coco" / IMG)
    out = tmp_path / "out"
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(["infer", img, "--out", str(out), "--no-progress"]) == 0
    assert (out / "000000000785.png").is_file()
    res = json.loads((out / "results.json").read_text())
    assert len(res) >= 1 and res[0]["image_id"] == 785 and len(res[0]["keypoints"]) == 51
    assert "1 frame(s)" in buf.getvalue()


def test_package_data_lists_the_weights():
    text = (ROOT / "pyproject.toml").read_text()
    assert '"weights/*.pt"' in text and '"weights/*.md"' in text and '"weights/*.onnx"' in text


def test_zoo_imports_without_torch():
    code = ("import sys; from odkd.models import zoo; zoo.resolve_checkpoint('x.pt'); "
            "assert 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


# ------------------------------------------------------------------- the real shipped file

def test_the_real_shipped_weights_load_and_find_people(real_mini):
    path = os.path.join(zoo.WEIGHTS_DIR, zoo.SHIPPED["odkd-lightning"]["file"])
    if not os.path.isfile(path):
        pytest.skip("src/odkd/weights/odkd-lightning.pt not added yet (the shipped weights "
                    "come with releases)")
    model = odkd.load("odkd-lightning", device="cpu")
    assert model.spec.name == "movenet_lightning" and model.spec.num_joints == 17
    people = model.predict(str(real_mini / "coco" / IMG), boxes="full")
    assert len(people) == 1 and (people[0].scores > 0.2).sum() >= 8


def test_the_shipped_int8_export_agrees_with_the_checkpoint(real_mini):
    """odkd-lightning-int8 is the int8 ONNX Runtime export of odkd-lightning: loaded by name,
    it finds the same person with most joints within a few pixels of the float model's."""
    pytest.importorskip("onnxruntime")
    for name in ("odkd-lightning", "odkd-lightning-int8"):
        if not os.path.isfile(os.path.join(zoo.WEIGHTS_DIR, zoo.SHIPPED[name]["file"])):
            pytest.skip(f"{name}'s file is not in src/odkd/weights (added for releases)")
    img = str(real_mini / "coco" / IMG)
    ref = odkd.load("odkd-lightning", device="cpu").predict(img, boxes="full")[0]
    q = odkd.load("odkd-lightning-int8")
    assert type(q.model).__name__ == "OrtPoseModel"
    got = q.predict(img, boxes="full")[0]
    import cv2

    err = np.linalg.norm(got.keypoints - ref.keypoints, axis=1)
    h, w = cv2.imread(img).shape[:2]
    # image pixels per heatmap cell of the whole-image crop
    cell = max(h, w) * q.cfg.data.padding * q.spec.heatmap_stride / q.spec.input_size[0]
    # int8 moves a few joints by most of a cell; the median stays within one (2.3 px of 16.7
    # measured on an AVX-512 VNNI Xeon; CPUs without VNNI may saturate onnxruntime's u8s8
    # products, so only a cell is asked: another model's keypoints would be tens of cells off)
    assert np.median(err) < cell, (err, cell)
