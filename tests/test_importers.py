"""odkd.data.importers and `odkd data import`: each format on a tiny source the test makes,
malformed input as one error line with nothing written, and the real sets in ../shared."""
from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import cv2
import numpy as np
import pytest
import scipy.io
from pycocotools import mask as mask_utils

from odkd.cli import main
from odkd.data.importers import run_import
from odkd.data.importers.lsp import LSP_JOINTS, import_lsp
from odkd.data.importers.matfile import load_mat
from odkd.errors import DataError
from odkd.keypoints import COCO_KEYPOINTS

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real"


@pytest.fixture
def real_data() -> Path:
    """Path to ../shared/data/real; the test is skipped when it is absent."""
    if not (REAL / "lsp" / "joints.mat").exists():
        pytest.skip("../shared/data/real not present")
    return REAL


# ------------------------------------------------------------------------------------ helpers

def write_mat(path: Path, name: str, array: np.ndarray, compress: bool = False) -> None:
    """A MAT-file with one double matrix, as MATLAB's ``save`` writes it."""
    scipy.io.savemat(path, {name: np.asarray(array, dtype=np.float64)},
                     do_compression=compress)


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def files_under(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


def write_image(path: Path, w: int = 40, h: int = 30, value: int = 128) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.full((h, w, 3), value, np.uint8))


def make_lsp(root: Path, n: int = 4, compress: bool = True) -> np.ndarray:
    """LSP folder of ``n`` 40x30 images; joint j of image i at (j + 2, i + 3 + j), the left
    shoulder of image 1 flagged occluded."""
    joints = np.zeros((3, 14, n))
    for i in range(n):
        joints[0, :, i] = np.arange(14) + 2
        joints[1, :, i] = i + 3 + np.arange(14)
    joints[2, LSP_JOINTS.index("left_shoulder"), 0] = 1
    root.mkdir(parents=True, exist_ok=True)
    write_mat(root / "joints.mat", "joints", joints, compress)
    for i in range(1, n + 1):
        write_image(root / "images" / f"im{i:04d}.jpg")
    return joints


# ----------------------------------------------------------------------------------- MAT-file

@pytest.mark.parametrize("compress", [False, True])
def test_mat_reader_keeps_numeric_variables(tmp_path, compress):
    a = np.arange(24, dtype=float).reshape(2, 3, 4) / 3
    scipy.io.savemat(tmp_path / "a.mat", {"joints": a, "label": "text"},
                     do_compression=compress)
    got = load_mat(str(tmp_path / "a.mat"))
    assert list(got) == ["joints"]
    np.testing.assert_array_equal(got["joints"], a)


@pytest.mark.parametrize("content, words", [
    (b"not a mat file at all", "not a readable MATLAB MAT-file"),
    (b"x" * 200, "not a readable MATLAB MAT-file"),
    (b"MATLAB 7.3 MAT-file".ljust(116) + b"\0" * 8 + b"\x00\x02IM" + b"\0" * 600, "v7.3"),
])
def test_mat_reader_rejects_other_files(tmp_path, content, words):
    (tmp_path / "bad.mat").write_bytes(content)
    with pytest.raises(DataError, match=words) as e:
        load_mat(str(tmp_path / "bad.mat"))
    assert str(tmp_path / "bad.mat") in str(e.value)


def test_mat_reader_rejects_truncated_data(tmp_path):
    write_mat(tmp_path / "a.mat", "joints", np.ones((3, 14, 2)), compress=True)
    data = (tmp_path / "a.mat").read_bytes()
    (tmp_path / "a.mat").write_bytes(data[:-40])
    with pytest.raises(DataError, match="not a readable MATLAB MAT-file"):
        load_mat(str(tmp_path / "a.mat"))


# ----------------------------------------------------------------------------------------- LSP

