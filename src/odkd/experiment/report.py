"""The experiment's results: one row per run and split (results.csv), mean ± std over seeds
(results.md), seed-by-seed differences against the baselines, the plateau check of the
training curves, and the plots (ablation.png: AP per method and split; curves.png: val AP
against the training step of every run).
"""
from __future__ import annotations

import csv
import functools
import io
import json
import math
import os

from odkd.config import Config
from odkd.experiment.jobs import _done, _finished
from odkd.experiment.plan import ExperimentConfig, _Job, _run_config
from odkd.utils import atomic_write_text


# COCO keypoint metrics, plus PCK@0.1 (bbox-normalised) which still ranks models whose AP
# is near zero (short CPU runs)
METRIC_KEYS = ["AP", "AP50", "AP75", "APm", "APl", "AR", "PCK"]


CSV_COLUMNS = ["method", "student", "split", "seed", "params", "gflops", *METRIC_KEYS,
               "train_s"]


def _complexity(cfg: Config) -> tuple[int, float]:
    return _model_complexity(cfg.model.name, cfg.model.num_joints, tuple(cfg.data.input_size))


@functools.lru_cache(maxsize=None)
def _model_complexity(name: str, num_joints: int, input_size: tuple) -> tuple[int, float]:
    # cached: the partial table is rebuilt after every run, for every finished run
    from odkd.models import build_model
    from odkd.models.complexity import complexity

    c = complexity(build_model(name, num_joints, False), input_size)
    return int(c["params"]), float(c["gflops"])


def _job_rows(cfg: Config, job: _Job, done: dict, metrics: dict) -> list:
    """One table row per evaluated split of a finished job."""
    params, gflops = _complexity(cfg)
    return [{"method": job.method, "student": job.student, "split": split, "seed": job.seed,
             "params": params, "gflops": round(gflops, 3), **{k: m[k] for k in METRIC_KEYS},
             "train_s": done["train_s"]} for split, m in metrics.items()]


def _finished_rows(exp: ExperimentConfig, jobs: list, splits: dict) -> list:
    """Table rows of the jobs that are finished and evaluated (read from their files)."""
    rows = []
    for job in jobs:
        if _finished(job, splits):
            metrics = {split: json.load(open(os.path.join(job.workdir, f"eval_{split}",
                                                          "summary.json"))) for split in splits}
            rows += _job_rows(_run_config(exp, job.overrides, job.workdir), job,
                              _done(job.workdir), metrics)
    return rows


def _mean_std(vals: list[float]) -> tuple[float, float]:
    m = sum(vals) / len(vals)
    sd = math.sqrt(sum((v - m) ** 2 for v in vals) / (len(vals) - 1)) if len(vals) > 1 else 0.0
    return m, sd


