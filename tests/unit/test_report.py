"""The end-of-run report: totals, latency percentiles, transitions, and a real PNG chart."""

from __future__ import annotations

import json
from pathlib import Path

from vsa.flow import LatencyHistogram
from vsa.report import build_report, write_report


def source(sid: str, latencies_ms: list[float], **extra) -> dict:
    hist = LatencyHistogram()
    for ms in latencies_ms:
        hist.add(ms / 1000)
    n = len(latencies_ms)
    return {
        "id": sid,
        "uri": f"rtsp://u:***@h/{sid}",
        "state": "STOPPED",
        "frames_decoded": n + 5,
        "frames_inferred": n,
        "frames_emitted": n,
        "frames_dropped": 5,
        "drops": {"stale": 3, "queue_full": 2},
        "latency_hist": {str(b): c for b, c in hist.counts.items()},
        "transitions": [{"t": 100.0, "state": "CONNECTING"}, {"t": 101.0, "state": "STREAMING"}],
        **extra,
    }


def test_report_json_and_png(tmp_path: Path):
    run = {
        "id": "r-1",
        "name": "r",
        "state": "STOPPED",
        "created_at": 100.0,
        "finished_at": 110.0,
        "model": {"model": "builtin-shapes-v1", "device": "cpu"},
        "sources": [source("a", [10.0] * 90 + [200.0] * 10), source("b", [50.0] * 50)],
        "transitions": [{"t": 100.0, "state": "WAITING"}, {"t": 101.2, "state": "UP"}],
        "events": [],
    }
    series = {
        "a": [[100.0 + k, 10.0, 10.0, 200.0] for k in range(10)],
        "b": [[100.0 + k, 5.0, 50.0, 50.0] for k in range(10)],
    }
    report = build_report(run, series)
    assert report["duration_s"] == 10.0
    assert report["totals"]["frames_emitted"] == 150
    assert report["totals"]["drops"] == {"stale": 6, "queue_full": 4}
    assert report["totals"]["fps_mean"] == 15.0
    a = next(s for s in report["streams"] if s["id"] == "a")
    assert 10 <= a["latency_ms"]["p50"] <= 10.6 and 200 <= a["latency_ms"]["p99"] <= 211
    assert a["fps_mean"] == 10.0
    # global percentiles come from every frame of every stream
    assert 50 <= report["latency_ms"]["p90"] <= 53
    assert report["transitions"][1]["state"] == "UP"
    paths = write_report(tmp_path, report)
    assert [p.name for p in paths] == ["report.json", "report.png"]
    assert json.loads((tmp_path / "report.json").read_text())["run"] == "r-1"
    png = (tmp_path / "report.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
