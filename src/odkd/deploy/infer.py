"""Top-down inference on images, folders and videos: person boxes -> crops -> model -> decoded
keypoints (+ masks) -> overlays (PNG per image, MP4 per video) and a COCO results json.

Crops, the flip test, decoding, rescoring and OKS-NMS are the ones evaluation uses
(``dataset.warp_crop``, ``codec.predict_heatmaps``, ``HeatmapCodec.decode``,
``rescore_and_nms``), so a model gives the same keypoints here as in ``odkd eval`` for the same
boxes, on either backend.

Person boxes come from a COCO detection results json, from the whole image (``full``) or from
odkd's offline person detector (``detect``: SSD-MobileNet-v2, :mod:`odkd.teachers.detector`,
run on each frame). ``auto`` is ``detect`` when that detector has been fetched into the teacher
cache (``odkd teachers fetch ssd-mobilenet-v2``), else ``full`` with a note saying so.
"""
from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable, Iterator

import cv2
import numpy as np
import torch
from tqdm import tqdm

from odkd.codec import HeatmapCodec, predict_heatmaps
from odkd.data.coco import clip_box, read_detections, read_json  # eval's checks, clipping
from odkd.data.dataset import normalize_crop, read_image, warp_crop
from odkd.deploy.visualize import draw_pose, paste_mask, write_image
from odkd.errors import DataError, OdkdError
from odkd.eval.coco_eval import rescore_and_nms
from odkd.geometry import box_to_center_scale
from odkd.models.fold import scoring_model
from odkd.spec import PoseSpec
from odkd.utils import atomic_write_text

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
VIDEO_EXTS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")


# ------------------------------------------------------------------------------------ predictor

@dataclass
class Instances:
    """Predictions for the boxes of one image."""

    keypoints: np.ndarray           # (M, K, 3) image x, y, heatmap maximum
    boxes: np.ndarray               # (M, 4) COCO [x, y, w, h]
    box_scores: np.ndarray          # (M,)
    centers: np.ndarray             # (M, 2) crop geometry (image pixels)
    scales: np.ndarray              # (M, 2)
    masks: np.ndarray | None        # (M, h, w) mask probabilities at heatmap resolution


