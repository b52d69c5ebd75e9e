"""TorchScript YOLO-layout models: decoding, NMS, letterbox mapping and masks against hand-computed answers."""
# ruff: noqa: E501

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from vsa.config import ModelSpec
from vsa.errors import ModelError
from vsa.models import load_model, run_model
from vsa.models.nms import batched_nms, box_iou, nms
from vsa.testing.toy import export_toy

pytestmark = pytest.mark.filterwarnings(
    "ignore::DeprecationWarning", "ignore::torch.jit.TracerWarning"
)

FRAME = np.zeros((720, 1280, 3), np.uint8)  # letterboxed into 640x640: scale 0.5, pad_y 140


class Fixed(nn.Module):
    """Emits known predictions (and prototypes) whatever the input."""

    def __init__(self, preds: torch.Tensor, protos: torch.Tensor | None = None) -> None:
        super().__init__()
        self.register_buffer("preds", preds)
        self.segment = protos is not None
        self.register_buffer("protos", protos if protos is not None else torch.zeros(1))

    def forward(self, x: torch.Tensor):
        zero = x.sum() * 0
        preds = self.preds.unsqueeze(0).expand(x.shape[0], -1, -1) + zero
        if self.segment:
            return preds, self.protos.unsqueeze(0).expand(x.shape[0], -1, -1, -1) + zero
        return preds


def save(module: nn.Module, path: Path, names: dict | None = None, size: int = 640) -> Path:
    """Traced, as Ultralytics exports are (a module with a size check is scripted to keep it)."""
    if isinstance(module, FixedSize):
        scripted = torch.jit.script(module)
    else:
        scripted = torch.jit.trace(module, torch.zeros(1, 3, size, size), check_trace=False)
    extra = {"config.txt": json.dumps({"names": names})} if names else {}
    torch.jit.save(scripted, str(path), _extra_files=extra)
    return path


def candidates(nm: int = 0) -> torch.Tensor:
    # columns: cx, cy, w, h, score(cat), score(dog), [mask coefficients]
    rows = [
        [320, 320, 100, 50, 0.90, 0.10],  # c0: cat
        [330, 320, 100, 50, 0.80, 0.05],  # c1: cat, IoU 0.82 with c0 -> suppressed
        [330, 320, 100, 50, 0.10, 0.70],  # c2: dog, same box as c1 -> kept (NMS per class)
        [100, 100, 20, 20, 0.20, 0.10],  # c3: below the threshold
    ]
    coeffs = [[10.0] + [0.0] * (nm - 1) if nm else [] for _ in rows]
    return torch.tensor(
        [r + c for r, c in zip(rows, coeffs, strict=True)], dtype=torch.float32
    ).T.contiguous()


def spec(path: Path, **kw) -> ModelSpec:
    base = {"name": "torchscript", "path": str(path), "classes": ["cat", "dog"], "device": "cpu",
            "score_threshold": 0.25, "input_size": (640, 640)}  # fmt: skip
    return ModelSpec.model_validate({**base, **kw})


def test_detect_decoding_nms_and_letterbox_mapping(tmp_path):
    model = load_model(spec(save(Fixed(candidates()), tmp_path / "m.torchscript")))
    (dets,) = run_model(model, [FRAME])
    assert [(d.label, d.class_id, round(d.score, 3)) for d in dets] == [
        ("cat", 0, 0.9),
        ("dog", 1, 0.7),
    ]
    # input (270, 295, 370, 345) -> source ((x - 0) / 0.5, (y - 140) / 0.5)
    assert dets[0].box == pytest.approx((540, 310, 740, 410))
    assert dets[1].box == pytest.approx((560, 310, 760, 410))
    assert all(d.mask is None for d in dets)


def test_batch_gives_each_frame_its_own_mapping(tmp_path):
    model = load_model(spec(save(Fixed(candidates()), tmp_path / "m.torchscript")))
    small = np.zeros((320, 640, 3), np.uint8)  # scale 1.0, pad_y 160
    big, little = run_model(model, [FRAME, small])
    assert big[0].box == pytest.approx((540, 310, 740, 410))
    assert little[0].box == pytest.approx((270, 135, 370, 185))


@pytest.mark.parametrize(
    ("extra", "expected"),
    [({"class_filter": ["dog"]}, ["dog"]), ({"max_detections": 1}, ["cat"]), ({"score_threshold": 0.95}, []),
     ({"iou_threshold": 0.9}, ["cat", "cat", "dog"])],
)  # fmt: skip
def test_filters(tmp_path, extra, expected):
    model = load_model(spec(save(Fixed(candidates()), tmp_path / "m.torchscript"), **extra))
    assert [d.label for d in run_model(model, [FRAME])[0]] == expected


