"""The model protocol, building detections from model output, and device-side preprocessing.

Importable with only torch, numpy and OpenCV (no Ray, no PyAV) so that the model,
preprocessing and batching code can be copied to a GPU host and checked there.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F

# Detections and the letterbox mapping are numpy-only; they live in vsa.core and are
# re-exported here for the code that imported them from this module.
from vsa.core.detections import Detection, Letterbox, rle_decode, rle_encode


def region_detection(
    label: str,
    class_id: int,
    score: float,
    rect: tuple[int, int, int, int],
    region: np.ndarray,
    lb: Letterbox,
    fitted: tuple[int, int],
    smooth_mask: bool = False,
) -> Detection:
    """A detection from a component found on the model's grid.

    ``rect`` (x, y, w, h) and ``region`` (bool, h x w) are in letterboxed-input pixels with
    the padding already cut off; ``fitted`` (h, w) is the size of that unpadded area. The box
    is mapped to source pixels and the mask resized to ``mask_box()`` (bilinear then 0.5 when
    ``smooth_mask``, else nearest).
    """
    import cv2

    x, y, w, h = rect
    sx, sy = lb.src_w / fitted[1], lb.src_h / fitted[0]
    box = (x * sx, y * sy, min((x + w) * sx, lb.src_w), min((y + h) * sy, lb.src_h))
    det = Detection(label, class_id, score, box)
    mx1, my1, mx2, my2 = det.mask_box()
    if smooth_mask:
        resized = cv2.resize(
            region.astype(np.float32), (mx2 - mx1, my2 - my1), interpolation=cv2.INTER_LINEAR
        )
        det.mask = resized >= 0.5
    else:
        resized = cv2.resize(
            region.astype(np.uint8), (mx2 - mx1, my2 - my1), interpolation=cv2.INTER_NEAREST
        )
        det.mask = resized.astype(bool)
    return det


@dataclass
class Batch:
    tensor: torch.Tensor  # B x 3 x H x W float on the model device, RGB in [0, 1]
    boxes: list[Letterbox]


def letterbox_batch(
    frames: Sequence[np.ndarray],
    size: tuple[int, int],
    device: torch.device,
    dtype: torch.dtype = torch.float32,
    pad_value: float = 114 / 255,
    staged: bool | None = None,
) -> Batch:
    """uint8 BGR frames of any sizes -> one normalised RGB batch on ``device``.

    Frames may be read-only (views of a shared-memory ring or of Ray's object store): each is
    read once, by the BGR -> RGB conversion on the host, which makes the only copy of the frame.
    The RGB frames cross to the device as uint8; scaling to [0, 1], resize and padding happen
    there. A frame that needs no resize is written into the batch once, scaled in place; only
    the padding is filled (the same values bit for bit as scaling a float copy into a filled
    canvas, with 2.1 instead of 3.4 ms of CPU per 640x360 frame into 640x640 on one thread).

    On CUDA (``staged`` None) or when ``staged`` is True, the BGR frames are instead copied
    side by side into one staging buffer (page-locked on CUDA, one per model thread) that
    crosses to the device in one transfer, and the channels are swapped there: one copy on the
    host and one DMA per batch instead of a conversion and a transfer per frame. The tensor is
    the same bit for bit either way (``test_preprocess_read_only.py``).
    """
    import cv2

    height, width = size
    if staged is None:
        staged = device.type == "cuda"
    on_device = _staged_upload(frames, device) if staged else None  # None: frame by frame
    out = torch.empty((len(frames), 3, height, width), dtype=dtype, device=device)
    boxes = []
    for i, frame in enumerate(frames):
        src_h, src_w = frame.shape[:2]
        scale = min(height / src_h, width / src_w)
        new_h, new_w = max(1, round(src_h * scale)), max(1, round(src_w * scale))
        pad_y, pad_x = (height - new_h) // 2, (width - new_w) // 2
        canvas = out[i]
        # only the padding is filled: the image area is written once below
        canvas[:, :pad_y].fill_(pad_value)
        canvas[:, pad_y + new_h :].fill_(pad_value)
        canvas[:, pad_y : pad_y + new_h, :pad_x].fill_(pad_value)
        canvas[:, pad_y : pad_y + new_h, pad_x + new_w :].fill_(pad_value)
        area = canvas[:, pad_y : pad_y + new_h, pad_x : pad_x + new_w]
        if on_device is not None:
            t = on_device[i]
        else:
            # BGR -> RGB is the first step and the frame's one copy: OpenCV reads the frame as
            # it is (read-only arrays from a ring or the object store too) and torch gets the
            # fresh array.
            rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            t = torch.from_numpy(rgb).to(device, non_blocking=True).permute(2, 0, 1)
        if (new_h, new_w) != (src_h, src_w):
            t = t.unsqueeze(0).to(dtype) / 255.0
            area.copy_(
                F.interpolate(
                    t, size=(new_h, new_w), mode="bilinear", align_corners=False, antialias=False
                )[0]
            )
        else:  # straight into the batch: the same division, no intermediate tensors
            area.copy_(t).div_(255.0)
        boxes.append(Letterbox(new_w / src_w, pad_x, pad_y, src_h, src_w))
    return Batch(out, boxes)


class _Staging(threading.local):
    """A model thread's staging buffer for ``letterbox_batch`` and the event of its last
    transfer out of it (CUDA), which must finish before the buffer is written again."""

    buffer: torch.Tensor | None = None
    sent: Any = None


_staging = _Staging()
STAGING_STEP = 8 << 20  # the buffer grows in steps of 8 MiB (a 16-frame 720p batch: 42 MiB)
STAGING_MAX = 256 << 20  # a larger batch goes frame by frame (page-locked memory is scarce)


def _staged_upload(frames: Sequence[np.ndarray], device: torch.device) -> list[torch.Tensor] | None:
    """The uint8 BGR (H, W, 3) frames as uint8 RGB (3, H, W) tensors on ``device``: copied
    side by side into this thread's staging buffer, sent in one transfer, the channels swapped
    on the device. None (the caller goes frame by frame) for a batch larger than
    ``STAGING_MAX`` or a frame that is not uint8 (H, W, 3)."""
    if not all(f.dtype == np.uint8 and f.ndim == 3 and f.shape[2] == 3 for f in frames):
        return None
    total = sum(f.shape[0] * f.shape[1] * 3 for f in frames)
    if total > STAGING_MAX:
        return None
    cuda = device.type == "cuda"
    if _staging.sent is not None:
        _staging.sent.synchronize()  # the last batch has left the buffer
        _staging.sent = None
    if _staging.buffer is None or _staging.buffer.numel() < total:
        n = -(-total // STAGING_STEP) * STAGING_STEP
        _staging.buffer = None  # free the old one first
        try:
            _staging.buffer = torch.empty(n, dtype=torch.uint8, pin_memory=cuda)
        except RuntimeError:  # no page-locked memory left: pageable (a slower transfer)
            _staging.buffer = torch.empty(n, dtype=torch.uint8)
    host = _staging.buffer.numpy()
    spans = []
    at = 0
    for frame in frames:
        h, w = frame.shape[:2]
        target = host[at : at + h * w * 3].reshape(h, w, 3)
        np.copyto(target, frame, casting="no")  # any strides, read-only too
        spans.append((at, h, w))
        at += h * w * 3
    sent = _staging.buffer[:total].to(device, non_blocking=True)
    if cuda:
        _staging.sent = torch.cuda.Event()
        _staging.sent.record()
    # flip copies on the device (torch has no negative strides), so nothing below aliases the
    # staging buffer, whatever the device; (H, W, 3) permuted, as the per-frame path gives it
    # (the memory layout decides which resize kernel runs)
    return [sent[a : a + h * w * 3].view(h, w, 3).flip(2).permute(2, 0, 1) for a, h, w in spans]


class Model(Protocol):
    """What the inference actor needs from a model."""

    name: str
    classes: Sequence[str]
    device: torch.device

    def preprocess(self, frames: Sequence[np.ndarray]) -> Batch: ...

    def forward(self, batch: Batch) -> Any: ...

    def postprocess(self, raw: Any, batch: Batch) -> list[list[Detection]]: ...


def run_model(model: Model, frames: Sequence[np.ndarray]) -> list[list[Detection]]:
    """Detections for each frame, in order."""
    with torch.inference_mode():
        batch = model.preprocess(frames)
        raw = model.forward(batch)
        return model.postprocess(raw, batch)


def is_out_of_memory(exc: BaseException) -> bool:
    """A device allocation failure (CUDA's OutOfMemoryError, or the message other backends give)."""
    oom = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError", ())
    return isinstance(exc, oom) or "out of memory" in str(exc).lower()


class BatchRunner:
    """Runs batches of frames through a model; a device OOM is not fatal.

    On out-of-memory the batch is split in halves and each half retried, and the
    runner's ``max_batch_size`` is lowered to the size that fit, so later batches are
    formed smaller (the inference actor reads it back and reports it). Out of memory
    for a single frame is raised: nothing smaller can be tried.
    """

    def __init__(self, model: Model, max_batch_size: int, fatal_after: int = 3) -> None:
        self.model = model
        self.max_batch_size = max_batch_size
        self.oom_events = 0
        # out of memory for a single frame this many times in a row: nothing can fit
        self.fatal_after = fatal_after
        self.single_frame_ooms = 0
        self.fatal: str | None = None

    def run(self, frames: Sequence[np.ndarray]) -> list[list[Detection]]:
        if len(frames) > self.max_batch_size:
            out: list[list[Detection]] = []
            for i in range(0, len(frames), self.max_batch_size):
                out += self.run(frames[i : i + self.max_batch_size])
            return out
        try:
            out = run_model(self.model, frames)
        except Exception as exc:
            if not is_out_of_memory(exc):
                raise
            self.oom_events += 1
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            if len(frames) == 1:
                self.single_frame_ooms += 1
                if self.single_frame_ooms >= self.fatal_after and self.fatal is None:
                    self.fatal = (
                        f"device out of memory for a single frame {self.single_frame_ooms} "
                        "times in a row: the model does not fit on this device"
                    )
                raise
            half = len(frames) // 2
            self.max_batch_size = max(1, min(self.max_batch_size, half))
            return self.run(frames[:half]) + self.run(frames[half:])
        self.single_frame_ooms = 0
        return out


def resolve_device(requested: str) -> torch.device:
    """``auto`` -> cuda when available, else cpu. ``cuda`` without a GPU is an error."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise ValueError("model.device is 'cuda' but this process sees no CUDA device")
    return torch.device(requested)


__all__ = [
    "Batch",
    "BatchRunner",
    "Detection",
    "Letterbox",
    "Model",
    "is_out_of_memory",
    "letterbox_batch",
    "region_detection",
    "resolve_device",
    "rle_decode",
    "rle_encode",
    "run_model",
]
