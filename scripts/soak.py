"""Soak: realtime streams that overload the engine for a long time; is anything growing?

Runs ``--streams`` realtime synthetic cameras (default 8 x 640x360 @ 30 fps, far more than a
small host infers) for ``--minutes`` on a local Ray cluster and samples every ``--every``
seconds: RSS of every actor process (controller, inference, sources), the object store's
use, and the p99 capture-to-result latency of each stream. At the end it compares the
first and the last third of the samples: flat means the last third is within a few percent
of the first (or a few MiB), not growing. Prints a short report (Markdown) and writes it to
``--report``.

    python scripts/soak.py [--minutes 10] [--streams 8] [--report docs/soak-report.md]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import tempfile
import time
from pathlib import Path


def object_store_mib() -> float:
    from ray._private.internal_api import memory_summary

    text = memory_summary(stats_only=True)
    m = re.search(r"Plasma memory usage (\d+) MiB", text)
    return float(m.group(1)) if m else float("nan")


def actor_pids() -> dict[str, int]:
    from ray.util.state import list_actors

    out = {}
    for a in list_actors(filters=[("state", "=", "ALIVE")], limit=1000):
        kind = {"Controller": "controller", "InferenceActor": "inference"}.get(a.class_name)
        out[a.name or a.actor_id] = (kind or "source", a.pid)
    return out


def rss_mib(pid: int) -> float:
    """Resident memory of a process, from /proc (Linux)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--streams", type=int, default=8)
    ap.add_argument("--fps", type=int, default=30)
    ap.add_argument("--size", default="640x360")
    ap.add_argument("--every", type=float, default=15.0)
    ap.add_argument("--report", default=None)
    args = ap.parse_args()

    import ray

    from vsa.client import Client
    from vsa.config import parse_run

    # a private state directory: a benchmark's runs are never resumed by a later engine
    os.environ.setdefault("VSA_STATE_DIR", tempfile.mkdtemp(prefix="vsa-state-"))
    ray.init(address="local", namespace="vsa", log_to_driver=False)
    client = Client()
    w, h = args.size.split("x")
    with tempfile.TemporaryDirectory() as out:
        spec = parse_run(
            {
                "name": "soak",
                "output_dir": out,
                "sources": [
                    {
                        "id": f"cam{k}",
                        "uri": f"synthetic://shapes?seed={k}&fps={args.fps}&width={w}&height={h}",
                        "mode": "realtime",
                        "max_age_ms": 1000,
                    }
                    for k in range(args.streams)
                ],
                "degradation": {"window_s": args.every},
                "sinks": [{"type": "jsonl"}],  # no video: the soak is about the engine
            }
        )
        run_id = client.submit(spec)["run_id"]
        start = time.monotonic()
        samples = []
        while time.monotonic() - start < args.minutes * 60:
            time.sleep(args.every)
            run = client.run(run_id)
            pids = actor_pids()
            rss: dict[str, list[float]] = {}
            for kind, pid in pids.values():
                rss.setdefault(kind, []).append(rss_mib(pid))
            p99 = [s.latency_ms.p99 for s in run.sources if s.latency_ms.p99]
            sample = {
                "t": time.monotonic() - start,
                "state": run.state.value,
                "rss_controller": sum(rss.get("controller", [0])),
                "rss_inference": sum(rss.get("inference", [0])),
                "rss_source_max": max(rss.get("source", [0])),
                "store_mib": object_store_mib(),
                "p99_ms_max": max(p99) if p99 else float("nan"),
                "emitted": run.frames_emitted,
                "decoded": run.frames_decoded,
            }
            samples.append(sample)
            print(
                f"t={sample['t']:6.0f}s {sample['state']:<8} rss ctl {sample['rss_controller']:6.0f} "
                f"inf {sample['rss_inference']:6.0f} src(max) {sample['rss_source_max']:6.0f} MiB "
                f"store {sample['store_mib']:5.0f} MiB p99 {sample['p99_ms_max']:6.0f} ms "
                f"emitted {sample['emitted']}",
                flush=True,
            )
        final = client.stop(run_id)

    third = max(1, len(samples) // 3)
    first, last = samples[:third], samples[-third:]
    lines = [
        f"# Soak report ({time.strftime('%Y-%m-%d')})",
        "",
        f"`python scripts/soak.py --minutes {args.minutes:g} --streams {args.streams}`: "
        f"{args.streams} realtime synthetic streams, {args.size} @ {args.fps} fps, "
        f"{len(samples)} samples every {args.every:g} s, JSONL sink only.",
        "",
        "| metric | first third (mean) | last third (mean) | change |",
        "|---|---|---|---|",
    ]
    for key, unit in (
        ("rss_controller", "MiB"),
        ("rss_inference", "MiB"),
        ("rss_source_max", "MiB"),
        ("store_mib", "MiB"),
        ("p99_ms_max", "ms"),
    ):
        a = statistics.fmean(s[key] for s in first)
        b = statistics.fmean(s[key] for s in last)
        change = f"{(b - a) / a:+.1%}" if a else f"{b - a:+.1f} {unit}"
        lines.append(f"| {key} | {a:.1f} {unit} | {b:.1f} {unit} | {change} |")
    secs = samples[-1]["t"]
    emitted, decoded, drops = final.frames_emitted, final.frames_decoded, final.drops
    for s in final.sources:
        assert s.frames_decoded == s.frames_emitted + sum(s.drops.values()), s
    lines += [
        "",
        f"Frames: {decoded} decoded, {emitted} emitted ({emitted / secs:.1f}/s), drops {drops}; "
        "decoded == emitted + drops for every stream.",
        f"Run state at the end: {samples[-1]['state']}.",
    ]
    report = "\n".join(lines) + "\n"
    print(report)
    if args.report:
        Path(args.report).write_text(report)
    ray.shutdown()


if __name__ == "__main__":
    main()
