"""Detections in source pixels, their JSON form (COCO RLE masks) and the letterbox mapping.

Numpy only: the code that builds detections from model output (torch, OpenCV) stays in
``vsa.models``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Detection:
    """One object in source pixels. ``mask`` (bool) covers ``mask_box()`` of the frame, when given."""

    label: str
    class_id: int
    score: float
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 in source pixels
    mask: np.ndarray | None = field(default=None, repr=False)

    def mask_box(self) -> tuple[int, int, int, int]:
        """Integer region ``[y1:y2, x1:x2]`` that ``mask`` covers."""
        x1, y1, x2, y2 = self.box
        return int(math.floor(x1)), int(math.floor(y1)), int(math.ceil(x2)), int(math.ceil(y2))

    def full_mask(self, height: int, width: int) -> np.ndarray | None:
        if self.mask is None:
            return None
        out = np.zeros((height, width), bool)
        x1, y1, x2, y2 = self.mask_box()
        out[y1:y2, x1:x2] = self.mask[: y2 - y1, : x2 - x1]
        return out

    def to_json(self, height: int, width: int) -> dict[str, Any]:
        record: dict[str, Any] = {
            "label": self.label,
            "class_id": self.class_id,
            "score": round(float(self.score), 4),
            "box": [round(float(v), 1) for v in self.box],
        }
        full = self.full_mask(height, width)
        if full is not None:
            record["mask"] = rle_encode(full)
        return record


def rle_encode(mask: np.ndarray) -> dict[str, Any]:
    """COCO uncompressed RLE (column-major, counts start with a run of zeros)."""
    flat = np.asarray(mask, dtype=np.uint8).ravel(order="F")
    changes = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate(([0], changes, [flat.size]))
    counts = np.diff(bounds).tolist()
    if flat.size and flat[0] == 1:
        counts = [0, *counts]
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": counts}


def rle_decode(rle: dict[str, Any]) -> np.ndarray:
    h, w = rle["size"]
    flat = np.zeros(h * w, np.uint8)
    pos, value = 0, 0
    for count in rle["counts"]:
        flat[pos : pos + count] = value
        pos += count
        value ^= 1
    return flat.reshape((h, w), order="F").astype(bool)


@dataclass
class Letterbox:
    """How a source frame was fitted into the model input: ``model = source * scale + pad``."""

    scale: float
    pad_x: int
    pad_y: int
    src_h: int
    src_w: int

    def to_source(self, x: float, y: float) -> tuple[float, float]:
        return (x - self.pad_x) / self.scale, (y - self.pad_y) / self.scale


__all__ = ["Detection", "Letterbox", "rle_decode", "rle_encode"]
