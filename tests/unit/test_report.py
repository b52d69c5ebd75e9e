"""The end-of-run report: totals, latency percentiles, transitions, and a real PNG chart."""

from __future__ import annotations

import errno
import json
import os
import signal
from pathlib import Path

import pytest

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


# --- the true maximum latency -----------------------------------------------------------------


def run_of(*sources: dict) -> dict:
    return {
        "id": "r-2",
        "name": "r",
        "state": "FINISHED",
        "created_at": 100.0,
        "finished_at": 110.0,
        "sources": list(sources),
    }


def test_report_max_latency_is_the_one_the_sources_measured():
    a = source("a", [10.0] * 90 + [200.0] * 9 + [203.7], latency_max_ms=203.7)
    b = source("b", [50.0] * 50 + [61.3], latency_max_ms=61.3)
    report = build_report(run_of(a, b), {})
    by_id = {s["id"]: s["latency_ms"] for s in report["streams"]}
    assert by_id["a"]["max"] == 203.7  # passed explicitly: exact, not a bucket edge
    assert by_id["b"]["max"] == 61.3
    assert report["latency_ms"]["max"] == 203.7
    # a percentile never exceeds the maximum (bucket edges are up to 5% above a sample)
    assert by_id["a"]["p99"] <= 203.7 and by_id["b"]["p99"] <= 61.3


def test_report_max_latency_is_none_without_samples():
    empty = source("idle", [], latency_max_ms=None)
    no_hist = {k: v for k, v in source("old", []).items() if k != "latency_hist"}
    report = build_report(run_of(empty, no_hist), {})
    for stream in report["streams"]:
        assert stream["latency_ms"] == {"p50": None, "p90": None, "p99": None, "max": None}
    assert report["latency_ms"]["max"] is None


def test_report_max_latency_without_a_measured_max_is_the_top_bucket():
    """A source that sends only bucket counts: the max is bounded by its bucket (5%)."""
    report = build_report(run_of(source("a", [10.0] * 9 + [200.0])), {})
    top = report["streams"][0]["latency_ms"]["max"]
    assert 200.0 <= top <= 210.0
    assert report["latency_ms"]["max"] == top


# --- atomic writes ------------------------------------------------------------------------------


def small_report() -> dict:
    return build_report(run_of(source("a", [10.0] * 5, latency_max_ms=10.0)), {})


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


class FullDiskFile:
    """A file object that writes a few bytes and then fails like a full disk."""

    def __init__(self, inner) -> None:
        self.inner = inner

    def write(self, data: bytes) -> int:
        self.inner.write(data[:10])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def __getattr__(self, name: str):
        return getattr(self.inner, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.inner.close()


def test_full_disk_keeps_the_previous_report_json(tmp_path: Path, monkeypatch):
    (tmp_path / "report.json").write_text('{"old": true}')
    real_fdopen = os.fdopen
    monkeypatch.setattr(os, "fdopen", lambda *a, **k: FullDiskFile(real_fdopen(*a, **k)))
    with pytest.raises(OSError) as info:
        write_report(tmp_path, small_report())
    assert info.value.errno == errno.ENOSPC
    assert (tmp_path / "report.json").read_text() == '{"old": true}'
    assert leftovers(tmp_path) == []


def test_failed_fsync_keeps_the_previous_report_json(tmp_path: Path, monkeypatch):
    (tmp_path / "report.json").write_text('{"old": true}')

    def fsync(fd: int) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(OSError):
        write_report(tmp_path, small_report())
    assert (tmp_path / "report.json").read_text() == '{"old": true}'
    assert leftovers(tmp_path) == []


@pytest.mark.skipif(not hasattr(signal, "SIGXFSZ"), reason="needs RLIMIT_FSIZE")
def test_failed_png_keeps_the_previous_png_and_notes_it(tmp_path: Path, monkeypatch):
    import matplotlib.figure

    (tmp_path / "report.png").write_bytes(b"old png")

    def savefig(self, *args, **kwargs) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", savefig)
    paths = write_report(tmp_path, small_report())
    assert [p.name for p in paths] == ["report.json"]
    assert (tmp_path / "report.png").read_bytes() == b"old png"
    assert json.loads((tmp_path / "report.json").read_text())["plot_error"].startswith("OSError")
    assert leftovers(tmp_path) == []


def test_links_named_like_the_reports_are_replaced_not_followed(tmp_path: Path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    out = tmp_path / "out"
    out.mkdir()
    (out / "report.json").symlink_to(victim)
    (out / "report.png").symlink_to(victim)
    write_report(out, small_report())
    assert victim.read_text() == "precious"
    assert not (out / "report.json").is_symlink() and not (out / "report.png").is_symlink()
    assert json.loads((out / "report.json").read_text())["run"] == "r-2"
    assert (out / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert leftovers(out) == []


def test_report_rewrite_replaces_the_file(tmp_path: Path):
    write_report(tmp_path, small_report())
    first = (tmp_path / "report.json").stat().st_ino
    report = small_report()
    report["state"] = "STOPPED"
    write_report(tmp_path, report)
    assert json.loads((tmp_path / "report.json").read_text())["state"] == "STOPPED"
    assert (tmp_path / "report.json").stat().st_ino != first  # a new file, renamed in place
    assert leftovers(tmp_path) == []


def test_sources_a_change_removed_count_in_the_report() -> None:
    from vsa.report import build_report

    def source(sid: str, emitted: int) -> dict:
        return {
            "id": sid,
            "state": "STOPPED",
            "frames_decoded": emitted,
            "frames_inferred": emitted,
            "frames_emitted": emitted,
            "frames_dropped": 0,
        }

    run = {
        "id": "r-1",
        "name": "r",
        "state": "STOPPED",
        "created_at": 1000.0,
        "finished_at": 1010.0,
        "sources": [source("a", 30)],
        "removed": [source("b", 12)],
    }
    report = build_report(run, {})
    streams = {s["id"]: s for s in report["streams"]}
    assert streams["b"]["removed"] is True and "removed" not in streams["a"]
    assert report["totals"]["frames_emitted"] == 42