def test_segment_masks_are_assembled_in_source_pixels(tmp_path):
    protos = torch.zeros(2, 160, 160)
    protos[0] = -1.0
    protos[0, 80:100, 60:100] = (
        1.0  # input rows 320..400, cols 240..400 -> source rows 360..520, cols 480..800
    )
    model = load_model(
        spec(save(Fixed(candidates(nm=2), protos), tmp_path / "seg.torchscript"), task="segment")
    )
    cat = run_model(model, [FRAME])[0][0]
    assert cat.mask_box() == (540, 310, 740, 410)
    assert cat.mask.shape == (100, 200) and cat.mask.dtype == bool
    # inside the box the rectangle starts at source row 360 = box row 50 and covers every column
    assert not cat.mask[:50].any()
    assert cat.mask[50:].all()
    full = cat.full_mask(720, 1280)
    assert full.sum() == 50 * 200


@pytest.mark.parametrize("nm", [0, 32])
def test_random_weights_with_the_real_layout(tmp_path, nm):
    path = export_toy(tmp_path / "toy.torchscript", nc=3, nm=nm)
    model = load_model(ModelSpec(name="torchscript", path=str(path), task="segment" if nm else "detect",
                                 device="cpu", score_threshold=0.3, max_detections=50))  # fmt: skip
    assert model.classes == [
        "class0",
        "class1",
        "class2",
    ]  # embedded names, as Ultralytics exports them
    frames = [np.random.default_rng(1).integers(0, 255, (480, 640, 3), np.uint8), FRAME]
    for frame, dets in zip(frames, run_model(model, frames), strict=True):
        assert len(dets) <= 50
        h, w = frame.shape[:2]
        for d in dets:
            x1, y1, x2, y2 = d.box
            assert 0 <= x1 <= x2 <= w and 0 <= y1 <= y2 <= h and d.score > 0.3
            if nm:
                mx1, my1, mx2, my2 = d.mask_box()
                assert d.mask.shape == (my2 - my1, mx2 - mx1)


# --- bad model files: one clear error naming the file and the problem ----------------------


def test_missing_file(tmp_path):
    with pytest.raises(ModelError, match=r"nope\.torchscript: model file not found"):
        load_model(spec(tmp_path / "nope.torchscript"))


def test_corrupt_file(tmp_path):
    path = tmp_path / "corrupt.torchscript"
    path.write_bytes(b"\x00garbage" * 100)
    with pytest.raises(
        ModelError, match=r"corrupt\.torchscript: not a loadable TorchScript model \("
    ):
        load_model(spec(path))


def test_class_list_does_not_match_the_output(tmp_path):
    path = save(Fixed(candidates()), tmp_path / "m.torchscript")
    with pytest.raises(ModelError) as info:
        load_model(spec(path, classes=["a", "b", "c"]))
    assert str(info.value) == (
        f"{path}: predictions have 6 values per candidate, expected 4 + 3 classes = 7 (task detect); "
        "check model.classes and model.task"
    )


def test_yolov5_style_layout_is_named(tmp_path):
    path = save(Fixed(candidates().T.contiguous()), tmp_path / "v5.torchscript")  # [N, C]
    with pytest.raises(ModelError, match=r"YOLOv5-style"):
        load_model(spec(path))


def test_segment_task_on_a_detect_model(tmp_path):
    path = save(Fixed(candidates()), tmp_path / "m.torchscript")
    with pytest.raises(
        ModelError,
        match=r"task 'segment' expects \(predictions, prototypes\) outputs, the model returns a tensor",
    ):
        load_model(spec(path, task="segment"))


class FixedSize(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != 320:
            raise RuntimeError("expected input width 320")
        return torch.zeros(x.shape[0], 6, 10)


def test_input_size_the_model_rejects(tmp_path):
    path = save(FixedSize(), tmp_path / "fixed.torchscript")
    with pytest.raises(
        ModelError,
        match=r"fixed\.torchscript: the model fails on a 640x640 input \(.*\); check model.input_size",
    ):
        load_model(spec(path))
    assert load_model(spec(path, input_size=(320, 320))).classes == ["cat", "dog"]


def test_no_class_names_anywhere(tmp_path):
    path = save(Fixed(candidates()), tmp_path / "m.torchscript")
    with pytest.raises(ModelError, match=r"carries no class names: give model.classes"):
        load_model(spec(path, classes=None))


def test_unknown_class_in_filter(tmp_path):
    path = save(Fixed(candidates()), tmp_path / "m.torchscript")
    with pytest.raises(
        ModelError, match=r"model.class_filter: unknown class 'cow' \(model classes: cat, dog\)"
    ):
        load_model(spec(path, class_filter=["cow"]))


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("names.txt", "cat\ndog\n"),
        ("names.yaml", "names: {0: cat, 1: dog}\n"),
        ("names.json", '["cat", "dog"]'),
    ],
)
def test_names_files(tmp_path, name, content):
    (tmp_path / name).write_text(content)
    path = save(Fixed(candidates()), tmp_path / "m.torchscript")
    assert load_model(spec(path, classes=str(tmp_path / name))).classes == ["cat", "dog"]


