"""Overlays with OpenCV: instance masks, boxes, labels with scores (and track ids), and the
scene analytics' zones, counting lines and track trails under them."""

from __future__ import annotations

import colorsys
import math
from collections.abc import Sequence
from functools import lru_cache
from itertools import chain

import cv2
import numpy as np

from vsa.core.detections import Detection
from vsa.core.scene import LineView, SceneView, ZoneView

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
LINE_COLOUR = (0, 255, 255)  # counting lines, their "in" arrow and their tag (BGR)
ZONE_COLOUR = (255, 191, 0)  # zone outline, fill and tag
WARNING_COLOUR = (0, 0, 255)  # a zone with loitering tracks
BLACK, WHITE = (0, 0, 0), (255, 255, 255)
FONT = cv2.FONT_HERSHEY_SIMPLEX
_FAR = float(1 << 20)  # coordinates are clamped to +-this before drawing (int32-safe)


def colour_for(class_id: int) -> tuple[int, int, int]:
    return COLOURS[class_id % len(COLOURS)]


@lru_cache(maxsize=4096)
def track_colour(track_id: int) -> tuple[int, int, int]:
    """A bright BGR colour of its own for a track id, the same every time (golden-ratio hues)."""
    r, g, b = colorsys.hsv_to_rgb((track_id * 0.618033988749895) % 1.0, 0.7, 1.0)
    return round(b * 255), round(g * 255), round(r * 255)


def draw_detections(
    image: np.ndarray,
    detections: Sequence[Detection],
    draw_masks: bool = True,
    mask_alpha: float = 0.45,
    in_place: bool = False,
    *,
    scene: SceneView | None = None,
    zone_alpha: float = 0.2,
) -> np.ndarray:
    """The image with masks blended in, then boxes and ``label score`` tags on top.

    ``in_place``: draw into ``image`` itself and return it, when it is writable; a
    read-only image (an array from the object store) is copied and the copy drawn on.
    Otherwise (the default) ``image`` is left as it was and a new array is returned.
    Either way the pixels returned are the same. Masks are blended inside their box only.

    A tracked detection's tag reads ``#<track id> label score``. ``scene`` (the analytics'
    overlay) is drawn under the masks and boxes: zones first (outlined, filled with
    ``zone_alpha`` inside their bounding rect, tagged ``<id>: <occupancy>``), then the counting
    lines (an arrow points to their "in" side, tagged ``<id> in <n> out <m>``), then each
    track's trail. Without a scene the pixels are those of the detections alone.
    """
    out = image if in_place and image.flags.writeable else image.copy()
    h, w = out.shape[:2]
    thickness = max(1, round(min(h, w) / 360))
    scale = max(0.4, min(h, w) / 900)
    if scene is not None:
        _draw_scene(out, scene, zone_alpha, thickness, scale)
    if draw_masks:
        for det in detections:
            placed = det.mask_in_frame(h, w)
            if placed is None or placed[0].size == 0:
                continue
            mask, x1, y1 = placed
            roi = out[y1 : y1 + mask.shape[0], x1 : x1 + mask.shape[1]]
            colour = np.array(colour_for(det.class_id), np.float32)
            roi[mask] = (roi[mask] * (1 - mask_alpha) + colour * mask_alpha).astype(np.uint8)
    for det in detections:
        colour = colour_for(det.class_id)
        x1, y1, x2, y2 = (round(v) for v in det.box)
        cv2.rectangle(out, (x1, y1), (x2 - 1, y2 - 1), colour, thickness, cv2.LINE_AA)
        text = f"{det.label} {det.score:.2f}"
        if det.track_id is not None:
            text = f"#{det.track_id} {text}"
        (tw, th), base = _text_size(text, FONT, scale, 1)
        ty = y1 - 2 if y1 - th - base - 2 >= 0 else y1 + th + base + 2
        cv2.rectangle(out, (x1, ty - th - base), (x1 + tw + 2, ty + base - 2), colour, -1)
        cv2.putText(out, text, (x1 + 1, ty - 2), FONT, scale, WHITE, 1, cv2.LINE_AA)
    return out


# labels repeat from frame to frame, and measuring one costs as much as drawing it
_text_size = lru_cache(maxsize=1024)(cv2.getTextSize)


def _draw_scene(
    out: np.ndarray, scene: SceneView, zone_alpha: float, thickness: int, scale: float
) -> None:
    """Zones, then lines, then trails; every point converted to pixels in one go."""
    zones, lines = scene.zones, scene.lines
    trail_ids = [track_id for track_id, points in scene.trails.items() if len(points) >= 2]
    runs = _pixel_runs(
        [zone.polygon for zone in zones]
        + [(line.start, line.end) for line in lines]
        + [scene.trails[track_id] for track_id in trail_ids]
    )
    for zone, pts in zip(zones, runs, strict=False):
        _draw_zone(out, zone, pts, zone_alpha, thickness, scale)
    for line, ends in zip(lines, runs[len(zones) :], strict=False):
        _draw_line(out, line, ends, thickness, scale)
    _draw_trails(out, trail_ids, runs[len(zones) + len(lines) :], thickness)


