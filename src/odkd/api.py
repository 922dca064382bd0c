"""The Python API::

    import odkd
    model = odkd.load("odkd-lightning")      # shipped model; or an odkd / official HRNet /
                                             # mmpose checkpoint, or an .onnx file
    people = model.predict("street.jpg")     # people found by the offline detector when it is
                                             # fetched, else the whole image; or boxes=
    people[0].keypoints, people[0].scores, people[0].mask
    canvas = odkd.draw("street.jpg", people)

``odkd infer`` runs through the same objects (:func:`load`, :attr:`PoseModel.predictor`,
:meth:`PoseModel.options`), so both give the same keypoints for the same boxes.
"""
from __future__ import annotations

import os
from typing import Any, Iterator, Sequence

import numpy as np

from odkd.data.dataset import read_image
from odkd.deploy.infer import (BOX_MODES, Frame, InferOptions, Person, TopDownPredictor,
                               assign_image_ids, box_threshold, detect_boxes, draw_people,
                               frame_boxes, list_images, load_boxes, load_detector, make_people,
                               predict_batched, resolve_boxes, select_people)
from odkd.deploy.loader import LoadedPose, load_pose
from odkd.deploy.visualize import write_image
from odkd.errors import DataError

__all__ = ["PoseModel", "Person", "load", "draw"]


def _is_path(x: Any) -> bool:
    return isinstance(x, (str, os.PathLike))


def _check_image(img: Any, where: str) -> np.ndarray:
    if not (isinstance(img, np.ndarray) and img.ndim == 3 and img.shape[2] == 3
            and img.dtype == np.uint8):
        got = f"shape {img.shape}, {img.dtype}" if isinstance(img, np.ndarray) \
            else type(img).__name__
        raise DataError(f"{where}: expected an image path or an RGB uint8 (H, W, 3) array, "
                        f"got {got}")
    return img