def aggregate(rows: list[dict]) -> list[dict]:
    """One entry per (method, student, split): mean and std over seeds of every metric."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["method"], r["student"], r["split"]), []).append(r)
    out = []
    for (method, student, split), rs in groups.items():
        e = {"method": method, "student": student, "split": split, "n": len(rs),
             "params": rs[0]["params"], "gflops": rs[0]["gflops"]}
        for k in METRIC_KEYS:
            e[k], e[k + "_std"] = _mean_std([float(r[k]) for r in rs])
        out.append(e)
    return out


def _cell(e: dict, k: str) -> str:
    if e[k] < 0:  # pycocotools' -1: no ground truth in that size range
        return "n/a"
    if e["n"] > 1:
        return f"{100 * e[k]:.1f} ± {100 * e[k + '_std']:.1f}"
    return f"{100 * e[k]:.1f}"


def results_markdown(rows: list[dict], title: str, wall_s: float | None = None) -> str:
    agg = aggregate(rows)
    buf = io.StringIO()
    buf.write(f"### {title}\n\n")
    for split in dict.fromkeys(e["split"] for e in agg):
        buf.write(f"**{split}** (mean ± std over seeds)\n\n")
        buf.write("| method | model | params (M) | GFLOPs | seeds | " + " | ".join(METRIC_KEYS)
                  + " |\n")
        buf.write("|---|---|---|---|---|" + "---|" * len(METRIC_KEYS) + "\n")
        for e in agg:
            if e["split"] != split:
                continue
            cells = [_cell(e, k) for k in METRIC_KEYS]
            buf.write(f"| {e['method']} | {e['student']} | {e['params'] / 1e6:.2f} | "
                      f"{e['gflops']:.2f} | {e['n']} | " + " | ".join(cells) + " |\n")
        buf.write("\n")
    if wall_s is not None:
        buf.write(f"Wall time: {wall_s / 60:.1f} min.\n")
    return buf.getvalue()


def plot_ablation(rows: list[dict], path: str, metrics=("AP", "PCK")) -> None:
    """Grouped bars (mean ± std over seeds) per method, one group colour per split."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    agg = aggregate(rows)
    splits = list(dict.fromkeys(e["split"] for e in agg))
    labels = list(dict.fromkeys(f"{e['method']}\n{e['student']}" for e in agg))
    fig, axes = plt.subplots(1, len(metrics), figsize=(max(6, 1.2 * len(labels)) * len(metrics)
                                                       / 1.5, 4), squeeze=False)
    width = 0.8 / max(1, len(splits))
    for ax, metric in zip(axes[0], metrics):
        for j, split in enumerate(splits):
            xs, ys, es = [], [], []
            for i, lab in enumerate(labels):
                for e in agg:
                    if e["split"] == split and f"{e['method']}\n{e['student']}" == lab:
                        xs.append(i + j * width)
                        ys.append(100 * e[metric])
                        es.append(100 * e[metric + "_std"])
            ax.bar(xs, ys, width, yerr=es, capsize=3, label=split)
        ax.set_xticks([i + width * (len(splits) - 1) / 2 for i in range(len(labels))])
        ax.set_xticklabels(labels, fontsize=7)
        ax.set_ylabel(f"{metric} (%)")
        ax.legend(fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    from odkd.utils import atomic_write_bytes
    atomic_write_bytes(path, buf.getvalue())


BASELINES = ("scratch", "fpd_pt", "fpd_st")


def ahead(diffs_points: list) -> int:
    """How many differences (AP points) are positive as printed, to 0.1 point: a +0.04 that
    the table shows as +0.0 is a tie, not a win (nor is float noise on an exact tie)."""
    return sum(round(d, 1) > 0 for d in diffs_points)


def _comparisons(methods: list) -> list:
    """(method, baseline) pairs: every method against each baseline, each pair once (a
    baseline only against the baselines before it: fpd - scratch), then the full method
    against each ablation row (odkd - odkd_no_seg: positive when the removed part helps)."""
    pairs = [(m, base) for base in BASELINES for m in methods
             if m != base and not (m in BASELINES and BASELINES.index(m) < BASELINES.index(base))
             and base in methods]
    if "odkd" in methods:
        pairs += [("odkd", m) for m in methods if m not in BASELINES and m != "odkd"]
    return pairs


def differences_markdown(rows: list[dict]) -> str:
    """Seed-by-seed AP differences of every method against each baseline of the same student
    (and of ODKD against each ablation row), beside the seed spread (std over seeds) of the
    two methods compared."""
    ap = {(r["method"], r["student"], r["split"], int(r["seed"])): float(r["AP"]) for r in rows}
    methods = list(dict.fromkeys(r["method"] for r in rows if not r["method"].startswith("teacher")))
    out = []
    for split in dict.fromkeys(r["split"] for r in rows):
        lines = []
        for student in dict.fromkeys(r["student"] for r in rows
                                     if not r["method"].startswith("teacher")):
            for m, base in _comparisons(methods):
                seeds = sorted(sd for (mm, st, sp, sd) in ap
                               if (mm, st, sp) == (m, student, split)
                               and (base, student, split, sd) in ap)
                if not seeds:
                    continue
                d = [ap[(m, student, split, sd)] - ap[(base, student, split, sd)] for sd in seeds]
                mean, sd_d = _mean_std(d)
                spread = max(_mean_std([ap[(x, student, split, sd)] for sd in seeds])[1]
                             for x in (m, base))
                wins = ahead([100 * v for v in d])
                lines.append(f"| {m} − {base} | {student} | "
                             + " / ".join(f"{100 * v:+.1f}" for v in d)
                             + f" | {100 * mean:+.1f} ± {100 * sd_d:.1f} | {100 * spread:.1f} "
                             f"| {wins}/{len(d)} |")
        if lines:
            out.append(f"**{split}**: AP difference (points), seed by seed\n\n"
                       "| comparison | student | per seed | mean ± std | seed spread | ahead |\n"
                       "|---|---|---|---|---|---|\n" + "\n".join(lines) + "\n")
    if not out:
        return ""
    return ("#### Differences against the baselines\n\n'seed spread' is the larger std over "
            "seeds of the two methods compared; `odkd − X` rows compare the full method with "
            "an ablation row X (positive: what X removes helps).\n\n" + "\n".join(out))


def _curves(exp: ExperimentConfig) -> dict:
    """name -> [(step, val AP)] from every finished or running run's log.csv."""
    out = {}
    for group in ("teachers", "runs"):
        root = os.path.join(exp.out, group)
        if not os.path.isdir(root):
            continue
        for name in sorted(os.listdir(root)):
            path = os.path.join(root, name, "log.csv")
            if not os.path.exists(path):
                continue
            pts = []
            cap = int(exp.base.get("train", {}).get("max_iters_per_epoch", 0) or 1)
            for r in csv.DictReader(open(path, newline="")):
                # logs written before `step` was logged: epochs x the iteration cap
                step = int(r["step"]) if r.get("step") else int(r["epoch"]) * cap
                if r.get("val_AP"):
                    pts.append((step, float(r["val_AP"])))
            if pts:
                out[name.split("-")[0] if group == "teachers" else name] = pts
    return out


def plateau_markdown(curves: dict, method: str = "scratch") -> str:
    """The plateau check: val AP rise over the last 20 % of each ``method`` run's schedule."""
    lines = []
    for name, pts in curves.items():
        if not name.startswith(f"{method}-") or len(pts) < 2:
            continue
        last_step, last_ap = pts[-1]
        ref = [p for p in pts if p[0] <= 0.8 * last_step]
        if not ref:
            continue
        s0, a0 = ref[-1]
        rise = (last_ap - a0) / a0 if a0 > 0 else float("inf")
        lines.append(f"| {name} | {s0} | {100 * a0:.1f} | {last_step} | {100 * last_ap:.1f} | "
                     f"{100 * rise:+.1f} % |")
    if not lines:
        return ""
    return ("#### Plateau check (val AP %, last 20 % of the schedule)\n\n"
            "| run | step | AP | last step | AP | rise |\n|---|---|---|---|---|---|\n"
            + "\n".join(lines) + "\n")


def plot_curves(curves: dict, path: str) -> None:
    """Val AP against training step for every run (one line each, colour by method)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    colours: dict = {}
    for name, pts in curves.items():
        method = name.rsplit("-", 2)[0] if "-" in name else f"teacher {name.upper()}"
        new = method not in colours
        c = colours.setdefault(method, f"C{len(colours) % 10}")
        ax.plot([p[0] for p in pts], [100 * p[1] for p in pts], color=c, marker=".",
                alpha=0.8, lw=2.5 if method.startswith("teacher") else 1.2,
                label=method if new else None)
    ax.set_xlabel("training step")
    ax.set_ylabel("val AP (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    from odkd.utils import atomic_write_bytes
    atomic_write_bytes(path, buf.getvalue())


def write_results(exp: ExperimentConfig, rows: list[dict], wall_s: float) -> tuple[str, list]:
    """Write results.csv and results.md, and the plots there is data for; returns the markdown
    table and the paths written, in that order (callers list them, never guess them)."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_COLUMNS)
    w.writeheader()
    for r in rows:
        w.writerow({k: r.get(k, "") for k in CSV_COLUMNS})
    files = [os.path.join(exp.out, f) for f in ("results.csv", "results.md")]
    atomic_write_text(files[0], buf.getvalue())
    table = results_markdown(rows, f"odkd experiment `{exp.name}`", wall_s)
    curves = _curves(exp)
    extra = "\n".join(x for x in (differences_markdown(rows), plateau_markdown(curves)) if x)
    atomic_write_text(files[1], table + ("\n" + extra if extra else ""))
    if rows:
        files.append(os.path.join(exp.out, "ablation.png"))
        plot_ablation(rows, files[-1])
    if curves:
        files.append(os.path.join(exp.out, "curves.png"))
        plot_curves(curves, files[-1])
    return table, files