def _pixel_runs(runs: Sequence[Sequence[tuple[float, float]]]) -> list[np.ndarray]:
    """Each run of points as an Nx2 int32 array, rounded: non-finite points dropped, far ones
    clamped. All runs are converted at once (per run, NumPy's overhead would dominate)."""
    lens = [len(run) for run in runs]
    flat = np.fromiter(chain.from_iterable(chain.from_iterable(runs)), np.float64, 2 * sum(lens))
    xy = flat.reshape(-1, 2)
    finite = None
    if not np.isfinite(flat).all():
        finite = np.isfinite(xy).all(1)
        xy[~finite] = 0
    pixels = np.rint(np.clip(xy, -_FAR, _FAR, out=xy), out=xy).astype(np.int32)
    out, end = [], 0
    for n in lens:
        run = pixels[end : end + n]
        out.append(run if finite is None else run[finite[end : end + n]])
        end += n
    return out


def _tag_size(text: str, scale: float) -> tuple[int, int, int]:
    """Width and height of a tag with ``text``, and the text's height above its baseline."""
    (tw, th), base = _text_size(text, FONT, scale, 1)
    return tw + 4, th + base + 4, th


def _tag(
    out: np.ndarray,
    text: str,
    x: float,
    y: float,
    background: tuple[int, int, int],
    foreground: tuple[int, int, int],
    scale: float,
) -> None:
    """A filled tag with ``text``, its top-left at x, y, moved into the frame."""
    h, w = out.shape[:2]
    bw, bh, th = _tag_size(text, scale)
    x = int(min(max(x, 0), max(0, w - bw)))
    y = int(min(max(y, 0), max(0, h - bh)))
    cv2.rectangle(out, (x, y), (x + bw - 1, y + bh - 1), background, -1)
    cv2.putText(out, text, (x + 2, y + 2 + th), FONT, scale, foreground, 1, cv2.LINE_AA)


def _draw_zone(
    out: np.ndarray, zone: ZoneView, pts: np.ndarray, alpha: float, thickness: int, scale: float
) -> None:
    if len(pts) < 2:
        return
    h, w = out.shape[:2]
    bx, by, bw, bh = cv2.boundingRect(pts)
    x1, y1, x2, y2 = max(bx, 0), max(by, 0), min(bx + bw, w), min(by + bh, h)
    if x2 <= x1 or y2 <= y1:
        return  # wholly outside the frame
    colour = WARNING_COLOUR if zone.loitering > 0 else ZONE_COLOUR
    if alpha > 0 and len(pts) >= 3:
        # blended inside the visible part of its bounding rect only: pixels outside the polygon
        # blend with themselves and stay as they were
        roi = out[y1:y2, x1:x2]
        filled = roi.copy()
        cv2.fillPoly(filled, [pts - np.array((x1, y1), np.int32)], colour)
        cv2.addWeighted(filled, alpha, roi, 1 - alpha, 0, dst=roi)
    cv2.polylines(out, [pts], True, colour, thickness, cv2.LINE_AA)
    text = f"{zone.id}: {zone.occupancy}"
    if zone.loitering > 0:
        text += f" ({zone.loitering} loitering)"
    fg = WHITE if zone.loitering > 0 else BLACK
    _tag(out, text, x1 + thickness, y1 + thickness, colour, fg, scale)


def _draw_line(
    out: np.ndarray, line: LineView, ends: np.ndarray, thickness: int, scale: float
) -> None:
    h, w = out.shape[:2]
    if len(ends) < 2:
        return
    (sx, sy), (ex, ey) = ends.tolist()
    visible, p1, p2 = cv2.clipLine((0, 0, w, h), (sx, sy), (ex, ey))
    if not visible:
        return
    cv2.line(out, p1, p2, LINE_COLOUR, thickness, cv2.LINE_AA)
    mx, my = (p1[0] + p2[0]) / 2, (p1[1] + p2[1]) / 2  # middle of the visible part
    dx, dy = ex - sx, ey - sy
    length = math.hypot(dx, dy)
    text = f"{line.id} in {line.count_in} out {line.count_out}"
    bw, bh, _ = _tag_size(text, scale)
    if length == 0:
        _tag(out, text, mx - bw / 2, my - bh / 2, LINE_COLOUR, BLACK, scale)
        return
    # (dy, -dx) points to the left of start -> end on the screen (y down): cross < 0 there
    side = {"left": 1, "right": -1}.get(line.in_side, 0)
    nx, ny = (side or 1) * dy / length, -(side or 1) * dx / length
    if side:
        reach = max(10.0, min(h, w) / 18)
        tip = (round(mx + nx * reach), round(my + ny * reach))
        cv2.arrowedLine(
            out, (round(mx), round(my)), tip, LINE_COLOUR, thickness, cv2.LINE_AA, 0, 0.35
        )
    # the tag wholly on the other ("out") side, its near edge a few pixels from the line
    away = 2 + thickness + (abs(nx) * bw + abs(ny) * bh) / 2
    cx, cy = mx - nx * away, my - ny * away
    _tag(out, text, cx - bw / 2, cy - bh / 2, LINE_COLOUR, BLACK, scale)


def _draw_trails(
    out: np.ndarray, track_ids: Sequence[int], runs: Sequence[np.ndarray], thickness: int
) -> None:
    """Each track's recent anchor points as a polyline in its own colour; the older half is
    drawn thinner where the frame is large enough for the lines to have a width."""
    for track_id, pts in zip(track_ids, runs, strict=True):
        if len(pts) < 2:
            continue
        colour = track_colour(track_id)
        if thickness == 1:
            cv2.polylines(out, [pts], False, colour, 1, cv2.LINE_AA)
            continue
        half = len(pts) // 2
        cv2.polylines(out, [pts[: half + 1]], False, colour, max(1, thickness // 2), cv2.LINE_AA)
        cv2.polylines(out, [pts[half:]], False, colour, thickness, cv2.LINE_AA)
