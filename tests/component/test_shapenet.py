"""The trained built-in model (builtin-shapes-v1): packaged weights, accuracy on fresh
H.264 clips, batching and mask conventions."""

from __future__ import annotations

import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

from vsa.models.base import run_model
from vsa.models.shapenet import VERSION, WEIGHTS, ShapesModel, peak_markers
from vsa.sources.synthetic import CLASSES, ShapesScene, SyntheticParams
from vsa.tools.evaluate import decode_frames, evaluate, make_eval_clips

CPU = torch.device("cpu")
# Seeds no training run uses (training: 1000..1999; eval script: 90001..90008).
TEST_CLIPS = ((95001, 640, 360, 4), (95002, 360, 640, 4))


@pytest.fixture(scope="module")
def model() -> ShapesModel:
    m = ShapesModel(CPU)
    m.warmup()
    return m


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    return make_eval_clips(tmp_path_factory.mktemp("clips"), TEST_CLIPS, frames=20)


def test_weights_are_packaged_and_small() -> None:
    assert WEIGHTS.name == f"{VERSION}.pt"
    assert WEIGHTS.is_file()
    assert WEIGHTS.stat().st_size < 5 * 1024 * 1024
    state = torch.load(WEIGHTS, map_location="cpu", weights_only=True)
    assert state and all(isinstance(v, torch.Tensor) for v in state.values())


def test_model_attributes(model: ShapesModel) -> None:
    assert model.name == VERSION
    assert tuple(model.classes) == CLASSES
    assert model.device == CPU
    assert model.input_size == (320, 320)
    assert not model.net.training


def test_explicit_weights_path(tmp_path) -> None:
    copy = tmp_path / "w.pt"
    copy.write_bytes(WEIGHTS.read_bytes())
    m = ShapesModel(CPU, score_threshold=0.6, weights=str(copy))
    assert m.weights == copy and m.score_threshold == 0.6
    frame, _ = ShapesScene(SyntheticParams(seed=95003, objects=3, pace=False)).render(0)
    assert run_model(m, [frame])


def test_accuracy_on_fresh_h264_clips(model: ShapesModel, clips) -> None:
    r = evaluate(model, clips)
    assert r["frames"] == 40
    summary = f"{ {k: v for k, v in r.items() if k != 'per_clip'} }"
    assert r["precision"] >= 0.9, summary
    assert r["recall"] >= 0.9, summary
    assert r["mask_iou"] >= 0.7, summary
    assert r["box_iou"] >= 0.7, summary


def test_batch_matches_single_frames(model: ShapesModel, clips) -> None:
    frames = [f for clip in clips for f in list(decode_frames(clip.path))[:3]]
    batched = run_model(model, frames)
    for frame, dets in zip(frames, batched, strict=True):
        single = run_model(model, [frame])[0]
        assert dets and _same(dets, single), (dets, single)


def _same(a, b) -> bool:
    if len(a) != len(b):
        return False
    for x, y in zip(a, b, strict=True):
        if x.label != y.label or not np.allclose(x.box, y.box, atol=1e-3):
            return False
        if abs(x.score - y.score) > 1e-3 or (x.mask != y.mask).mean() > 0.01:
            return False
    return True


def test_masks_cover_mask_box_in_source_pixels(model: ShapesModel) -> None:
    for seed, (w, h) in ((95004, (1280, 720)), (95005, (360, 640)), (95006, (482, 270))):
        frame, truth = ShapesScene(
            SyntheticParams(seed=seed, width=w, height=h, objects=5, pace=False)
        ).render(3)
        dets = run_model(model, [frame])[0]
        assert dets, (seed, truth)
        for d in dets:
            x1, y1, x2, y2 = d.box
            assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h
            mx1, my1, mx2, my2 = d.mask_box()
            assert d.mask is not None and d.mask.dtype == bool
            assert d.mask.shape == (my2 - my1, mx2 - mx1)
            assert d.mask.any()
            assert 0.5 <= d.score <= 1.0
            assert d.label == CLASSES[d.class_id]
            full = d.full_mask(h, w)
            assert full.shape == (h, w) and full.sum() == d.mask.sum()


def test_blank_frame_has_no_detections(model: ShapesModel) -> None:
    grey = np.full((360, 640, 3), 120, np.uint8)
    assert run_model(model, [grey]) == [[]]


def test_imports_without_ray_or_pyav() -> None:
    code = (
        "import sys, vsa.models.shapenet, vsa.tools.evaluate; "
        "bad = [m for m in ('ray', 'av') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def _peaks(mask: np.ndarray) -> int:
    dist = cv2.distanceTransform(np.pad(mask, 1).astype(np.uint8), cv2.DIST_L2, 5)[1:-1, 1:-1]
    return peak_markers(dist, 2.0, 0.2)[1]


def test_peak_markers_split_overlapping_shapes_only() -> None:
    one = np.zeros((80, 120), np.uint8)
    cv2.circle(one, (60, 40), 25, 1, -1)
    assert _peaks(one) == 1
    square = np.zeros((80, 120), np.uint8)
    cv2.fillPoly(square, [np.array([[60, 10], [90, 40], [60, 70], [30, 40]])], 1)
    assert _peaks(square) == 1
    two = np.zeros((80, 120), np.uint8)
    cv2.circle(two, (40, 40), 22, 1, -1)
    cv2.circle(two, (80, 40), 18, 1, -1)
    assert _peaks(two) == 2
