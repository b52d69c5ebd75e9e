"""Tracking and counting of the whole engine against ground truth, on synthetic scenes.

    python scripts/eval_tracking.py [--frames 300] [--scenes cross pass ...] [--json out.json]

Starts a local Ray cluster, submits one lossless run whose streams are the tracking scenes of
the synthetic source (``synthetic://shapes?scene=...&truth=1``, built-in model), each with a
counting line across the frame and a zone, and waits for it to finish. Then, per scene:

- MOTA, IDF1, ID switches (``trackers.eval``: TrackEval's CLEAR and Identity metrics) of the
  JSONL's tracked boxes against ``<id>.truth.jsonl``;
- each line's in/out and each zone's entries as the engine counted them (its events file)
  minus the same counters fed the true identities and boxes (``vsa.analytics.evaluate``).

docs/analytics.md holds the table this prints. Exit status 1 when a scene misses the floors
the tests assert (IDF1 >= 0.85 on the clean scenes, exact counts on ``cross``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vsa.analytics.counting import SceneCounter  # noqa: E402
from vsa.analytics.evaluate import (  # noqa: E402
    count_errors,
    mot_metrics,
    read_tracks,
    read_truth,
    true_counts,
)
from vsa.analytics.resume import replay_events  # noqa: E402
from vsa.config import LineSpec, ZoneSpec, parse_run  # noqa: E402
from vsa.sources.synthetic import ShapesScene, SyntheticParams  # noqa: E402

W, H, FPS = 640, 360, 15
# scene -> (objects, what it tests)
SCENES: dict[str, tuple[int, str]] = {
    "cross": (3, "well-separated lanes crossing the line"),
    "slow": (3, "slow objects (1-2 px/frame)"),
    "pass": (4, "pairs passing each other (overlap)"),
    "occlude": (3, "hidden behind a pillar for a few frames"),
    "bounce": (3, "the detector's scene: bouncing, overlapping"),
    "crowd": (8, "many objects wandering, crossing each other"),
}
CLEAN = ("cross", "slow")  # the floors of the tests: IDF1 >= 0.85, exact counts on cross
LINE = {"id": "middle", "points": [[0.5, 0.0], [0.5, 1.0]]}
ZONE = {"id": "right", "polygon": [[0.62, 0.0], [0.9, 0.0], [0.9, 1.0], [0.62, 1.0]]}


def uri(scene: str, objects: int, frames: int, seed: int) -> str:
    return (
        f"synthetic://shapes?scene={scene}&seed={seed}&fps={FPS}&width={W}&height={H}"
        f"&frames={frames}&objects={objects}&truth=1"
    )


def run_spec(out: Path, scenes: list[str], frames: int, seed: int) -> Any:
    sources = [
        {
            "id": scene,
            "uri": uri(scene, SCENES[scene][0], frames, seed),
            "mode": "lossless",
            "lines": [LINE],
            "zones": [ZONE],
        }
        for scene in scenes
    ]
    return parse_run(
        {
            "name": "eval-tracking",
            "output_dir": str(out),
            "sources": sources,
            "sinks": [{"type": "jsonl"}],
        }
    )


def evaluate(out: Path, run_id: str, scene: str, frames: int, seed: int) -> dict[str, Any]:
    truth = read_truth(out / f"{scene}.truth.jsonl")
    tracks, _ = read_tracks(out / f"{scene}.jsonl")
    metrics = mot_metrics(truth, tracks)
    lines, zones = [LineSpec(**LINE)], [ZoneSpec(**ZONE)]
    counter = SceneCounter(lines, zones)
    counter.restore(replay_events(out / f"{scene}.events.jsonl", run_id))
    engine = counter.counts()
    # the truth of every frame of the scene (the run wrote all of them: lossless)
    world = ShapesScene(SyntheticParams.from_uri(uri(scene, SCENES[scene][0], frames, seed)))
    every = {
        k: [(o["id"], o["label"], o["box"], o["visible"]) for o in world.truth_at(k)]
        for k in range(frames)
    }
    true = true_counts(every, {k: k / FPS for k in every}, lines, zones, (W, H))
    return {
        "scene": scene,
        **metrics,
        "engine": {"lines": engine["lines"], "zones": engine["zones"]},
        "truth": {"lines": true["lines"], "zones": true["zones"]},
        "count_errors": count_errors(engine, true),
    }


def table(rows: list[dict[str, Any]]) -> str:
    head = (
        "| scene | frames | objects | tracks | MOTA | IDF1 | ID switches | "
        "line in / out (engine vs truth) | zone entries (engine vs truth) |"
    )
    out = [head, "|" + "---|" * 9]
    for r in rows:
        e, t = r["engine"], r["truth"]
        li = f"{e['lines']['middle']['in']} / {e['lines']['middle']['out']} vs {t['lines']['middle']['in']} / {t['lines']['middle']['out']}"
        zo = f"{e['zones']['right']['entered']} vs {t['zones']['right']['entered']}"
        out.append(
            f"| {r['scene']} | {r['frames']} | {r['objects']} | {r['tracks']} | "
            f"{r['MOTA']:.3f} | {r['IDF1']:.3f} | {r['IDSW']} | {li} | {zo} |"
        )
    return "\n".join(out)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=300, help="frames per scene (15 fps)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--scenes", nargs="+", default=list(SCENES), choices=list(SCENES))
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args()

    import ray

    from vsa.client import Client

    os.environ.setdefault("VSA_STATE_DIR", tempfile.mkdtemp(prefix="vsa-state-"))
    out = Path(tempfile.mkdtemp(prefix="eval-tracking-"))
    ray.init(address="local", include_dashboard=False, log_to_driver=False)
    try:
        client = Client()
        started = time.monotonic()
        run_id = client.submit(run_spec(out, args.scenes, args.frames, args.seed))["run_id"]
        run = client.wait(run_id, timeout_s=3600).to_dict()
        elapsed = time.monotonic() - started
    finally:
        ray.shutdown()
    if run["state"] != "FINISHED":
        print(f"the run ended {run['state']}: {run.get('error')}", file=sys.stderr)
        return 2
    rows = [evaluate(out, run_id, scene, args.frames, args.seed) for scene in args.scenes]
    print(f"{len(args.scenes)} scenes x {args.frames} frames, {W}x{H}, built-in model, "
          f"in {elapsed:.0f} s (outputs in {out})")  # fmt: skip
    print(table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    ok = all(r["IDF1"] >= 0.85 for r in rows if r["scene"] in CLEAN) and all(
        v == 0 for r in rows if r["scene"] == "cross" for v in r["count_errors"].values()
    )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
