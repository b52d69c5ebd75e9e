"""``synthetic://shapes``: a deterministic camera with ground truth.

Moving coloured shapes over a grey textured background, seeded so that frame k of
``seed=s`` is the same image on every machine. Each class has its own hue family:
circle = red, square = green, triangle = blue, diamond = yellow. Objects bounce off
the borders and may occlude each other; the ground truth is the *visible* box and
mask of each object.
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
        }
        for key, raw in parse_qsl(parts.query, keep_blank_values=True):
            if key not in convert:
                raise ValueError(
                    f"unknown synthetic parameter '{key}' (known: {', '.join(convert)})"
                )
            try:
                values[key] = convert[key](raw)
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
        if not 0 <= params.objects <= 32:
            raise ValueError(
                f"synthetic parameter 'objects' must be in [0, 32], got {params.objects}"
            )
        return params


class ShapesScene:
    """Renders frame k of a seeded scene (pure function of seed, size and k)."""

    def __init__(self, params: SyntheticParams) -> None:
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
        short = min(w, h)
        self.objects = []
        for _ in range(params.objects):
            cls = int(rng.integers(len(CLASSES)))
            size = float(rng.uniform(0.10, 0.22) * short)
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
                    "colour": tuple(int(c) for c in colour),
                }
            )

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
            obj["rot"] + 0.02 * k if cls != 3 else 0.0
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

    def render(self, k: int) -> tuple[np.ndarray, list[dict[str, Any]]]:
        """Image (HxWx3 uint8 BGR, contiguous) and visible ground truth of frame k."""
        h, w = self.params.height, self.params.width
        labels = np.zeros((h, w), np.uint8)
        for i, obj in enumerate(self.objects):
            s = obj["size"]
            cx = self._bounce(obj["x0"], obj["vx"], k, s, w - s)
            cy = self._bounce(obj["y0"], obj["vy"], k, s, h - s)
            poly = self._polygon(obj, cx, cy, k)
            if poly is None:
                cv2.circle(labels, (round(cx), round(cy)), round(s * 0.85), i + 1, -1)
            else:
                cv2.fillPoly(labels, [poly], i + 1)
        image = self.background.copy()
        truth = []
        for i, obj in enumerate(self.objects):
            mask = labels == i + 1
            if not mask.any():
                continue
            image[mask] = obj["colour"]
            x, y, bw, bh = cv2.boundingRect(mask.astype(np.uint8))
            truth.append(
                {
                    "class_id": obj["cls"],
                    "label": CLASSES[obj["cls"]],
                    "box": [float(x), float(y), float(x + bw), float(y + bh)],
                    "area": int(mask.sum()),
                    "mask": mask,
                }
            )
        return image, truth


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
