"""A video -> sampled frames as JPEGs + COCO images with no labels (as a folder of photos).

Frames go to ``OUT_frames/frame_NNNNNN.jpg`` next to the json (NNNNNN: the frame's index in
the video); each image entry keeps ``frame_index`` and ``time_s``. Frames are decoded into a
temporary folder that replaces ``OUT_frames/`` only when the whole video has been read, and the
json is written after it, so a failure leaves nothing half-written.
"""
from __future__ import annotations

import os
import shutil
import tempfile

import cv2

from odkd.data.importers.common import ImportResult, check_out_path, image_entry, new_coco
from odkd.data.importers.folder import whole_image_annotation
from odkd.errors import DataError


def frames_dir_for(out: str) -> str:
    return os.path.splitext(os.path.abspath(out))[0] + "_frames"


def _is_old_frames(path: str) -> bool:
    """True when ``path`` holds nothing but frames an earlier import wrote (safe to replace)."""
    return all(f.startswith("frame_") and f.endswith(".jpg") for f in os.listdir(path))


def sample_indices(n_frames: int | None, video_fps: float, every: int | None,
                   fps: float | None):
    """Predicate on frame index: keep every ``every``-th frame, or about ``fps`` per second
    (the first frame of each 1/fps interval of the video's own time line)."""
    if every is not None and fps is not None:
        raise DataError("--every and --fps: give one of them")
    if every is not None and every < 1:
        raise DataError(f"--every: must be >= 1, got {every}")
    if fps is not None:
        if fps <= 0:
            raise DataError(f"--fps: must be > 0, got {fps}")
        if video_fps <= 0:
            raise DataError("--fps: the video does not say its frame rate; use --every N")
        step = video_fps / fps
        return lambda i: int(i / step) != int((i - 1) / step) if i else True
    every = every or 1
    return lambda i: i % every == 0


def import_video(src: str, out: str, every: int | None = None, fps: float | None = None,
                 max_frames: int | None = None, whole_image_box: bool = False,
                 jpeg_quality: int = 95) -> ImportResult:
    """Decode ``src``, write the sampled frames next to ``out`` and return the COCO dict (the
    caller writes ``out``). DataError when the video cannot be opened or gives no frame."""
    check_out_path(out)
    if max_frames is not None and max_frames < 1:
        raise DataError(f"--max-frames: must be >= 1, got {max_frames}")
    if not os.path.isfile(src):
        raise DataError(f"video not found: {src}")
    final = frames_dir_for(out)
    if os.path.exists(final) and not (os.path.isdir(final) and _is_old_frames(final)):
        raise DataError(f"{final}: exists and holds other files than frame_*.jpg; move it "
                        "or choose another --out")
    # FFmpeg prints its own diagnostics (e.g. "moov atom not found") on stderr; the error
    # below says it in one line, so keep FFmpeg quiet unless the user asked otherwise
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    cap = cv2.VideoCapture(src)
    if not cap.isOpened():
        raise DataError(f"{src}: not a readable video (OpenCV could not open it)")
    video_fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
    keep = sample_indices(None, video_fps, every, fps)
    parent = os.path.dirname(final)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(dir=parent, prefix=".tmp-frames-")
    coco = new_coco(f"frames of {os.path.basename(src)}, imported by odkd data import video",
                    src)
    coco["info"].update(video_fps=video_fps, every=every, fps=fps)
    try:
        index = 0
        while max_frames is None or len(coco["images"]) < max_frames:
            ok, frame = cap.read()
            if not ok or frame is None:
                break
            if keep(index):
                name = f"frame_{index:06d}.jpg"
                if not cv2.imwrite(os.path.join(tmp, name), frame,
                                   [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)]):
                    raise DataError(f"{tmp}: cannot write {name}")
                h, w = frame.shape[:2]
                image_id = len(coco["images"]) + 1
                coco["images"].append(image_entry(
                    image_id, name, w, h, frame_index=index,
                    time_s=round(index / video_fps, 4) if video_fps > 0 else None))
                if whole_image_box:
                    coco["annotations"].append(whole_image_annotation(image_id, image_id, w, h))
            index += 1
        cap.release()
        if not coco["images"]:
            raise DataError(f"{src}: not a readable video (no frame could be decoded)")
        os.chmod(tmp, 0o755 & ~_umask())
        if os.path.exists(final):
            old = tempfile.mkdtemp(dir=parent, prefix=".tmp-old-frames-")
            os.replace(final, os.path.join(old, "frames"))
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    except BaseException:
        cap.release()
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    coco["info"]["frames_read"] = index
    return ImportResult(coco, final)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