def _box_list(boxes: Any, where: str, det_thr: float) -> list[tuple[list[float], float]]:
    """(M, 4) COCO [x, y, w, h] boxes, or (M, 5) with a score column -> [(box, score), ...]."""
    try:
        arr = np.asarray(boxes, dtype=np.float64)
    except (TypeError, ValueError):
        raise DataError(f"{where}: expected (M, 4) [x, y, w, h] or (M, 5) with scores, "
                        f"got {type(boxes).__name__}") from None
    if arr.size == 0:
        return []
    if arr.ndim == 1:
        arr = arr[None]
    if arr.ndim != 2 or arr.shape[1] not in (4, 5):
        raise DataError(f"{where}: expected (M, 4) [x, y, w, h] or (M, 5) with scores, got "
                        f"shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise DataError(f"{where}: box values must be finite numbers")
    scores = arr[:, 4] if arr.shape[1] == 5 else np.ones(len(arr))
    return [(list(map(float, b[:4])), float(s)) for b, s in zip(arr, scores) if s >= det_thr]


class PoseModel:
    """A loaded pose model with its checkpoint's eval settings (flip test, box padding,
    rescoring, OKS-NMS; heatmap shift and decoder in ``predictor.codec``). Build it with
    :func:`load`."""

    def __init__(self, loaded: LoadedPose, batch_size: int = 32, flip: bool | None = None,
                 threads: int | None = None):
        cfg = loaded.cfg
        self.threads = threads
        self._detector = None
        self._auto: str | None = None   # what boxes="auto" means, decided once per model
        self.model, self.spec, self.cfg, self.device = (loaded.model, loaded.spec, cfg,
                                                        loaded.device)
        self.predictor = TopDownPredictor(
            loaded.model, loaded.spec, loaded.device, batch_size=batch_size,
            flip_test=cfg.eval.flip_test if flip is None else bool(flip),
            padding=cfg.data.padding, codec=loaded.codec)

    def __repr__(self) -> str:
        w, h = self.spec.input_size
        return (f"PoseModel({self.spec.name}, {self.spec.num_joints} joints, input {w}x{h}"
                f"{', mask' if self.spec.with_mask else ''}, {type(self.model).__name__})")

    def options(self, **kwargs) -> InferOptions:
        """InferOptions with this checkpoint's rescoring / OKS-NMS settings (``kwargs``: the
        rest, e.g. ``boxes``, ``kpt_thr``)."""
        ev = self.cfg.eval
        kwargs.setdefault("oks_nms_thr", ev.oks_nms_thr)
        return InferOptions(in_vis_thr=ev.in_vis_thr, rescore=ev.rescore, **kwargs)

    def detector(self):
        """odkd's offline person detector (``ssd-mobilenet-v2``), built on first use with this
        model's ``threads``; a one-line CheckpointError when it has not been fetched."""
        if self._detector is None:
            self._detector = load_detector(self.threads)
        return self._detector

    def box_mode(self, boxes: str = "auto") -> str:
        """``boxes`` ('auto', 'detect' or 'full') as 'detect' or 'full': 'auto' is 'detect'
        when the person detector is in the teacher cache, else 'full' (said once, in one
        printed line); decided once per model."""
        if boxes != "auto":
            return boxes
        if self._auto is None:
            self._auto = resolve_boxes("auto")
        return self._auto

    def predict(self, source, boxes="auto", *, det_thr: float | None = None,
                image_ids: Sequence[int] | None = None, nms: bool = True):
        """People in one image or in several.

        ``source``: an image path, an RGB uint8 (H, W, 3) array, a folder, or a list of paths /
        arrays. ``boxes``:

        - ``"auto"`` (default): ``"detect"`` when odkd's offline person detector has been
          fetched (``odkd teachers fetch ssd-mobilenet-v2``) and onnxruntime is installed,
          else ``"full"`` (printed once, in one line), as ``odkd infer``;
        - ``"detect"``: that detector's person boxes on each image, so several people each get
          a pose (``det_thr`` default 0.5); a one-line error when it is not fetched;
        - ``"full"`` or None: the whole image is one box;
        - (M, 4) COCO [x, y, w, h] (or (M, 5) with scores; a list of those for a list of
          images);
        - a COCO detection results json keyed by image id (ids from ``image_ids`` or numeric
          file names, as ``odkd infer``).

        Boxes are clipped to the image; ``det_thr`` drops low-scoring ones (default 0.5 for the
        detector, 0 for given boxes).

        Returns a list of :class:`Person` (best first) for one image, a list of such lists
        for a folder or a list.
        """
        mode = None                                # given boxes (arrays or a json)
        if boxes is None:
            mode = "full"
        elif isinstance(boxes, str) and boxes in BOX_MODES:   # `odkd infer --boxes ...`
            mode = self.box_mode(boxes)
        if mode is not None:
            boxes = None
        single = not isinstance(source, (list, tuple))
        if _is_path(source) and os.path.isdir(source):
            source, single = list_images(os.fspath(source)), False
        images = [source] if single else list(source)
        for n, img in enumerate(images):
            if not _is_path(img):
                _check_image(img, f"image {n}")
        paths = [os.fspath(p) for p in images if _is_path(p)]
        det_file = os.fspath(boxes) if _is_path(boxes) else None

        if image_ids is not None:
            ids = [int(i) for i in (image_ids if not np.isscalar(image_ids) else [image_ids])]
            if len(ids) != len(images):
                raise DataError(f"image_ids: {len(ids)} given for {len(images)} image(s)")
        elif len(paths) == len(images):
            ids = assign_image_ids(paths, None)
            if det_file and not all(os.path.splitext(os.path.basename(p))[0].isdigit()
                                    for p in paths):
                raise DataError(f"boxes {det_file}: detections are keyed by image_id; image "
                                "names are not numeric, so pass image_ids=")
        elif det_file:
            raise DataError(f"boxes {det_file}: detections are keyed by image_id; pass "
                            "image_ids= for array images")
        else:
            ids = list(range(len(images)))

        thr = box_threshold(mode or "given", det_thr)
        detector = self.detector() if mode == "detect" else None
        if boxes is None:
            per_image = [None] * len(images)   # detect: found per image as it is read
        elif det_file:
            dets = load_boxes(det_file, thr)
            per_image = [dets.get(i, []) for i in ids]
        elif single:
            per_image = [_box_list(boxes, "boxes", thr)]
        else:
            if not isinstance(boxes, (list, tuple)) or len(boxes) != len(images):
                raise DataError(f"boxes: expected a list of {len(images)} box arrays (one per "
                                "image), a detections file or None")
            per_image = [_box_list(b, f"boxes[{n}]", thr) for n, b in enumerate(boxes)]

        def items() -> Iterator[tuple[Frame, np.ndarray, np.ndarray]]:
            # read one image at a time: a long list never sits in memory whole
            for n, (img, img_id, dets) in enumerate(zip(images, ids, per_image)):
                rgb = read_image(os.fspath(img)) if _is_path(img) else img
                name = os.path.basename(os.fspath(img)) if _is_path(img) else f"image {n}"
                h, w = rgb.shape[:2]
                if detector is not None:
                    dets = detect_boxes(detector, rgb, thr)
                yield (Frame(rgb, name, img_id, n), *frame_boxes(dets, w, h))

        opts = self.options(oks_nms_thr=self.cfg.eval.oks_nms_thr if nms else 1.0)
        out = []
        for frame, inst in predict_batched(self.predictor, items()):
            results, keep = select_people(inst, frame.image_id, opts)
            h, w = frame.image.shape[:2]
            out.append(make_people(inst, keep, results, self.spec, (w, h),
                                   whole_image=mode == "full"))
        return out[0] if single else out


def load(checkpoint, *, backend: str | None = None, device: str = "auto",
         model: str | None = None, input_size: Sequence[int] | None = None,
         threads: int | None = None, batch_size: int = 32,
         flip: bool | None = None) -> PoseModel:
    """A :class:`PoseModel` from the name of a model shipped with odkd (``"odkd-lightning"``,
    :data:`odkd.models.zoo.SHIPPED`; used when no file of that name exists), an odkd / official
    HRNet / mmpose checkpoint (``model`` names the architecture of foreign ones, e.g.
    ``"hrnet_w32"``) or an ``odkd export`` ONNX file (run by onnxruntime). ``flip`` None keeps
    the checkpoint's flip-test setting; ``threads`` also sets the person detector's."""
    loaded = load_pose(os.fspath(checkpoint), backend=backend, device=device, name=model,
                       input_size=input_size, threads=threads)
    return PoseModel(loaded, batch_size=batch_size, flip=flip, threads=threads)


def draw(image, people: list[Person], kpt_thr: float = 0.2, masks: bool = True,
         out: str | os.PathLike | None = None) -> np.ndarray:
    """The ``odkd infer`` overlay of ``people`` on ``image`` (a path or an RGB uint8 array), as
    an RGB array; ``out`` also writes it (PNG, JPEG, ... by extension)."""
    rgb = read_image(os.fspath(image)) if _is_path(image) else _check_image(image, "image")
    if people and not isinstance(people[0], Person):
        raise DataError("people: expected the list predict() returns for one image, got a "
                        f"list of {type(people[0]).__name__}")
    canvas = draw_people(rgb, list(people), kpt_thr=kpt_thr, masks=masks)
    if out is not None:
        write_image(os.fspath(out), canvas)
    return canvas
