"""`odkd experiment` end to end on a tiny config: teachers, students, tables, resume."""
import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from odkd.experiment import METHODS, aggregate, load_experiment, results_markdown, run_experiment


def _write_cfg(path, out, synth_root):
    path.write_text(f"""
name: tiny
out: {out}
synth: {{root: {synth_root}, size: [96, 96], seed: 1, train: 6, val: 2, occluded: 2}}
base:
  data: {{input_size: [48, 64], workers: 0, cache_images: true}}
  train: {{batch_size: 4, epochs: 2, max_iters_per_epoch: 2, eval_every: 0}}
  eval: {{batch_size: 16}}
  distill: {{binarize_mode: hard, binarize_tau: 0.5}}
pt: [model.name=litehrnet_18, model.with_mask=false]
st: [model.name=litehrnet_18, model.with_mask=true]
student: [model.with_mask=true]
students: [litehrnet_18]
methods: [scratch, fpd_pt, odkd, odkd_no_seg, reverse]
seeds: [0]
""")


@pytest.mark.slow
def test_tiny_experiment_end_to_end_and_resume(tmp_path, capsys):
    cfg = tmp_path / "tiny.yaml"
    _write_cfg(cfg, tmp_path / "out", tmp_path / "data")
    exp = load_experiment(str(cfg))
    res = run_experiment(exp, log=lambda s: None)
    rows = list(csv.DictReader(open(tmp_path / "out" / "results.csv")))
    # 2 teachers + 5 methods, each on 2 splits
    assert len(rows) == (2 + 5) * 2 == len(res["rows"])
    assert {r["method"] for r in rows} == {"teacher_pt", "teacher_st", "scratch", "fpd_pt",
                                           "odkd", "odkd_no_seg", "reverse"}
    assert {r["split"] for r in rows} == {"val", "occluded"}
    for r in rows:
        assert 0.0 <= float(r["AP"]) <= 1.0 and int(r["params"]) > 0 and float(r["gflops"]) > 0
    md = (tmp_path / "out" / "results.md").read_text()
    assert "| odkd | litehrnet_18 |" in md
    assert (tmp_path / "out" / "ablation.png").stat().st_size > 1000
    # the distilled run really used both teachers in order: PT for the first half of the 4
    # steps (epoch 1), then ST (epoch 2); reverse the other way round
    for method, order in (("odkd", [(1.0, 0.0), (0.0, 1.0)]), ("reverse", [(0.0, 1.0), (1.0, 0.0)])):
        log = tmp_path / "out" / "runs" / f"{method}-litehrnet_18-s0" / "log.csv"
        weights = [(float(r["w_pt"]), float(r["w_st"])) for r in csv.DictReader(open(log))]
        assert weights == order, method

    # re-running resumes: nothing is trained again, same table
    done = tmp_path / "out" / "runs" / "scratch-litehrnet_18-s0" / "done.json"
    stamp = done.stat().st_mtime_ns
    res2 = run_experiment(load_experiment(str(cfg)), log=lambda s: None)
    assert done.stat().st_mtime_ns == stamp
    assert [r["AP"] for r in res2["rows"]] == [r["AP"] for r in res["rows"]]

    # the shared distill settings do not define a teacher: changing them keeps the cached
    # teachers (same folder, accepted key) and retrains only the distilled students
    pt_done = next((tmp_path / "out" / "teachers").glob("pt-*")) / "done.json"
    pt_stamp = pt_done.stat().st_mtime_ns
    text = cfg.read_text()
    cfg.write_text(text.replace("binarize_tau: 0.5}", "binarize_tau: 0.4}")
                   .replace("methods: [scratch, fpd_pt, odkd, odkd_no_seg, reverse]",
                            "methods: [scratch]"))
    run_experiment(load_experiment(str(cfg)), log=lambda s: None)
    assert pt_done.stat().st_mtime_ns == pt_stamp
    cfg.write_text(text)

    # a finished run is never silently reused for a different config or dataset
    from odkd.config import ConfigError

    cfg.write_text(cfg.read_text().replace("occluded: 2}", "occluded: 2, difficulty: easy}"))
    with pytest.raises(ConfigError, match="different config or dataset"):
        run_experiment(load_experiment(str(cfg)), log=lambda s: None)


