"""Preprocessing reads frames as they come from the object store (read-only), copying once.

The model input must be the same tensor as before, bit for bit: same detections.
"""

from __future__ import annotations

import tracemalloc
import warnings
from collections.abc import Sequence

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vsa.config import ModelSpec
from vsa.models import load_model, run_model
from vsa.models.base import letterbox_batch
from vsa.models.builtin import BuiltinModel
from vsa.sources.synthetic import ShapesScene, SyntheticParams
from vsa.testing.toy import export_toy

CPU = torch.device("cpu")


def letterbox_before(
    frames: Sequence[np.ndarray],
    size: tuple[int, int],
    dtype: torch.dtype = torch.float32,
    pad_value: float = 114 / 255,
) -> torch.Tensor:
    """``letterbox_batch`` as it was: a read-only frame copied whole, then flipped by torch."""
    height, width = size
    out = torch.full((len(frames), 3, height, width), pad_value, dtype=dtype)
    for i, frame in enumerate(frames):
        src_h, src_w = frame.shape[:2]
        scale = min(height / src_h, width / src_w)
        new_h, new_w = max(1, round(src_h * scale)), max(1, round(src_w * scale))
        pad_y, pad_x = (height - new_h) // 2, (width - new_w) // 2
        arr = frame if frame.flags.writeable else np.array(frame)
        t = torch.from_numpy(arr).permute(2, 0, 1).flip(0).unsqueeze(0).to(dtype) / 255.0
        if (new_h, new_w) != (src_h, src_w):
            t = F.interpolate(
                t, size=(new_h, new_w), mode="bilinear", align_corners=False, antialias=False
            )
        out[i, :, pad_y : pad_y + new_h, pad_x : pad_x + new_w] = t[0]
    return out


def read_only(a: np.ndarray) -> np.ndarray:
    a = a.copy()
    a.setflags(write=False)
    return a


def random_frame(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), np.uint8)


SIZES = [(360, 640), (320, 320), (720, 1280), (640, 360), (7, 5), (1, 1), (301, 333)]


