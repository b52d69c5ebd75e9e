"""The whole restart cycle an upgrade or a host restart goes through, timed phase by phase.

Starts a Ray head of its own (``ray start --head``, its own ``RAY_TMPDIR``, port and state
directory: nothing else on the host is touched), four live RTSP cameras (``flaky_rtsp``,
GStreamer, 640x360 @ 15 fps) and an H.264 file, submits one run with the five streams, waits
until each one emits, then:

1. ``vsa drain``: new runs refused, every source stopped, files closed;
2. ``ray stop`` (for this head only: SIGTERM to its processes, as ``ray stop`` sends);
3. ``ray start --head``;
4. engine start: the first ``vsa status`` creates the controller, which resumes the run;
5. every stream emits again (its JSONL grows past what it held at the drain).

Prints each phase's seconds and the total (target: under 30 s), then checks the file source
is lossless across the restart (every frame number in its JSONL exactly once, no gap) and
stops the run. Needs the Debian packages listed in the README (the RTSP server).

    python scripts/restart_cycle.py [--cameras 4] [--size 640x360] [--fps 15]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.local_head import LocalHead, frames  # noqa: E402
from tests.rtsp_server import RtspServer, available  # noqa: E402

TARGET_S = 30.0


def until(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            sys.exit(f"restart_cycle: timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cameras", type=int, default=4)
    ap.add_argument("--size", default="640x360")
    ap.add_argument("--fps", type=int, default=15)
    args = ap.parse_args()
    why = available()
    if why:
        sys.exit(f"restart_cycle: the RTSP test server cannot run here: {why}")
    from vsa.tools.make_clip import make_clip

    work = Path(tempfile.mkdtemp(prefix="vsa-restart-"))
    out = work / "out"
    w, h = (int(v) for v in args.size.split("x"))
    clip = make_clip(work / "clip.mp4", seed=3, width=w, height=h, fps=25, frames=3000)
    cams = [f"cam{k + 1}={args.size}@{args.fps}" for k in range(args.cameras)]
    head = LocalHead(work / "state")
    phases: dict[str, float] = {}
    with RtspServer(cameras=cams) as server:
        head.start()
        try:
            sources = [
                {"id": f"cam{k + 1}", "uri": server.url(f"cam{k + 1}")} for k in range(args.cameras)
            ]
            sources.append({"id": "file", "uri": str(clip), "max_in_flight": 2})
            run_file = work / "run.yaml"
            run_file.write_text(
                json.dumps({"name": "restart-cycle", "output_dir": str(out), "sources": sources})
            )
            done = head.vsa("submit", str(run_file), "--json")
            if done.returncode != 0:
                sys.exit(f"restart_cycle: submit failed: {done.stderr}")
            run_id = json.loads(done.stdout)["run_id"]
            ids = [s["id"] for s in sources]

            def counts() -> dict[str, int]:
                return {sid: len(frames(out / f"{sid}.jsonl")) for sid in ids}

            until(lambda: min(counts().values()) >= 5, 300, "every stream to emit")
            time.sleep(3)  # streaming for a while, as in production

            t0 = time.monotonic()
            drained = head.vsa("drain", "--json")
            if drained.returncode != 0:
                sys.exit(f"restart_cycle: drain failed: {drained.stderr}")
            phases["vsa drain"] = time.monotonic() - t0
            at_drain = counts()
            t = time.monotonic()
            head.stop()
            phases["ray stop"] = time.monotonic() - t
            t = time.monotonic()
            head.start()
            phases["ray start --head"] = time.monotonic() - t
            t = time.monotonic()
            until(lambda: head.status(run_id), 300, "the engine to answer")
            phases["engine start (run resumed)"] = time.monotonic() - t
            t = time.monotonic()
            back: dict[str, float] = {}

            def every_stream_back() -> bool:
                now = counts()
                for sid in ids:
                    if sid not in back and now[sid] > at_drain[sid]:
                        back[sid] = time.monotonic() - t0
                return len(back) == len(ids)

            until(every_stream_back, 300, "every stream to emit again")
            phases["every stream emits again"] = time.monotonic() - t
            total = time.monotonic() - t0
            status = head.status(run_id) or {}
            events = [e for e in status.get("events", []) if e["event"] == "recovered"]
            stopped = head.vsa("stop", run_id, "--json")
            file_frames = frames(out / "file.jsonl")
        finally:
            head.close()

    print(f"{args.cameras} RTSP cameras {args.size}@{args.fps} + 1 H.264 file, one run")
    print(f"{'phase':<30} {'seconds':>8}")
    for name, seconds in phases.items():
        print(f"{name:<30} {seconds:8.1f}")
    print(f"{'drain -> every stream emits':<30} {total:8.1f}   (target < {TARGET_S:.0f} s)")
    print("streams back after the drain started (s): " + ", ".join(
        f"{sid} {back[sid]:.1f}" for sid in ids
    ))  # fmt: skip
    if events:
        print(f"the run's event: {events[-1]}")
    lossless = file_frames == list(range(len(file_frames)))
    print(
        f"file source: {len(file_frames)} frames in its JSONL, "
        + ("each exactly once, no gap" if lossless else "MISSING OR DUPLICATED frames")
    )
    print(f"stop after the cycle: {'ok' if stopped.returncode == 0 else stopped.stderr}")
    if not lossless or total >= TARGET_S:
        sys.exit(1)


if __name__ == "__main__":
    main()