def test_unknown_method_is_a_clear_error(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("methods: [scratch, odkd_typo]\n")
    from odkd.config import ConfigError

    with pytest.raises(ConfigError, match="odkd_typo"):
        load_experiment(str(cfg))


def test_every_paper_baseline_is_a_method():
    for m in ("scratch", "fpd_pt", "fpd_st", "simultaneous", "reverse", "odkd", "odkd_no_bin",
              "odkd_no_seg"):
        assert m in METHODS


def test_aggregate_mean_and_std():
    rows = [{"method": "odkd", "student": "s", "split": "val", "seed": i, "params": 1,
             "gflops": 1.0, "AP": ap, "AP50": 0, "AP75": 0, "APm": 0, "APl": 0, "AR": 0,
             "PCK": 0.5}
            for i, ap in enumerate([0.1, 0.2, 0.3])]
    (e,) = aggregate(rows)
    assert e["AP"] == pytest.approx(0.2) and e["AP_std"] == pytest.approx(0.1) and e["n"] == 3
    assert "20.0 ± 10.0" in results_markdown(rows, "t")


def test_one_runs_overrides_do_not_leak_into_the_next_runs_config(tmp_path):
    """Overrides are set in place; the experiment's shared `base` once took them on, so a
    student's `train.max_iters_per_epoch` reached the teachers and FPD's `distill.method=fpd`
    and `binarize_mode=none` reached every method built after it (here: odkd, reverse)."""
    from odkd.experiment.plan import _run_config, _student_jobs, _teacher_jobs

    cfg = tmp_path / "tiny.yaml"
    _write_cfg(cfg, tmp_path / "out", tmp_path / "data")
    exp = load_experiment(str(cfg), ["student=[model.with_mask=true, train.max_iters_per_epoch=1]"])
    teachers = _teacher_jobs(exp, "k")
    jobs = {j.method: j for j in _student_jobs(exp, teachers)}
    built = {m: _run_config(exp, j.overrides, j.workdir) for m, j in jobs.items()}
    pt = _run_config(exp, teachers["pt"].overrides, teachers["pt"].workdir)
    assert pt.train.max_iters_per_epoch == 2                     # the base's, not the students'
    assert built["scratch"].train.max_iters_per_epoch == 1
    assert built["fpd_pt"].distill.method == "fpd"
    for m in ("odkd", "odkd_no_seg", "reverse"):
        assert built[m].distill.method == "odkd", m
        assert built[m].distill.binarize_mode == "hard", m      # the base's, not FPD's none
    assert exp.base["train"] == {"batch_size": 4, "epochs": 2, "max_iters_per_epoch": 2,
                                 "eval_every": 0}


def test_pck_counts_labelled_keypoints_within_a_tenth_of_the_box():
    import numpy as np

    from odkd.engine.evaluate import pck_hits_batch

    gt = np.zeros((1, 3, 3))
    gt[0, :, :2] = [[10, 10], [50, 50], [0, 0]]
    gt[0, :2, 2] = 2                            # third keypoint unlabelled
    scales = np.array([[125.0, 100.0]])         # box side 100 after removing 1.25 padding
    preds = np.array([[[19, 10], [50, 61], [500, 500]]], float)
    assert pck_hits_batch(preds, gt, scales, 1.25).tolist() == [1.0, 0.0]


def test_variants_are_extra_named_methods(tmp_path):
    from odkd.config import ConfigError

    cfg = tmp_path / "v.yaml"
    cfg.write_text("methods: [scratch, odkd_tau03]\n"
                   "variants: {odkd_tau03: [distill.schedule=orderly, distill.binarize_tau=0.3]}\n")
    exp = load_experiment(str(cfg))
    assert exp.method_overrides("odkd_tau03")[-1] == "distill.binarize_tau=0.3"
    assert exp.method_overrides("scratch") == METHODS["scratch"]
    cfg.write_text("methods: [odkd]\nvariants: {odkd: [distill.binarize_tau=0.3]}\n")
    with pytest.raises(ConfigError, match="built-in"):
        load_experiment(str(cfg))
    cfg.write_text("methods: [odkd_x]\nvariants: {odkd_x: distill.binarize_tau}\n")
    with pytest.raises(ConfigError, match="variants.odkd_x"):
        load_experiment(str(cfg))


@pytest.mark.slow
def test_converged_style_run_in_parallel_with_heldout_sets(tmp_path):
    """Two methods, one seed, two jobs at once, held-out splits, switch inside an epoch: the
    shape of `odkd experiment converged` in a few steps."""
    cfg = tmp_path / "conv.yaml"
    cfg.write_text(f"""
name: conv
out: {tmp_path / "out"}
synth: {{root: {tmp_path / "data"}, size: [96, 96], seed: 1, train: 6, val: 2, occluded: 2,
        heldout: 2, heldout_seed: 2}}
base:
  data: {{input_size: [48, 64], workers: 0, cache_images: true}}
  train: {{batch_size: 4, epochs: 2, max_iters_per_epoch: 3, eval_every: 1}}
  eval: {{batch_size: 16}}
  distill: {{pt_fraction: 0.5}}
pt: [model.name=litehrnet_18, model.with_mask=false]
st: [model.name=litehrnet_18, model.with_mask=true]
student: [model.with_mask=true]
students: [litehrnet_18]
methods: [scratch, odkd]
seeds: [0]
jobs: 2
""")
    res = run_experiment(load_experiment(str(cfg)), log=lambda s: None)
    out = tmp_path / "out"
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert {r["split"] for r in rows} == {"val", "occluded", "heldout_val", "heldout_occluded"}
    assert len(rows) == (2 + 2) * 4 == len(res["rows"])
    # held-out sets drawn with their own seed, beside the data
    held = json.load(open(tmp_path / "data_heldout" / ".val.spec.json"))
    assert held["seed"] == 2 and held["n"] == 2
    # 6 steps, PT for 3: the switch falls at the end of epoch 1 (mean weights per epoch)
    log = out / "runs" / "odkd-litehrnet_18-s0" / "log.csv"
    w = [(float(r["w_pt"]), float(r["w_st"])) for r in csv.DictReader(open(log))]
    assert w == [(1.0, 0.0), (0.0, 1.0)]
    md = (out / "results.md").read_text()
    assert "| odkd − scratch | litehrnet_18 |" in md and "Plateau check" in md
    assert (out / "curves.png").stat().st_size > 1000
    assert res["files"] == [str(out / f) for f in ("results.csv", "results.md", "ablation.png",
                                                    "curves.png")]
    assert (out / "runs" / "odkd-litehrnet_18-s0" / "train.log").stat().st_size > 0
    # a second call finds everything finished: same rows, nothing retrained
    res2 = run_experiment(load_experiment(str(cfg)), log=lambda s: None)
    assert [r["AP"] for r in res2["rows"]] == [r["AP"] for r in res["rows"]]


def test_differences_are_seed_by_seed_against_each_baseline_once():
    from odkd.experiment import differences_markdown

    rows = [{"method": m, "student": "s", "split": "val", "seed": sd, "AP": ap}
            for m, sd, ap in [("scratch", 0, .10), ("fpd_pt", 0, .20), ("odkd", 0, .30),
                              ("scratch", 1, .10), ("fpd_pt", 1, .25), ("odkd", 1, .20)]]
    md = differences_markdown(rows)
    assert "| odkd − scratch | s | +20.0 / +10.0 | +15.0 ± 7.1 | 7.1 | 2/2 |" in md
    assert "| odkd − fpd_pt | s | +10.0 / -5.0 | +2.5 ± 10.6 | 7.1 | 1/2 |" in md
    assert "| fpd_pt − scratch |" in md and "scratch − fpd_pt" not in md
    # ablation rows: against the baselines, and the full method against each of them
    rows += [{"method": "odkd_no_seg", "student": "s", "split": "val", "seed": sd, "AP": ap}
             for sd, ap in [(0, .25), (1, .22)]]
    md = differences_markdown(rows)
    assert "| odkd − odkd_no_seg | s | +5.0 / -2.0 | +1.5 ± 4.9 |" in md
    assert "| odkd_no_seg − scratch | s | +15.0 / +12.0 |" in md
    assert "odkd_no_seg − odkd" not in md
    # ahead counts what the table prints: +0.04 points shows as +0.0, a tie, not a win
    rows += [{"method": "fpd_st", "student": "s", "split": "val", "seed": sd, "AP": ap}
             for sd, ap in [(0, .1004), (1, .11)]]
    md = differences_markdown(rows)
    assert "| fpd_st − scratch | s | +0.0 / +1.0 | +0.5 ± 0.7 | 0.7 | 1/2 |" in md


def test_a_finished_run_with_an_older_key_is_reused_only_for_the_same_training(tmp_path):
    """A key hashes every config field: one added to odkd since (at its default) or renamed
    (FPD's old spelling) changes it although the run trained the same thing."""
    import yaml

    from odkd.config import Config, ConfigError, load_config
    from odkd.experiment.jobs import _same_training, _train_once

    cfg = load_config(None, [f"workdir={tmp_path}", "distill.method=fpd",
                             "distill.schedule=st_only", "train.lr=0.002"])
    saved = cfg.to_dict()
    del saved["distill"]["method"]
    saved["distill"].update(schedule="fpd", fpd_teacher="st")
    del saved["train"]["threads"]                       # a field odkd did not have yet
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(saved))
    done = {"best": str(tmp_path / "best.pt"), "key": "0123456789ab-DATA"}
    (tmp_path / "done.json").write_text(json.dumps(done))
    assert _same_training(cfg, done, "DATA", distill=True)
    assert _train_once(cfg, distill=True, log=print, data_key="DATA") == done
    assert not _same_training(cfg, done, "OTHER", distill=True)        # other data
    other = load_config(None, [f"workdir={tmp_path}", "distill.method=fpd",
                               "distill.schedule=st_only", "train.lr=0.001"])
    assert not _same_training(other, done, "DATA", distill=True)
    with pytest.raises(ConfigError, match="different config or dataset"):
        _train_once(other, distill=True, log=print, data_key="DATA")
    assert Config().distill.method == "odkd"


