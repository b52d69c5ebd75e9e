"""What ``vsa serve`` prints every ``--interval``: the controller's status of that moment, a
drained run as DRAINED, fps only of streaming sources (a stopped source's last rate is not a
rate)."""

from __future__ import annotations

from typing import Any

from vsa.schema import RunStatus
from vsa.serve import drained_lines, status_line


def _run(events: list[str], *sources: tuple[str, float, int]) -> RunStatus:
    d: dict[str, Any] = {
        "id": "r-1",
        "name": "r",
        "state": "UP",
        "created_at": 1.0,
        "sources": [
            {"id": f"cam{i}", "state": state, "fps": fps, "frames_emitted": emitted}
            for i, (state, fps, emitted) in enumerate(sources)
        ],
        "events": [{"t": float(i), "event": e} for i, e in enumerate(events)],
    }
    return RunStatus.from_dict(d)


def test_a_live_run_counts_the_fps_of_its_streaming_sources_only() -> None:
    run = _run(["recovered"], ("STREAMING", 4.5, 10), ("RECONNECTING", 3.0, 5))
    assert status_line(run) == "r-1 UP 4.5 fps, 15 emitted"


def test_a_drained_run_reads_drained_without_a_rate() -> None:
    run = _run(["drained"], ("STREAMING", 4.8, 10), ("CONNECTING", 2.0, 7))
    assert status_line(run) == (
        "r-1 DRAINED (resumes when the engine starts again) 0.0 fps, 17 emitted"
    )


def test_a_run_resumed_after_its_drain_is_live_again() -> None:
    run = _run(["drained", "source_recreated", "recovered"], ("STREAMING", 2.0, 3))
    assert status_line(run) == "r-1 UP 2.0 fps, 3 emitted"


def test_a_drain_promises_a_resume_only_for_the_runs_it_saved() -> None:
    lines, code = drained_lines({"drained": ["a-1", "b-1"], "not_saved": ["b-1"], "took_s": 1.0})
    assert lines == [
        "drained in 1.0 s (a-1); they resume on the next start",
        "NOT SAVED, will not resume: b-1 (see vsa status)",
    ]
    assert code == 1
    assert drained_lines({"drained": [], "took_s": 0.2}) == (
        ["drained in 0.2 s (no runs); they resume on the next start"],
        0,
    )
