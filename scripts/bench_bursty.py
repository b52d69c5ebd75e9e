"""A bursty live stream against the same stream delivered smoothly (issue 24 item 2).

HLS, DASH and many cameras behind a proxy deliver a second of video at once. Realtime delivery
releases those frames at the pace of their timestamps (``jitter_buffer_ms``), so the engine
processes as many frames of a bursty stream as of a smooth one. Each row is one realtime run
of one 15 fps stream with the built-in model, one after the other on one local Ray cluster:

- ``smooth``: ``synthetic://shapes?...`` delivering each frame when it is due;
- ``bursty``: the same stream, ``burst=<fps x burst_s>``: a second of frames at once;
- ``ts`` and ``hls`` (``--hls``, need the ffmpeg CLI): ffmpeg ``-re`` encoding the same live
  stream, served on 127.0.0.1 as MPEG-TS over HTTP (smooth: every packet when encoded) and as
  live HLS with ``burst_s`` segments (a thread of this process serves the files); the
  encoder loads the host as well, so the HLS row is compared with the TS row;
- ``bursty unpaced`` / ``hls unpaced`` (``--unpaced``): ``jitter_buffer_ms: 0``, the behaviour
  before pacing (the newest frame of each burst).

Frames captured in the ``--seconds`` after ``--warmup`` are counted from the JSONL files
(``capture_time``: for a bursty stream the burst's arrival), so ``fps`` is frames processed per
second of the stream; ``ratio`` is a row's fps over that of the same stream delivered
smoothly (``smooth``; for ``hls``: ``ts``); target for ``bursty``: >= 0.9.

    python scripts/bench_bursty.py                    # smooth + bursty, 640x360@15, 20 s each
    python scripts/bench_bursty.py --hls --unpaced    # + live HLS, + both without pacing

``run_bursty(...)`` returns the rows as a dict (for ``scripts/bench.py``); with ``client`` it
uses the caller's Ray session, else it starts its own cluster with a private ``VSA_STATE_DIR``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # `python scripts/bench_bursty.py` from anywhere: vsa imports
    sys.path.insert(0, str(REPO))

from vsa.tools.hls import live_hls, stop  # noqa: E402 - after the path above

TARGET_RATIO = 0.9


@contextlib.contextmanager
def live_ts(size: str, fps: float) -> Iterator[str]:
    """ffmpeg serving live MPEG-TS over HTTP on 127.0.0.1 (``-re``, every packet written at
    once): the same encoder load as ``live_hls``, delivered smoothly; one client. Yields its
    URL (the source retries until ffmpeg listens); ffmpeg is stopped on exit."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise RuntimeError("the ts row needs the ffmpeg CLI (apt install ffmpeg)")
    with socket.socket() as probe:  # a free port for ffmpeg to listen on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/live.ts"
    width, height = size.split("x")
    args = [ffmpeg, "-hide_banner", "-loglevel", "error", "-nostdin", "-re"]
    args += ["-f", "lavfi", "-i", f"testsrc2=size={width}x{height}:rate={fps:g}"]
    args += ["-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p"]
    args += ["-g", str(round(fps)), "-flush_packets", "1", "-f", "mpegts", "-listen", "1", url]
    writer = subprocess.Popen(args, stdout=subprocess.DEVNULL)
    try:
        time.sleep(1.0)
        yield url
    finally:
        stop(writer)


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(q / 100 * len(values)))]


def measure(
    client: Any,
    label: str,
    source: dict[str, Any],
    out: Path,
    warmup_s: float,
    seconds: float,
    tail_s: float,
) -> dict[str, Any]:
    """One realtime run of ``source``: frames captured in ``seconds`` after ``warmup_s``."""
    from vsa.config import parse_run

    spec = parse_run(
        {
            "name": f"bench-bursty-{label.replace(' ', '-')}",
            "output_dir": str(out),
            "sources": [{"id": "s", **source}],
            "model": {"name": "builtin", "device": "cpu"},
            "batching": {"max_batch_size": 1, "max_wait_ms": 5},
            "sinks": [{"type": "jsonl"}],
        }
    )
    run_id = client.submit(spec, overwrite=True)["run_id"]
    try:
        time.sleep(warmup_s)
        t0 = time.time()
        time.sleep(seconds)
        t1 = time.time()
        live = client.run(run_id).source("s")
        time.sleep(tail_s)  # frames captured by t1 and still held or in flight get processed
    finally:
        final = client.stop(run_id, timeout_s=30).source("s")
    records = [json.loads(line) for line in (out / "s.jsonl").read_text().splitlines()]
    kept = [r for r in records if t0 <= r["capture_time"] <= t1]
    latency = [r["latency_ms"] for r in kept]
    infer = [r["infer_ms"] for r in kept]
    frames = [r["frame"] for r in kept]
    gaps = [b - a for a, b in zip(frames, frames[1:], strict=False)]
    return {
        "label": label,
        "uri": source["uri"],
        "fps": round(len(kept) / (t1 - t0), 2),
        "frames": len(kept),
        "latency_p50_ms": _pct(latency, 50),
        "latency_p99_ms": _pct(latency, 99),
        "infer_ms": round(statistics.median(infer), 1) if infer else None,
        "max_gap": max(gaps, default=None),  # frames skipped at once, at most
        "arrival": live.arrival.to_dict(),
        "mode": final.mode,
        "drops": dict(final.drops),
        "frames_decoded": final.frames_decoded,
        "frames_emitted": final.frames_emitted,
    }


