"""What `vsa status` prints for sources that are down."""

from __future__ import annotations

from vsa.cli import progress_line, render_run, source_state_text
from vsa.schema import RunStatus, SourceStatus


def src(sid: str, state: str, **extra) -> dict:
    base = {
        "id": sid,
        "state": state,
        "code": None,
        "error": None,
        "attempt": 0,
        "next_retry_at": None,
        "reconnects": 0,
        "frames_decoded": 10,
        "frames_inferred": 10,
        "frames_emitted": 10,
        "frames_dropped": 0,
        "fps": 15.0,
    }
    return {**base, **extra}


def test_reconnecting_shows_attempt_and_time_to_the_next_try():
    s = SourceStatus.from_dict(
        src("door", "RECONNECTING", attempt=3, next_retry_at=1000.0, code="UNREACHABLE")
    )
    assert source_state_text(s, now=996.2) == "RECONNECTING #3 in 4s"
    assert source_state_text(s, now=1001.0) == "RECONNECTING #3 in 0s"
    assert source_state_text(SourceStatus.from_dict(src("a", "STREAMING"))) == "STREAMING"


def test_status_table_names_why_the_run_is_degraded():
    run = {
        "id": "r-1",
        "name": "r",
        "created_at": 1_700_000_000.0,
        "state": "DEGRADED",
        "reason": "door RECONNECTING (AUTH_FAILED)",
        "error": None,
        "output_dir": "/out",
        "model": None,
        "sources": [
            src("yard", "STREAMING", reconnects=2, latency_ms={"p50": 12.4, "p99": 240.0}),
            src(
                "door",
                "RECONNECTING",
                attempt=1,
                next_retry_at=None,
                code="AUTH_FAILED",
                error="AUTH_FAILED: Server returned 401 Unauthorized: 'rtsp://u:***@h/s'",
            ),
        ],
    }
    run = RunStatus.from_dict(run)
    text = render_run(run)
    assert "why: door RECONNECTING (AUTH_FAILED)" in text
    rows = text.splitlines()
    header = next(r for r in rows if r.strip().startswith("source"))
    assert "reconn" in header
    yard = next(r for r in rows if r.strip().startswith("yard"))
    assert yard.split() == ["yard", "STREAMING", "15.0", "12", "240", "10", "0", "2"]
    assert "door: AUTH_FAILED: Server returned 401" in text
    assert "RECONNECTING #1" in progress_line(run, 12.0)


def test_live_table_redraws_in_place_on_a_terminal_and_appends_otherwise():
    import io

    from vsa.cli import LiveTable

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty = Tty()
    live = LiveTable(tty)
    live.show("a\nb")
    live.show("c\nd\ne")
    assert tty.getvalue() == "a\nb\n\x1b[2F\x1b[Jc\nd\ne\n"  # up 2 lines, clear, redraw
    assert not LiveTable(io.StringIO()).tty  # a pipe or file gets plain lines instead


def test_a_bursty_source_is_said_to_arrive_in_bursts_and_a_smooth_one_is_not():
    run = {
        "id": "r-1",
        "name": "r",
        "created_at": 1_700_000_000.0,
        "state": "UP",
        "reason": None,
        "error": None,
        "output_dir": "/out",
        "model": None,
        "sources": [
            src("hls", "STREAMING", arrival={"bursty": True, "burst_frames": 15.0,
                                             "jitter_ms": 480.0, "hold_ms": 930.0}),
            src("cam", "STREAMING", arrival={"bursty": False, "burst_frames": 1.0,
                                             "jitter_ms": 2.0, "hold_ms": 0.0}),
        ],
    }  # fmt: skip
    text = render_run(RunStatus.from_dict(run))
    assert "hls arrives in bursts of 15 frames: paced by its timestamps, held up to 930 ms" in text
    assert "cam arrives" not in text


def test_a_paused_run_says_how_to_resume_and_lists_its_removed_sources():
    run = RunStatus.from_dict(
        {
            "id": "r-1",
            "name": "r",
            "created_at": 1_700_000_000.0,
            "state": "PAUSED",
            "reason": "paused: `vsa resume` continues it",
            "output_dir": "/out",
            "sources": [src("yard", "CONNECTING", fps=0.0)],
            "removed": [src("door", "STOPPED", frames_emitted=7, frames_dropped=1)],
        }
    )
    text = render_run(run)
    assert text.splitlines()[0].startswith("run r-1  PAUSED")
    assert "why: paused: `vsa resume` continues it" in text
    assert "door removed: emitted 7, dropped 1" in text
