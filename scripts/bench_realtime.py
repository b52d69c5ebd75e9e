"""N realtime synthetic cameras through the engine: total and per-camera fps, latency, batches.

    python scripts/bench_realtime.py                      # 4 cameras 640x360@15, 30 s
    python scripts/bench_realtime.py --in-flight 8        # the old realtime default
    VSA_TORCH_THREADS=1 python scripts/bench_realtime.py  # one model thread

Starts its own local Ray cluster, waits ``--warmup`` seconds, then counts the frames captured
in the next ``--seconds`` from the JSONL files (docs/performance.md, "Realtime cameras").
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import ray

from vsa.client import Client
from vsa.config import RunSpec


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cameras", type=int, default=4)
    p.add_argument("--fps", type=float, default=15)
    p.add_argument("--size", default="640x360")
    p.add_argument("--seconds", type=float, default=30)
    p.add_argument("--warmup", type=float, default=8)
    p.add_argument("--in-flight", type=int, help="max_in_flight per camera (default: the engine's)")
    p.add_argument("--max-batch", type=int, help="batching.max_batch_size (default: --cameras)")
    p.add_argument("--max-wait-ms", type=float, default=20)
    args = p.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    out = Path(tempfile.mkdtemp(prefix="bench-realtime-"))
    sources = []
    for i in range(args.cameras):
        uri = f"synthetic://shapes?seed={i}&fps={args.fps:g}&width={width}&height={height}"
        source = {"id": f"c{i}", "uri": uri, "mode": "realtime"}
        if args.in_flight:
            source["max_in_flight"] = args.in_flight
        sources.append(source)
    spec = RunSpec.model_validate(
        {
            "name": "bench-realtime",
            "output_dir": str(out),
            "sources": sources,
            "model": {"name": "builtin", "device": "cpu"},
            "batching": {
                "max_batch_size": args.max_batch or args.cameras,
                "max_wait_ms": args.max_wait_ms,
            },
            "sinks": [{"type": "jsonl"}],
        }
    )
    # a private state directory: a benchmark's runs are never resumed by a later engine
    os.environ.setdefault("VSA_STATE_DIR", tempfile.mkdtemp(prefix="vsa-state-"))
    ray.init(address="local", include_dashboard=False, log_to_driver=False)
    try:
        client = Client()
        run_id = client.submit(spec, overwrite=True)["run_id"]
        time.sleep(args.warmup)
        t0 = time.time()
        time.sleep(args.seconds)
        t1 = time.time()
        status = client.stop(run_id)
    finally:
        ray.shutdown()
    latency: list[float] = []
    sizes: list[int] = []
    batches: set[int] = set()
    infer: list[float] = []
    stages: dict[str, list[float]] = {"decode_ms": [], "to_engine_ms": [], "queue_ms": []}
    rest: list[float] = []
    per: list[int] = []
    for i in range(args.cameras):
        n = 0
        for line in (out / f"c{i}.jsonl").read_text().splitlines():
            r = json.loads(line)
            if t0 <= r["capture_time"] <= t1:
                n += 1
                latency.append(r["latency_ms"])
                sizes.append(r["batch_size"])
                batches.add(r["batch"])
                infer.append(r["infer_ms"])
                for key, values in stages.items():
                    if r.get(key) is not None:
                        values.append(r[key])
                if r.get("to_engine_ms") is not None and r.get("queue_ms") is not None:
                    rest.append(r["latency_ms"] - r["to_engine_ms"] - r["queue_ms"] - r["infer_ms"])
        per.append(n)
    latency.sort()

    def q(pct: float) -> float:
        return latency[min(len(latency) - 1, int(pct / 100 * len(latency)))]

    window = t1 - t0
    fps = [n / window for n in per]
    busy = len(batches) / window * statistics.median(infer) / 1000
    print(
        f"{args.cameras} cameras {args.size}@{args.fps:g}, in flight "
        f"{args.in_flight or 'default'}: total {sum(fps):.1f} fps, per camera "
        f"{min(fps):.1f}-{max(fps):.1f}, latency p50/p95/p99 {q(50):.0f}/{q(95):.0f}/{q(99):.0f} ms, "
        f"mean batch {statistics.mean(sizes):.2f}, model busy {busy:.0%}, drops {status.drops}"
    )
    median = {k: statistics.median(v) for k, v in stages.items() if v}
    print(
        "median ms per frame: "
        + ", ".join(f"{k[:-3]} {v:.1f}" for k, v in median.items())
        + f", batch (model) {statistics.median(infer):.1f}"
        + (f", back + sinks {statistics.median(rest):.1f}" if rest else "")
    )


if __name__ == "__main__":
    main()