def run_bursty(
    client: Any = None,
    *,
    fps: float = 15.0,
    size: str = "640x360",
    burst_s: float = 1.0,
    seconds: float = 20.0,
    warmup_s: float = 6.0,
    hls: bool = False,
    unpaced: bool = False,
    out: Path | None = None,
) -> dict[str, Any]:
    """The rows (smooth, bursty, optionally hls and the unpaced ones) and the ratios of their
    fps to the smooth row's. ``client``: a connected ``vsa.client.Client`` (the caller's Ray
    session); None starts a local Ray cluster for the duration, with its own state dir."""
    if client is None:
        import ray

        from vsa.client import Client

        # a private state directory: a benchmark's runs are never resumed by a later engine
        os.environ.setdefault("VSA_STATE_DIR", tempfile.mkdtemp(prefix="vsa-state-"))
        ray.init(address="local", namespace="vsa", include_dashboard=False, log_to_driver=False)
        try:
            return run_bursty(
                Client(),
                fps=fps,
                size=size,
                burst_s=burst_s,
                seconds=seconds,
                warmup_s=warmup_s,
                hls=hls,
                unpaced=unpaced,
                out=out,
            )
        finally:
            ray.shutdown()
    out = out or Path(tempfile.mkdtemp(prefix="bench-bursty-"))
    width, height = (int(v) for v in size.split("x"))
    burst = max(1, round(fps * burst_s))
    base = f"synthetic://shapes?seed=3&fps={fps:g}&width={width}&height={height}"
    tail_s = burst_s + 1.5
    plan: list[tuple[str, dict[str, Any]]] = [
        ("smooth", {"uri": base, "mode": "realtime"}),
        ("bursty", {"uri": f"{base}&burst={burst}", "mode": "realtime"}),
    ]
    if unpaced:
        plan.append(
            ("bursty unpaced", {"uri": f"{base}&burst={burst}", "mode": "realtime", "jitter_buffer_ms": 0})
        )  # fmt: skip
    rows = []
    for k, (label, source) in enumerate(plan):
        rows.append(measure(client, label, source, out / f"r{k}", warmup_s, seconds, tail_s))
    if hls:  # the same ffmpeg encoder delivering smoothly (TS), then in segments (HLS)
        with live_ts(size, fps) as url:
            source = {"uri": url, "mode": "realtime"}
            rows.append(measure(client, "ts", source, out / "ts", warmup_s, seconds, tail_s))
        variants = [("hls", {})] + ([("hls unpaced", {"jitter_buffer_ms": 0})] if unpaced else [])
        with live_hls(out / "www", size, fps, burst_s) as url:
            for label, extra in variants:
                source = {"uri": url, "mode": "realtime", **extra}
                folder = out / label.replace(" ", "-")
                rows.append(measure(client, label, source, folder, warmup_s, seconds, tail_s))
    by_label = {r["label"]: r for r in rows}
    for row in rows:  # over the same stream delivered smoothly (HLS: the same encoder's TS)
        smooth = by_label["ts" if row["label"].startswith(("ts", "hls")) else "smooth"]["fps"]
        row["ratio"] = round(row["fps"] / smooth, 3) if smooth else None
    bursty = by_label["bursty"]
    return {
        "fps": fps,
        "size": size,
        "burst_s": burst_s,
        "seconds": seconds,
        "rows": rows,
        "ratio": bursty["ratio"],
        "hls_ratio": by_label["hls"]["ratio"] if hls else None,
        "target_ratio": TARGET_RATIO,
        "passed": bursty["ratio"] is not None and bursty["ratio"] >= TARGET_RATIO,
    }


def table(result: dict[str, Any]) -> str:
    def cell(v: Any) -> str:
        return "-" if v is None else f"{v:g}" if isinstance(v, float) else str(v)

    head = ["stream", "fps", "ratio", "p50 ms", "p99 ms", "infer ms", "max gap", "burst", "hold ms"]
    lines = [" | ".join(head), " | ".join("---" for _ in head)]
    for r in result["rows"]:
        arrival = r["arrival"]
        cells = [r["label"], r["fps"], r["ratio"], r["latency_p50_ms"], r["latency_p99_ms"]]
        cells += [r["infer_ms"], r["max_gap"], arrival.get("burst_frames"), arrival.get("hold_ms")]
        lines.append(" | ".join(cell(c) for c in cells))
    verdict = "PASS" if result["passed"] else "FAIL"
    hls = "" if result["hls_ratio"] is None else f", hls / ts = {cell(result['hls_ratio'])}"
    lines.append(
        f"\nbursty / smooth = {cell(result['ratio'])} (target >= {result['target_ratio']}): "
        f"{verdict}{hls}; {result['size']}@{result['fps']:g}, bursts of "
        f"{result['burst_s']:g} s, {result['seconds']:g} s per row"
    )
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--fps", type=float, default=15.0)
    p.add_argument("--size", default="640x360")
    p.add_argument("--burst-s", type=float, default=1.0, help="seconds of video per burst")
    p.add_argument("--seconds", type=float, default=20.0, help="measured per row")
    p.add_argument("--warmup", type=float, default=6.0, help="seconds before measuring")
    p.add_argument("--hls", action="store_true", help="a live HLS row (ffmpeg)")
    p.add_argument("--unpaced", action="store_true", help="rows with jitter_buffer_ms: 0")
    p.add_argument("--json", type=Path, help="write the result here")
    args = p.parse_args()
    result = run_bursty(
        fps=args.fps,
        size=args.size,
        burst_s=args.burst_s,
        seconds=args.seconds,
        warmup_s=args.warmup,
        hls=args.hls,
        unpaced=args.unpaced,
    )
    print(table(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
