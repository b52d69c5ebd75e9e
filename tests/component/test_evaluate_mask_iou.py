"""Mask IoU in the evaluation counts in the detection's box, with the same result as before."""

from __future__ import annotations

import numpy as np
import pytest

from vsa.core.detections import Detection
from vsa.tools.evaluate import mask_iou


def iou_before(truth: np.ndarray, det: Detection) -> float:
    """As it was: the detection's mask placed in a frame-sized array first."""
    full = det.full_mask(*truth.shape)
    if full is None:
        return 0.0
    union = int((truth | full).sum())
    return int((truth & full).sum()) / union if union else 0.0


@pytest.mark.parametrize("seed", range(30))
def test_same_iou_as_with_a_full_frame_mask(seed: int):
    rng = np.random.default_rng(seed)
    h, w = (int(v) for v in rng.integers(1, 40, size=2))
    truth = rng.random((h, w)) < [0.0, 0.3, 0.9][seed % 3]
    xs, ys = sorted(rng.random(2) * w), sorted(rng.random(2) * h)
    det = Detection("circle", 0, 0.9, (xs[0], ys[0], xs[1], ys[1]))
    x1, y1, x2, y2 = det.mask_box()
    det.mask = rng.random((y2 - y1, x2 - x1)) < [0.0, 0.5, 1.0][seed % 3]
    assert mask_iou(truth, det) == pytest.approx(iou_before(truth, det), abs=0)


def test_edge_cases():
    truth = np.zeros((10, 12), bool)
    truth[2:6, 3:9] = True
    exact = Detection("a", 0, 1.0, (3.0, 2.0, 9.0, 6.0), np.ones((4, 6), bool))
    assert mask_iou(truth, exact) == 1.0
    assert mask_iou(truth, Detection("a", 0, 1.0, (3.0, 2.0, 9.0, 6.0))) == 0.0  # no mask
    corner = Detection("a", 0, 1.0, (10.0, 8.0, 12.0, 10.0), np.ones((2, 2), bool))
    assert mask_iou(truth, corner) == 0.0
    assert (
        mask_iou(
            np.zeros((10, 12), bool), Detection("a", 0, 1.0, (0, 0, 2, 2), np.zeros((2, 2), bool))
        )
        == 0.0
    )
