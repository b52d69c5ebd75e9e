"""Where the engine's CPU goes: CPU per emitted frame by process and by thread name.

Starts a local Ray cluster, submits one run of N synthetic streams (640x360, 15 fps rendered as
fast as the engine takes them, or paced with ``--realtime``), waits ``--warmup-s``, then reads
every thread's CPU time from ``/proc`` twice, ``--seconds`` apart, and divides by the frames
emitted in between. Ray names its native threads (``worker.io``, ``client.poll0``, ...); the
actors' Python threads and the library threads they start (x264, FFmpeg, torch) carry the
actor's task name (``ray::source:...``, ``ray::IDLE`` in the inference actor). Linux only.

    python scripts/cpu_by_thread.py                       # pass-through model, N = 8, lossless
    python scripts/cpu_by_thread.py --model builtin --n 4 --realtime
    python scripts/cpu_by_thread.py --realtime --fps 1    # what the engine costs per second
                                                          # whatever its frame rate (fixed cost)
    VSA_TRANSPORT=ray python scripts/cpu_by_thread.py     # frames through Ray's object store
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def threads_cpu() -> collections.Counter:
    """CPU seconds so far per (process name, thread name) of Ray's and the engine's processes."""
    tick = os.sysconf("SC_CLK_TCK")
    out: collections.Counter = collections.Counter()
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
        except OSError:
            continue
        name = cmd.rsplit("/", 1)[-1][:30]
        if not ("ray" in cmd or "gcs_server" in cmd or "raylet" in cmd):
            continue
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                comm = Path(f"/proc/{pid}/task/{tid}/comm").read_text().strip()
                stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            out[(name, comm)] += (int(stat[11]) + int(stat[12])) / tick  # utime + stime
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model", default="passthrough", choices=("passthrough", "builtin", "yolo")
    )
    parser.add_argument("--n", type=int, default=8, help="streams")
    parser.add_argument("--realtime", action="store_true", help="paced at --fps, realtime mode")
    parser.add_argument("--fps", type=float, default=15.0, help="each stream's frame rate")
    parser.add_argument("--warmup-s", type=float, default=25.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()

    import bench
    import ray

    from vsa import client as vsa_client
    from vsa.config import parse_run
    from vsa.settings import transport

    work = Path(tempfile.mkdtemp(prefix="vsa-cpu-"))
    models = bench.build_models(work / "models")
    # a private state directory: a benchmark's runs are never resumed by a later engine
    os.environ.setdefault("VSA_STATE_DIR", tempfile.mkdtemp(prefix="vsa-state-"))
    ray.init(address="local", include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    client = vsa_client.Client()
    mode, pace = ("realtime", 1) if args.realtime else ("lossless", 0)
    spec = parse_run(
        {
            "name": "cpu-by-thread",
            "output_dir": str(work / "out"),
            "model": bench.model_spec(args.model, models),
            "batching": {"max_batch_size": 8, "max_wait_ms": 20},
            "sources": [
                {
                    "id": f"s{i}",
                    "mode": mode,
                    "uri": f"synthetic://shapes?seed={i}&width=640&height=360&fps={args.fps:g}"
                    f"&frames=1000000&pace={pace}",
                }
                for i in range(args.n)
            ],
            "sinks": [{"type": "video"}, {"type": "jsonl"}],
        }
    )
    run_id = client.submit(spec, overwrite=True)["run_id"]
    try:
        time.sleep(args.warmup_s)  # past model load, imports and the split's first measurement

        def emitted() -> int:
            return sum(s.frames_emitted for s in client.run(run_id).sources)

        e0, c0, t0 = emitted(), threads_cpu(), time.monotonic()
        time.sleep(args.seconds)
        e1, c1, elapsed = emitted(), threads_cpu(), time.monotonic() - t0
    finally:
        client.stop(run_id, timeout_s=30)
        ray.shutdown()
    frames = max(e1 - e0, 1)
    print(
        f"{args.model}, N = {args.n}, {mode}, VSA_TRANSPORT={transport()}: "
        f"{frames / elapsed:.1f} frames/s over {elapsed:.0f} s; CPU ms per emitted frame "
        "and cores (CPU seconds per second)"
    )
    per_process: collections.Counter = collections.Counter()
    for key, total in c1.items():
        per_process[key[0]] += total - c0.get(key, 0.0)

    def row(cpu: float) -> str:
        return f"{1000 * cpu / frames:9.2f} ms {cpu / elapsed:7.3f}"

    print(f"  {'all processes':44} {row(sum(per_process.values()))}")
    for name, cpu in per_process.most_common():
        if cpu * 1000 / frames >= 0.05:
            print(f"  {name:44} {row(cpu)}")
    print("  by thread name:")
    for key in sorted(c1, key=lambda k: c0.get(k, 0.0) - c1[k]):
        cpu = c1[key] - c0.get(key, 0.0)
        if cpu * 1000 / frames >= 0.05:
            print(f"    {key[0]:24} {key[1]:18} {row(cpu)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
