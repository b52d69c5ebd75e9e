"""Accuracy of a model on ``synthetic://shapes`` clips that went through real H.264.

Each clip is written by ``vsa.tools.make_clip.make_clip`` (libx264) and decoded with
PyAV; decoded frame k is compared with ``ShapesScene(params).render(k)``.

Matching, per frame: detections in descending score order each take the unmatched
ground-truth object of the same label with the highest *box* IoU, if that IoU is
>= ``iou_threshold`` (0.5). Ground-truth objects with a visible area under
``min_area`` source pixels (default 300: slivers at a border or behind another object)
are *ignored both ways*: missing them is no false negative, and a detection that
matches one, or whose own mask is under ``min_area`` pixels and matches nothing, is
no false positive. Mask IoU compares the ground-truth mask with the detection's box-sized
mask placed at its box (as ``Detection.full_mask(h, w)`` would, without making that
frame-sized array); box and mask IoU are averaged over the matches.

PyAV is imported only when clips are made or decoded, so this module imports with
torch, numpy and OpenCV alone.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vsa.core.detections import Detection
from vsa.models.base import Model, run_model
from vsa.sources.synthetic import ShapesScene, SyntheticParams


@dataclass(frozen=True)
class EvalClip:
    """An H.264 clip of a seeded scene; ``params`` regenerate its ground truth."""

    path: Path
    params: SyntheticParams


# seed, width, height, objects: never used for training (training uses seeds 1000..1999).
EVAL_SPECS: tuple[tuple[int, int, int, int], ...] = (
    (90001, 640, 360, 4),
    (90002, 1280, 720, 4),
    (90003, 360, 640, 4),  # portrait
    (90004, 640, 360, 6),
    (90005, 480, 270, 3),
    (90006, 960, 540, 5),
    (90007, 720, 1280, 4),  # portrait
    (90008, 640, 480, 4),
)


def make_eval_clips(
    directory: str | Path,
    specs: Iterable[tuple[int, int, int, int]] = EVAL_SPECS,
    frames: int = 60,
    fps: float = 15.0,
    crf: int = 23,
) -> list[EvalClip]:
    """Write one H.264 clip per ``(seed, width, height, objects)`` into ``directory``."""
    from vsa.tools.make_clip import make_clip

    directory = Path(directory)
    clips = []
    for seed, width, height, objects in specs:
        params = SyntheticParams(
            seed=seed,
            fps=fps,
            width=width,
            height=height,
            frames=frames,
            objects=objects,
            pace=False,
        )
        path = directory / f"shapes_s{seed}_{width}x{height}_o{objects}_crf{crf}.mp4"
        make_clip(path, seed, width, height, fps, frames, objects, crf=crf)
        clips.append(EvalClip(path, params))
    return clips


def decode_frames(path: str | Path) -> Iterator[np.ndarray]:
    """BGR frames of a video file, in order (PyAV)."""
    import av

    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            yield frame.to_ndarray(format="bgr24")


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def mask_iou(truth: np.ndarray, det: Detection) -> float:
    """IoU of a frame-sized ground-truth mask with ``det``'s mask, counted in its box only."""
    h, w = truth.shape
    placed = det.mask_in_frame(h, w)
    if placed is None:
        return 0.0
    mask, x, y = placed
    mask = mask.astype(bool, copy=False)
    inter = int(np.count_nonzero(truth[y : y + mask.shape[0], x : x + mask.shape[1]] & mask))
    union = int(np.count_nonzero(truth)) + int(np.count_nonzero(mask)) - inter
    return inter / union if union else 0.0


@dataclass
class FrameResult:
    tp: int = 0
    fp: int = 0
    fn: int = 0
    ignored_dets: int = 0
    box_ious: list[float] | None = None
    mask_ious: list[float] | None = None


def match_frame(
    dets: Sequence[Detection],
    truth: Sequence[dict[str, Any]],
    iou_threshold: float = 0.5,
    min_area: int = 300,
) -> FrameResult:
    """Greedy matching of one frame's detections with its ground truth (see module doc)."""
    kept = [t for t in truth if t["area"] >= min_area]
    ignored = [t for t in truth if t["area"] < min_area]
    used: set[int] = set()
    result = FrameResult(box_ious=[], mask_ious=[])
    for det in sorted(dets, key=lambda d: -d.score):
        best, best_iou = None, iou_threshold
        for i, t in enumerate(kept):
            if i in used or t["label"] != det.label:
                continue
            iou = box_iou(det.box, t["box"])
            if iou >= best_iou:
                best, best_iou = i, iou
        if best is not None:
            used.add(best)
            result.tp += 1
            result.box_ious.append(best_iou)
            result.mask_ious.append(mask_iou(kept[best]["mask"], det))
            continue
        small = det.mask is not None and int(det.mask.sum()) < min_area
        if small or any(
            t["label"] == det.label and box_iou(det.box, t["box"]) >= iou_threshold for t in ignored
        ):
            result.ignored_dets += 1
        else:
            result.fp += 1
    result.fn = len(kept) - len(used)
    return result


def evaluate(
    model: Model,
    clips: Iterable[EvalClip],
    batch_size: int = 8,
    iou_threshold: float = 0.5,
    min_area: int = 300,
) -> dict[str, Any]:
    """Precision, recall, mean box / mask IoU of matches, over all decoded frames of ``clips``.

    Also ``per_clip`` (the same numbers per clip), the raw counts and the time spent in
    ``run_model`` (preprocess + forward + postprocess) per frame.
    """
    totals = _Totals()
    per_clip = {}
    for clip in clips:
        scene = ShapesScene(clip.params)
        clip_totals = _Totals()
        for start, frames in _batches(decode_frames(clip.path), batch_size):
            started = time.perf_counter()
            results = run_model(model, frames)
            elapsed = time.perf_counter() - started
            totals.model_s += elapsed
            clip_totals.model_s += elapsed
            for j, dets in enumerate(results):
                _, truth = scene.render(start + j)
                r = match_frame(dets, truth, iou_threshold, min_area)
                clip_totals.add(r)
                totals.add(r)
        per_clip[clip.path.name] = clip_totals.summary()
    return {**totals.summary(), "per_clip": per_clip}


def _batches(frames: Iterable[np.ndarray], size: int) -> Iterator[tuple[int, list[np.ndarray]]]:
    """``(index of the first frame, frames)`` in groups of ``size``."""
    batch: list[np.ndarray] = []
    start = 0
    for image in frames:
        batch.append(image)
        if len(batch) == size:
            yield start, batch
            start += size
            batch = []
    if batch:
        yield start, batch


class _Totals:
    def __init__(self) -> None:
        self.tp = self.fp = self.fn = self.ignored = self.frames = 0
        self.model_s = 0.0
        self.box: list[float] = []
        self.mask: list[float] = []

    def add(self, r: FrameResult) -> None:
        self.frames += 1
        self.tp += r.tp
        self.fp += r.fp
        self.fn += r.fn
        self.ignored += r.ignored_dets
        self.box += r.box_ious or []
        self.mask += r.mask_ious or []

    def summary(self) -> dict[str, Any]:
        return {
            "frames": self.frames,
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
            "ignored_dets": self.ignored,
            "precision": self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0,
            "recall": self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0,
            "box_iou": float(np.mean(self.box)) if self.box else 0.0,
            "mask_iou": float(np.mean(self.mask)) if self.mask else 0.0,
            "model_ms_per_frame": 1000 * self.model_s / self.frames if self.frames else 0.0,
        }