def test_lsp_maps_limb_joints_to_coco_and_keeps_all_14(tmp_path):
    joints = make_lsp(tmp_path / "lsp")
    res = import_lsp(str(tmp_path / "lsp"), split="1-2")
    coco = res.coco
    assert [im["id"] for im in coco["images"]] == [1, 2]
    assert coco["images"][0]["file_name"] == "im0001.jpg"
    assert (coco["images"][0]["width"], coco["images"][0]["height"]) == (40, 30)
    ann = coco["annotations"][0]
    kp = np.array(ann["keypoints"]).reshape(17, 3)
    for name in ("left_shoulder", "right_ankle", "left_wrist", "right_hip"):
        li, ci = LSP_JOINTS.index(name), COCO_KEYPOINTS.index(name)
        np.testing.assert_allclose(kp[ci, :2], joints[:2, li, 0])
    assert kp[COCO_KEYPOINTS.index("left_shoulder"), 2] == 1     # flag 1 = occluded
    assert kp[COCO_KEYPOINTS.index("right_shoulder"), 2] == 2
    assert kp[:5].sum() == 0                                      # no face joints in LSP
    assert ann["num_keypoints"] == 12
    lsp = np.array(ann["lsp_joints"]).reshape(14, 3)
    np.testing.assert_allclose(lsp[:, :2], joints[:2, :, 0].T)
    assert lsp[LSP_JOINTS.index("head_top"), 2] == 2
    # joints span x 2..15, y 3..16 inside the 40x30 image
    assert ann["bbox"] == [2.0, 3.0, 13.0, 13.0] and ann["area"] == 169.0


def test_lsp_splits(tmp_path):
    make_lsp(tmp_path / "lsp", n=4)
    assert [im["id"] for im in import_lsp(str(tmp_path / "lsp"), "3-4").coco["images"]] == [3, 4]
    assert len(import_lsp(str(tmp_path / "lsp")).coco["images"]) == 4
    with pytest.raises(DataError, match="not within the file's 1-4"):
        import_lsp(str(tmp_path / "lsp"), "test")     # 1001-2000
    with pytest.raises(DataError, match="--split"):
        import_lsp(str(tmp_path / "lsp"), "first")


