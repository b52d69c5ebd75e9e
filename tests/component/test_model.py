"""The built-in model on synthetic frames: recall, precision, batching and letterboxing."""

from __future__ import annotations

import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

from vsa.config import ModelSpec
from vsa.errors import ModelError
from vsa.models import load_model, resolve_device, run_model
from vsa.models.base import Detection, Letterbox, letterbox_batch
from vsa.models.builtin import BuiltinModel
from vsa.sources.synthetic import CLASSES, PALETTE_BGR, SyntheticSource

CPU = torch.device("cpu")
FRAMES = (0, 10, 20, 30)


@pytest.fixture(scope="module")
def model() -> BuiltinModel:
    return BuiltinModel(CPU)


def iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def synthetic_frames(seed: int, w: int, h: int, indices=FRAMES) -> list:
    uri = f"synthetic://shapes?seed={seed}&width={w}&height={h}&pace=0&frames={max(indices) + 1}"
    return [f for f in SyntheticSource(uri).frames() if f.index in indices]


def separable(frame, input_size: int = 320) -> bool:
    """The scene has one answer for a connected-components model.

    Each visible object is one region, and same-class objects are far enough apart not to
    merge at the model's input scale. (Touching same-class objects are one component by
    design; those scenes say nothing about the model.)
    """
    h, w = frame.image.shape[:2]
    margin = int(np.ceil(4 * max(h, w) / input_size))
    kernel = np.ones((2 * margin + 1, 2 * margin + 1), np.uint8)
    for t in frame.truth:
        m = t["mask"].astype(np.uint8)
        if cv2.connectedComponents(m, connectivity=8)[0] != 2:
            return False
        grown = cv2.dilate(m, kernel).astype(bool)
        for other in frame.truth:
            if other is not t and other["class_id"] == t["class_id"]:
                if (grown & other["mask"]).any():
                    return False
    return True


ACCURACY_CASES = [
    (640, 360, 1),
    (640, 360, 2),
    (640, 360, 3),
    (1280, 720, 2),
    (1280, 720, 3),
    (360, 640, 1),  # portrait
    (360, 640, 2),
    (480, 270, 4),
]


@pytest.mark.parametrize(("w", "h", "seed"), ACCURACY_CASES)
def test_builtin_finds_every_object_and_nothing_else(model, w: int, h: int, seed: int):
    frames = synthetic_frames(seed, w, h)
    assert all(separable(f) for f in frames), "test scene is ambiguous; pick another seed"
    results = run_model(model, [f.image for f in frames])
    assert len(results) == len(frames)
    checked = 0
    for frame, dets in zip(frames, results, strict=True):
        for truth in frame.truth:
            if truth["area"] <= 400:
                continue
            best = max(
                (iou(truth["box"], d.box) for d in dets if d.label == truth["label"]), default=0.0
            )
            assert best >= 0.7, (frame.index, truth["label"], truth["box"], dets)
            checked += 1
        for d in dets:  # precision: every detection is a real object of that class
            assert any(
                t["label"] == d.label and iou(t["box"], d.box) >= 0.5 for t in frame.truth
            ), (frame.index, d, [(t["label"], t["box"]) for t in frame.truth])
            assert d.label == CLASSES[d.class_id]
            assert 0.5 <= d.score <= 1.0
            x1, y1, x2, y2 = d.box
            assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h
    assert checked >= len(frames) * 2


def test_empty_scene_has_no_detections(model):
    grey = np.full((360, 640, 3), 128, np.uint8)
    assert run_model(model, [grey, grey]) == [[], []]


def test_masks_cover_mask_box_and_match_the_object(model):
    frames = synthetic_frames(1, 640, 360, indices=(0,))
    [dets] = run_model(model, [frames[0].image])
    assert dets
    for d in dets:
        x1, y1, x2, y2 = d.mask_box()
        assert d.mask is not None and d.mask.dtype == bool
        assert d.mask.shape == (y2 - y1, x2 - x1)
        full = d.full_mask(360, 640)
        truth = max(
            (t for t in frames[0].truth if t["label"] == d.label),
            key=lambda t: (full & t["mask"]).sum(),
        )
        inter = (full & truth["mask"]).sum()
        union = (full | truth["mask"]).sum()
        assert inter / union >= 0.7


def test_mixed_size_batch_equals_one_by_one(model):
    images = [
        synthetic_frames(1, 640, 360, indices=(5,))[0].image,
        synthetic_frames(2, 360, 640, indices=(5,))[0].image,
        synthetic_frames(3, 1280, 720, indices=(5,))[0].image,
        synthetic_frames(4, 320, 240, indices=(5,))[0].image,
    ]
    batched = run_model(model, images)
    single = [run_model(model, [img])[0] for img in images]
    assert sum(len(d) for d in batched) >= 8
    for b_dets, s_dets in zip(batched, single, strict=True):
        assert [d.label for d in b_dets] == [d.label for d in s_dets]
        for b, s in zip(b_dets, s_dets, strict=True):
            assert np.allclose(b.box, s.box, atol=1.0), (b.box, s.box)
            assert abs(b.score - s.score) <= 1e-4
            assert b.mask.shape == s.mask.shape


