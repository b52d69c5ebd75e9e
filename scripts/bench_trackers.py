"""Benchmark: ByteTrack-class tracker libraries on one synthetic detection sequence.

Standalone (not part of vsa): run it with a Python that has the candidates installed, see
docs/tracker-choice.md. Each importable candidate gets the same sequence: ``--objects``
boxes moving linearly (bouncing off the 1920x1080 frame edges), 2 px Gaussian noise on the
corners, score U(0.5, 0.95), a fixed class per object, 5 % of detections dropped, order
shuffled per frame. Reports CPU ms per frame (``time.thread_time``, input conversion +
update + reading ids back; and ``time.process_time``, which also counts BLAS threads), ID
switches (track-id changes per true object), and IDF1/MOTA when ``motmetrics`` imports.

    python scripts/bench_trackers.py [--frames 1000] [--objects 20]
"""

from __future__ import annotations

import argparse
import time
import warnings
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version

import numpy as np

W, H = 1920, 1080
# A tracker step: (xyxy float32 [N, 4], score [N], class [N], gt id [N]) -> [(gt id, track id,
# box)] for the detections it assigned an id to this frame.
Step = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], list]


def make_sequence(frames: int, objects: int, seed: int = 0) -> list[tuple]:
    """Per frame: (true boxes [objects, 4], detections (xyxy, score, class, gt id))."""
    rng = np.random.default_rng(seed)
    size = rng.uniform([40, 80], [120, 220], (objects, 2))
    pos = rng.uniform([0, 0], [W, H], (objects, 2)) - size / 2
    pos = np.clip(pos, 0, [W, H] - size)
    vel = rng.uniform(-4, 4, (objects, 2))
    cls = rng.integers(0, 3, objects)
    seq = []
    for _ in range(frames):
        true = np.hstack([pos, pos + size])
        keep = np.flatnonzero(rng.random(objects) >= 0.05)
        rng.shuffle(keep)
        xyxy = (true[keep] + rng.normal(0, 2, (len(keep), 4))).astype(np.float32)
        score = rng.uniform(0.5, 0.95, len(keep)).astype(np.float32)
        seq.append((true, (xyxy, score, cls[keep], keep)))
        pos = pos + vel
        out = (pos < 0) | (pos + size > [W, H])
        vel[out] *= -1
        pos = np.clip(pos, 0, [W, H] - size)
    return seq


def sv_step(sv, tracker, update: str) -> Step:
    def step(xyxy, score, cls, gt):
        det = sv.Detections(xyxy=xyxy, confidence=score, class_id=cls, data={"gt": gt})
        res = getattr(tracker, update)(det)
        return [
            (g, t, b)
            for g, t, b in zip(res.data["gt"], res.tracker_id, res.xyxy, strict=True)
            if t >= 0
        ]

    return step


def norfair_step(norfair) -> Step:
    tracker = norfair.Tracker(distance_function="iou", distance_threshold=0.7)

    def step(xyxy, score, cls, gt):
        dets = [
            norfair.Detection(b.reshape(2, 2), np.array([s, s]), label=int(c), data=int(g))
            for b, s, c, g in zip(xyxy, score, cls, gt, strict=True)
        ]
        fresh = {id(d) for d in dets}
        objs = tracker.update(dets)
        return [
            (o.last_detection.data, o.id, o.estimate.reshape(4))
            for o in objs
            if id(o.last_detection) in fresh
        ]

    return step


def candidates() -> dict[str, Callable[[], Step]]:
    found: dict[str, Callable[[], Step]] = {}
    try:
        import supervision as sv

        if hasattr(sv, "ByteTrack"):
            v = version("supervision")
            found[f"supervision {v} ByteTrack"] = lambda: sv_step(
                sv, sv.ByteTrack(), "update_with_detections"
            )
    except ImportError:
        pass
    try:
        import supervision as sv
        import trackers

        v = version("trackers")
        for name in ("ByteTrackTracker", "SORTTracker", "OCSORTTracker"):
            cls = getattr(trackers, name)
            found[f"trackers {v} {name}"] = lambda cls=cls: sv_step(sv, cls(), "update")
    except ImportError:
        pass
    try:
        import norfair

        found[f"norfair {version('norfair')} (iou)"] = lambda: norfair_step(norfair)
    except (ImportError, PackageNotFoundError):
        pass
    return found


def id_switches(pairs: list[list]) -> tuple[int, int]:
    """(track-id changes summed over true objects, distinct track ids handed out)."""
    last: dict[int, int] = {}
    switches, ids = 0, set()
    for frame in pairs:
        for g, t, _ in frame:
            ids.add(int(t))
            if g in last and last[g] != t:
                switches += 1
            last[g] = t
    return switches, len(ids)


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area = lambda x: np.prod(x[:, 2:] - x[:, :2], axis=1)  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None, :] - inter)


def mot_scores(seq: list[tuple], pairs: list[list]) -> tuple[float, float] | None:
    try:
        import motmetrics as mm
    except ImportError:
        return None
    acc = mm.MOTAccumulator(auto_id=True)
    for (true, _), frame in zip(seq, pairs, strict=True):
        hyp = np.array([b for _, _, b in frame]).reshape(-1, 4)
        dist = 1 - iou(true, hyp)  # mm.distances.iou_matrix uses np.asfarray: gone in NumPy 2
        dist[dist > 0.5] = np.nan
        acc.update(list(range(len(true))), [int(t) for _, t, _ in frame], dist)
    s = mm.metrics.create().compute(acc, metrics=["idf1", "mota"], name="x")
    return float(s["idf1"].iloc[0]), float(s["mota"].iloc[0])


def run(make: Callable[[], Step], seq: list[tuple]) -> dict:
    warm = make()
    for _, det in seq[:50]:
        warm(*det)
    step = make()
    cpu = np.empty(len(seq))
    pairs = []
    wall0, proc0 = time.perf_counter(), time.process_time()
    for i, (_, det) in enumerate(seq):
        t0 = time.thread_time()
        out = step(*det)
        cpu[i] = time.thread_time() - t0
        pairs.append(out)
    wall, proc = time.perf_counter() - wall0, time.process_time() - proc0
    sw, n_ids = id_switches(pairs)
    assigned = sum(len(p) for p in pairs) / sum(len(d[0]) for _, d in seq)
    return {
        "cpu_ms": cpu.mean() * 1e3,
        "cpu_p99_ms": np.percentile(cpu, 99) * 1e3,
        "proc_ms": proc / len(seq) * 1e3,
        "wall_ms": wall / len(seq) * 1e3,
        "switches": sw,
        "ids": n_ids,
        "assigned": assigned,
        "mot": mot_scores(seq, pairs),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=1000)
    ap.add_argument("--objects", type=int, default=20)
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    seq = make_sequence(args.frames, args.objects)
    print(f"numpy {np.__version__}; {args.frames} frames x {args.objects} objects")
    print(
        "| tracker | thread CPU ms/frame | p99 | process CPU ms/frame | wall ms/frame "
        "| ID switches | ids | assigned | IDF1 | MOTA |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, make in candidates().items():
        r = run(make, seq)
        idf1, mota = r["mot"] or (float("nan"), float("nan"))
        print(
            f"| {name} | {r['cpu_ms']:.3f} | {r['cpu_p99_ms']:.3f} | {r['proc_ms']:.3f} "
            f"| {r['wall_ms']:.3f} "
            f"| {r['switches']} | {r['ids']} | {r['assigned']:.1%} | {idf1:.3f} | {mota:.3f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