def test_a_finished_fpd_run_ignores_the_teacher_it_does_not_load(tmp_path):
    """FPD from the PT never loads the ST: a table with a retrained ST reuses it (a new PT
    does not), under the key it was saved with before (every field hashed) and today's."""
    import yaml

    from odkd.config import ConfigError, load_config
    from odkd.experiment.jobs import _check_reusable, _run_key

    def run(pt, st, method="fpd", schedule="pt_only"):
        return load_config(None, [f"workdir={tmp_path}", f"distill.method={method}",
                                  f"distill.schedule={schedule}", f"distill.pt.checkpoint={pt}",
                                  f"distill.st.checkpoint={st}"])

    trained = run("t/pt-a.pt", "t/st-a.pt")
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(trained.to_dict()))
    for key in (f"{trained.hash('data', 'model', 'train', 'distill')}-DATA",
                _run_key(trained, "DATA")):
        done = {"best": "best.pt", "key": key}
        (tmp_path / "done.json").write_text(json.dumps(done))
        assert _check_reusable(run("t/pt-a.pt", "t/st-b.pt"), True, "DATA") == done
        with pytest.raises(ConfigError, match="different config or dataset"):
            _check_reusable(run("t/pt-b.pt", "t/st-a.pt"), True, "DATA")
    # ODKD loads both teachers: a new ST makes it another run
    odkd = run("t/pt-a.pt", "t/st-a.pt", "odkd", "orderly")
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(odkd.to_dict()))
    (tmp_path / "done.json").write_text(json.dumps({"best": "b", "key": _run_key(odkd, "DATA")}))
    assert _check_reusable(odkd, True, "DATA")
    with pytest.raises(ConfigError, match="different config or dataset"):
        _check_reusable(run("t/pt-a.pt", "t/st-b.pt", "odkd", "orderly"), True, "DATA")


