"""Label-free distillation on real photos, as one command: ``odkd demo real``.

1. Training images from ``../shared/data/real`` in their published formats: LSP 1-1000 with the
   offline detector's boxes (its joints are never read), TUD and Penn-Fudan with their boxes,
   frames of the three videos with detector boxes; merged into one json. LSP 1001-2000 (its
   joints) is the held-out set for choosing settings and reporting.
2. The real teachers label every view once (:mod:`odkd.distill.cache`), shared by every run.
3. One ``odkd distill`` per (method, seed), ``jobs`` at a time (one torch thread each), then
   LSP 1001-2000 PCK@0.2 (one crop, no flip: the protocol MoveNet is measured with) and the
   real-mini COCO AP of each student; the table is rewritten as runs finish.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np

from odkd.errors import DataError

CONFIG = "real_distill"
# method -> (what it is, overrides of the shipped real_distill config)
METHODS: dict[str, tuple[str, list[str]]] = {
    "start": ("MoveNet Lightning's weights, no training", []),
    "pseudo": ("pseudo-labels: the ST's keypoints as hard targets",
               ["distill.schedule=st_only", "distill.binarize_mode=none",
                "distill.seg_weight=0", "model.with_mask=false"]),
    "kd": ("classic distillation: the PT's own soft heatmaps",
           ["distill.schedule=pt_only", "distill.binarize_mode=none", "distill.seg_weight=0",
            "model.with_mask=false", "distill.pt.checkpoint={lightning_pt}"]),
    "both": ("both teachers at once (simultaneous)", ["distill.schedule=simultaneous"]),
    "odkd": ("ODKD: PT then ST, binarized, ST mask", []),
    "odkd_nomask": ("ODKD without the mask term",
                    ["distill.seg_weight=0", "model.with_mask=false"]),
    "odkd_nobin": ("ODKD without binarization", ["distill.binarize_mode=none"]),
}


def prepare_data(shared: str, out: str, log=print, train: str | None = None) -> dict:
    """Import and merge the training images (or take ``train``, a COCO json of your own
    images); import the held-out LSP split. Returns paths."""
    from odkd.data.importers import run_import
    from odkd.data.importers.common import write_coco
    from odkd.data.importers.merge import merge_coco
    from odkd.teachers.detector import get_detector

    real = os.path.join(shared, "data", "real")
    if not os.path.isdir(real):
        raise DataError(f"{real}: not found; `odkd demo real` needs ../shared/data/real "
                        "(Leeds Sports Pose, TUD, Penn-Fudan, videos), or give --shared")
    data = os.path.join(out, "data")
    os.makedirs(data, exist_ok=True)
    paths = {"train": os.path.join(data, "train.json"),
             "lsp_test": os.path.join(data, "lsp_test.json")}
    if not os.path.exists(paths["lsp_test"]):
        run_import("lsp", os.path.join(real, "lsp"), paths["lsp_test"], split="test")
    if train:
        if not os.path.exists(train):
            raise DataError(f"--train: {train} does not exist")
        paths["train"] = os.path.abspath(train)
    if os.path.exists(paths["train"]):
        return paths
    det = get_detector("ssd-mobilenet-v2", score_threshold=0.5)

    def detect(rgb):
        return det(rgb, 0.5)
    parts = []
    for name, fmt, src, opts, boxes in [
            ("lsp_train", "lsp", "lsp", {"split": "train"}, detect),
            ("tud", "tud", "tud-400", {}, None),
            ("pennfudan", "pennfudan", "pennfudan", {}, None),
            ("arm_wrestling", "video", "video/arm_wrestling.mp4", {"every": 5}, detect),
            ("basketball", "video", "video/basketball.mp4", {"every": 5}, detect),
            ("squat", "video", "video/squat.mp4", {"every": 2}, detect)]:
        p = os.path.join(data, name, f"{name}.json") if fmt == "video" else \
            os.path.join(data, f"{name}.json")
        os.makedirs(os.path.dirname(p), exist_ok=True)
        r = run_import(fmt, os.path.join(real, src), p, detect=boxes,
                       detector="ssd-mobilenet-v2" if boxes else "", **opts)
        log(f"[odkd] {name}: {r.summary()}")
        parts.append(p)
    merged = merge_coco(parts)
    write_coco(merged, paths["train"])
    log(f"[odkd] training images: {merged.summary()} -> {paths['train']}")
    return paths


def subset(train: str, people: int) -> str:
    """``train`` cut to about ``people`` people (whole images, spread evenly over the sets),
    written next to it; ``people`` 0 keeps everything."""
    if not people:
        return train
    with open(train) as f:
        d = json.load(f)
    by_img: dict[int, int] = {}
    for a in d["annotations"]:
        by_img[a["image_id"]] = by_img.get(a["image_id"], 0) + 1
    ims = [im for im in d["images"] if by_img.get(im["id"])]
    total = sum(by_img.values())
    if people >= total:
        return train
    keep, n = [], 0
    for i in np.linspace(0, len(ims) - 1, len(ims)).astype(int)[::max(1, total // people)]:
        keep.append(ims[i]["id"])
        n += by_img[ims[i]["id"]]
    ids = set(keep)
    d["images"] = [im for im in d["images"] if im["id"] in ids]
    d["annotations"] = [a for a in d["annotations"] if a["image_id"] in ids]
    out = os.path.join(os.path.dirname(train), f"train_{people}.json")
    with open(out, "w") as f:
        json.dump(d, f)
    return out


def _lightning_checkpoint(out: str, overrides: list[str]) -> str:
    """MoveNet Lightning's shipped weights as an odkd checkpoint with the students' data and
    eval settings (``overrides`` included, so a student input size applies to it too): the
    ``start`` row, and the online teacher of ``kd``."""
    from odkd.config import load_config
    from odkd.models.checkpoint import convert, read_checkpoint
    from odkd.teachers import store
    from odkd.utils import atomic_torch_save

    cfg = load_config(CONFIG, [*overrides, "model.with_mask=false"]).to_dict()
    w, h = cfg["data"]["input_size"]
    path = os.path.join(out, f"movenet_lightning_{w}x{h}.pt")
    if not os.path.exists(path):
        tmp = path + ".convert"
        convert(store.model_path("movenet-lightning-tfjs"), tmp, name="movenet_lightning",
                verbose=False)
        ck = read_checkpoint(tmp)
        ck["config"] = {"model": cfg["model"], "data": cfg["data"], "eval": cfg["eval"]}
        atomic_torch_save(ck, path)
        os.remove(tmp)
    return path


def method_overrides(method: str, people_total: int) -> list[str]:
    """Overrides of ``method``; ``NAME@N``: NAME on N of the people, with as many epochs as
    it takes to make the same number of steps as one epoch of everyone (the curve)."""
    name, _, n = method.partition("@")
    ov = list(METHODS[name][1])
    if n:
        n = int(n)
        ov += [f"distill.people={n}", f"train.epochs={max(1, round(people_total / n))}"]
    return ov


def _evaluate(ckpt: str, paths: dict, shared: str, workdir: str, env: dict) -> dict:
    """LSP 1001-2000 PCK@0.2 (no flip) and real-mini COCO AP of one checkpoint."""
    res = {}
    lsp_dir = os.path.join(workdir, "eval_lsp")
    _odkd(["eval", "--checkpoint", ckpt, "--metric", "pck", "--ann", paths["lsp_test"],
           "--no-flip", "--threads", "1", "--out", lsp_dir], env, os.path.join(workdir,
                                                                                "eval.log"))
    with open(os.path.join(lsp_dir, "metrics.json")) as f:
        res["lsp_pck"] = json.load(f)["PCK@0.2"]
    for name, rel in (("coco", "coco/test_coco.json"), ("ochuman", "ochuman/test_ochuman.json")):
        ann = os.path.join(shared, "data", "real-mini", rel)
        if not os.path.exists(ann):
            continue
        d = os.path.join(workdir, f"eval_{name}")
        _odkd(["eval", "--checkpoint", ckpt, "--ann", ann, "--images", os.path.dirname(ann),
               "--no-flip", "--out", d], env, os.path.join(workdir, "eval.log"))
        with open(os.path.join(d, "metrics.json")) as f:
            res[f"{name}_ap"] = json.load(f)["AP"]
    return res


def _odkd(argv: list[str], env: dict, log_path: str) -> None:
    with open(log_path, "a") as log:
        rc = subprocess.call([sys.executable, "-m", "odkd.cli", *argv], env=env, stdout=log,
                             stderr=subprocess.STDOUT)
    if rc:
        raise DataError(f"odkd {argv[0]} failed (exit {rc}); see {log_path}")


def table(rows: list[dict]) -> str:
    """Mean ± std over seeds per method (std of the seeds, ddof=1; '' for one seed)."""
    by: dict[str, list[dict]] = {}
    for r in rows:
        by.setdefault(r["method"], []).append(r)
    keys = [("lsp_pck", "LSP PCK@0.2"), ("coco_ap", "real-mini COCO AP"),
            ("ochuman_ap", "real-mini OCHuman AP")]
    lines = ["| method | seeds | " + " | ".join(k[1] for k in keys) + " |",
             "|---|---|" + "---|" * len(keys)]
    for m, rs in by.items():
        cells = []
        for k, _ in keys:
            v = np.array([r[k] for r in rs if r.get(k) is not None], float)
            cells.append("" if not len(v) else f"{v.mean():.3f}" + (
                f" ± {v.std(ddof=1):.3f}" if len(v) > 1 else ""))
        name, _, n = m.partition("@")
        what = METHODS.get(name, ("", []))[0] + (f", {n} people" if n else "")
        lines.append(f"| {m}: {what} | {len(rs)} | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines)


def _all_rows(out: str) -> list[dict]:
    """The rows of every finished run under ``out`` (this call's and earlier ones'), in the
    order of :data:`METHODS`, then people, then seed."""
    rows = []
    runs = os.path.join(out, "runs")
    for name in sorted(os.listdir(runs)) if os.path.isdir(runs) else []:
        p = os.path.join(runs, name, "row.json")
        if os.path.exists(p):
            with open(p) as f:
                rows.append(json.load(f))
    order = list(METHODS)

    def key(r):
        name, _, n = r["method"].partition("@")
        return (order.index(name) if name in order else len(order), -int(n or 10 ** 9),
                r["seed"])
    return sorted(rows, key=key)


def run_real(out: str, shared: str, methods: list[str], seeds: list[int], overrides: list[str],
             jobs: int = 2, people: int = 0, train: str | None = None, log=print) -> dict:
    """Every (method, seed) run; returns {"rows", "table"} and writes results.json/.md."""
    from odkd.config import load_config
    from odkd.distill.real import teacher_view_set

    bad = [m for m in methods if m.partition("@")[0] not in METHODS]
    if bad:
        raise DataError(f"--methods: unknown {bad}; choose from {', '.join(METHODS)}")
    t0 = time.time()
    out = os.path.abspath(out)
    for r in _all_rows(out):
        # resuming must not mix runs of two settings in one table
        if r.get("overrides", []) != overrides:
            raise DataError(f"{os.path.join(r['workdir'], 'row.json')}: made with overrides "
                            f"{r.get('overrides', [])}, not {overrides}; use another --out")
    paths = prepare_data(shared, out, log, train)
    train = subset(paths["train"], people)
    base = [f"data.train_ann={train}",
            f"data.val_ann={os.path.join(shared, 'data', 'real-mini', 'coco', 'test_coco.json')}",
            f"data.val_images={os.path.join(shared, 'data', 'real-mini', 'coco')}",
            f"distill.cache={os.path.join(out, 'teacher_cache-' + str(people or 'all'))}",
            *overrides]
    # the views are labelled once, here, with every thread; the runs then only read them
    people_total = len(teacher_view_set(load_config(CONFIG, base), log=log).records)
    lightning_ck = _lightning_checkpoint(out, base)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    # seed-major: a first seed of every method comes before the next seed of any
    todo = [(m, s) for s in seeds for m in methods if m != "start" or s == seeds[0]]
    res_path = os.path.join(out, "results.json")
    running: list[tuple] = []

    def finish(m, s, wd, proc):
        if proc is not None and proc.wait():
            raise DataError(f"run {m} seed {s} failed; see {os.path.join(wd, 'train.log')}")
        ckpt = os.path.join(wd, "last.pt") if m != "start" else lightning_ck
        r = {"method": m, "seed": s, "workdir": wd, "overrides": overrides,
             **_evaluate(ckpt, paths, shared, wd, env)}
        with open(os.path.join(wd, "row.json"), "w") as f:
            json.dump(r, f)
        with open(res_path, "w") as f:
            json.dump(_all_rows(out), f, indent=1)
        log(f"[odkd] {m} seed {s}: " + ", ".join(f"{k} {v:.3f}" for k, v in r.items()
                                                 if isinstance(v, float)))

    for m, s in todo:
        wd = os.path.join(out, "runs", f"{m}-s{s}")
        os.makedirs(wd, exist_ok=True)
        if os.path.exists(os.path.join(wd, "row.json")):
            log(f"[odkd] {m} seed {s}: done before ({wd}), kept")
            continue
        if m == "start":
            finish(m, s, wd, None)
            continue
        ov = [o.format(lightning_pt=lightning_ck) for o in method_overrides(m, people_total)]
        argv = ["distill", CONFIG, *base, *ov, f"train.seed={s}", "--workdir", wd,
                "--no-progress"]
        while len(running) >= jobs:
            for item in list(running):
                if item[3].poll() is not None:
                    running.remove(item)
                    finish(*item)
            time.sleep(2)
        log(f"[odkd] run {m} seed {s} -> {wd}")
        with open(os.path.join(wd, "train.log"), "w") as lf:
            proc = subprocess.Popen([sys.executable, "-m", "odkd.cli", *argv], env=env,
                                    stdout=lf, stderr=subprocess.STDOUT)
        running.append((m, s, wd, proc))
    for item in running:
        finish(*item)
    rows = _all_rows(out)
    with open(res_path, "w") as f:
        json.dump(rows, f, indent=1)
    text = table(rows)
    with open(os.path.join(out, "results.md"), "w") as f:
        f.write(text + "\n")
    log(text)
    log(f"[odkd] demo real: {len(rows)} runs in {(time.time() - t0) / 60:.1f} min; "
        f"{res_path}")
    return {"rows": rows, "table": text}
