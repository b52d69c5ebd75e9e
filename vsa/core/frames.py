"""A decoded frame, and what inference returns for it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vsa.core.detections import Detection


@dataclass
class Frame:
    """One decoded frame: a contiguous HxWx3 uint8 BGR array plus where it came from."""

    index: int  # 0-based position in the stream (the worker numbers frames across reconnects)
    pts: float | None  # presentation time in seconds (None when the stream has none)
    wall_time: float  # capture time, time.time() when the frame left the decoder
    image: np.ndarray
    truth: list[dict[str, Any]] | None = field(default=None, repr=False)  # synthetic ground truth
    decode_s: float | None = None  # time spent decoding (or rendering) and converting it


@dataclass
class FrameResult:
    """What the inference actor returns for one frame."""

    index: int
    detections: list[Detection]
    infer_ms: float  # model time of the batch the frame was in
    batch_size: int
    batch: int = 0  # sequence number of that batch in the inference engine


__all__ = ["Frame", "FrameResult"]
