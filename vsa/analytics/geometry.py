"""Plane geometry of lines and zones, in pure Python (the run file is checked with it before
anything heavy is imported, and a frame has few tracks, lines and zones).

Image coordinates: x to the right, y down. "Left of A->B" is the side on your left as you
walk from A to B on the screen: for a horizontal line drawn left to right, the upper half.
"""

from __future__ import annotations

from collections.abc import Sequence

Point = tuple[float, float]

# where on its box a track is, for lines and zones (the anchor that must cross): the
# fractions of the box's width and height from its top-left corner
_ANCHOR_AT = {
    "bottom_center": (0.5, 1.0),
    "center": (0.5, 0.5),
    "top_center": (0.5, 0.0),
    "left_center": (0.0, 0.5),
    "right_center": (1.0, 0.5),
    "bottom_left": (0.0, 1.0),
    "bottom_right": (1.0, 1.0),
    "top_left": (0.0, 0.0),
    "top_right": (1.0, 0.0),
}
ANCHORS = tuple(_ANCHOR_AT)


def anchor_point(box: Sequence[float], anchor: str) -> Point:
    """The ``anchor`` of an ``x1, y1, x2, y2`` box."""
    try:
        fx, fy = _ANCHOR_AT[anchor]
    except KeyError:
        raise ValueError(f"unknown anchor {anchor!r} (known: {', '.join(ANCHORS)})") from None
    x1, y1, x2, y2 = box[0], box[1], box[2], box[3]
    return x1 + fx * (x2 - x1), y1 + fy * (y2 - y1)


def cross(a: Point, b: Point, p: Point) -> float:
    """(b - a) x (p - a): negative when ``p`` is left of a->b on the screen, positive right."""
    return (b[0] - a[0]) * (p[1] - a[1]) - (b[1] - a[1]) * (p[0] - a[0])


def side_of(a: Point, b: Point, p: Point, tolerance: float = 0.0) -> int:
    """-1 left of a->b, +1 right, 0 within ``tolerance`` pixels of the (infinite) line."""
    length = ((b[0] - a[0]) ** 2 + (b[1] - a[1]) ** 2) ** 0.5
    c = cross(a, b, p)
    if length == 0 or abs(c) <= tolerance * length:
        return 0
    return -1 if c < 0 else 1


def segments_intersect(p1: Point, p2: Point, q1: Point, q2: Point) -> bool:
    """Whether the closed segments p1p2 and q1q2 share a point."""
    d1, d2 = cross(q1, q2, p1), cross(q1, q2, p2)
    d3, d4 = cross(p1, p2, q1), cross(p1, p2, q2)
    if ((d1 > 0 > d2) or (d1 < 0 < d2)) and ((d3 > 0 > d4) or (d3 < 0 < d4)):
        return True
    return (
        (d1 == 0 and _on_segment(q1, q2, p1))
        or (d2 == 0 and _on_segment(q1, q2, p2))
        or (d3 == 0 and _on_segment(p1, p2, q1))
        or (d4 == 0 and _on_segment(p1, p2, q2))
    )


def _on_segment(a: Point, b: Point, p: Point) -> bool:
    return min(a[0], b[0]) <= p[0] <= max(a[0], b[0]) and min(a[1], b[1]) <= p[1] <= max(a[1], b[1])


def passes_through(a: Point, b: Point, p: Point, q: Point) -> bool:
    """Whether moving from ``p`` to ``q`` goes through segment a-b (its ends included), seen
    as the infinite path p-q meeting the segment: ``p`` and ``q`` are on opposite sides of
    the line, and the point where p-q meets the line lies on the segment."""
    cp, cq = cross(a, b, p), cross(a, b, q)
    if cp == cq:
        return False
    t = cp / (cp - cq)  # where along p->q the line is met
    x, y = p[0] + t * (q[0] - p[0]), p[1] + t * (q[1] - p[1])
    eps = 1e-9 * max(1.0, abs(a[0]) + abs(a[1]) + abs(b[0]) + abs(b[1]))
    return (
        min(a[0], b[0]) - eps <= x <= max(a[0], b[0]) + eps
        and min(a[1], b[1]) - eps <= y <= max(a[1], b[1]) + eps
    )


def inside(polygon: Sequence[Point], p: Point) -> bool:
    """Whether ``p`` is inside ``polygon`` (even-odd rule; a point on an edge may go either
    way)."""
    x, y = p
    result = False
    n = len(polygon)
    for i in range(n):
        x1, y1 = polygon[i]
        x2, y2 = polygon[(i + 1) % n]
        if (y1 > y) != (y2 > y):
            xi = x1 + (y - y1) * (x2 - x1) / (y2 - y1)
            if x < xi:
                result = not result
    return result


def area(polygon: Sequence[Point]) -> float:
    """The polygon's area (shoelace; positive whatever its orientation)."""
    n = len(polygon)
    s = 0.0
    for i in range(n):
        x1, y1 = polygon[i]
        x2, y2 = polygon[(i + 1) % n]
        s += x1 * y2 - x2 * y1
    return abs(s) / 2


def self_intersection(polygon: Sequence[Point]) -> tuple[int, int] | None:
    """The first pair of edges (i, j: edge i joins point i to i+1) that cross or touch while
    not neighbours; None for a simple polygon. Also a repeated point (edges that meet at it)."""
    n = len(polygon)
    for i in range(n):
        for j in range(i + 1, n):
            if polygon[i] == polygon[j]:
                return (i, j)
    for i in range(n):
        a, b = polygon[i], polygon[(i + 1) % n]
        for j in range(i + 1, n):
            if j == i + 1 or (i == 0 and j == n - 1):
                continue  # neighbours share a point
            c, d = polygon[j], polygon[(j + 1) % n]
            if segments_intersect(a, b, c, d):
                return (i, j)
    return None


def scaled(points: Sequence[Point], relative: bool, width: int, height: int) -> tuple[Point, ...]:
    """Points in pixels: relative ones (0..1 of the frame) scaled to ``width`` x ``height``."""
    if not relative:
        return tuple((float(x), float(y)) for x, y in points)
    return tuple((float(x) * width, float(y) * height) for x, y in points)


__all__ = [
    "ANCHORS",
    "Point",
    "anchor_point",
    "area",
    "cross",
    "inside",
    "passes_through",
    "scaled",
    "segments_intersect",
    "self_intersection",
    "side_of",
]