class TopDownPredictor:
    """Runs a pose model (torch module or OrtPoseModel) on person boxes, in batches.

    ``codec`` (default: the spec's, :meth:`PoseSpec.codec`) undoes the flip test and
    decodes, as in evaluation; ``flip_test`` and the box ``padding`` are the eval settings."""

    def __init__(self, model, spec: PoseSpec, device: torch.device, batch_size: int = 32,
                 flip_test: bool = True, padding: float = 1.25,
                 codec: HeatmapCodec | None = None) -> None:
        if batch_size < 1:
            raise OdkdError(f"batch size must be >= 1, got {batch_size}")
        self.model, self.spec, self.device = model, spec, device
        # what forward runs: a BN-folded (channels_last) copy made now, as evaluation scores,
        # so both give the same numbers for the same crops (odkd.models.fold.scoring_model)
        self._net, self._channels_last = scoring_model(model, device)
        self.batch_size = batch_size
        self.flip_test, self.padding = flip_test, padding
        self.codec = codec or spec.codec()
        if tuple(self.codec.input_size) != tuple(spec.input_size):
            raise OdkdError(f"codec input size {list(self.codec.input_size)} differs from the "
                            f"model's {list(spec.input_size)}")
        self.input_size = self.codec.input_size
        self.aspect_ratio = self.input_size[0] / self.input_size[1]

    def crop(self, image: np.ndarray, box) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(normalised CHW crop, center, scale): the evaluation crop of TopDownDataset."""
        center, scale = box_to_center_scale(box, self.aspect_ratio, self.padding)
        crop = warp_crop(image, center, scale, 0.0, self.input_size)
        return normalize_crop(crop), center, scale

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(heatmaps, mask logits or None) on the CPU, flip-averaged as in evaluation."""
        if self._channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        heat, mask = predict_heatmaps(self._net, images, self.codec, self.spec.flip_pairs,
                                      self.flip_test)
        return heat.cpu(), (mask.cpu() if mask is not None else None)

    def predict(self, items: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> list[Instances]:
        """``items``: (RGB image, boxes (M, 4), box scores (M,)) per image; crops of all images
        are batched together."""
        crops, centers, scales, owner = [], [], [], []
        for n, (image, boxes, _) in enumerate(items):
            for box in boxes:
                c, ctr, scl = self.crop(image, box)
                crops.append(c)
                centers.append(ctr)
                scales.append(scl)
                owner.append(n)
        k = self.spec.num_joints
        kpts = np.zeros((0, k, 3), np.float32)
        masks = None
        if crops:
            heats, mask_parts = [], []
            for s in range(0, len(crops), self.batch_size):
                batch = torch.from_numpy(np.stack(crops[s:s + self.batch_size])).to(self.device)
                heat, mask = self.forward(batch)
                heats.append(heat)
                if mask is not None:
                    mask_parts.append(torch.sigmoid(mask[:, 0]))
            heat = torch.cat(heats).numpy()
            preds, maxvals = self.codec.decode(heat, np.stack(centers), np.stack(scales))
            kpts = np.concatenate([preds, maxvals[..., None]], axis=2)
            masks = torch.cat(mask_parts).numpy() if mask_parts else None
        owner_arr = np.asarray(owner, dtype=np.int64)
        out = []
        for n, (_, boxes, scores) in enumerate(items):
            sel = np.nonzero(owner_arr == n)[0]
            out.append(Instances(
                keypoints=kpts[sel], boxes=np.asarray(boxes, np.float32).reshape(-1, 4),
                box_scores=np.asarray(scores, np.float32).reshape(-1),
                centers=np.stack(centers)[sel] if len(sel) else np.zeros((0, 2), np.float32),
                scales=np.stack(scales)[sel] if len(sel) else np.zeros((0, 2), np.float32),
                masks=masks[sel] if masks is not None else None))
        return out


# ---------------------------------------------------------------------------------- person boxes

DETECTOR = "ssd-mobilenet-v2"   # odkd.teachers.detector's offline person detector
DETECT_THR = 0.5                # its default score threshold for `--boxes detect`
BOX_MODES = ("auto", "detect", "full")


def detector_status() -> str:
    """'' when ``auto`` can detect people (the detector's model is in the teacher cache and
    onnxruntime is installed), else what is missing, as advice."""
    import importlib.util

    from odkd.teachers import store

    if not store.is_present(DETECTOR):
        return f"run `odkd teachers fetch {DETECTOR}` to detect them"
    if importlib.util.find_spec("onnxruntime") is None:
        return "install onnxruntime (pip install 'odkd[deploy]') to detect them"
    return ""


def resolve_boxes(boxes: str, log=print) -> str:
    """``boxes`` with ``auto`` made ``detect`` or ``full`` (:func:`detector_status`); the
    ``full`` fallback is logged in one line."""
    if boxes != "auto":
        return boxes
    missing = detector_status()
    if not missing:
        return "detect"
    log(f"[odkd] no person detector: each image is taken as one person (the whole image); "
        f"{missing}")
    return "full"


def box_threshold(mode: str, det_thr: float | None) -> float:
    """The minimum box score: ``det_thr``, or when None :data:`DETECT_THR` for the detector and
    0 for boxes given in a file or array."""
    if det_thr is not None:
        return float(det_thr)
    return DETECT_THR if mode == "detect" else 0.0


def load_detector(threads: int | None = None):
    """odkd's person detector (one-line CheckpointError when it is not fetched)."""
    from odkd.teachers.detector import get_detector

    return get_detector(DETECTOR, num_threads=threads or 1)


def detect_boxes(detector, image: np.ndarray, score_thr: float
                 ) -> list[tuple[list[float], float]]:
    """[(COCO box, score), ...] of the people ``detector`` finds in an RGB image, best first."""
    boxes, scores = detector(image, score_thr)
    return [(list(map(float, b)), float(s)) for b, s in zip(boxes, scores)]


# --------------------------------------------------------------------------------------- inputs

@dataclass
class Frame:
    image: np.ndarray       # RGB uint8
    name: str               # source file name (images) or "<video>#<index>"
    image_id: int
    index: int


def list_images(folder: str) -> list[str]:
    files = sorted(f for f in os.listdir(folder) if f.lower().endswith(IMAGE_EXTS))
    if not files:
        raise DataError(f"{folder}: no images ({', '.join(IMAGE_EXTS)}) in this folder")
    return [os.path.join(folder, f) for f in files]


def image_ids_from_ann(ann_file: str) -> dict[str, int]:
    """basename(file_name) -> image id from a COCO json's ``images``."""
    data = read_json(ann_file, "annotation file")
    images = data.get("images") if isinstance(data, dict) else None
    if not isinstance(images, list):
        raise DataError(f"{ann_file}: field 'images' missing or not a list")
    out = {}
    for i, im in enumerate(images):
        if not (isinstance(im, dict) and isinstance(im.get("id"), int)
                and isinstance(im.get("file_name"), str)):
            raise DataError(f"{ann_file}: images[{i}] needs an integer 'id' and a 'file_name'")
        out[os.path.basename(im["file_name"])] = im["id"]
    return out


def assign_image_ids(paths: list[str], ann_file: str | None) -> list[int]:
    """Image ids: from ``ann_file`` when given, else the numeric file stem (COCO's
    ``000000000785.jpg`` -> 785), else the position in the sorted list."""
    if ann_file:
        table = image_ids_from_ann(ann_file)
        missing = [os.path.basename(p) for p in paths if os.path.basename(p) not in table]
        if missing:
            raise DataError(f"{ann_file}: field images[].file_name lists no {missing[0]!r}"
                            f"{f' (and {len(missing) - 1} more)' if len(missing) > 1 else ''}")
        return [table[os.path.basename(p)] for p in paths]
    stems = [os.path.splitext(os.path.basename(p))[0] for p in paths]
    if all(s.isdigit() for s in stems) and len(set(map(int, stems))) == len(stems):
        return [int(s) for s in stems]
    return list(range(len(paths)))


class InputSource:
    """An image, a folder of images or a video, iterated as :class:`Frame` s."""

    def __init__(self, path: str, ann_file: str | None = None, max_frames: int = 0) -> None:
        self.path = path
        self.max_frames = max_frames
        self.fps = 0.0
        if os.path.isdir(path):
            self.kind = "images"
            self.files = list_images(path)
        elif not os.path.isfile(path):
            raise DataError(f"--input: {path} does not exist")
        elif path.lower().endswith(IMAGE_EXTS):
            self.kind, self.files = "images", [path]
        elif path.lower().endswith(VIDEO_EXTS):
            self.kind, self.files = "video", []
        else:
            raise DataError(f"--input: {path}: unknown file type; expected an image "
                            f"({', '.join(IMAGE_EXTS)}), a video ({', '.join(VIDEO_EXTS)}) or "
                            "a folder")
        if self.kind == "images":
            if max_frames:
                self.files = self.files[:max_frames]
            self.ids = assign_image_ids(self.files, ann_file)
            self.total = len(self.files)
        else:
            cap = cv2.VideoCapture(path)
            if not cap.isOpened():
                raise DataError(f"{path}: OpenCV cannot open this video")
            self.fps = float(cap.get(cv2.CAP_PROP_FPS)) or 25.0
            n = max(0, int(cap.get(cv2.CAP_PROP_FRAME_COUNT)))   # 0 or -1: unknown
            cap.release()
            self.total = min(n, max_frames) if max_frames and n > 0 else (max_frames or n)

    def __iter__(self) -> Iterator[Frame]:
        if self.kind == "images":
            for i, (p, img_id) in enumerate(zip(self.files, self.ids)):
                yield Frame(read_image(p), os.path.basename(p), img_id, i)
            return
        cap = cv2.VideoCapture(self.path)
        try:
            i = 0
            while not self.max_frames or i < self.max_frames:
                ok, bgr = cap.read()
                if not ok:
                    break
                # Video frames are numbered from 0; they are the image ids of the results json.
                yield Frame(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB),
                            f"{os.path.basename(self.path)}#{i}", i, i)
                i += 1
        finally:
            cap.release()


