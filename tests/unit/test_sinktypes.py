"""The sink registry and per-sink accounting without a stream: the run file's union follows
the registry, names and files come from it, and per-sink counts add up across restarts."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.test_supervision_runbook import record, status
from vsa import sinktypes
from vsa.cli import sink_loss_lines
from vsa.config import ConfigError, parse_run
from vsa.outputs import run_files
from vsa.schema import SourceStatus
from vsa.sinks import output_paths
from vsa.supervision.runbook import merge_sinks


def run(sinks: list) -> dict:
    return {
        "name": "r",
        "output_dir": "/tmp/vsa-sinktypes",
        "sources": [{"id": "cam", "uri": "synthetic://shapes?frames=3"}],
        "sinks": sinks,
    }


def test_the_run_file_takes_exactly_the_registered_sink_types() -> None:
    names = list(sinktypes.sink_types())
    assert names == ["video", "jsonl", "snapshot", "mqtt"]
    spec = parse_run(run([{"type": "video", "policy": "best_effort"}, {"type": "jsonl"}]))
    assert [(s.type, s.policy) for s in spec.sinks] == [
        ("video", "best_effort"),
        ("jsonl", "required"),
    ]
    with pytest.raises(ConfigError) as info:
        parse_run(run([{"type": "carrier-pigeon"}]))
    assert info.value.problems == [
        "sinks[0]: unknown sink type 'carrier-pigeon' (use 'video', 'jsonl', 'snapshot' or 'mqtt')"
    ]
    with pytest.raises(ConfigError, match=r"sinks\[0\]\.policy"):
        parse_run(run([{"type": "jsonl", "policy": "sometimes"}]))
    with pytest.raises(ValueError, match="registered already"):
        sinktypes.register(sinktypes.sink_type("video"))
    with pytest.raises(ValueError, match="unknown sink type 'nope'"):
        sinktypes.sink_type("nope")


def test_a_streams_files_come_from_its_sink_types(tmp_path: Path) -> None:
    spec = parse_run(run([{"type": "video"}, {"type": "jsonl"}]))
    assert output_paths(spec.sinks, tmp_path, "cam") == [
        tmp_path / "cam.mp4",
        tmp_path / "cam.jsonl",
    ]
    for name in ("cam.mp4", "cam.part2.mp4", "cam.jsonl", "other.mp4", "report.json"):
        (tmp_path / name).write_text("x")
    found = sorted(p.name for p in run_files(spec, tmp_path))
    assert found == ["cam.jsonl", "cam.mp4", "cam.part2.mp4", "report.json"]


def test_per_sink_counts_add_up_across_a_source_actor_restart() -> None:
    earlier = {"video": {"policy": "best_effort", "written": 10, "lost": {"sink_error": 2}}}
    now = {
        "video": {"policy": "best_effort", "written": 5, "lost": {"sink_error": 1, "overflow": 3}},
        "jsonl": {"policy": "required", "written": 9, "lost": {}},
    }
    assert merge_sinks(earlier, now) == {
        "video": {"policy": "best_effort", "written": 15, "lost": {"sink_error": 3, "overflow": 3}},
        "jsonl": {"policy": "required", "written": 9, "lost": {}},
    }
    r = record()
    first = {**status(decoded=12, emitted=12), "sinks": earlier}
    r.absorb("cam1", first)
    second = {**status(inc="b", decoded=9, emitted=9), "sinks": now}
    r.absorb("cam1", second)  # Ray restarted the actor: its counts start at 0
    assert r.sources["cam1"]["sinks"]["video"]["written"] == 15
    assert r.status("cam1").sinks["video"].frames_lost == 6


def test_status_shows_a_best_effort_sink_that_lost_frames() -> None:
    s = SourceStatus.from_dict(
        {
            "id": "door",
            "state": "STREAMING",
            "sinks": {
                "video": {"policy": "best_effort", "written": 90, "lost": {"output_lost": 10}},
                "jsonl": {"policy": "required", "written": 100, "lost": {}},
            },
        }
    )
    assert sink_loss_lines(s) == [
        "  door: sink video (best effort) lost 10 of 100 frames (output_lost 10)"
    ]
    assert SourceStatus.from_dict(s.to_dict()) == s


def test_a_segmented_recording_demands_no_fixed_file_on_resume(tmp_path: Path) -> None:
    spec = parse_run(run([{"type": "video", "segment_s": 600}, {"type": "jsonl"}]))
    assert output_paths(spec.sinks, tmp_path, "cam") == [tmp_path / "cam.jsonl"]


@pytest.mark.parametrize(
    ("sink", "says"),
    [
        ({"topic": "vsa/{camera}"}, "sinks[0].topic: unknown placeholder {camera}"),
        ({"topic": "vsa/#/{run}"}, "sinks[0].topic: a topic prefix must not"),
        ({"topic": "$SYS/{run}"}, "sinks[0].topic: a topic prefix must not"),
        ({"password_file": "/etc/hostname"}, "sinks[0].password_file: needs username"),
        ({"ca_file": "/etc/hostname"}, "sinks[0].ca_file: only applies with tls: true"),
    ],
)
def test_an_mqtt_sink_is_checked_at_submit(sink: dict, says: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_run(run([{"type": "mqtt", "host": "broker", **sink}]))
    assert info.value.problems[0].startswith(says), info.value.problems


def test_an_mqtt_sinks_files_are_resolved_and_must_exist(tmp_path: Path) -> None:
    from vsa.config import resolve_paths

    (tmp_path / "broker.pw").write_text("secret\n")
    sink = {"type": "mqtt", "host": "b", "username": "u", "password_file": "broker.pw"}
    spec = resolve_paths(parse_run(run([sink])), tmp_path)
    assert spec.sinks[0].password_file == str(tmp_path / "broker.pw")
    missing = {**sink, "password_file": "gone.pw"}
    with pytest.raises(ConfigError, match=r"sinks\[0\]\.password_file: file not found"):
        resolve_paths(parse_run(run([missing])), tmp_path)