def test_read_only_frames_are_accepted(model):
    img = synthetic_frames(1, 640, 360, indices=(0,))[0].image
    ro = img.copy()
    ro.setflags(write=False)  # arrays from the object store are read-only
    [a] = run_model(model, [img])
    [b] = run_model(model, [ro])
    assert [(d.label, d.box) for d in a] == [(d.label, d.box) for d in b]


@pytest.mark.parametrize(
    ("w", "h", "square"),
    [
        (1280, 720, (400, 200, 560, 360)),  # landscape: padded top and bottom
        (360, 640, (60, 420, 220, 580)),  # portrait: padded left and right
        (200, 200, (20, 30, 100, 110)),  # square, upscaled
    ],
)
def test_letterbox_maps_detections_back_to_source_pixels(model, w: int, h: int, square):
    img = np.full((h, w, 3), 128, np.uint8)
    x1, y1, x2, y2 = square
    img[y1:y2, x1:x2] = PALETTE_BGR[CLASSES.index("square")]
    [dets] = run_model(model, [img])
    assert [d.label for d in dets] == ["square"]
    tolerance = 2 * max(h, w) / 320 + 1  # a couple of model pixels
    assert np.allclose(dets[0].box, square, atol=tolerance), dets[0].box


def test_letterbox_batch_geometry_and_values():
    landscape = np.zeros((360, 640, 3), np.uint8)
    landscape[..., 0] = 255  # pure blue in BGR
    portrait = np.zeros((640, 320, 3), np.uint8)
    portrait[..., 2] = 255  # pure red in BGR
    batch = letterbox_batch([landscape, portrait], (320, 320), CPU)
    assert batch.tensor.shape == (2, 3, 320, 320)
    assert batch.tensor.dtype == torch.float32
    assert batch.boxes[0] == Letterbox(0.5, 0, 70, 360, 640)
    assert batch.boxes[1] == Letterbox(0.5, 80, 0, 640, 320)
    t = batch.tensor
    pad = 114 / 255
    # padding rows / columns
    assert torch.allclose(t[0, :, :70, :], torch.tensor(pad))
    assert torch.allclose(t[0, :, 250:, :], torch.tensor(pad))
    assert torch.allclose(t[1, :, :, :80], torch.tensor(pad))
    assert torch.allclose(t[1, :, :, 240:], torch.tensor(pad))
    # image area, converted BGR -> RGB and scaled to [0, 1]
    assert torch.allclose(t[0, :, 70:250, :], torch.tensor([0.0, 0.0, 1.0]).view(3, 1, 1))
    assert torch.allclose(t[1, :, :, 80:240], torch.tensor([1.0, 0.0, 0.0]).view(3, 1, 1))


def test_letterbox_to_source_inverts_the_mapping():
    lb = Letterbox(scale=0.25, pad_x=0, pad_y=70, src_h=720, src_w=1280)
    assert lb.to_source(0, 70) == (0.0, 0.0)
    assert lb.to_source(100, 120) == (400.0, 200.0)
    assert lb.to_source(320, 250) == (1280.0, 720.0)


def test_detection_mask_box_rounds_outwards():
    d = Detection("circle", 0, 0.9, (10.2, 5.9, 20.1, 15.0))
    assert d.mask_box() == (10, 5, 21, 15)
    assert d.full_mask(30, 30) is None


def test_load_model_from_spec():
    from vsa.models.shapenet import ShapesModel

    m = load_model(ModelSpec(device="cpu", score_threshold=0.3))
    assert (
        isinstance(m, ShapesModel) and m.name == "builtin-shapes-v1"
    )  # `builtin` is the trained v1
    assert m.device == CPU and m.score_threshold == 0.3
    assert list(m.classes) == list(CLASSES)


def test_score_threshold_drops_detections(model):
    img = synthetic_frames(2, 640, 360, indices=(0,))[0].image
    [normal] = run_model(model, [img])
    [strict] = run_model(load_model(ModelSpec(device="cpu", score_threshold=0.99)), [img])
    assert normal and strict == []


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_a_gpu_is_a_clear_error():
    with pytest.raises(ValueError) as info:
        resolve_device("cuda")
    assert str(info.value) == "model.device is 'cuda' but this process sees no CUDA device"
    with pytest.raises(ModelError) as info2:
        load_model(ModelSpec(device="cuda"))
    assert str(info2.value) == "model.device is 'cuda' but this process sees no CUDA device"
    assert resolve_device("auto") == CPU


def test_model_code_imports_without_ray_or_pyav():
    code = (
        "import sys, vsa.models, vsa.models.builtin, vsa.batching, vsa.draw; "
        "print(sorted(m for m in ('ray', 'av') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.strip() == "[]"