def load_boxes(path: str, score_thr: float = 0.0, skipped: Counter | None = None
               ) -> dict[int, list[tuple[list[float], float]]]:
    """image id -> [(COCO box, score), ...] from a COCO detection results json, with the checks
    ``odkd eval`` makes (``coco.read_detections``: finite scores and boxes, integer ids)."""
    out: dict[int, list[tuple[list[float], float]]] = {}
    for _, img_id, box, score in read_detections(path, score_thr, skipped=skipped,
                                                 what="--boxes: detection file (or use 'full')"):
        out.setdefault(img_id, []).append((box, score))
    return out


# ------------------------------------------------------------------------------------- people

@dataclass
class Person:
    """One predicted person: what ``odkd.load(...).predict`` returns and ``odkd.draw`` draws."""

    keypoints: np.ndarray           # (K, 2) image x, y
    scores: np.ndarray              # (K,) keypoint scores (heatmap maxima)
    score: float                    # instance score after rescoring (box score x keypoints)
    box: np.ndarray | None          # (4,) COCO [x, y, w, h] of the crop; None: the whole image
    mask: np.ndarray | None         # (H, W) mask probabilities on the image (mask models only)
    image_id: int = 0
    # the layout the overlay needs, shared with the model's spec
    keypoint_names: list[str] = field(default_factory=list, repr=False)
    skeleton: list[list[int]] = field(default_factory=list, repr=False)