def test_a_stale_finished_run_is_refused_before_anything_trains(tmp_path):
    """With two jobs, finished runs are skipped without reading their configs: a stale one
    must stop the experiment at once, not after the other runs have trained for hours."""
    from odkd.config import ConfigError

    cfg = tmp_path / "tiny.yaml"
    _write_cfg(cfg, tmp_path / "out", tmp_path / "data")
    cfg.write_text(cfg.read_text().replace("seeds: [0]", "seeds: [0]\njobs: 2"))
    stale = tmp_path / "out" / "runs" / "fpd_pt-litehrnet_18-s0"
    stale.mkdir(parents=True)
    (stale / "done.json").write_text(json.dumps({"best": "best.pt", "key": "0123456789ab-x"}))
    with pytest.raises(ConfigError, match="fpd_pt-litehrnet_18-s0: finished with a different"):
        run_experiment(load_experiment(str(cfg)), log=lambda s: None)
    assert not list((tmp_path / "out").glob("teachers/*/last.pt"))
    assert not (tmp_path / "out" / "runs" / "scratch-litehrnet_18-s0").exists()


# --- the parallel phase stops its runs however the experiment ends ---------------------------

_DRIVER = '''
import os, sys, time, types
from odkd.experiment.parallel import _run_parallel
from odkd.experiment.plan import _Job

def run_forever(exp, job, data_key, splits):
    # stands in for a training run: announce the pid, then never finish
    with open(os.path.join(job.workdir, "pid"), "w") as f:
        f.write(str(os.getpid()))
    while True:
        time.sleep(0.1)

if __name__ == "__main__":
    root = sys.argv[1]
    jobs = []
    for name in ("a", "b"):
        os.makedirs(os.path.join(root, name))
        jobs.append(_Job(name, [], os.path.join(root, name), distill=False))
    _run_parallel(types.SimpleNamespace(jobs=2), jobs, "key", {}, log=print,
                  target=run_forever, poll_s=0.2)
'''


