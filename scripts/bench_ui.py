"""What watching costs: the pipeline's frames per second with nobody on the live page, then
with 20 viewers at once, in the same session.

    python scripts/bench_ui.py [--viewers 20] [--seconds 30] [--streams 2]

Starts a local Ray cluster and the live page (``vsa.ui``), submits one run of realtime
synthetic cameras (15 fps, 640x360, built-in model) and measures the frames emitted per second
over ``--seconds`` without viewers, then with ``--viewers`` threads that each do what the page
does: the status every second and each stream's picture every 0.5 s. Prints both rates and the
change (target: under 5 %). The pictures are made once per stream whatever the number of
viewers (at most 5 a second), so viewers cost the engine little; the page's own HTTP server
and the Ray calls for pictures run in this process, not the engine's.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def emitted(client, run_id: str) -> int:
    return sum(s.frames_emitted for s in client.run(run_id).sources)


def rate(client, run_id: str, seconds: float) -> float:
    start, t0 = emitted(client, run_id), time.monotonic()
    time.sleep(seconds)
    return (emitted(client, run_id) - start) / (time.monotonic() - t0)


def viewer(url: str, keys: list[str], stop: threading.Event, stats: dict) -> None:
    next_status = 0.0
    while not stop.is_set():
        now = time.monotonic()
        try:
            if now >= next_status:
                urllib.request.urlopen(f"{url}api/runs", timeout=10).read()
                next_status = now + 1.0
            for key in keys:
                with urllib.request.urlopen(f"{url}frame/{key}.jpg", timeout=10) as r:
                    stats["bytes"] += len(r.read())
                    stats["pictures"] += r.status == 200
        except Exception:  # noqa: BLE001 - counted, the viewer goes on
            stats["errors"] += 1
        stop.wait(0.5)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--viewers", type=int, default=20)
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--streams", type=int, default=2)
    p.add_argument("--json", help="also write the numbers here")
    args = p.parse_args()

    import ray

    from vsa.client import Client
    from vsa.config import parse_run
    from vsa.ui import UiServer, client_picture

    os.environ.setdefault("VSA_STATE_DIR", tempfile.mkdtemp(prefix="vsa-state-"))
    out = Path(tempfile.mkdtemp(prefix="bench-ui-"))
    ray.init(address="local", include_dashboard=False, log_to_driver=False)
    client = Client()
    uri = "synthetic://shapes?seed={}&fps=15&width=640&height=360"
    sources = [
        {"id": f"cam{i}", "uri": uri.format(i), "mode": "realtime"} for i in range(args.streams)
    ]
    spec = parse_run({"name": "bench-ui", "output_dir": str(out), "sources": sources,
                      "sinks": [{"type": "jsonl"}]})  # fmt: skip
    run_id = client.submit(spec)["run_id"]
    server = UiServer(client.status_dicts, client_picture(client), port=0)
    url = server.start()
    stop = threading.Event()
    try:
        while any(s.fps == 0 for s in client.run(run_id).sources):
            time.sleep(0.5)
        time.sleep(5)  # past the start
        alone = rate(client, run_id, args.seconds)
        stats = {"bytes": 0, "pictures": 0, "errors": 0}
        keys = [f"{run_id}/{s['id']}" for s in sources]
        threads = [
            threading.Thread(target=viewer, args=(url, keys, stop, stats), daemon=True)
            for _ in range(args.viewers)
        ]
        for t in threads:
            t.start()
        time.sleep(3)  # the streams are watched from now on
        watched = rate(client, run_id, args.seconds)
    finally:
        stop.set()
        server.close()
        client.stop(run_id)
        ray.shutdown()
    change = (watched - alone) / alone if alone else float("nan")
    report = {
        "streams": args.streams,
        "viewers": args.viewers,
        "fps_without_viewers": round(alone, 2),
        "fps_with_viewers": round(watched, 2),
        "change": round(change, 4),
        "pictures_served": stats["pictures"],
        "errors": stats["errors"],
        "target": "|change| < 0.05",
    }
    print(
        f"{args.streams} realtime 15 fps cameras, built-in model: {alone:.2f} fps emitted "
        f"without viewers, {watched:.2f} with {args.viewers} viewers ({change:+.1%}); "
        f"{stats['pictures']} pictures served, {stats['errors']} errors"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    return 0 if abs(change) < 0.05 else 1


if __name__ == "__main__":
    raise SystemExit(main())