def make_people(inst: Instances, keep: list[int], results: list[dict], spec: PoseSpec,
                image_size: tuple[int, int], whole_image: bool, masks: bool = True
                ) -> list[Person]:
    """The survivors ``keep`` of :func:`select_people` (with its ``results``) as Persons;
    ``masks`` pastes mask probabilities onto the (width, height) image."""
    out = []
    for i, res in zip(keep, results):
        mask = None
        if masks and inst.masks is not None:
            mask = paste_mask(inst.masks[i], inst.centers[i], inst.scales[i], image_size)
        out.append(Person(keypoints=inst.keypoints[i, :, :2], scores=inst.keypoints[i, :, 2],
                          score=res["score"], box=None if whole_image else inst.boxes[i],
                          mask=mask, image_id=int(res["image_id"]),
                          keypoint_names=spec.keypoint_names, skeleton=spec.skeleton))
    return out


def draw_people(image: np.ndarray, people: list[Person], kpt_thr: float = 0.2,
                masks: bool = True) -> np.ndarray:
    """The ``odkd infer`` overlay: masks, boxes (when given), skeletons, score labels, legend."""
    first = people[0] if people else Person(np.zeros((0, 2)), np.zeros(0), 0.0, None, None)
    kpts = np.stack([np.concatenate([p.keypoints, p.scores[:, None]], axis=1) for p in people]) \
        if people else np.zeros((0, 0, 3), np.float32)
    mask_arr = np.stack([p.mask for p in people]) \
        if masks and people and all(p.mask is not None for p in people) else None
    boxes = np.stack([p.box for p in people]) \
        if people and all(p.box is not None for p in people) else None
    return draw_pose(image, kpts, first.skeleton, first.keypoint_names, kpt_thr=kpt_thr,
                     masks=mask_arr, boxes=boxes, scores=[p.score for p in people], legend=True)


# ------------------------------------------------------------------------------------- pipeline

