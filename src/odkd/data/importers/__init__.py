"""Importers of real photo sets in their published formats -> COCO person_keypoints json.

One module per format; each returns an :class:`ImportResult` (COCO dict, image folder, what was
left out). :func:`run_import` writes the json atomically after the whole source has been read
and checked, so malformed input raises one DataError and leaves no file behind.

| format | source | people | keypoints | masks |
|---|---|---|---|---|
| lsp | ``joints.mat`` + ``images/`` | 1 per image | 12 COCO limb joints (+ ``lsp_joints``) | no |
| tud | ``.idl`` + ``.al`` + ``maps/`` | ``.idl`` boxes | none (``tud_points``) | RLE |
| pennfudan | ``Annotation/`` + ``PedMasks/`` | PASCAL boxes | none | RLE |
| folder | image files | none (or whole-image boxes) | none | no |
| video | a video file, frames sampled | none (or whole-image boxes) | none | no |
"""
from __future__ import annotations

from odkd.data.importers.common import ImportResult, write_coco

FORMATS = ("lsp", "tud", "pennfudan", "folder", "video")


def run_import(fmt: str, src: str, out: str, detect=None, detector: str = "",
               **options) -> ImportResult:
    """Import ``src`` in format ``fmt`` and write ``out``. ``options``: ``split`` (lsp);
    ``whole_image_box``, ``recursive`` (folder); ``every``, ``fps``, ``max_frames``,
    ``whole_image_box`` (video). Options a format does not take are ignored when None.

    ``detect`` (folder and video): a function RGB image -> (boxes (N, 4) x, y, w, h, scores
    (N,)) that gives each image its person boxes (``box_source: detector:<detector>``); the
    caller passes it in because detectors sit above the data layer."""
    from odkd.errors import DataError
    from odkd.data.importers.common import check_out_path

    check_out_path(out)
    allowed = {"lsp": {"split"}, "tud": set(), "pennfudan": set(),
               "folder": {"whole_image_box", "recursive"},
               "video": {"every", "fps", "max_frames", "whole_image_box", "jpeg_quality"}}
    if fmt not in allowed:
        raise DataError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    given = {k: v for k, v in options.items() if v not in (None, False)}
    extra = sorted(set(given) - allowed[fmt])
    if extra:
        raise DataError(f"format {fmt} does not take {', '.join('--' + e.replace('_', '-') for e in extra)}")
    if fmt == "lsp":
        from odkd.data.importers.lsp import import_lsp
        result = import_lsp(src, **given)
    elif fmt == "tud":
        from odkd.data.importers.tud import import_tud
        result = import_tud(src)
    elif fmt == "pennfudan":
        from odkd.data.importers.pennfudan import import_pennfudan
        result = import_pennfudan(src)
    elif fmt == "folder":
        from odkd.data.importers.folder import import_folder
        result = import_folder(src, **given)
    else:
        from odkd.data.importers.video import import_video
        result = import_video(src, out, **given)
    if detect is not None:
        if fmt not in ("folder", "video", "lsp"):
            raise DataError(f"format {fmt} has its own person boxes; --detect is for folder, "
                            "video and lsp")
        if fmt == "lsp":
            # label-free use of LSP: the detector's boxes replace the joints (and the box
            # drawn around them), so nothing of the labels reaches training
            result.coco["annotations"] = []
        if given.get("whole_image_box"):
            raise DataError("--detect and --whole-image-box both give the person boxes; "
                            "choose one")
        from odkd.data.importers.common import add_detections
        add_detections(result, detect, detector)
    write_coco(result, out)
    return result


__all__ = ["FORMATS", "ImportResult", "run_import"]