def test_lsp_cli_prints_counts_and_writes_json(tmp_path, capsys):
    make_lsp(tmp_path / "lsp", n=3)
    out = tmp_path / "out" / "lsp.json"
    assert main(["data", "import", "lsp", str(tmp_path / "lsp"), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "3 images, 3 people, 36 labelled joints (35 visible)" in text
    data = json.loads(out.read_text())
    assert data["categories"][0]["keypoints"] == COCO_KEYPOINTS
    # file names are relative to image_root, stored relative to the json
    root = out.parent / data["info"]["image_root"]
    assert (root / data["images"][0]["file_name"]).is_file()


@pytest.mark.parametrize("breakage, words", [
    ("garbage", "not a readable MATLAB MAT-file"),
    ("shape", "field joints: expected 3 x 14 x N"),
    ("name", "field joints: no numeric variable 'joints' (variables: pose)"),
    ("flag", "row 3 (occluded flag) must be 0 or 1"),
    ("image", "image(s) of"),
])
def test_lsp_malformed_is_one_line_and_writes_nothing(tmp_path, capsys, breakage, words):
    make_lsp(tmp_path / "lsp", n=2)
    mat = tmp_path / "lsp" / "joints.mat"
    if breakage == "garbage":
        # a valid header, then a matrix element longer than the file
        mat.write_bytes(b"MATLAB 5.0 MAT-file".ljust(116) + b"\0" * 8 + b"\x00\x01IM"
                        + struct.pack("<II", 14, 255) + b"\0" * 16)
    elif breakage == "shape":
        write_mat(mat, "joints", np.zeros((2, 14, 2)))
    elif breakage == "name":
        write_mat(mat, "pose", np.zeros((3, 14, 2)))
    elif breakage == "flag":
        j = np.zeros((3, 14, 2))
        j[2, 0, 0] = 2
        write_mat(mat, "joints", j)
    else:
        os.unlink(tmp_path / "lsp" / "images" / "im0002.jpg")
    out = tmp_path / "out"
    out.mkdir()
    assert main(["data", "import", "lsp", str(tmp_path / "lsp"),
                 "--out", str(out / "x.json")]) == 2
    line = one_error_line(capsys)
    assert words in line
    assert str(tmp_path / "lsp") in line
    assert files_under(out) == []


# ----------------------------------------------------------------------------------------- TUD

TUD_AL = """<annotationlist>
<annotation>
<image><name>a.png</name></image>
<annorect><x1>5</x1><y1>4</y1><x2>25</x2><y2>28</y2><score>5</score>
<annopoints>{points}</annopoints>
</annorect>
</annotation>
</annotationlist>
"""


def make_tud(root: Path) -> np.ndarray:
    """a.png: one person with points and a mask; b.png: two people sharing a mask."""
    write_image(root / "a.png")
    write_image(root / "b.png")
    mask = np.zeros((30, 40), np.uint8)
    mask[4:28, 5:25] = 255
    (root / "maps").mkdir()
    cv2.imwrite(str(root / "maps" / "a-map.png"), mask)
    cv2.imwrite(str(root / "maps" / "b-map.png"), mask)
    (root / "train.idl").write_text('"a.png": (5, 4, 25, 28):5;\n'
                                    '"b.png": (1, 1, 10, 20):-1, (30, 2, 20, 25):-1.\n')
    points = "".join(f"<point><id>{i}</id><x>{i + 5}</x><y>{i + 10}</y></point>"
                     for i in range(1, 12))
    (root / "train-annopoints.al").write_text(TUD_AL.format(points=points))
    return mask > 0


def test_tud_boxes_points_and_masks(tmp_path):
    mask = make_tud(tmp_path / "tud")
    res = run_import("tud", str(tmp_path / "tud"), str(tmp_path / "tud.json"))
    coco = json.loads((tmp_path / "tud.json").read_text())
    assert [im["file_name"] for im in coco["images"]] == ["a.png", "b.png"]
    a, b1, b2 = coco["annotations"]
    assert a["bbox"] == [5, 4, 20, 24]
    assert b2["bbox"] == [20, 2, 10, 23]          # corners given right-to-left
    pts = np.array(a["tud_points"]).reshape(11, 3)
    np.testing.assert_array_equal(pts[:, 0], np.arange(1, 12) + 5)
    assert (pts[:, 2] == 2).all()
    assert a["num_keypoints"] == 0 and sum(a["keypoints"]) == 0   # no left/right: no COCO joint
    np.testing.assert_array_equal(mask_utils.decode(a["segmentation"]), mask)
    assert a["area"] == mask.sum()
    assert "segmentation" not in b1 and "segmentation" not in b2
    left = res.counts()["skipped"]
    assert left["masks shared by several people (not per instance)"] == 2
    assert left["people without .al points"] == 2


@pytest.mark.parametrize("which, text, words", [
    ("idl", '"a.png": (5, 4, 25);\n', "line 1: field rectangles"),
    ("idl", 'a.png (5, 4, 25, 28)\n', "line 1: expected"),
    ("al", "<annotationlist><annotation><image><name>a.png</name>", "malformed XML at line 1"),
    ("al", TUD_AL.format(points="<point><id>12</id><x>1</x><y>1</y></point>"),
     "point field id: expected 1-11"),
    ("al", TUD_AL.format(points="<point><id>1</id><x>one</x><y>1</y></point>"),
     "field x: expected a number"),
])
def test_tud_malformed_is_one_line_and_writes_nothing(tmp_path, capsys, which, text, words):
    make_tud(tmp_path / "tud")
    bad = tmp_path / "tud" / ("train.idl" if which == "idl" else "train-annopoints.al")
    bad.write_text(text)
    out = tmp_path / "out"
    out.mkdir()
    assert main(["data", "import", "tud", str(tmp_path / "tud"), "--out",
                 str(out / "x.json")]) == 2
    line = one_error_line(capsys)
    assert str(bad) in line and words in line
    assert files_under(out) == []


# ---------------------------------------------------------------------------------- Penn-Fudan

PF_ANN = """# Compatible with PASCAL Annotation Version 1.00
Image filename : "PennFudanPed/PNGImages/FudanPed00001.png"
Image size (X x Y x C) : 40 x 30 x 3
Database : "The Penn-Fudan-Pedestrian Database"
Objects with ground truth : 2 { "PASpersonWalking" "PASpersonWalking" }
# Top left pixel co-ordinates : (1, 1)
# Details for pedestrian 1 ("PASpersonWalking")
Original label for object 1 "PASpersonWalking" : "PennFudanPed"
Bounding box for object 1 "PASpersonWalking" (Xmin, Ymin) - (Xmax, Ymax) : (3, 2) - (12, 25)
Pixel mask for object 1 "PASpersonWalking" : "PennFudanPed/PedMasks/FudanPed00001_mask.png"

# Details for pedestrian 2 ("PASpersonWalking")
Original label for object 2 "PASpersonWalking" : "PennFudanPed"
Bounding box for object 2 "PASpersonWalking" (Xmin, Ymin) - (Xmax, Ymax) : (21, 5) - (35, 30)
Pixel mask for object 2 "PASpersonWalking" : "PennFudanPed/PedMasks/FudanPed00001_mask.png"
"""


def make_pennfudan(root: Path) -> np.ndarray:
    write_image(root / "PNGImages" / "FudanPed00001.png")
    mask = np.zeros((30, 40), np.uint8)
    mask[1:25, 2:12] = 1          # pedestrian 1: pixels x 2..11, y 1..24 (1-based 3..12, 2..25)
    mask[4:30, 20:35] = 2
    (root / "PedMasks").mkdir()
    cv2.imwrite(str(root / "PedMasks" / "FudanPed00001_mask.png"), mask)
    (root / "Annotation").mkdir()
    (root / "Annotation" / "FudanPed00001.txt").write_text(PF_ANN)
    (root / "added-object-list.txt").write_text("# image name (\\t) object index\n"
                                                "FudanPed00001.png\t2\n")
    return mask


def test_pennfudan_two_people_from_one_instance_mask(tmp_path):
    mask = make_pennfudan(tmp_path / "pf")
    run_import("pennfudan", str(tmp_path / "pf"), str(tmp_path / "pf.json"))
    coco = json.loads((tmp_path / "pf.json").read_text())
    assert coco["images"] == [{"id": 1, "file_name": "FudanPed00001.png", "width": 40,
                               "height": 30}]
    p1, p2 = coco["annotations"]
    assert p1["bbox"] == [2, 1, 10, 24] and p2["bbox"] == [20, 4, 15, 26]
    for ann, k in ((p1, 1), (p2, 2)):
        np.testing.assert_array_equal(mask_utils.decode(ann["segmentation"]), mask == k)
        assert ann["area"] == (mask == k).sum()
        # the PASCAL box converted to COCO is exactly the mask's extent here
        np.testing.assert_allclose(mask_utils.toBbox(ann["segmentation"]), ann["bbox"])
        assert ann["pedestrian_id"] == k and ann["num_keypoints"] == 0
    assert (p1["added"], p2["added"]) == (False, True)


@pytest.mark.parametrize("edit, words", [
    (lambda t: t.replace("Objects with ground truth : 2", "Objects with ground truth : 3"),
     "says 3, bounding boxes are given for objects [1, 2]"),
    (lambda t: t.replace("(21, 5) - (35, 30)", "(21, 5) - 35, 30"),
     "not of the form (Xmin, Ymin) - (Xmax, Ymax)"),
    (lambda t: t.replace("Image size (X x Y x C) : 40 x 30 x 3", ""), "field 'Image size'"),
    (lambda t: t.replace("40 x 30 x 3", "41 x 30 x 3"), "is 40 x 30"),
])
def test_pennfudan_malformed_is_one_line_and_writes_nothing(tmp_path, capsys, edit, words):
    make_pennfudan(tmp_path / "pf")
    ann = tmp_path / "pf" / "Annotation" / "FudanPed00001.txt"
    ann.write_text(edit(PF_ANN))
    out = tmp_path / "out"
    out.mkdir()
    assert main(["data", "import", "pennfudan", str(tmp_path / "pf"), "--out",
                 str(out / "x.json")]) == 2
    line = one_error_line(capsys)
    assert str(ann) in line and words in line
    assert files_under(out) == []


# ------------------------------------------------------------------------------ folder, video

def test_folder_lists_readable_images(tmp_path):
    src = tmp_path / "photos"
    write_image(src / "b.jpg", 20, 10)
    write_image(src / "a.png", 30, 15)
    write_image(src / "sub" / "c.jpg")
    (src / "broken.jpg").write_bytes(b"not a jpeg")
    (src / "notes.txt").write_text("hello")
    res = run_import("folder", str(src), str(tmp_path / "f.json"))
    coco = json.loads((tmp_path / "f.json").read_text())
    assert [(i["file_name"], i["width"], i["height"]) for i in coco["images"]] == \
        [("a.png", 30, 15), ("b.jpg", 20, 10)]
    assert coco["annotations"] == []
    assert res.counts()["skipped"] == {"unreadable images (e.g. broken.jpg)": 1}
    run_import("folder", str(src), str(tmp_path / "g.json"), whole_image_box=True,
               recursive=True)
    coco = json.loads((tmp_path / "g.json").read_text())
    assert [i["file_name"] for i in coco["images"]] == ["a.png", "b.jpg", "sub/c.jpg"]
    assert [a["bbox"] for a in coco["annotations"]] == [[0, 0, 30, 15], [0, 0, 20, 10],
                                                         [0, 0, 40, 30]]
    assert {a["box_source"] for a in coco["annotations"]} == {"whole_image"}


def test_empty_folder_is_one_line_and_writes_nothing(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no photos")
    out = tmp_path / "out"
    out.mkdir()
    assert main(["data", "import", "folder", str(tmp_path / "empty"), "--out",
                 str(out / "x.json")]) == 2
    line = one_error_line(capsys)
    assert str(tmp_path / "empty") in line and "no images" in line
    assert files_under(out) == []


def make_video(path: Path, n: int = 10, fps: float = 10.0) -> None:
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (32, 24))
    assert w.isOpened()
    for i in range(n):
        w.write(np.full((24, 32, 3), 20 * i, np.uint8))
    w.release()


@pytest.mark.parametrize("options, frames", [
    ({}, list(range(10))),
    ({"every": 3}, [0, 3, 6, 9]),
    ({"fps": 5.0}, [0, 2, 4, 6, 8]),
    ({"fps": 4.0}, [0, 3, 5, 8]),          # intervals of 2.5 frames
    ({"every": 2, "max_frames": 3}, [0, 2, 4]),
])
def test_video_samples_frames_next_to_the_json(tmp_path, options, frames):
    make_video(tmp_path / "clip.avi")
    out = tmp_path / "out" / "clip.json"
    run_import("video", str(tmp_path / "clip.avi"), str(out), **options)
    coco = json.loads(out.read_text())
    assert [im["frame_index"] for im in coco["images"]] == frames
    assert coco["info"]["image_root"] == "clip_frames"
    assert files_under(tmp_path / "out") == ["clip.json", "clip_frames"] + \
        [f"clip_frames/frame_{i:06d}.jpg" for i in frames]
    im = cv2.imread(str(out.parent / "clip_frames" / coco["images"][-1]["file_name"]))
    assert im.shape == (24, 32, 3) and abs(int(im.mean()) - 20 * frames[-1]) <= 3
    assert coco["images"][1]["time_s"] == pytest.approx(frames[1] / 10.0)


def test_video_reimport_replaces_old_frames_only(tmp_path, capsys):
    make_video(tmp_path / "clip.avi")
    out = tmp_path / "clip.json"
    run_import("video", str(tmp_path / "clip.avi"), str(out), every=2)
    run_import("video", str(tmp_path / "clip.avi"), str(out), every=5)
    assert files_under(tmp_path / "clip_frames") == ["frame_000000.jpg", "frame_000005.jpg"]
    (tmp_path / "clip_frames" / "mine.txt").write_text("keep")
    assert main(["data", "import", "video", str(tmp_path / "clip.avi"), "--out", str(out)]) == 2
    assert "holds other files than frame_*.jpg" in one_error_line(capsys)
    assert (tmp_path / "clip_frames" / "mine.txt").exists()


def test_unreadable_video_is_one_line_and_writes_nothing(tmp_path, capsys):
    (tmp_path / "in").mkdir()
    bad = tmp_path / "in" / "broken.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 100)
    out = tmp_path / "out"
    out.mkdir()
    assert main(["data", "import", "video", str(bad), "--out", str(out / "v.json")]) == 2
    line = one_error_line(capsys)
    assert str(bad) in line and "not a readable video" in line
    assert files_under(out) == []


def test_options_of_another_format_are_refused(tmp_path):
    with pytest.raises(DataError, match="format tud does not take --every"):
        run_import("tud", str(tmp_path), str(tmp_path / "x.json"), every=2)


# --------------------------------------------------------------------- the real sets in shared

def test_real_lsp_test_split(real_data, tmp_path):
    res = run_import("lsp", str(real_data / "lsp"), str(tmp_path / "lsp.json"), split="test")
    c = res.counts()
    assert (c["images"], c["people"], c["labelled_joints"]) == (1000, 1000, 12000)
    coco = json.loads((tmp_path / "lsp.json").read_text())
    assert coco["images"][0]["file_name"] == "im1001.jpg"
    # the flag marks a minority of joints (occluded ones): most are visible
    assert 0.85 < c["visible_joints"] / c["labelled_joints"] < 0.98


def test_real_pennfudan(real_data, tmp_path):
    c = run_import("pennfudan", str(real_data / "pennfudan"), str(tmp_path / "p.json")).counts()
    assert (c["images"], c["people"], c["masks"]) == (170, 423, 423)


def test_real_tud(real_data, tmp_path):
    c = run_import("tud", str(real_data / "tud-400"), str(tmp_path / "t.json")).counts()
    assert (c["images"], c["people"], c["masks"]) == (400, 400, 400)
    coco = json.loads((tmp_path / "t.json").read_text())
    assert all(len(a["tud_points"]) == 33 for a in coco["annotations"])
    # the masks lie inside their boxes
    for a in coco["annotations"][:50]:
        x, y, w, h = mask_utils.toBbox(a["segmentation"])
        bx, by, bw, bh = a["bbox"]
        assert bx <= x and by <= y and x + w <= bx + bw and y + h <= by + bh


def test_real_video(real_data, tmp_path):
    c = run_import("video", str(real_data / "video" / "arm_wrestling.mp4"),
                   str(tmp_path / "v.json"), fps=2.0, max_frames=4).counts()
    assert c["images"] == 4
    coco = json.loads((tmp_path / "v.json").read_text())
    assert [im["frame_index"] for im in coco["images"]] == [0, 14, 28, 42]   # 28 fps video
    assert (coco["images"][0]["width"], coco["images"][0]["height"]) == (340, 256)


# ----------------------------------------------------------------------- detected person boxes

def test_folder_detect_adds_boxes_and_counts_images_with_nobody(tmp_path):
    src = tmp_path / "photos"
    for name, value in (("a.jpg", 10), ("b.jpg", 200)):
        write_image(src / name, value=value)
    seen = []

    def detect(rgb):             # a made detector: one person in the dark image, none elsewhere
        seen.append(rgb.shape)
        if rgb.mean() < 100:
            return np.array([[1.0, 2.0, 10.0, 20.0]]), np.array([0.9])
        return np.zeros((0, 4)), np.zeros(0)

    res = run_import("folder", str(src), str(tmp_path / "p.json"), detect=detect,
                     detector="fake")
    coco = json.loads((tmp_path / "p.json").read_text())
    assert seen == [(30, 40, 3), (30, 40, 3)]
    assert [(a["image_id"], a["bbox"], a["score"], a["box_source"]) for a in coco["annotations"]] \
        == [(1, [1.0, 2.0, 10.0, 20.0], 0.9, "detector:fake")]
    assert len(coco["images"]) == 2
    assert res.skipped == {"images where the detector found no person (no annotation)": 1}


@pytest.mark.parametrize("fmt, options, words", [
    ("pennfudan", {}, "has its own person boxes"),
    ("folder", {"whole_image_box": True}, "choose one"),
])
def test_detect_is_refused_where_boxes_come_otherwise(tmp_path, fmt, options, words):
    if fmt == "pennfudan":
        make_pennfudan(tmp_path / "src")
    else:
        write_image(tmp_path / "src" / "a.jpg")
    with pytest.raises(DataError, match=words):
        run_import(fmt, str(tmp_path / "src"), str(tmp_path / "x.json"),
                   detect=lambda rgb: (np.zeros((0, 4)), np.zeros(0)), **options)
    assert not (tmp_path / "x.json").exists()


def test_lsp_detect_replaces_the_joints_with_detector_boxes(tmp_path):
    """Label-free LSP: nothing of the joints (nor the box drawn around them) is kept."""
    make_lsp(tmp_path / "src", n=3)
    res = run_import("lsp", str(tmp_path / "src"), str(tmp_path / "l.json"), split="all",
                     detect=lambda rgb: (np.array([[2.0, 3.0, 20.0, 25.0]]), np.array([0.8])),
                     detector="fake")
    anns = res.coco["annotations"]
    assert len(anns) == 3
    assert all(a["num_keypoints"] == 0 and not any(a["keypoints"]) for a in anns)
    assert all(a["bbox"] == [2.0, 3.0, 20.0, 25.0] for a in anns)


def test_folder_detect_with_the_shipped_detector(tmp_path, capsys):
    from odkd.teachers import store

    if not store.is_present("ssd-mobilenet-v2"):
        pytest.skip("ssd-mobilenet-v2 not fetched (odkd teachers fetch ssd-mobilenet-v2)")
    pf = REAL / "pennfudan" / "PNGImages" / "FudanPed00001.png"
    if not pf.exists():
        pytest.skip("../shared/data/real not present")
    src = tmp_path / "photos"
    src.mkdir()
    (src / "street.png").write_bytes(pf.read_bytes())
    write_image(src / "grey.jpg", 64, 48, 128)
    assert main(["data", "import", "folder", str(src), "--out", str(tmp_path / "s.json"),
                 "--detect"]) == 0
    coco = json.loads((tmp_path / "s.json").read_text())
    by_image = {im["file_name"]: im["id"] for im in coco["images"]}
    people = [a for a in coco["annotations"] if a["image_id"] == by_image["street.png"]]
    assert len(people) == 2                     # FudanPed00001's two pedestrians
    assert not any(a["image_id"] == by_image["grey.jpg"] for a in coco["annotations"])
    assert "1 images where the detector found no person" in capsys.readouterr().out


def test_merge_renumbers_ids_and_keeps_every_image_reachable(tmp_path):
    import cv2

    from odkd.data.coco import load_coco
    from odkd.data.importers import run_import
    from odkd.data.importers.common import write_coco
    from odkd.data.importers.merge import merge_coco

    parts = []
    for name in ("a", "b"):
        d = tmp_path / name / "imgs"
        d.mkdir(parents=True)
        for i in range(2):
            cv2.imwrite(str(d / f"{i}.jpg"), np.full((40, 30, 3), 50 * i, np.uint8))
        out = str(tmp_path / name / f"{name}.json")
        run_import("folder", str(d), out, whole_image_box=True)
        parts.append(out)
    merged = merge_coco(parts)
    path = str(tmp_path / "out" / "merged.json")
    os.makedirs(os.path.dirname(path))
    write_coco(merged, path)
    coco = load_coco(path, "", train=False, unlabelled=True)
    assert len(coco.records) == 4
    assert len({r.file_name for r in coco.records}) == 4
    assert all(os.path.exists(r.file_name) for r in coco.records)
    data = json.loads(open(path).read())
    assert [a["id"] for a in data["annotations"]] == [1, 2, 3, 4]
    with pytest.raises(DataError, match="at least two"):
        merge_coco(parts[:1])
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"images": [], "annotations": [], "categories": []}))
    with pytest.raises(DataError, match="image_root"):
        merge_coco([parts[0], str(bad)])
