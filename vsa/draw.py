"""Overlays with OpenCV: instance masks, boxes, labels with scores."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from vsa.core.detections import Detection

# Distinct, readable BGR colours, indexed by class id.
COLOURS = (
    (56, 56, 255),
    (151, 157, 255),
    (31, 112, 255),
    (29, 178, 255),
    (49, 210, 207),
    (10, 249, 72),
    (23, 204, 146),
    (134, 219, 61),
    (52, 147, 26),
    (187, 212, 0),
    (168, 153, 44),
    (255, 194, 0),
)


def colour_for(class_id: int) -> tuple[int, int, int]:
    return COLOURS[class_id % len(COLOURS)]


def draw_detections(
    image: np.ndarray,
    detections: Sequence[Detection],
    draw_masks: bool = True,
    mask_alpha: float = 0.45,
    in_place: bool = False,
) -> np.ndarray:
    """The image with masks blended in, then boxes and ``label score`` tags on top.

    Returns a new array unless ``in_place`` (arrays from the object store are read-only).
    """
    out = image if in_place else image.copy()
    h, w = out.shape[:2]
    if draw_masks:
        for det in detections:
            if det.mask is None:
                continue
            x1, y1, x2, y2 = det.mask_box()
            x1, y1, x2, y2 = max(x1, 0), max(y1, 0), min(x2, w), min(y2, h)
            if x2 <= x1 or y2 <= y1:
                continue
            ox, oy = x1 - det.mask_box()[0], y1 - det.mask_box()[1]
            mask = det.mask[oy : oy + (y2 - y1), ox : ox + (x2 - x1)]
            roi = out[y1:y2, x1:x2]
            colour = np.array(colour_for(det.class_id), np.float32)
            roi[mask] = (roi[mask] * (1 - mask_alpha) + colour * mask_alpha).astype(np.uint8)
    thickness = max(1, round(min(h, w) / 360))
    scale = max(0.4, min(h, w) / 900)
    for det in detections:
        colour = colour_for(det.class_id)
        x1, y1, x2, y2 = (round(v) for v in det.box)
        cv2.rectangle(out, (x1, y1), (x2 - 1, y2 - 1), colour, thickness, cv2.LINE_AA)
        text = f"{det.label} {det.score:.2f}"
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        ty = y1 - 2 if y1 - th - base - 2 >= 0 else y1 + th + base + 2
        cv2.rectangle(out, (x1, ty - th - base), (x1 + tw + 2, ty + base - 2), colour, -1)
        cv2.putText(
            out,
            text,
            (x1 + 1, ty - 2),
            cv2.FONT_HERSHEY_SIMPLEX,
            scale,
            (255, 255, 255),
            1,
            cv2.LINE_AA,
        )
    return out
