"""Realtime cameras beside lossless files on one engine: each stream's share of the frames
inferred against its max-min fair share, and the cameras' latency in batch times.

    python scripts/bench_mixed.py                         # 1 camera + 1 file, one run
    python scripts/bench_mixed.py --cameras 2 --files 2   # N cameras + M files
    python scripts/bench_mixed.py --two-runs              # cameras in one run, files in another

The cameras are 15 fps ``synthetic://`` streams in ``mode: realtime``; the files are H.264
clips (``vsa.tools.make_clip``) read losslessly, long enough to outlast the window. After
``--warmup`` s, the frames whose result came back in the next ``--seconds`` are counted per
stream from the JSONL files (result time = ``capture_time`` + ``latency_ms``). The fair share
is max-min (water-filling) over what the engine inferred in that window: a camera asks for
at most its frame rate, a file for everything; across runs the share is per run first
(``--two-runs``), then per stream within a run. Target: every stream >= 0.9 of its share.
Latency in batch times: a camera's capture-to-result time over the median model time of a
batch (``infer_ms``). ``run_mixed`` is what ``scripts/bench.py`` calls, on its Ray session.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

CAMERA_FPS = 15.0
TARGET = 0.9


def fair_shares(
    demand: dict[str, float], runs: dict[str, str], capacity: float
) -> dict[str, float]:
    """Max-min per run first (a run asks for the sum of its streams), then within each run."""
    from vsa.batching import max_min_shares

    by_run: dict[str, dict[str, float]] = {}
    for stream, run in runs.items():
        by_run.setdefault(run, {})[stream] = demand[stream]
    run_share = max_min_shares({r: sum(d.values()) for r, d in by_run.items()}, capacity)
    shares: dict[str, float] = {}
    for run, streams in by_run.items():
        shares.update(max_min_shares(streams, run_share[run]))
    return shares


def _spec(name: str, out: Path, sources: list[dict[str, Any]], batch: int) -> Any:
    from vsa.config import RunSpec

    return RunSpec.model_validate(
        {
            "name": name,
            "output_dir": str(out),
            "sources": sources,
            "model": {"name": "builtin", "device": "cpu"},
            "batching": {"max_batch_size": batch, "max_wait_ms": 20},
            "sinks": [{"type": "jsonl"}],
        }
    )


def run_mixed(
    cameras: int = 1,
    files: int = 1,
    two_runs: bool = False,
    seconds: float = 30.0,
    warmup: float = 8.0,
    size: tuple[int, int] = (640, 360),
    folder: Path | None = None,
) -> dict[str, Any]:
    """One mixed case on the connected Ray cluster; returns per-stream rows and the verdict."""
    from vsa.client import Client
    from vsa.tools.make_clip import make_clip

    folder = folder or Path(tempfile.mkdtemp(prefix="bench-mixed-"))
    width, height = size
    frames = int((warmup + seconds + 30) * 25)  # outlasts the window at any speed seen here
    clip = folder / f"file_{width}x{height}_{frames}.mp4"
    if not clip.exists():
        make_clip(clip, seed=7, width=width, height=height, fps=25.0, frames=frames)
    cams = [
        {
            "id": f"cam{i}",
            "uri": f"synthetic://shapes?seed={i}&fps={CAMERA_FPS:g}&width={width}&height={height}",
            "mode": "realtime",
        }
        for i in range(cameras)
    ]
    lossless = [{"id": f"file{i}", "uri": str(clip), "mode": "lossless"} for i in range(files)]
    batch = 8
    outs = {}
    if two_runs:
        plan = [("live", cams), ("batch", lossless)]
    else:
        plan = [("mixed", cams + lossless)]
    client = Client()
    run_ids = []
    runs: dict[str, str] = {}
    for name, sources in plan:
        out = folder / name
        outs[name] = out
        spec = _spec(f"bench-mixed-{name}", out, sources, batch)
        run_ids.append(client.submit(spec, overwrite=True)["run_id"])
        runs.update({s["id"]: name for s in sources})
    try:
        time.sleep(warmup)
        t0 = time.time()
        time.sleep(seconds)
        t1 = time.time()
    finally:
        for run_id in run_ids:
            client.stop(run_id)
    served: dict[str, int] = {}
    latency: dict[str, list[float]] = {}
    infer: list[float] = []
    for stream, run in runs.items():
        n, lat = 0, []
        path = outs[run] / f"{stream}.jsonl"
        for line in path.read_text().splitlines():
            r = json.loads(line)
            done = r["capture_time"] + r["latency_ms"] / 1000
            if t0 <= done <= t1:
                n += 1
                lat.append(r["latency_ms"])
                infer.append(r["infer_ms"])
        served[stream], latency[stream] = n, sorted(lat)
    window = t1 - t0
    total = sum(served.values())
    demand = {s: (CAMERA_FPS * window if s.startswith("cam") else math.inf) for s in runs}
    shares = fair_shares(demand, runs, total)
    batch_ms = statistics.median(infer) if infer else float("nan")
    rows = []
    for stream in runs:
        lat = latency[stream]
        row = {
            "stream": stream,
            "run": runs[stream],
            "fps": round(served[stream] / window, 2),
            "share": round(served[stream] / total, 3) if total else 0.0,
            "fair_share": round(shares[stream] / total, 3) if total else 0.0,
            "ratio": round(served[stream] / shares[stream], 3) if shares[stream] else None,
        }
        if stream.startswith("cam") and lat:
            row["p50_batches"] = round(lat[len(lat) // 2] / batch_ms, 2)
            row["p99_batches"] = round(lat[min(len(lat) - 1, int(0.99 * len(lat)))] / batch_ms, 2)
            row["p50_ms"] = round(lat[len(lat) // 2])
        rows.append(row)
    worst = min((r["ratio"] for r in rows if r["ratio"] is not None), default=0.0)
    return {
        "cameras": cameras,
        "files": files,
        "two_runs": two_runs,
        "window_s": round(window, 1),
        "total_fps": round(total / window, 2),
        "batch_ms": round(batch_ms, 1),
        "rows": rows,
        "worst_ratio": worst,
        "meets_target": worst >= TARGET,
    }


def with_reference(result: dict[str, Any], **kw: Any) -> dict[str, Any]:
    """``result`` plus the same number of streams, all lossless files, on the same engine: the
    throughput the model gives without cameras, and the share of it the mixed case kept."""
    n = result["cameras"] + result["files"]
    alone = run_mixed(0, n, False, **kw)
    result["files_only_fps"] = alone["total_fps"]
    result["throughput_kept"] = round(result["total_fps"] / alone["total_fps"], 3)
    return result


CASES = [  # (cameras, files, two runs): the case, more of each, across runs
    (1, 1, False),
    (3, 2, False),
    (1, 1, True),
]


def delivery_cases(seconds: float = 25.0, warmup: float = 8.0) -> list[dict[str, Any]]:
    """The mixed cases of ``scripts/bench.py``, each with its files-only reference."""
    folder = Path(tempfile.mkdtemp(prefix="bench-mixed-"))
    out = []
    for cameras, files, two_runs in CASES:
        kw = {"seconds": seconds, "warmup": warmup, "folder": folder}
        result = with_reference(run_mixed(cameras, files, two_runs, **kw), **kw)
        print(table(result), flush=True)
        out.append(result)
    return out


def table(result: dict[str, Any]) -> str:
    head = (
        f"{result['cameras']} camera(s) + {result['files']} file(s)"
        f"{' in two runs' if result['two_runs'] else ''}: total {result['total_fps']} fps, "
        f"median batch {result['batch_ms']} ms, worst share/fair {result['worst_ratio']:.2f} "
        f"(target >= {TARGET}: {'met' if result['meets_target'] else 'NOT met'})"
        + (
            f"; files alone {result['files_only_fps']} fps, throughput kept "
            f"{result['throughput_kept']:.2f}"
            if "files_only_fps" in result
            else ""
        )
    )
    lines = [
        head,
        f"{'stream':8} {'run':6} {'fps':>6} {'share':>6} {'fair':>6} {'ratio':>6}  latency",
    ]
    for r in result["rows"]:
        lat = (
            f"p50 {r['p50_ms']} ms = {r['p50_batches']} batches, p99 {r['p99_batches']} batches"
            if "p50_ms" in r
            else ""
        )
        lines.append(
            f"{r['stream']:8} {r['run']:6} {r['fps']:6.2f} {r['share']:6.3f} "
            f"{r['fair_share']:6.3f} {r['ratio'] or 0:6.2f}  {lat}"
        )
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cameras", type=int, default=1)
    p.add_argument("--files", type=int, default=1)
    p.add_argument("--two-runs", action="store_true", help="cameras and files in two runs")
    p.add_argument("--seconds", type=float, default=30)
    p.add_argument("--warmup", type=float, default=8)
    p.add_argument("--reference", action="store_true", help="also run the files-only reference")
    args = p.parse_args()
    import ray

    # a private state directory: a benchmark's runs are never resumed by a later engine
    os.environ.setdefault("VSA_STATE_DIR", tempfile.mkdtemp(prefix="vsa-state-"))
    ray.init(address="local", include_dashboard=False, log_to_driver=False)
    try:
        result = run_mixed(args.cameras, args.files, args.two_runs, args.seconds, args.warmup)
        if args.reference:
            with_reference(result, seconds=args.seconds, warmup=args.warmup)
    finally:
        ray.shutdown()
    print(table(result))
    print(json.dumps(result))
    return 0 if result["meets_target"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
