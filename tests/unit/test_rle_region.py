"""JSONL masks from box-sized masks: the same COCO RLE as before, without a frame-sized array.

Readers decode ``detections[i].mask`` as an uncompressed column-major COCO RLE of the whole
frame. The sink now encodes the detection's box-sized mask at its box directly; these tests
hold it to the counts the full-frame encoding (``full_mask`` then ``rle_encode``) gives.
"""

from __future__ import annotations

import json
import tracemalloc

import numpy as np
import pytest

from vsa.core.detections import Detection, rle_decode, rle_encode, rle_encode_region


def reference(mask: np.ndarray, x: int, y: int, height: int, width: int) -> dict:
    """What the JSONL held before: the mask placed in a full frame (clipped), then encoded."""
    full = np.zeros((height, width), bool)
    h, w = mask.shape
    x1, y1, x2, y2 = max(x, 0), max(y, 0), min(x + w, width), min(y + h, height)
    if x2 > x1 and y2 > y1:
        full[y1:y2, x1:x2] = mask[y1 - y : y2 - y, x1 - x : x2 - x]
    return rle_encode(full)


def detection(box: tuple[float, float, float, float], mask: np.ndarray | None) -> Detection:
    return Detection("circle", 0, 0.9, box, mask)


ONES = np.ones
H, W = 6, 5

# (frame height, width, box x1, y1, x2, y2, box-sized mask)
CASES = [
    pytest.param(H, W, 1, 1, 4, 3, ONES((2, 3), bool), id="full-box-inside"),
    pytest.param(H, W, 1, 1, 4, 3, np.zeros((2, 3), bool), id="empty-mask"),
    pytest.param(H, W, 0, 0, 2, 2, ONES((2, 2), bool), id="top-left-corner-first-pixel"),
    pytest.param(H, W, 3, 4, 5, 6, ONES((2, 2), bool), id="bottom-right-corner-last-pixel"),
    pytest.param(H, W, 0, 2, 5, 4, ONES((2, 5), bool), id="touches-left-and-right"),
    pytest.param(H, W, 2, 0, 4, 6, ONES((6, 2), bool), id="full-height-columns-join"),
    pytest.param(H, W, 0, 0, 5, 6, ONES((6, 5), bool), id="whole-frame"),
    pytest.param(H, W, 0, 0, 5, 6, np.zeros((6, 5), bool), id="whole-frame-empty"),
    pytest.param(H, W, 4, 0, 5, 6, ONES((6, 1), bool), id="last-column-full"),
    pytest.param(
        H, W, 1, 0, 4, 6, np.array([[1, 0, 1]] * 5 + [[1, 1, 1]], bool), id="stripes-to-bottom"
    ),
    pytest.param(H, W, 2, 3, 3, 4, ONES((1, 1), bool), id="single-pixel"),
    pytest.param(H, W, 2, 3, 2, 3, np.zeros((0, 0), bool), id="zero-size-box"),
    pytest.param(1, 7, 1, 0, 6, 1, np.array([[1, 0, 1, 1, 0]], bool), id="one-row-frame"),
    pytest.param(7, 1, 0, 2, 1, 7, np.array([[1], [1], [0], [1], [1]], bool), id="one-column"),
]


@pytest.mark.parametrize(("height", "width", "x1", "y1", "x2", "y2", "mask"), CASES)
def test_box_mask_encodes_like_the_full_frame_mask(height, width, x1, y1, x2, y2, mask):
    det = detection((float(x1), float(y1), float(x2), float(y2)), mask)
    rle = det.to_json(height, width)["mask"]
    assert rle == rle_encode(det.full_mask(height, width))  # what the sink wrote before
    assert rle == reference(mask, x1, y1, height, width)
    decoded = rle_decode(rle)
    assert decoded.shape == (height, width)
    np.testing.assert_array_equal(decoded[y1:y2, x1:x2], mask)
    assert decoded.sum() == mask.sum()
    json.dumps(rle)  # plain ints