def _alive(pid: int) -> bool:
    """A zombie (exited, not yet reaped by whoever adopted it) counts as gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _wait(cond, limit_s: float = 120.0) -> bool:
    # a bounded wait for an event, not a timing check: the limit only stops a hung test
    end = time.monotonic() + limit_s
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.1)
    return cond()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc (Linux only)")
@pytest.mark.parametrize("sig", ["SIGTERM", "SIGKILL"])
def test_runs_stop_when_the_experiment_is_killed(tmp_path, sig):
    """Killing a parallel experiment must not leave its runs training as orphans: SIGTERM
    stops them and exits 143; after SIGKILL (no clean-up possible) each run notices that its
    parent is gone and exits."""
    driver = tmp_path / "driver.py"
    driver.write_text(_DRIVER)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    proc = subprocess.Popen([sys.executable, str(driver), str(tmp_path / "runs")], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    pid_files = [tmp_path / "runs" / n / "pid" for n in ("a", "b")]
    try:
        started = lambda: all(p.exists() and p.read_text() for p in pid_files)  # noqa: E731
        _wait(lambda: started() or proc.poll() is not None)
        assert started(), f"the two runs never started: {proc.communicate()[0]}"
        pids = [int(p.read_text()) for p in pid_files]
        assert all(_alive(p) for p in pids)
        proc.send_signal(getattr(signal, sig))
        out, _ = proc.communicate(timeout=120)
        if sig == "SIGTERM":
            assert proc.returncode == 143, out
            assert "terminated: stopping 2 running run(s)" in out
        assert _wait(lambda: not any(_alive(p) for p in pids)), f"runs left running: {pids}"
    finally:
        if proc.poll() is None:
            proc.kill()
        for p in pid_files:
            if p.exists() and p.read_text() and _alive(int(p.read_text())):
                os.kill(int(p.read_text()), signal.SIGKILL)
