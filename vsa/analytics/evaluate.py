"""Tracking and counting measured against a synthetic source's ground truth.

- MOTA, IDF1 and ID switches come from ``trackers.eval`` (Roboflow's port of TrackEval's
  CLEAR and Identity metrics), on boxes matched at IoU >= 0.5, per frame the engine wrote.
  A truth object less than ``MIN_VISIBLE`` visible (hidden behind another or a pillar, or
  mostly outside the frame) is not required: a track on it is neither a hit nor a false
  positive (it is removed, as TrackEval does with MOT17's distractors).
- The true counts of lines and zones come from the same counters (``SceneCounter``) fed the
  true identities and boxes of every frame, so a count error measures tracking, not geometry.

Used by ``scripts/eval_tracking.py`` and the integration tests; no Ray.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vsa.analytics.counting import SceneCounter
from vsa.config import LineSpec, ZoneSpec
from vsa.core.detections import Detection
from vsa.core.frames import Frame, FrameResult
from vsa.core.scene import SceneView

MIN_VISIBLE = 0.25
IOU = 0.5

Box = Sequence[float]
# frame index -> [(identity, class name, box, visible fraction)]
Truth = dict[int, list[tuple[int, str, Box, float]]]
# frame index -> [(track id, class name, box)]
Tracks = dict[int, list[tuple[int, str, Box]]]


def _lines(path: Path) -> Iterable[dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        for raw in f:
            if raw.strip():
                yield json.loads(raw)


def read_truth(path: Path) -> Truth:
    """``<id>.truth.jsonl`` (``TruthSink``) by frame."""
    return {
        r["frame"]: [
            (o["id"], o["class"], o["box"], 1.0 if o.get("visible") is None else o["visible"])
            for o in r["objects"]
        ]
        for r in _lines(path)
    }


def read_tracks(path: Path) -> tuple[Tracks, dict[int, float | None]]:
    """The tracked detections of ``<id>.jsonl`` by frame, and each frame's pts."""
    tracks: Tracks = {}
    pts: dict[int, float | None] = {}
    for r in _lines(path):
        tracks[r["frame"]] = [
            (d["track_id"], d["label"], d["box"])
            for d in r["detections"]
            if d.get("track_id") is not None
        ]
        pts[r["frame"]] = r.get("pts")
    return tracks, pts


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box of ``a`` (n x 4) with every box of ``b`` (m x 4)."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=1)
    return inter / (area_a[:, None] + area_b[None, :] - inter)


def mot_metrics(truth: Truth, tracks: Tracks, min_visible: float = MIN_VISIBLE) -> dict[str, Any]:
    """MOTA, IDF1, ID switches (and their parts) over the frames in ``tracks``."""
    from scipy.optimize import linear_sum_assignment
    from trackers.eval import compute_clear_metrics, compute_identity_metrics

    gt_ids, tr_ids, sims = [], [], []
    for k in sorted(tracks):
        objects = truth.get(k, [])
        gt_box = np.array([o[2] for o in objects], float).reshape(-1, 4)
        tr_box = np.array([t[2] for t in tracks[k]], float).reshape(-1, 4)
        ids = np.array([t[0] for t in tracks[k]], int)
        required = np.array([o[3] >= min_visible for o in objects], bool)
        sim = iou(gt_box, tr_box)
        if (~required).any() and len(ids):  # tracks on objects not required are dropped
            rows, cols = linear_sum_assignment(-sim)
            drop = {
                c for r, c in zip(rows, cols, strict=True) if sim[r, c] >= IOU and not required[r]
            }
            keep = np.array([c not in drop for c in range(len(ids))], bool)
            ids, sim = ids[keep], sim[:, keep]
        gt_ids.append(np.array([o[0] for o in objects], int)[required])
        tr_ids.append(ids)
        sims.append(sim[required])
    clear = compute_clear_metrics(gt_ids, tr_ids, sims, threshold=IOU)
    ident = compute_identity_metrics(gt_ids, tr_ids, sims, threshold=IOU)
    return {
        "frames": len(gt_ids),
        "objects": len({int(i) for f in gt_ids for i in f}),
        "tracks": len({int(i) for f in tr_ids for i in f}),
        "MOTA": float(clear["MOTA"]),
        "IDF1": float(ident["IDF1"]),
        "IDSW": int(clear["IDSW"]),
        "FP": int(clear["CLR_FP"]),
        "FN": int(clear["CLR_FN"]),
        "recall": float(clear["CLR_Re"]),
    }


def true_counts(
    truth: Mapping[int, Sequence[tuple[int, str, Box, float]]],
    pts: Mapping[int, float],
    lines: Sequence[LineSpec],
    zones: Sequence[ZoneSpec],
    size: tuple[int, int],
    lost_s: float = 1.0,
) -> dict[str, Any]:
    """What the lines and zones count when fed the truth of the frames in ``truth`` (every
    frame, or those a run kept): ``SceneCounter.counts()``. An identity is live until it has
    not been seen for ``lost_s`` (like a track)."""
    counter = SceneCounter(lines, zones)
    w, h = size
    image = np.zeros((h, w, 3), np.uint8)
    seen: dict[int, float] = {}
    for k in sorted(truth):
        t = pts[k]
        detections = [
            Detection(label, 0, 1.0, tuple(box), track_id=oid) for oid, label, box, _ in truth[k]
        ]
        for d in detections:
            seen[d.track_id] = t
        live = {oid: () for oid, last in seen.items() if t - last <= lost_s}
        result = FrameResult(k, detections, 0.0, 1, scene=SceneView(trails=live))
        counter.process(Frame(k, t, 0.0, image=image), result)
    return counter.counts()


def count_errors(engine: Mapping[str, Any], truth: Mapping[str, Any]) -> dict[str, int]:
    """Engine minus truth, per line direction and per zone entry (``counts()`` shapes)."""
    errors: dict[str, int] = {}
    for lid, true in truth.get("lines", {}).items():
        got = engine.get("lines", {}).get(lid, {})
        for d in ("in", "out"):
            errors[f"{lid}.{d}"] = int(got.get(d, 0)) - int(true.get(d, 0))
    for zid, true in truth.get("zones", {}).items():
        got = engine.get("zones", {}).get(zid, {})
        errors[f"{zid}.entered"] = int(got.get("entered", 0)) - int(true.get("entered", 0))
    return errors


__all__ = [
    "IOU",
    "MIN_VISIBLE",
    "count_errors",
    "iou",
    "mot_metrics",
    "read_tracks",
    "read_truth",
    "true_counts",
]
