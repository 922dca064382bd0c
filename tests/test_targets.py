import numpy as np
import pytest
from pycocotools import mask as mask_utils

from odkd.data.targets import ann_to_mask, warp_mask
from odkd.errors import DataError
from odkd.geometry import get_affine_transform


def test_warp_mask_area_correct():
    mask = np.zeros((64, 64), np.uint8)
    mask[16:48, 8:40] = 1
    mat = get_affine_transform([32, 32], [64, 64], 0, (16, 16))   # x_h = x / 4
    out = warp_mask(mask, mat, (16, 16))
    assert out.shape == (16, 16) and out.dtype == np.float32
    expected = np.zeros((16, 16), np.float32)
    # image span [7.5, 39.5] -> heatmap [1.875, 9.875]: pixels 2..9 are >= half covered
    expected[4:12, 2:10] = 1
    expected[4, 2] = 0   # corner pixel: 0.625 x 0.625 = 39 % covered
    np.testing.assert_array_equal(out, expected)


def test_ann_to_mask_polygons_merge():
    seg = [[2, 2, 10, 2, 10, 10, 2, 10], [20, 20, 28, 20, 28, 28, 20, 28]]
    m = ann_to_mask(seg, 32, 40)
    assert m.shape == (32, 40) and m.dtype == np.uint8
    assert m[5, 5] == 1 and m[24, 24] == 1 and m[15, 15] == 0
    assert ann_to_mask([], 8, 8).sum() == 0


def test_ann_to_mask_rle_roundtrip():
    ref = np.zeros((12, 9), np.uint8)
    ref[3:7, 2:8] = 1
    comp = mask_utils.encode(np.asfortranarray(ref))
    comp_str = {"size": comp["size"], "counts": comp["counts"].decode()}
    np.testing.assert_array_equal(ann_to_mask(comp_str, 12, 9), ref)
    # uncompressed RLE: column-major runs starting with zeros
    flat = ref.flatten(order="F")
    counts, cur, run = [], 0, 0
    for v in flat:
        if v != cur:
            counts.append(run)
            cur, run = v, 0
        run += 1
    counts.append(run)
    np.testing.assert_array_equal(ann_to_mask({"size": [12, 9], "counts": counts}, 12, 9), ref)


@pytest.mark.parametrize("seg", [
    {"size": [12, 9], "counts": "garbage!!"},
    {"size": [12, 9], "counts": [5, 3]},            # does not cover the image
    {"size": [10, 10], "counts": [100]},            # wrong size
    {"size": [12, 9], "counts": 7},
    [[1, 2, 3, 4, 5]],                              # odd number of coordinates
    [["a", "b", "c", "d", "e", "f"]],
    5,
])
def test_ann_to_mask_garbage(seg):
    with pytest.raises(DataError, match="annotation id 77"):
        ann_to_mask(seg, 12, 9, where="x.json: annotation id 77")
