"""What every source yields."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np


@dataclass
class Frame:
    """One decoded frame: a contiguous HxWx3 uint8 BGR array plus where it came from."""

    index: int  # 0-based position in decode order
    pts: float | None  # presentation time in seconds (None when the stream has none)
    wall_time: float  # capture time, time.time() when the frame left the decoder
    image: np.ndarray
    truth: list[dict[str, Any]] | None = field(default=None, repr=False)  # synthetic ground truth


class FrameSource(Protocol):
    """An opened stream. ``live`` sources are paced by the camera (or the synthetic clock)."""

    live: bool
    fps: float | None  # nominal rate, when known

    def frames(self) -> Iterator[Frame]: ...

    def close(self) -> None: ...
