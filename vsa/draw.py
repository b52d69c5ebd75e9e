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

    ``in_place``: draw into ``image`` itself and return it, when it is writable; a
    read-only image (an array from the object store) is copied and the copy drawn on.
    Otherwise (the default) ``image`` is left as it was and a new array is returned.
    Either way the pixels returned are the same. Masks are blended inside their box only.
    """
    out = image if in_place and image.flags.writeable else image.copy()
    h, w = out.shape[:2]
    if draw_masks:
        for det in detections:
            placed = det.mask_in_frame(h, w)
            if placed is None or placed[0].size == 0:
                continue
            mask, x1, y1 = placed
            roi = out[y1 : y1 + mask.shape[0], x1 : x1 + mask.shape[1]]
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