def test_bad_names_file(tmp_path):
    (tmp_path / "names.yaml").write_text("names: {0: cat, 2: dog}\n")
    path = save(Fixed(candidates()), tmp_path / "m.torchscript")
    with pytest.raises(ModelError, match=r"names.yaml: class ids must be 0..1 without gaps"):
        load_model(spec(path, classes=str(tmp_path / "names.yaml")))


def test_torchvision_missing_is_one_clear_error(tmp_path):
    try:
        import torchvision  # noqa: F401

        pytest.skip("torchvision is importable here")
    except Exception:  # noqa: BLE001
        pass
    weights = tmp_path / "w.pt"
    weights.write_bytes(b"")
    s = ModelSpec(
        name="torchvision",
        path=str(weights),
        arch="maskrcnn_resnet50_fpn",
        classes=["a"],
        device="cpu",
    )
    with pytest.raises(
        ModelError, match=r"model 'torchvision' needs the optional torchvision package"
    ):
        load_model(s)


# --- NMS -------------------------------------------------------------------------------------


def test_nms_greedy_by_score():
    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 9.0]])
    scores = torch.tensor([0.5, 0.9, 0.8, 0.7])
    assert nms(boxes, scores, 0.5).tolist() == [1, 2]
    assert box_iou(boxes[:1], boxes[:1]).item() == pytest.approx(1.0)


def test_batched_nms_keeps_other_classes():
    boxes = torch.tensor([[0, 0, 10, 10], [0, 0, 10, 10.0]])
    scores = torch.tensor([0.9, 0.8])
    assert sorted(batched_nms(boxes, scores, torch.tensor([0, 1]), 0.5).tolist()) == [0, 1]
    assert batched_nms(boxes, scores, torch.tensor([0, 0]), 0.5).tolist() == [0]


# --- the batch decoding against the plain per-candidate algorithm -----------------------------


class PerFrame(nn.Module):
    """Frame i of a batch gets predictions ``preds[i]``."""

    def __init__(self, preds: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("preds", preds)

    def forward(self, x: torch.Tensor):
        return self.preds[: x.shape[0]] + x.sum() * 0


def plain_decode(model, preds: torch.Tensor, frame: np.ndarray) -> list[tuple]:
    """Every candidate's best class, then threshold, class filter, top-k, NMS, mapping: the
    straightforward way, written out here, to hold the engine's faster decoding to it."""
    from vsa.models.nms import cxcywh_to_xyxy

    nc = len(model.classes)
    p = preds.float().T
    score, cls = p[:, 4 : 4 + nc].max(1)
    keep = score > model.score_threshold
    if model._keep is not None:
        keep &= torch.isin(cls, model._keep)
    p, score, cls = p[keep], score[keep], cls[keep]
    boxes = cxcywh_to_xyxy(p[:, :4])
    idx = batched_nms(boxes, score, cls, model.iou_threshold)[: model.max_detections]
    h, w = frame.shape[:2]
    scale = min(640 / h, 640 / w)
    pad_x, pad_y = (640 - round(w * scale)) // 2, (640 - round(h * scale)) // 2
    out = []
    for b, s, c in zip(boxes[idx].tolist(), score[idx].tolist(), cls[idx].tolist(), strict=True):
        x1, y1, x2, y2 = b
        box = (
            min(max((x1 - pad_x) / scale, 0), w), min(max((y1 - pad_y) / scale, 0), h),
            min(max((x2 - pad_x) / scale, 0), w), min(max((y2 - pad_y) / scale, 0), h),
        )  # fmt: skip
        out.append((model.classes[c], s, box))
    return out


@pytest.mark.parametrize("extra", [{}, {"class_filter": ["dog", "eel"]}, {"score_threshold": 0.9}])
def test_batch_decoding_matches_the_plain_algorithm(tmp_path, extra):
    g = torch.Generator().manual_seed(7)
    n, b = 600, 3
    boxes = torch.rand(b, 4, n, generator=g) * torch.tensor([640, 640, 120, 120]).view(1, 4, 1)
    preds = torch.cat([boxes, torch.rand(b, 3, n, generator=g)], 1)  # 3 classes, many above 0.25
    frames = [FRAME, np.zeros((480, 640, 3), np.uint8), np.zeros((360, 640, 3), np.uint8)]
    model = load_model(
        spec(save(PerFrame(preds), tmp_path / "m.torchscript"), classes=["cat", "dog", "eel"],
             max_detections=300, **extra)
    )  # fmt: skip
    got = run_model(model, frames)
    for i, frame in enumerate(frames):
        want = plain_decode(model, preds[i], frame)
        assert len(want) > (0 if extra.get("score_threshold") else 20)
        assert [(d.label, d.score) for d in got[i]] == [(lab, s) for lab, s, _ in want]
        for d, (_, _, box) in zip(got[i], want, strict=True):
            assert d.box == pytest.approx(box, abs=1e-3)
