"""What scene analytics costs a stream: CPU per frame of the tracker and of the line and zone
counters, as the stream's sink thread runs them (``vsa.analytics``), without Ray.

    python scripts/bench_analytics.py [--frames 1000] [--objects 20]

Detections: ``--objects`` boxes in a 1920x1080 frame moving at up to 4 px/frame and bouncing
off the edges (so they cross each other and the lines), 2 px of noise, scores 0.5-0.95,
5 % of detections missing, shuffled each frame. Measured with ``time.thread_time`` (the sink
thread's CPU) after a 50-frame warm-up; the target is <= 1 ms per frame at 20 objects.
``scripts/bench.py --analytics`` runs it too.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vsa.analytics.counting import SceneCounter  # noqa: E402
from vsa.analytics.tracker import TrackerProcessor  # noqa: E402
from vsa.config import LineSpec, TrackingSpec, ZoneSpec  # noqa: E402
from vsa.core.detections import Detection  # noqa: E402
from vsa.core.frames import Frame, FrameResult  # noqa: E402

W, H = 1920, 1080
TARGET_MS = 1.0


def detections(frames: int, objects: int, seed: int = 0) -> list[list[Detection]]:
    rng = np.random.default_rng(seed)
    size = rng.uniform(40, 120, size=(objects, 2))
    pos = rng.uniform(0, 1, size=(objects, 2)) * ([W, H] - size)
    vel = rng.uniform(-4, 4, size=(objects, 2))
    score = rng.uniform(0.5, 0.95, size=objects)
    out = []
    for _ in range(frames):
        pos += vel
        for axis, limit in ((0, W), (1, H)):
            low = pos[:, axis] < 0
            high = pos[:, axis] + size[:, axis] > limit
            vel[low | high, axis] *= -1
            pos[:, axis] = np.clip(pos[:, axis], 0, limit - size[:, axis])
        dets = []
        for i in rng.permutation(objects):
            if rng.random() < 0.05:
                continue
            x1, y1 = pos[i] + rng.normal(0, 2, 2)
            x2, y2 = pos[i] + size[i] + rng.normal(0, 2, 2)
            dets.append(Detection("object", i % 4, float(score[i]), (x1, y1, x2, y2)))
        out.append(dets)
    return out


def measure(chain: list[Any], frames: list[list[Detection]], warmup: int = 50) -> dict[str, Any]:
    image = np.zeros((H, W, 3), np.uint8)
    per_frame = []
    for k, dets in enumerate(frames):
        frame = Frame(k, k / 30, time.time(), image=image)
        result = FrameResult(k, dets, 1.0, 1)
        started = time.thread_time()
        for p in chain:
            result = p.process(frame, result)
        if k >= warmup:
            per_frame.append((time.thread_time() - started) * 1000)
    per_frame.sort()
    return {
        "ms_per_frame": round(statistics.fmean(per_frame), 3),
        "p99_ms": round(per_frame[int(0.99 * (len(per_frame) - 1))], 3),
        "frames": len(per_frame),
    }


def run(frames: int = 1000, objects: int = 20) -> dict[str, Any]:
    data = detections(frames + 50, objects)
    spec = TrackingSpec()
    lines = [
        LineSpec(id="v", points=((0.5, 0), (0.5, 1))),
        LineSpec(id="h", points=((0, 0.5), (1, 0.5))),
    ]
    zones = [
        ZoneSpec(id="left", polygon=[(0, 0), (0.3, 0), (0.3, 1), (0, 1)], loiter_s=2),
        ZoneSpec(id="centre", polygon=[(0.4, 0.3), (0.6, 0.3), (0.6, 0.7), (0.4, 0.7)]),
    ]
    tracker_only = measure([TrackerProcessor(spec)], data)
    counters = SceneCounter(lines, zones)
    both = measure([TrackerProcessor(spec), counters], data)
    return {
        "objects": objects,
        "tracker": tracker_only,
        "tracker_lines_zones": both,
        "counters_ms": round(both["ms_per_frame"] - tracker_only["ms_per_frame"], 3),
        "target_ms": TARGET_MS,
        "meets_target": tracker_only["ms_per_frame"] <= TARGET_MS,
        "events": dict(counters.events),
    }


def table(report: dict[str, Any]) -> str:
    t, b = report["tracker"], report["tracker_lines_zones"]
    return "\n".join(
        [
            f"analytics at {report['objects']} objects, CPU of the sink thread per frame:",
            f"  tracker (ByteTrack)             {t['ms_per_frame']:.3f} ms (p99 {t['p99_ms']:.3f})"
            f"  target <= {report['target_ms']:.1f} ms: "
            f"{'met' if report['meets_target'] else 'NOT met'}",
            f"  tracker + 2 lines + 2 zones     {b['ms_per_frame']:.3f} ms (p99 {b['p99_ms']:.3f})",
            f"  lines and zones alone           {report['counters_ms']:.3f} ms",
        ]
    )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=1000)
    p.add_argument("--objects", type=int, default=20)
    p.add_argument("--json", help="also write the numbers here")
    args = p.parse_args()
    report = run(args.frames, args.objects)
    print(table(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    return 0 if report["meets_target"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