@pytest.mark.parametrize(("h", "w"), SIZES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_same_tensor_as_before_for_read_only_and_writable_frames(h: int, w: int, dtype):
    frame = random_frame(h, w)
    wider = random_frame(h + 4, 2 * w, seed=1)
    view = wider[2 : h + 2, ::2]  # a strided read-only view
    view.setflags(write=False)
    for f in (frame, read_only(frame), view):
        expected = letterbox_before([f], (320, 320), dtype)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # torch warns on non-writable numpy arrays
            got = letterbox_batch([f], (320, 320), CPU, dtype).tensor
        assert got.dtype == expected.dtype and got.shape == expected.shape
        assert torch.equal(got, expected)


def test_torch_gets_one_fresh_copy_per_frame(monkeypatch: pytest.MonkeyPatch):
    frames = [read_only(random_frame(360, 640, s)) for s in range(3)] + [
        read_only(random_frame(320, 320))  # already model size: the copy is still one
    ]
    handed: list[np.ndarray] = []
    from_numpy = torch.from_numpy

    def spy(a: np.ndarray) -> torch.Tensor:
        handed.append(a)
        return from_numpy(a)

    monkeypatch.setattr(torch, "from_numpy", spy)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        letterbox_batch(frames, (320, 320), CPU)
    assert len(handed) == len(frames)
    for a, f in zip(handed, frames, strict=True):
        assert a.flags.writeable
        assert not np.shares_memory(a, f)
        assert a.shape == f.shape and a.dtype == np.uint8
        np.testing.assert_array_equal(a, f[..., ::-1])  # RGB


def test_the_frame_is_copied_once_on_the_host():
    frame = read_only(random_frame(720, 1280))
    letterbox_batch([frame], (320, 320), CPU)  # warm up
    tracemalloc.start()
    try:
        letterbox_batch([frame], (320, 320), CPU)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2 * frame.nbytes, (peak, frame.nbytes)


def scene_frames(n: int = 3) -> list[np.ndarray]:
    scene = ShapesScene(SyntheticParams(seed=5, width=640, height=360, pace=False))
    return [scene.render(k)[0] for k in range(n)]


def same_detections(a, b) -> None:
    assert len(a) == len(b)
    for da, db in zip(a, b, strict=True):
        assert len(da) == len(db)
        for x, y in zip(da, db, strict=True):
            assert (x.label, x.class_id, x.score, x.box) == (y.label, y.class_id, y.score, y.box)
            assert (x.mask is None) == (y.mask is None)
            if x.mask is not None:
                np.testing.assert_array_equal(x.mask, y.mask)


def model_under_test(name: str, tmp_path):
    if name == "builtin-v0":
        return BuiltinModel(CPU)
    if name == "builtin":  # ShapesNet
        return load_model(ModelSpec(device="cpu"))
    path = export_toy(tmp_path / "toy.torchscript", nc=3, nm=32)
    spec = ModelSpec(
        name="torchscript", path=str(path), task="segment", device="cpu", score_threshold=0.3
    )
    return load_model(spec)


@pytest.mark.parametrize("name", ["builtin-v0", "builtin", "toy-yolo-seg"])
def test_models_give_the_same_detections_for_read_only_frames(name: str, tmp_path):
    model = model_under_test(name, tmp_path)
    frames = scene_frames()
    writable = run_model(model, frames)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # "The given NumPy array is not writable"
        from_store = run_model(model, [read_only(f) for f in frames])
    same_detections(writable, from_store)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_the_staged_upload_gives_the_same_tensor(dtype):
    """One staging buffer and one transfer per batch (the CUDA path, forced here on the CPU):
    the same tensor, bit for bit, as converting and sending each frame, for frames of mixed
    sizes, read-only and strided; and a later, smaller batch reuses the buffer without
    leaving the earlier batch's pixels in its tensor."""
    wider = random_frame(364, 1280, seed=1)
    view = wider[2:362, ::2]
    view.setflags(write=False)
    frames = [read_only(random_frame(h, w, seed=i)) for i, (h, w) in enumerate(SIZES)] + [view]
    for batch in (frames, frames[::-1][:3], frames[:1]):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            staged = letterbox_batch(batch, (320, 320), CPU, dtype, staged=True)
        plain = letterbox_batch(batch, (320, 320), CPU, dtype, staged=False)
        assert staged.boxes == plain.boxes
        assert torch.equal(staged.tensor, plain.tensor)
        assert torch.equal(staged.tensor, letterbox_before(batch, (320, 320), dtype))


def test_the_staged_path_leaves_what_it_cannot_take_to_the_per_frame_path(monkeypatch):
    """A batch over the staging cap, or a frame that is not uint8 (H, W, 3), goes frame by frame
    (the same tensor as ever), instead of being cast or failing."""
    import vsa.models.base as base

    frames = [random_frame(360, 640, s) for s in range(3)]
    expected = letterbox_before(frames, (320, 320))
    monkeypatch.setattr(base, "STAGING_MAX", frames[0].nbytes * 2)  # three frames do not fit
    assert base._staged_upload(frames, CPU) is None
    assert torch.equal(letterbox_batch(frames, (320, 320), CPU, staged=True).tensor, expected)
    gray = np.zeros((8, 8), np.uint8)
    wide = np.zeros((8, 8, 3), np.uint16)
    assert base._staged_upload([frames[0], gray], CPU) is None
    assert base._staged_upload([wide], CPU) is None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this host")
def test_staged_batches_back_to_back_on_cuda():
    """The page-locked buffer is reused only after the last transfer out of it finished: two
    batches of different frames sent one right after the other each give their own tensor."""
    cuda = torch.device("cuda")
    first = [random_frame(720, 1280, s) for s in range(4)]
    second = [random_frame(720, 1280, s + 10) for s in range(4)]
    a = letterbox_batch(first, (640, 640), cuda, staged=True).tensor
    b = letterbox_batch(second, (640, 640), cuda, staged=True).tensor
    torch.cuda.synchronize()
    assert torch.equal(a, letterbox_batch(first, (640, 640), cuda, staged=False).tensor)
    assert torch.equal(b, letterbox_batch(second, (640, 640), cuda, staged=False).tensor)
