"""odkd.experiment.tables (`odkd results table`): held-out AP per method and seed-by-seed
differences, in points."""
import csv
from pathlib import Path

import pytest

from odkd.cli import main


def _csv(path: Path, ap: dict) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["method", "student", "split", "seed", "AP"])
        for (method, split, seed), v in ap.items():
            w.writerow([method, "litehrnet_18", split, seed, v])
        w.writerow(["odkd", "litehrnet_18", "val", 0, 0.9])   # settings split: not reported


def test_rows_and_pairs_follow_the_methods_present(tmp_path, capsys):
    ap = {("odkd_tau07", "heldout_val", 0): 0.31, ("odkd_tau07", "heldout_val", 1): 0.33,
          ("odkd_tau07", "heldout_occluded", 0): 0.15, ("odkd_tau07", "heldout_occluded", 1): 0.17}
    for seed, (s, o) in enumerate([(0.30, 0.14), (0.32, 0.16)]):
        ap[("scratch", "heldout_val", seed)] = s
        ap[("scratch", "heldout_occluded", seed)] = o
        ap[("odkd", "heldout_val", seed)] = s + 0.02 + 0.01 * seed
        ap[("odkd", "heldout_occluded", seed)] = o + 0.01
    ap[("teacher_st", "heldout_val", 0)] = 0.5
    ap[("teacher_st", "heldout_occluded", 0)] = 0.25
    _csv(tmp_path / "results.csv", ap)
    assert main(["results", "table", str(tmp_path / "results.csv")]) == 0
    out = capsys.readouterr().out.splitlines()
    rows = [line.split(" | ")[0].lstrip("| ") for line in out if line.startswith("| ")]
    # teachers first, then the fixed order, then methods the order does not know
    assert rows[1:5] == ["teacher_st", "scratch", "odkd", "odkd_tau07"]
    assert rows[6:] == ["odkd − scratch", "odkd_tau07 − scratch", "odkd − odkd_tau07"]
    odkd_scratch = next(x for x in out if x.startswith("| odkd − scratch"))
    # per seed +2.0 / +3.0 points, mean +2.5 ± 0.7; spread = the larger seed std of the two
    # rows (odkd 32 and 35: 2.1; on occluded both rows 1.4); ahead on both seeds
    assert "+2.0 / +3.0 | +2.5 ± 0.7 | 2.1 | 2/2" in odkd_scratch
    assert "+1.0 / +1.0 | +1.0 ± 0.0 | 1.4 | 2/2" in odkd_scratch
    # a tie is not ahead: odkd and odkd_tau07 score the same on occluded
    odkd_tau = next(x for x in out if x.startswith("| odkd − odkd_tau07"))
    assert "+1.0 / +2.0 | +1.5 ± 0.7 | 2.1 | 2/2" in odkd_tau
    assert "+0.0 / +0.0 | +0.0 ± 0.0 | 1.4 | 0/2" in odkd_tau
    assert "| teacher_st | 1 | 50.0 ± 0.0 | 25.0 ± 0.0 |" in out


def test_tables_pool_pair_within_a_table_and_count_a_reused_run_once(tmp_path, capsys):
    a = {("scratch", sp, s): v for s in (0, 1)
         for sp, v in (("heldout_val", 0.30 + 0.01 * s), ("heldout_occluded", 0.15))}
    a.update({("odkd", sp, s): v + 0.02 for (_, sp, s), v in a.items()})
    b = {k: v for k, v in a.items() if k[0] == "scratch"}           # reused: same numbers
    b.update({("odkd", sp, s): v + 0.01 for (m, sp, s), v in b.items()})
    b[("fpd_pt", "heldout_val", 0)] = 0.20                         # only in the second table
    b[("fpd_pt", "heldout_occluded", 0)] = 0.10
    _csv(tmp_path / "a.csv", a)
    _csv(tmp_path / "b.csv", b)
    assert main(["results", "table", str(tmp_path / "a.csv"), str(tmp_path / "b.csv")]) == 0
    cap = capsys.readouterr()
    out = cap.out.splitlines()
    assert cap.err.count("counted once") == 2                      # scratch seeds 0 and 1 of b
    assert "| scratch | 2 | 30.5 ± 0.7 | 15.0 ± 0.0 |" in out
    assert any(x.startswith("| odkd | 4 |") for x in out)          # 2 tables x 2 seeds
    # the second table's ODKD has no scratch of its own left: odkd − scratch pairs table 1
    assert "| odkd − scratch | +2.0 / +2.0 | +2.0 ± 0.0 |" in "\n".join(out)
    # fpd_pt exists only in table 2, where no scratch is left: no difference row for it
    assert not any(x.startswith("| fpd_pt − scratch") for x in out)
    assert "| odkd − fpd_pt | +11.0 | +11.0 ± 0.0 | 0.0 | 1/1 |" in "\n".join(out)


ROOT = Path(__file__).resolve().parents[1]
NINE_SEEDS = [ROOT / "results" / d / "results.csv"
              for d in ("converged", "converged_seeds345_epyc", "converged_seeds678_epyc")]


def test_the_nine_seed_table_prints_as_committed(capsys):
    """docs/results.md's nine-seed table, byte for byte (the fixture is its printed form)."""
    if not all(p.exists() for p in NINE_SEEDS):
        pytest.skip("results/converged* CSVs not present")
    assert main(["results", "table", *map(str, NINE_SEEDS)]) == 0
    cap = capsys.readouterr()
    assert cap.out == (ROOT / "tests" / "fixtures" / "heldout_table_converged.md").read_text()
    assert cap.err.count("counted once") == 4          # each later table repeats both teachers


def test_bad_csv_is_one_line(tmp_path, capsys):
    bad = {"missing.csv": None, "other.csv": "a,b\n1,2\n",
           "nan.csv": "method,split,seed,AP\nodkd,heldout_val,0,high\n"}
    expect = {"missing.csv": "no such file", "other.csv": "no column 'method'",
              "nan.csv": "line 2: seed '0' / AP 'high': not a number"}
    for name, text in bad.items():
        if text is not None:
            (tmp_path / name).write_text(text)
        assert main(["results", "table", str(tmp_path / name)]) == 2
        cap = capsys.readouterr()
        err = cap.err.strip().splitlines()
        assert cap.out == "" and len(err) == 1 and expect[name] in err[0], err
