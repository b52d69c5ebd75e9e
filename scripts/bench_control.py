"""What a change costs a running run: each runtime-control command's time, and the untouched
stream's frames through them, in the same session.

    python scripts/bench_control.py [--cycles 3] [--json FILE]

Starts a local Ray cluster and submits one run: ``ref``, a lossless synthetic camera (15 fps,
640x360, built-in model) that no command touches, beside ``cam``, a realtime one. Then, for
``--cycles`` rounds: ``vsa source add`` of a third camera (timed until it streams), a re-submit
that changes its ``fps`` (timed until its new actor streams), its removal, a re-submit that
swaps the inference engine (``batching.max_batch_size``), a pause and a resume (timed until
every source streams again). Prints the median seconds per command, ``ref``'s frame rate over
the changes against its rate before them, and the result of checking ``ref``'s JSONL frame by
frame: every frame once, in order, none dropped (the guarantee: a change never touches a source
it does not name; a pause does, and is timed here, not counted against ``ref``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

URI = "synthetic://shapes?seed={}&fps=15&width=640&height=360"


def until(check, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError("a condition did not hold in time")
        time.sleep(0.1)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cycles", type=int, default=3)
    p.add_argument("--json", help="also write the numbers here")
    args = p.parse_args()

    import ray

    from vsa.client import Client
    from vsa.config import parse_run

    os.environ.setdefault("VSA_STATE_DIR", tempfile.mkdtemp(prefix="vsa-state-"))
    out = Path(tempfile.mkdtemp(prefix="bench-control-"))
    ray.init(address="local", include_dashboard=False, log_to_driver=False)
    client = Client()

    def run_file(extra_fps: float | None = None, batch: int = 8, extra: bool = False) -> dict:
        sources = [
            {"id": "ref", "uri": URI.format(1), "mode": "lossless"},
            {"id": "cam", "uri": URI.format(2), "mode": "realtime"},
        ]
        if extra:
            sources.append({"id": "new", "uri": URI.format(3), "mode": "realtime"})
            if extra_fps:
                sources[-1]["fps"] = extra_fps
        return {
            "name": "bench-control",
            "output_dir": str(out),
            "sources": sources,
            "batching": {"max_batch_size": batch},
            "sinks": [{"type": "jsonl"}],
        }

    def source(sid: str):
        return client.run(run_id).source(sid)

    def streams(sid: str, restarts: int | None = None) -> bool:
        s = source(sid)
        return s.state.value == "STREAMING" and (restarts is None or s.restarts >= restarts)

    def ref_emitted() -> int:
        return source("ref").frames_emitted

    times: dict[str, list[float]] = {}

    def timed(name: str, command, ready=lambda: True) -> None:
        t0 = time.monotonic()
        command()
        until(ready)
        times.setdefault(name, []).append(time.monotonic() - t0)

    run_id = client.submit(parse_run(run_file()))["run_id"]
    try:
        until(lambda: streams("ref") and streams("cam"))
        time.sleep(3)  # past the start
        n0, t0 = ref_emitted(), time.monotonic()
        time.sleep(10)
        before = (ref_emitted() - n0) / (time.monotonic() - t0)
        n0, t0 = ref_emitted(), time.monotonic()
        batch = 8
        new = {"id": "new", "uri": URI.format(3), "mode": "realtime"}
        for _ in range(args.cycles):
            timed("source add", lambda: client.add_source(run_id, new), lambda: streams("new"))
            restarts = source("new").restarts + 1
            timed(
                "re-submit: one source's fps",
                lambda b=batch: client.submit(parse_run(run_file(5, b, extra=True))),
                lambda r=restarts: streams("new", r),
            )
            timed("source remove", lambda: client.remove_source(run_id, "new"))
            batch = 4 if batch == 8 else 8
            timed(
                "re-submit: engine swap",
                lambda b=batch: client.submit(parse_run(run_file(None, b))),
            )
            during = (ref_emitted() - n0) / (time.monotonic() - t0)
        final_changes = ref_emitted()
        timed("pause", lambda: client.pause(run_id))
        timed("resume", lambda: client.resume(run_id), lambda: streams("ref") and streams("cam"))
    finally:
        final = client.stop(run_id).to_dict()
        ray.shutdown()
    ref = next(s for s in final["sources"] if s["id"] == "ref")
    frames = [json.loads(line)["frame"] for line in (out / "ref.jsonl").read_text().splitlines()]
    whole = frames == list(range(len(frames))) and len(frames) == ref["frames_emitted"]
    medians = {k: round(statistics.median(v), 2) for k, v in times.items()}
    report = {
        "cycles": args.cycles,
        "seconds": medians,
        "ref_fps_before": round(before, 2),
        "ref_fps_during_changes": round(during, 2),
        "ratio": round(during / before, 3) if before else None,
        "ref_frames_through_changes": final_changes,
        "ref_frames": len(frames),
        "ref_drops": ref["drops"],
        "ref_whole": whole,
    }
    for name, seconds in medians.items():
        print(f"{name:30s} {seconds:6.2f} s (median of {len(times[name])})")
    print(
        f"ref (untouched, lossless): {before:.2f} fps before, {during:.2f} during the changes "
        f"({during / before:.2f}x); {len(frames)} frames, every one once in order: {whole}; "
        f"drops {ref['drops'] or 'none'}"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    return 0 if whole else 1


if __name__ == "__main__":
    raise SystemExit(main())
