"""``synthetic://shapes``: a deterministic camera with ground truth.

Moving coloured shapes over a grey textured background, seeded so that frame k of
``seed=s`` is the same image on every machine. Each class has its own hue family:
circle = red, square = green, triangle = blue, diamond = yellow. Objects may occlude each
other; the ground truth is the *visible* box and mask of each object.

Parameters (``synthetic://shapes?seed=1&fps=15&width=640&height=360&...``): ``seed``,
``fps``, ``width``, ``height``, ``frames`` (default endless), ``objects`` (default 3),
``pace`` (``pace=0`` renders as fast as asked), ``burst`` (paced delivery in bursts),
``scene`` (below, default ``bounce``) and ``truth`` (``truth=1``: the run writes the ground
truth of every frame to a file; this module only parses and keeps it).

Scenes (``scene=``), each a pure function of the seed and the frame index k; object sizes are
0.10-0.22 of the short side (the range the built-in detector was trained on), speeds at most
about 1.2 * short / 60 px per frame, each object keeps its one class and colour:

- ``bounce`` (default): ``objects`` shapes moving in straight lines that bounce off the
  borders and pass over each other. The detector's training and accuracy scene; its frames
  never change for a given seed.
- ``cross``: line counting. Each of ``objects`` horizontal lanes (separated so that boxes
  never overlap) carries one object at a time, travelling straight from off-screen left to
  off-screen right or the reverse (alternating), the lanes entering at staggered times.
  Each pass is a new object (a new id), so a vertical line at x = width / 2 is crossed
  exactly once per id. ``objects`` is limited to the lanes that fit the frame's height.
- ``pass``: identity switches. ``ceil(objects / 2)`` bands, each with a pair of objects that
  enter together from opposite sides in lanes so close that their boxes overlap (the smaller
  one passes in front, partly hiding the other) when they meet, then leave; ids as ``cross``.
- ``occlude``: re-identification after a full occlusion. Lanes as ``cross`` (objects of
  0.10-0.12 of the short side, not spinning) behind a static grey pillar over the whole
  height, flat grey ``PILLAR_BGR``, centred at x = 0.35 * width and 0.26 of the short side
  wide (columns ``ShapesScene.pillar``; that wide to hide these objects whole: 0.15 of the
  width at 16:9). Each object's speed is chosen so that it is fully hidden for about 3-8
  frames (4-7 from 160x96 up), then reappears with the same id.
- ``slow``: as ``cross`` with slow objects (1-2 px per frame at 640 px wide), to check that
  a realtime run dropping every second frame keeps its tracks.
- ``crowd``: a harder tracking scene. ``objects`` shapes wander inside the frame on smooth
  curving paths (a sum of two sinusoids per axis), crossing and hiding each other.

Ground truth (``render(k)[1]``, ``Frame.truth``; ``truth_at(k)`` is the same without masks):
one dict per object at least partly visible, in id order: ``id`` (stable 0-based identity:
the object index in ``bounce`` and ``crowd``; in the lane scenes numbered in the order the
objects first show in the frame, upper lane first in the same frame, never reused),
``class_id``, ``label``, ``box`` (``[x1, y1, x2, y2]`` of the visible pixels inside the
frame), ``area`` (visible pixels), ``visible`` (visible pixels / pixels of the whole shape,
unclipped and unoccluded, rounded to 3 decimals, at least 0.001: lower when hidden by another
object or the pillar, or partly outside the frame) and ``mask`` (HxW bool of the visible
pixels). Objects fully hidden or outside the frame are omitted.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import cv2
import numpy as np

from vsa.core.frames import Frame
from vsa.core.shapes import CLASSES, PALETTE_BGR  # noqa: F401 - re-exported
from vsa.flow import Decimator
from vsa.sources.base import SourceOptions, frame_too_large

SEED_MAX = 2**32 - 1
SCENES = ("bounce", "cross", "pass", "occlude", "slow", "crowd")
LANE_SCENES = ("cross", "pass", "occlude", "slow")  # objects travel across in lanes

SIZE_MIN, SIZE_MAX = 0.10, 0.22  # object size (its radius), of the short side
OCCLUDE_SIZE_MAX = 0.12  # small enough for the pillar to hide
SPEED_MIN, SPEED_MAX = 0.6, 1.2  # lane scenes, in short / 60 px per frame
SLOW_MIN, SLOW_MAX = 1.0, 2.0  # slow, in width / 640 px per frame
LANE_GAP = 0.04  # between the boxes of neighbouring lanes, of the short side (+ 2 px)
PASS_SPAN = 2.6  # height of a pass band, in object sizes: two objects offset by <= 0.6 size
PILLAR_X, PILLAR_W = 0.35, 0.26  # occlude: centre (of the width), width (of the short side)
PILLAR_BGR = (96, 96, 96)
PILLAR_LABEL = 255
HIDDEN_FRAMES = (4, 6)  # occlude: frames an object is meant to be fully behind the pillar
SHAPE_AREA = (math.pi * 0.85**2, 2 * 0.9**2, 3 * math.sqrt(3) / 4, 1.3)  # area / size**2
_FLAGS = {"0": False, "false": False, "no": False, "1": True, "true": True, "yes": True}


class _BadValue(ValueError):
    """A parameter value that is not a number: its message is the whole error."""


def _flag(key: str) -> Callable[[str], bool]:
    def convert(raw: str) -> bool:
        try:
            return _FLAGS[raw.lower()]
        except KeyError:
            raise _BadValue(
                f"synthetic parameter '{key}' must be 0 or 1 (or false/true, no/yes), got '{raw}'"
            ) from None

    return convert


def _scene_name(raw: str) -> str:
    if raw not in SCENES:
        raise _BadValue(
            f"synthetic parameter 'scene' must be one of {', '.join(SCENES)}, got '{raw}'"
        )
    return raw


def _lane_room(scene: str, objects: int, width: int, height: int) -> float:
    """The largest object size that fits a lane (a band of two lanes for ``pass``)."""
    short = min(width, height)
    groups = (objects + 1) // 2 if scene == "pass" else objects
    room = height / max(groups, 1) - LANE_GAP * short - 2
    return room / (PASS_SPAN if scene == "pass" else 2.0)


def max_objects(scene: str, width: int, height: int) -> int:
    """The most ``objects`` the scene takes at this frame size (lanes must fit the height)."""
    n = 32
    if scene in LANE_SCENES:
        while n > 0 and _lane_room(scene, n, width, height) < SIZE_MIN * min(width, height):
            n -= 1
    return n


def _check_scene(params: SyntheticParams) -> None:
    if params.scene not in SCENES:
        raise ValueError(
            f"synthetic parameter 'scene' must be one of {', '.join(SCENES)}, got '{params.scene}'"
        )
    most = max_objects(params.scene, params.width, params.height)
    if not 0 <= params.objects <= most:
        where = (
            f" for scene '{params.scene}' at {params.width}x{params.height}"
            if params.scene in LANE_SCENES
            else ""
        )
        raise ValueError(
            f"synthetic parameter 'objects' must be in [0, {most}]{where}, got {params.objects}"
        )


@dataclass(frozen=True)
class SyntheticParams:
    seed: int = 0
    fps: float = 15.0
    width: int = 640
    height: int = 360
    frames: int | None = None  # None: endless
    objects: int = 3
    pace: bool = True  # sleep to the fps like a camera; pace=0 renders as fast as asked
    burst: int = 1  # paced: deliver this many frames at once, every `burst` frame intervals
    scene: str = "bounce"  # one of SCENES
    truth: bool = False  # the run writes the ground truth of every frame

    @classmethod
    def from_uri(cls, uri: str) -> SyntheticParams:
        """Parse ``synthetic://shapes?seed=1&fps=15&...``; ValueError names the bad parameter."""
        parts = urlsplit(uri)
        if parts.netloc != "shapes":
            raise ValueError(f"unknown synthetic generator '{parts.netloc}' (only 'shapes' exists)")
        values: dict[str, Any] = {}
        convert: dict[str, Callable[[str], Any]] = {
            "seed": int,
            "fps": float,
            "width": int,
            "height": int,
            "frames": int,
            "objects": int,
            "pace": lambda v: v.lower() not in ("0", "false", "no"),
            "burst": int,
            "scene": _scene_name,
            "truth": _flag("truth"),
        }
        for key, raw in parse_qsl(parts.query, keep_blank_values=True):
            if key not in convert:
                raise ValueError(
                    f"unknown synthetic parameter '{key}' (known: {', '.join(convert)})"
                )
            try:
                values[key] = convert[key](raw)
            except _BadValue:
                raise
            except ValueError:
                raise ValueError(
                    f"synthetic parameter '{key}' must be a number, got '{raw}'"
                ) from None
        params = cls(**values)
        if not 0 <= params.seed <= SEED_MAX:
            raise ValueError(
                f"synthetic parameter 'seed' must be in [0, {SEED_MAX}], got {params.seed}"
            )
        if not 0 < params.fps <= 1000:
            raise ValueError(f"synthetic parameter 'fps' must be in (0, 1000], got {params.fps:g}")
        for name in ("width", "height"):
            value = getattr(params, name)
            if not 32 <= value <= 7680 or value % 2:
                raise ValueError(
                    f"synthetic parameter '{name}' must be an even number in [32, 7680], got {value}"
                )
        if params.frames is not None and params.frames < 1:
            raise ValueError(f"synthetic parameter 'frames' must be >= 1, got {params.frames}")
        if not 1 <= params.burst <= 1000:
            raise ValueError(
                f"synthetic parameter 'burst' must be in [1, 1000], got {params.burst}"
            )
        _check_scene(params)
        return params