def frame_boxes(dets: list[tuple[list[float], float]] | None, width: int, height: int,
                skipped: Counter | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(boxes (M, 4), scores (M,)) for one image: the whole image when ``dets`` is None, else
    the detections clipped to the image as ``odkd eval`` clips them; boxes outside it are
    dropped and counted by reason into ``skipped``."""
    if dets is None:
        return np.array([[0.0, 0.0, width, height]], np.float32), np.ones(1, np.float32)
    kept = []
    for b, s in dets:
        clipped, reason = clip_box(b, width, height)
        if clipped is None:
            if skipped is not None:
                skipped[reason] += 1   # reported by the command, never silently lost
        else:
            kept.append((clipped, s))
    if not kept:
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32)
    return (np.array([b for b, _ in kept], np.float32),
            np.array([s for _, s in kept], np.float32))


def predict_batched(predictor: TopDownPredictor,
                    items: Iterable[tuple[Frame, np.ndarray, np.ndarray]]
                    ) -> Iterator[tuple[Frame, Instances]]:
    """(frame, boxes, scores) -> (frame, Instances), in order. Frames are gathered until a full
    batch of crops (or of frames, bounding memory) so several images share a forward pass;
    ``odkd infer`` and ``odkd.load(...).predict`` both batch this way, so they agree exactly."""
    pending: list[tuple[Frame, np.ndarray, np.ndarray]] = []

    def flush() -> list[tuple[Frame, Instances]]:
        preds = predictor.predict([(f.image, b, s) for f, b, s in pending])
        done = [(f, inst) for (f, _, _), inst in zip(pending, preds)]
        pending.clear()
        return done

    for item in items:
        pending.append(item)
        if sum(len(b) for _, b, _ in pending) >= predictor.batch_size \
                or len(pending) >= predictor.batch_size:
            yield from flush()
    if pending:
        yield from flush()


def select_people(inst: Instances, image_id: int, opts: "InferOptions"
                  ) -> tuple[list[dict], list[int]]:
    """Rescoring and OKS-NMS of one image's instances: (COCO result dicts, best first; the row
    of ``inst`` each came from). Rows, not keypoint values, identify the survivors: NaN never
    equals itself, and two identical boxes with NMS off are two people."""
    n, k = inst.keypoints.shape[:2]
    if not n:
        return [], []
    # OKS needs per-joint sigmas, which exist for COCO-17 only; other layouts skip NMS
    # (threshold 1 keeps every instance) with placeholder sigmas.
    sigmas = None if k == 17 else np.full(k, 0.1)
    nms_thr = opts.oks_nms_thr if k == 17 else 1.0
    return rescore_and_nms(inst.keypoints, inst.box_scores, inst.scales[:, 0] * inst.scales[:, 1],
                           np.full(n, image_id), oks_thr=nms_thr, in_vis_thr=opts.in_vis_thr,
                           rescore=opts.rescore, sigmas=sigmas, return_kept=True)


@dataclass
class InferOptions:
    boxes: str = "full"             # "full", "detect", "auto" or a COCO detection results json
    ann: str | None = None          # COCO json mapping file names to image ids
    det_thr: float | None = None    # minimum box score; None: box_threshold's default
    kpt_thr: float = 0.2            # drawing threshold on keypoint scores
    draw_masks: bool = True
    oks_nms_thr: float = 0.9
    in_vis_thr: float = 0.2
    rescore: bool = True
    max_frames: int = 0
    progress: bool = True


def run_inference(predictor: TopDownPredictor, input_path: str, out_dir: str,
                  opts: InferOptions = InferOptions(), detector=None) -> dict:
    """Run on every frame of ``input_path``; write overlays and ``results.json`` to ``out_dir``.

    ``opts.boxes`` ``detect`` (or ``auto`` resolving to it) runs ``detector`` (default:
    :func:`load_detector`) on each frame, a pose per person box found.

    Returns ``{"frames", "instances", "keypoints_drawn", "skipped", "results", "overlays",
    "boxes", "frames_without_people"}``: ``keypoints_drawn`` counts joints scoring above
    ``opts.kpt_thr``, ``skipped`` the detection boxes dropped per reason (e.g.
    ``bbox_outside_image``), ``boxes`` the box mode used (``full``, ``detect`` or the json).
    """
    spec = predictor.spec
    source = InputSource(input_path, opts.ann, opts.max_frames)
    mode = resolve_boxes(opts.boxes)
    score_thr = box_threshold(mode, opts.det_thr)
    skipped: Counter[str] = Counter()
    dets = None if mode in ("full", "detect") else load_boxes(mode, score_thr, skipped)
    if mode == "detect" and detector is None:
        detector = load_detector()
    if dets is not None and source.kind == "images" and not opts.ann:
        stems = [os.path.splitext(os.path.basename(p))[0] for p in source.files]
        if not all(s.isdigit() for s in stems):
            raise DataError(f"--boxes {opts.boxes}: detections are keyed by image_id; image names "
                            "are not numeric, so pass --ann COCO.json to map file names to ids")
    os.makedirs(out_dir, exist_ok=True)

    results: list[dict] = []
    overlays: list[str] = []
    writer = None
    video_path = ""
    n_frames = n_inst = n_drawn = n_empty = 0
    used_names: set[str] = set()
    bar = tqdm(total=source.total or None, desc=os.path.basename(os.path.normpath(input_path)),
               unit="frame", disable=not opts.progress, dynamic_ncols=True)

    def emit(frame: Frame, inst: Instances) -> None:
        nonlocal writer, video_path, n_frames, n_inst, n_drawn, n_empty
        frame_results, keep = select_people(inst, frame.image_id, opts)
        results.extend(frame_results)
        n_frames += 1
        n_empty += not keep
        n_inst += len(keep)
        n_drawn += int((inst.keypoints[keep, :, 2] > opts.kpt_thr).sum()) if keep else 0
        h, w = frame.image.shape[:2]
        people = make_people(inst, keep, frame_results, spec, (w, h),
                             whole_image=mode == "full", masks=opts.draw_masks)
        canvas = draw_people(frame.image, people, kpt_thr=opts.kpt_thr)
        if source.kind == "images":
            stem = os.path.splitext(frame.name)[0]
            name = stem + ".png" if stem + ".png" not in used_names else frame.name + ".png"
            used_names.add(name)
            path = os.path.join(out_dir, name)
            write_image(path, canvas)
            overlays.append(path)
        else:
            if writer is None:
                video_path = os.path.join(
                    out_dir, os.path.splitext(os.path.basename(input_path))[0] + ".mp4")
                writer = cv2.VideoWriter(video_path, cv2.VideoWriter_fourcc(*"mp4v"),
                                         source.fps, (w, h))
                if not writer.isOpened():
                    raise OdkdError(f"{video_path}: OpenCV cannot write an mp4v video here")
                overlays.append(video_path)
            writer.write(cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR))
        bar.update(1)   # frames written, not frames read ahead into a batch

    def items() -> Iterator[tuple[Frame, np.ndarray, np.ndarray]]:
        for frame in source:
            h, w = frame.image.shape[:2]
            if mode == "detect":
                found = detect_boxes(detector, frame.image, score_thr)
            else:
                found = None if dets is None else dets.get(frame.image_id, [])
            yield (frame, *frame_boxes(found, w, h, skipped))

    try:
        for frame, inst in predict_batched(predictor, items()):
            emit(frame, inst)
    finally:
        bar.close()
        if writer is not None:
            writer.release()
    results_path = os.path.join(out_dir, "results.json")
    atomic_write_text(results_path, json.dumps(results))
    return {"frames": n_frames, "instances": n_inst, "keypoints_drawn": n_drawn,
            "skipped": dict(skipped), "results": results_path, "overlays": overlays,
            "boxes": mode, "frames_without_people": n_empty}
