"""odkd.experiment.real (``odkd demo real``): the method table, the curve's step budget, the
training subset and the summary table."""
import json

from odkd.cli import main
from odkd.experiment.real import METHODS, method_overrides, subset, table


def test_every_method_is_offered_by_the_cli():
    from odkd.commands.demo import REAL_METHODS

    assert tuple(METHODS) == REAL_METHODS


def test_curve_points_keep_the_number_of_steps():
    assert method_overrides("odkd", 2000) == []
    ov = method_overrides("odkd_nomask@500", 2000)
    assert ov[:2] == METHODS["odkd_nomask"][1][:2]
    assert ov[-2:] == ["distill.people=500", "train.epochs=4"]


def test_subset_keeps_whole_images_spread_over_the_file(tmp_path):
    d = {"images": [{"id": i, "file_name": f"{i}.jpg", "width": 9, "height": 9}
                    for i in range(1, 101)],
         "annotations": [{"id": i, "image_id": i, "bbox": [0, 0, 5, 5]} for i in range(1, 101)]
         + [{"id": 200, "image_id": 100, "bbox": [1, 1, 5, 5]}],
         "categories": [], "info": {"image_root": "."}}
    p = tmp_path / "train.json"
    p.write_text(json.dumps(d))
    assert subset(str(p), 0) == str(p)
    out = json.loads(open(subset(str(p), 20)).read())
    ids = [im["id"] for im in out["images"]]
    assert 18 <= len(out["annotations"]) <= 25 and ids[0] == 1 and ids[-1] > 90
    assert {a["image_id"] for a in out["annotations"]} <= set(ids)


def test_table_is_mean_and_std_over_seeds():
    rows = [{"method": "odkd", "seed": s, "lsp_pck": v, "coco_ap": None}
            for s, v in enumerate((0.80, 0.82, 0.84))]
    text = table(rows)
    assert "| odkd: ODKD" in text and "0.820 ± 0.020" in text


def test_unknown_method_is_one_line(capsys, tmp_path):
    rc = main(["demo", "real", "--methods", "odkd,bogus", "--out", str(tmp_path / "o"),
               "--shared", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "bogus" in err[0]


def test_missing_shared_data_is_one_line(capsys, tmp_path):
    rc = main(["demo", "real", "--out", str(tmp_path / "o"), "--shared", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "data/real" in err[0]


def test_resume_refuses_rows_of_other_overrides(capsys, tmp_path):
    wd = tmp_path / "o" / "runs" / "pseudo-s0"
    wd.mkdir(parents=True)
    (wd / "row.json").write_text(json.dumps({"method": "pseudo", "seed": 0, "workdir": str(wd),
                                             "overrides": ["data.input_size=[160,160]"]}))
    rc = main(["demo", "real", "--methods", "pseudo", "--out", str(tmp_path / "o"),
               "--shared", str(tmp_path), "train.lr=0.001"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "row.json" in err[0] and "input_size" in err[0]