@dataclass(frozen=True)
class _Lane:
    """A lane (``pass``: a band of two) of a lane scene: pass p enters at phase + p * period."""

    y: float  # centre line
    size_max: float
    phase: int
    period: int  # frames; longer than the slowest pass


# (id, object, centre x, centre y) of an object in frame k, in drawing order
_Placed = tuple[int, dict[str, Any], float, float]


class ShapesScene:
    """Renders frame k of a seeded scene (pure function of seed, size, scene and k)."""

    def __init__(self, params: SyntheticParams) -> None:
        _check_scene(params)
        self.params = params
        w, h = params.width, params.height
        rng = np.random.default_rng(params.seed)
        # Textured, low-saturation background: coarse blotches + fine grain, grey only.
        coarse = rng.uniform(70, 170, size=(max(2, h // 40), max(2, w // 40))).astype(np.float32)
        bg = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
        bg += rng.normal(0, 6, size=(h, w)).astype(np.float32)
        bg = np.clip(bg, 55, 185)
        tint = rng.uniform(-6, 6, size=3).astype(np.float32)
        self.background = np.clip(bg[..., None] + tint, 0, 255).astype(np.uint8)
        self.short = short = min(w, h)
        self.objects: list[dict[str, Any]] = []  # bounce and crowd
        self.lanes: list[_Lane] = []  # lane scenes
        self.pillar: tuple[int, int] | None = None  # occlude: its columns [x0, x1)
        self._passes: dict[tuple[int, int], list[dict[str, Any]]] = {}
        if params.scene == "bounce":
            for _ in range(params.objects):
                cls = int(rng.integers(len(CLASSES)))
                size = float(rng.uniform(SIZE_MIN, SIZE_MAX) * short)
                speed = float(rng.uniform(0.3, 1.2) * short / 60.0)  # px per frame
                angle = float(rng.uniform(0, 2 * np.pi))
                colour = np.clip(np.array(PALETTE_BGR[cls]) + rng.integers(-20, 21, size=3), 0, 255)
                self.objects.append(
                    {
                        "cls": cls,
                        "size": size,
                        "x0": float(rng.uniform(size, w - size)),
                        "y0": float(rng.uniform(size, h - size)),
                        "vx": speed * np.cos(angle),
                        "vy": speed * np.sin(angle),
                        "rot": float(rng.uniform(0, np.pi)),
                        "spin": 0.02,
                        "colour": tuple(int(c) for c in colour),
                    }
                )
        elif params.scene == "crowd":
            for _ in range(params.objects):
                obj = self._new_object(rng, SIZE_MAX * short)
                speed = float(rng.uniform(0.3, 1.2) * short / 60.0)
                paths = []
                for centre in (w / 2, h / 2):  # x(t) = centre + sum of two sinusoids
                    amp = centre - obj["size"] - 2  # inside by a pixel, rounded
                    share = float(rng.uniform(0.55, 0.8))
                    split = float(rng.uniform(0.4, 0.7))
                    axis_speed = speed / math.sqrt(2)  # |velocity| <= speed
                    a1, a2 = share * amp, (1 - share) * amp
                    paths.append(
                        (
                            centre,
                            a1,
                            split * axis_speed / a1,
                            float(rng.uniform(0, 2 * np.pi)),
                            a2,
                            (1 - split) * axis_speed / a2,
                            float(rng.uniform(0, 2 * np.pi)),
                        )
                    )
                obj["path"] = paths
                self.objects.append(obj)
        elif params.objects:
            self._make_lanes(rng)

    # -- scene layout ----------------------------------------------------------------------

    def _new_object(self, rng: np.random.Generator, size_max: float) -> dict[str, Any]:
        cls = int(rng.integers(len(CLASSES)))
        colour = np.clip(np.array(PALETTE_BGR[cls]) + rng.integers(-20, 21, size=3), 0, 255)
        return {
            "cls": cls,
            "size": float(rng.uniform(SIZE_MIN * self.short, size_max)),
            "rot": float(rng.uniform(0, np.pi)),
            "spin": 0.02,
            "colour": tuple(int(c) for c in colour),
        }

    def _speeds(self) -> tuple[float, float]:
        if self.params.scene == "slow":
            return SLOW_MIN * self.params.width / 640, SLOW_MAX * self.params.width / 640
        return SPEED_MIN * self.short / 60, SPEED_MAX * self.short / 60

    def _make_lanes(self, rng: np.random.Generator) -> None:
        p = self.params
        w, h, short = p.width, p.height, self.short
        groups = (p.objects + 1) // 2 if p.scene == "pass" else p.objects
        size_cap = OCCLUDE_SIZE_MAX if p.scene == "occlude" else SIZE_MAX
        size_max = min(size_cap * short, _lane_room(p.scene, p.objects, w, h))
        if p.scene == "occlude":
            pillar_w = max(4, round(PILLAR_W * short))
            x0 = round(PILLAR_X * w - pillar_w / 2)
            self.pillar = (x0, x0 + pillar_w)
        v_min, _ = self._speeds()
        longest = math.ceil((w + 2 * (size_max + 2)) / v_min) + 1  # frames of the slowest pass
        for g in range(groups):
            gap = int(rng.integers(max(2, longest // 20), max(3, longest // 3)))
            self.lanes.append(
                _Lane(
                    y=(g + 0.5) * h / groups,
                    size_max=size_max,
                    phase=int(rng.integers(0, max(1, longest // 3))),
                    period=longest + gap,
                )
            )

    def _pass(self, g: int, p: int) -> list[dict[str, Any]]:
        """The object(s) of pass p of lane g, in drawing order (cached: a pure function)."""
        key = (g, p)
        found = self._passes.get(key)
        if found is not None:
            return found
        params, lane = self.params, self.lanes[g]
        rng = np.random.default_rng([params.seed, SCENES.index(params.scene), g, p])
        w = params.width
        v_min, v_max = self._speeds()
        direction = 1 if (g + p) % 2 == 0 else -1
        members = []
        for m in range(2 if params.scene == "pass" else 1):
            obj = self._new_object(rng, lane.size_max)
            obj["member"] = m
            obj["dir"] = direction if m == 0 else -direction
            speed = float(rng.uniform(v_min, v_max))
            if params.scene == "occlude":
                # fully hidden for about HIDDEN_FRAMES frames: (pillar - object width) / speed
                obj["spin"] = 0.0
                shape_w = self._width(obj)
                hidden = int(rng.integers(HIDDEN_FRAMES[0], HIDDEN_FRAMES[1] + 1))
                assert self.pillar is not None
                room = self.pillar[1] - self.pillar[0] - shape_w
                speed = min(v_max, max(v_min, room / hidden))
            obj["speed"] = speed
            members.append(obj)
        if params.scene == "pass":
            a, b = members
            dy = 0.6 * min(a["size"], b["size"])  # boxes overlap when they meet
            top = lane.y - (a["size"] + dy + b["size"]) / 2
            a["y"] = top + a["size"]
            b["y"] = a["y"] + dy
            # the smaller shape in front: it hides part of the other, never all of it
            members.sort(key=lambda o: -SHAPE_AREA[o["cls"]] * o["size"] ** 2)
        else:
            members[0]["y"] = lane.y
        start = lane.phase + p * lane.period
        for obj in members:
            reach = obj["size"] + 2  # off-screen by this much at both ends
            obj["lane"] = g
            obj["start"] = start
            obj["x0"] = -reach if obj["dir"] > 0 else w + reach
            obj["frames"] = math.ceil((w + 2 * reach) / obj["speed"]) + 1
            obj["appear"] = self._appear(obj)
        if len(self._passes) > 4096:
            self._passes.clear()
        self._passes[key] = members
        return members

    def _x(self, obj: dict[str, Any], k: int) -> float:
        return obj["x0"] + obj["dir"] * obj["speed"] * (k - obj["start"])

    def _appear(self, obj: dict[str, Any]) -> int:
        """The first frame with a pixel of this (lane) object inside the frame."""
        w = self.params.width
        t = max(0, math.floor(1.5 / obj["speed"]) - 1)  # before that it is surely outside
        while t < obj["frames"]:
            k = obj["start"] + t
            cx = self._x(obj, k)
            poly = self._polygon(obj, cx, obj["y"], k)
            if poly is None:
                radius = round(obj["size"] * 0.85)
                lo, hi = round(cx) - radius, round(cx) + radius
            else:
                lo, hi = int(poly[:, 0].min()), int(poly[:, 0].max())
            if hi >= 0 and lo < w:
                return k
            t += 1
        return obj["start"] + obj["frames"]

    def _id(self, obj: dict[str, Any]) -> int:
        """A lane object's id: how many objects of all lanes appeared before it (same frame:
        lower lane first, then the pair's first member)."""
        found = obj.get("id")
        if found is not None:
            return found
        appear, n = obj["appear"], 0
        mine = (appear, obj["lane"], obj["member"])
        for g, lane in enumerate(self.lanes):
            last = (appear - lane.phase) // lane.period  # the last pass entering by then
            if last < 0:
                continue
            for other in self._pass(g, last):
                # passes before `last` appeared before its start: a pass is shorter than a period
                n += last + ((other["appear"], g, other["member"]) < mine)
        obj["id"] = n
        return n

    def _width(self, obj: dict[str, Any]) -> int:
        """Horizontal extent of a (non-spinning) shape in pixels."""
        poly = self._polygon(obj, 0.0, 0.0, 0)
        if poly is None:
            return 2 * round(obj["size"] * 0.85) + 1
        return int(poly[:, 0].max() - poly[:, 0].min()) + 1

    def _placed(self, k: int) -> list[_Placed]:
        """Where each object is in frame k, in drawing order (later ones in front)."""
        p = self.params
        w, h = p.width, p.height
        if p.scene == "bounce":
            out = []
            for i, obj in enumerate(self.objects):
                s = obj["size"]
                cx = self._bounce(obj["x0"], obj["vx"], k, s, w - s)
                cy = self._bounce(obj["y0"], obj["vy"], k, s, h - s)
                out.append((i, obj, cx, cy))
            return out
        if p.scene == "crowd":
            out = []
            for i, obj in enumerate(self.objects):
                centre = [
                    c + a1 * math.sin(w1 * k + p1) + a2 * math.sin(w2 * k + p2)
                    for c, a1, w1, p1, a2, w2, p2 in obj["path"]
                ]
                out.append((i, obj, centre[0], centre[1]))
            return out
        out = []
        for g, lane in enumerate(self.lanes):
            n = k - lane.phase
            if n < 0:
                continue
            for obj in self._pass(g, n // lane.period):
                if k - obj["start"] < obj["frames"]:
                    out.append((self._id(obj), obj, self._x(obj, k), obj["y"]))
        return out

    # -- drawing -----------------------------------------------------------------------------

    @staticmethod
    def _bounce(p0: float, v: float, k: int, lo: float, hi: float) -> float:
        span = hi - lo
        if span <= 0:
            return lo
        pos = (p0 - lo + v * k) % (2 * span)
        return lo + (pos if pos <= span else 2 * span - pos)

    def _polygon(self, obj: dict[str, Any], cx: float, cy: float, k: int) -> np.ndarray | None:
        s, cls = obj["size"], obj["cls"]
        if cls == 0:
            return None
        sides = {1: 4, 2: 3, 3: 4}[cls]
        offset = {1: np.pi / 4, 2: -np.pi / 2, 3: 0.0}[cls] + (
            obj["rot"] + obj["spin"] * k if cls != 3 else 0.0
        )
        radius = s * (1.0 if cls != 1 else 0.9)
        if cls == 3:  # diamond: tall rhombus
            pts = [
                (cx, cy - radius),
                (cx + 0.65 * radius, cy),
                (cx, cy + radius),
                (cx - 0.65 * radius, cy),
            ]
        else:
            angles = offset + np.arange(sides) * 2 * np.pi / sides
            pts = list(zip(cx + radius * np.cos(angles), cy + radius * np.sin(angles), strict=True))
        return np.round(np.array(pts)).astype(np.int32)

    def _draw(
        self, k: int, image: bool, masks: bool
    ) -> tuple[np.ndarray | None, list[dict[str, Any]]]:
        h, w = self.params.height, self.params.width
        labels = np.zeros((h, w), np.uint8)
        drawn = []  # (id, object, bounds x0, y0, x1, y1 inclusive, area of the whole shape)
        for slot, (oid, obj, cx, cy) in enumerate(self._placed(k), start=1):
            poly = self._polygon(obj, cx, cy, k)
            if poly is None:
                centre, radius = (round(cx), round(cy)), round(obj["size"] * 0.85)
                x0, y0 = centre[0] - radius - 1, centre[1] - radius - 1
                x1, y1 = centre[0] + radius + 1, centre[1] + radius + 1
            else:
                x0, y0 = (int(v) - 1 for v in poly.min(0))
                x1, y1 = (int(v) + 1 for v in poly.max(0))
            if x1 < 0 or y1 < 0 or x0 >= w or y0 >= h:
                continue  # all outside the frame
            # the whole shape, alone, in a buffer of its own bounds: the base of `visible`
            alone = np.zeros((y1 - y0 + 1, x1 - x0 + 1), np.uint8)
            if poly is None:
                cv2.circle(labels, centre, radius, slot, -1)
                cv2.circle(alone, (centre[0] - x0, centre[1] - y0), radius, 1, -1)
            else:
                cv2.fillPoly(labels, [poly], slot)
                cv2.fillPoly(alone, [poly - np.array([x0, y0], np.int32)], 1)
            drawn.append((slot, oid, obj, x0, y0, x1, y1, cv2.countNonZero(alone)))
        if self.pillar is not None:
            labels[:, self.pillar[0] : self.pillar[1]] = PILLAR_LABEL
        canvas = self.background.copy() if image else None
        truth = []
        for slot, oid, obj, x0, y0, x1, y1, whole in drawn:
            x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w, x1 + 1), min(h, y1 + 1)
            roi = labels[y0:y1, x0:x1] == slot
            roi8 = roi.view(np.uint8)
            area = cv2.countNonZero(roi8)
            if not area:
                continue
            if canvas is not None:
                canvas[y0:y1, x0:x1][roi] = obj["colour"]
            bx, by, bw, bh = cv2.boundingRect(roi8)
            record = {
                "id": oid,
                "class_id": obj["cls"],
                "label": CLASSES[obj["cls"]],
                "box": [float(x0 + bx), float(y0 + by), float(x0 + bx + bw), float(y0 + by + bh)],
                "area": area,
                "visible": min(1.0, max(0.001, round(area / max(whole, 1), 3))),
            }
            if masks:
                mask = np.zeros((h, w), bool)
                mask[y0:y1, x0:x1] = roi
                record["mask"] = mask
            truth.append(record)
        if canvas is not None and self.pillar is not None:
            canvas[:, self.pillar[0] : self.pillar[1]] = PILLAR_BGR
        truth.sort(key=lambda t: t["id"])
        return canvas, truth

    def render(self, k: int) -> tuple[np.ndarray, list[dict[str, Any]]]:
        """Image (HxWx3 uint8 BGR, contiguous) and visible ground truth of frame k."""
        image, truth = self._draw(k, image=True, masks=True)
        assert image is not None
        return image, truth

    def truth_at(self, k: int) -> list[dict[str, Any]]:
        """The ground truth of frame k as ``render(k)`` gives it, without the masks."""
        return self._draw(k, image=False, masks=False)[1]


class SyntheticSource:
    """A FrameSource over a ShapesScene, paced at ``fps`` unless ``pace=0``.

    ``burst=N`` (paced) delivers like HLS or a camera behind a proxy: N frames at once, every
    N frame intervals, each burst when its last frame is due (timestamps stay k/fps).

    Frame k has pts k/fps and index k. With ``options.resume_after_pts`` set, the source
    starts directly at frame ``floor(resume_after_pts * fps + 0.5) + 1`` (the skipped frames
    are not rendered, and pacing starts from the resumed frame). A frame size over
    ``options.max_frame_pixels`` raises ``FRAME_TOO_LARGE`` at open.
    """

    def __init__(
        self,
        uri: str,
        options: SourceOptions | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.params = params = SyntheticParams.from_uri(uri)
        self.options = options = options or SourceOptions()
        if params.width * params.height > options.max_frame_pixels:
            raise frame_too_large(params.width, params.height, options.max_frame_pixels)
        self.scene = ShapesScene(params)
        self.live = self.params.pace
        self.finite = params.frames is not None
        self.endless = False  # a generator never goes down; frames=0 simply never ends
        self.fps = self.params.fps
        self.decimates = True  # frames over options.max_fps are not rendered
        self._clock, self._sleep = clock, sleep
        self._closed = False

    def first_frame(self) -> int:
        """The first frame to render: 0, or the one after ``resume_after_pts``."""
        resume = self.options.resume_after_pts
        if resume is None:
            return 0
        return max(0, math.floor(resume * self.params.fps + 0.5) + 1)

    def frames(self) -> Iterator[Frame]:
        start = self._clock()
        k = k0 = self.first_frame()
        max_fps = self.options.max_fps
        decimator = Decimator(max_fps) if max_fps else None
        while not self._closed and (self.params.frames is None or k < self.params.frames):
            if decimator is not None and not decimator.keep(k / self.params.fps):
                self.options.on_skip("decimated", 1)  # over the cap: never rendered
                k += 1
                continue
            if self.params.pace:
                burst = self.params.burst  # a burst is delivered when its last frame is due
                due = (k - k0) // burst * burst + burst - 1
                delay = start + due / self.params.fps - self._clock()
                if delay > 0:
                    self._sleep(delay)
            # rendered when first read: a realtime stream never renders the frames a newer
            # one replaced (nor a lossless one any sooner)
            yield Frame(k, k / self.params.fps, time.time(), convert=self._render(k))
            k += 1

    def _render(self, k: int) -> Callable[[Frame], np.ndarray]:
        def render(frame: Frame) -> np.ndarray:
            image, frame.truth = self.scene.render(k)
            return image

        return render

    def close(self) -> None:
        self._closed = True
