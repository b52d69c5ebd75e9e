"""Does one camera's outage slow the other streams? Measured against a real RTSP server.

Runs N RTSP cameras (``vsa/tools/flaky_rtsp.py``, GStreamer) plus synthetic cameras through
the engine on a local Ray cluster, in three phases of ``--phase`` seconds each:

1. baseline: everything streams;
2. outage: camera ``cam1`` is dropped (its mount answers 404; vsa retries it by policy);
3. recovery: ``cam1`` is restored; the time until it streams again is reported.

Prints the frame rate of every other stream in phases 1 and 2 and their ratio (1.00 = not
slowed at all), measured in the same run. Needs the Debian packages listed in the README.

    python scripts/bench_outage.py [--cameras 3] [--synthetic 1] [--fps 5] [--phase 20]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.rtsp_server import RtspServer, available  # noqa: E402
from vsa.config import parse_run  # noqa: E402


def emitted(client, run_id: str) -> dict[str, tuple[int, str]]:
    run = client.run(run_id)
    return {s.id: (s.frames_emitted, s.state.value) for s in run.sources}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cameras", type=int, default=3)
    ap.add_argument("--synthetic", type=int, default=1)
    ap.add_argument("--fps", type=int, default=5)
    ap.add_argument("--size", default="160x120")
    ap.add_argument("--phase", type=float, default=20.0)
    args = ap.parse_args()
    why = available()
    if why:
        sys.exit(f"bench_outage: the RTSP test server cannot run here: {why}")

    import ray

    from vsa.client import Client

    # a private state directory: a benchmark's runs are never resumed by a later engine
    os.environ.setdefault("VSA_STATE_DIR", tempfile.mkdtemp(prefix="vsa-state-"))
    ray.init(address="local", namespace="vsa", include_dashboard=False, log_to_driver=False)
    client = Client()
    w, h = args.size.split("x")
    cams = [f"cam{k + 1}={args.size}@{args.fps}" for k in range(args.cameras)]
    with RtspServer(cameras=cams) as server, tempfile.TemporaryDirectory() as out:
        sources = [
            {"id": f"cam{k + 1}", "uri": server.url(f"cam{k + 1}")} for k in range(args.cameras)
        ] + [
            {
                "id": f"syn{k + 1}",
                "uri": f"synthetic://shapes?seed={k}&fps={args.fps}&width={w}&height={h}",
            }
            for k in range(args.synthetic)
        ]
        spec = parse_run(
            {
                "name": "bench-outage",
                "output_dir": out,
                "sources": sources,
                "reconnect": {"initial_s": 1, "max_s": 5},
            }
        )
        run_id = client.submit(spec)["run_id"]
        deadline = time.monotonic() + 120
        while any(state != "STREAMING" for _, state in emitted(client, run_id).values()):
            if time.monotonic() > deadline:
                sys.exit(f"not every stream came up: {emitted(client, run_id)}")
            time.sleep(0.5)
        time.sleep(3)  # past the first second of each stream

        def measure() -> dict[str, float]:
            a, t0 = emitted(client, run_id), time.monotonic()
            time.sleep(args.phase)
            b, t1 = emitted(client, run_id), time.monotonic()
            return {sid: (b[sid][0] - a[sid][0]) / (t1 - t0) for sid in a}

        base = measure()
        server.command("drop cam1")
        down = measure()
        state = emitted(client, run_id)["cam1"][1]
        server.command("restore cam1")
        t0 = time.monotonic()
        while emitted(client, run_id)["cam1"][1] != "STREAMING":
            if time.monotonic() - t0 > 120:
                sys.exit("cam1 did not come back within 120 s")
            time.sleep(0.1)
        back = time.monotonic() - t0
        final = client.stop(run_id)

    print(f"{args.cameras} RTSP cameras + {args.synthetic} synthetic at {args.size}@{args.fps}")
    print(f"phase {args.phase:.0f} s; cam1 dropped in phase 2 (its state then: {state})")
    print(f"{'stream':<8} {'baseline fps':>12} {'outage fps':>11} {'ratio':>6}")
    for sid in base:
        if sid == "cam1":
            print(f"{sid:<8} {base[sid]:12.2f} {down[sid]:11.2f}      -")
            continue
        ratio = down[sid] / base[sid] if base[sid] else float("nan")
        print(f"{sid:<8} {base[sid]:12.2f} {down[sid]:11.2f} {ratio:6.2f}")
    others = [down[s] / base[s] for s in base if s != "cam1" and base[s]]
    print(f"worst ratio of the other streams: {min(others):.3f}")
    print(f"cam1 streaming again {back:.1f} s after restore (reconnect policy max_s 5)")
    drops = {s.id: s.drops for s in final.sources if s.drops}
    print(f"drops: {drops or 'none'}")
    ray.shutdown()


if __name__ == "__main__":
    main()