def test_known_counts():
    # 3 x 3 frame, a full 2-row box over columns 1..2 starting at row 1: column-major runs
    det = detection((1.0, 1.0, 3.0, 3.0), np.ones((2, 2), bool))
    assert det.to_json(3, 3)["mask"] == {"size": [3, 3], "counts": [4, 2, 1, 2]}
    # a full-height box in the last two columns joins into one run reaching the end
    det = detection((1.0, 0.0, 3.0, 3.0), np.ones((3, 2), bool))
    assert det.to_json(3, 3)["mask"] == {"size": [3, 3], "counts": [3, 6]}


@pytest.mark.parametrize(
    ("x", "y"),
    [(-2, 1), (1, -3), (3, 4), (-2, -2), (4, 5), (10, 1), (-10, -10)],
    ids=["left-out", "top-out", "bottom-right-out", "top-left-out", "corner", "right", "far"],
)
def test_region_outside_the_frame_is_cut_off(x: int, y: int):
    rng = np.random.default_rng(abs(x * 31 + y))
    mask = rng.random((4, 3)) < 0.6
    assert rle_encode_region(mask, x, y, H, W) == reference(mask, x, y, H, W)


def test_fractional_boxes_use_mask_box():
    det = detection((1.4, 0.6, 3.2, 4.9), None)
    x1, y1, x2, y2 = det.mask_box()
    assert (x1, y1, x2, y2) == (1, 0, 4, 5)
    det.mask = np.random.default_rng(3).random((y2 - y1, x2 - x1)) < 0.5
    assert det.to_json(H, W)["mask"] == rle_encode(det.full_mask(H, W))


@pytest.mark.parametrize("seed", range(40))
def test_random_boxes_and_masks(seed: int):
    rng = np.random.default_rng(seed)
    height, width = (int(v) for v in rng.integers(1, 30, size=2))
    xs, ys = sorted(rng.random(2) * width), sorted(rng.random(2) * height)
    det = detection((xs[0], ys[0], xs[1], ys[1]), None)
    x1, y1, x2, y2 = det.mask_box()
    density = [0.0, 1.0, 0.5, 0.05, 0.95][seed % 5]
    det.mask = rng.random((y2 - y1, x2 - x1)) < density
    rle = det.to_json(height, width)["mask"]
    assert rle == rle_encode(det.full_mask(height, width))
    assert sum(rle["counts"]) == height * width
    assert all(c > 0 for c in rle["counts"][1:])


def test_no_mask_no_field():
    assert "mask" not in detection((0.0, 0.0, 2.0, 2.0), None).to_json(H, W)


def test_no_frame_sized_array_is_made():
    # a small detection in a 4K frame: a full-frame bool mask would be 8 MB
    height, width = 2160, 3840
    det = detection((1000.0, 500.0, 1060.0, 540.0), np.ones((40, 60), bool))
    det.to_json(height, width)  # warm up (imports, caches)
    tracemalloc.start()
    try:
        record = det.to_json(height, width)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < height * width // 20, peak
    assert record["mask"] == rle_encode(det.full_mask(height, width))


def test_mask_in_frame_clips_to_the_frame():
    mask = np.arange(12).reshape(3, 4) % 2 == 0
    det = detection((-1.0, 4.0, 3.0, 7.0), mask)  # one column left of, one row below the frame
    region, x, y = det.mask_in_frame(H, W)
    assert (x, y) == (0, 4)
    np.testing.assert_array_equal(region, mask[:2, 1:])
    assert np.shares_memory(region, mask)  # a view, not a copy
    assert detection((0.0, 0.0, 1.0, 1.0), None).mask_in_frame(H, W) is None
    outside = detection((10.0, 10.0, 12.0, 12.0), np.ones((2, 2), bool))
    assert outside.mask_in_frame(H, W)[0].size == 0
