"""Scene analytics through the whole engine, against the synthetic source's ground truth:
tracks and counts of a scripted scene, crossings kept when a realtime run drops every second
frame, track ids never reused after Ray restarts a source actor, and a line that counts a
class the model does not have refused at submit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import ray

from tests.integration.conftest import read_jsonl, wait_for
from vsa.analytics.counting import SceneCounter
from vsa.analytics.evaluate import mot_metrics, read_tracks, read_truth, true_counts
from vsa.analytics.resume import replay_events
from vsa.config import LineSpec, ZoneSpec, parse_run, resolve_paths
from vsa.errors import ConfigError
from vsa.sources.synthetic import ShapesScene, SyntheticParams

pytestmark = pytest.mark.integration

W, H, FPS = 640, 360, 15
LINE = {"id": "middle", "points": [[0.5, 0.0], [0.5, 1.0]]}
ZONE = {"id": "right", "polygon": [[0.62, 0.0], [0.9, 0.0], [0.9, 1.0], [0.62, 1.0]], "loiter_s": 1}
# slow objects: lines near both edges, crossed soon after each enters
EDGES = [
    {"id": "west", "points": [[0.15, 0.0], [0.15, 1.0]]},
    {"id": "east", "points": [[0.85, 0.0], [0.85, 1.0]]},
]


def synthetic(
    scene: str, frames: int | None, objects: int = 3, seed: int = 1, fps: float = FPS
) -> str:
    uri = f"synthetic://shapes?scene={scene}&seed={seed}&fps={fps}&width={W}&height={H}"
    uri += f"&objects={objects}&truth=1"
    return uri + (f"&frames={frames}" if frames else "")


def submit(client, tmp_path: Path, name: str, source: dict, **extra) -> str:
    run = {"name": name, "output_dir": str(tmp_path / "out"), "sources": [source], **extra}
    return client.submit(resolve_paths(parse_run(run), tmp_path))["run_id"]


def truth_of_every_frame(uri: str, frames: int) -> dict:
    world = ShapesScene(SyntheticParams.from_uri(uri))
    return {
        k: [(o["id"], o["label"], o["box"], o["visible"]) for o in world.truth_at(k)]
        for k in range(frames)
    }


def engine_counts(out: Path, run_id: str, sid: str, lines: list, zones: list) -> dict:
    counter = SceneCounter([LineSpec(**x) for x in lines], [ZoneSpec(**x) for x in zones])
    counter.restore(replay_events(out / f"{sid}.events.jsonl", run_id))
    return counter.counts()


def crossings(counts: dict) -> dict:
    return {lid: (c["in"], c["out"]) for lid, c in counts["lines"].items()}


def test_tracks_and_counts_of_a_scripted_scene_match_the_truth(client, tmp_path):
    frames = 150
    uri = synthetic("cross", frames)
    source = {"id": "cam", "uri": uri, "lines": [LINE], "zones": [ZONE]}
    run_id = submit(client, tmp_path, "analytics-cross", source)
    run = client.wait(run_id, timeout_s=300).to_dict()
    assert run["state"] == "FINISHED", run
    out = tmp_path / "out"
    (status,) = run["sources"]
    assert status["frames_emitted"] == frames

    # tracking: every object keeps one id (the built-in model finds these shapes)
    tracks, _ = read_tracks(out / "cam.jsonl")
    metrics = mot_metrics(read_truth(out / "cam.truth.jsonl"), tracks)
    assert metrics["IDF1"] >= 0.85 and metrics["IDSW"] == 0, metrics
    assert metrics["frames"] == frames

    # counts: exactly the crossings and entries of the true trajectories
    true = true_counts(truth_of_every_frame(uri, frames), {k: k / FPS for k in range(frames)},
                       [LineSpec(**LINE)], [ZoneSpec(**ZONE)], (W, H))  # fmt: skip
    counted = engine_counts(out, run_id, "cam", [LINE], [ZONE])
    assert sum(true["lines"]["middle"][d] for d in ("in", "out")) >= 2  # the scene crosses
    assert crossings(counted) == crossings(true)
    assert counted["zones"]["right"]["entered"] == true["zones"]["right"]["entered"] > 0

    # the events file, the status and the report say the same
    events = read_jsonl(out / "cam.events.jsonl")
    assert {e["v"] for e in events} == {1} and {e["run"] for e in events} == {run_id}
    kinds = {e["kind"] for e in events}
    assert {"line_cross", "zone_enter", "zone_leave", "loiter"} <= kinds, kinds
    analytics = status["analytics"]
    assert analytics["lines"]["middle"]["in"] == counted["lines"]["middle"]["in"]
    assert analytics["lines"]["middle"]["out"] == counted["lines"]["middle"]["out"]
    assert analytics["zones"]["right"]["entered"] == counted["zones"]["right"]["entered"]
    assert analytics["track_ids"] == metrics["tracks"]
    report = json.loads((out / "report.json").read_text())
    assert "analytics" in report, sorted(report)


def test_a_realtime_run_dropping_every_second_frame_keeps_slow_crossings(client, tmp_path):
    frames, fps = 300, 30  # 10 s of a paced 30 fps camera, processed at 15 fps
    uri = synthetic("slow", frames, objects=4, seed=2, fps=fps)
    source = {"id": "cam", "uri": uri, "mode": "realtime", "fps": fps / 2, "lines": EDGES}
    run_id = submit(client, tmp_path, "analytics-drop", source)
    run = client.wait(run_id, timeout_s=300).to_dict()
    assert run["state"] == "FINISHED", run
    (status,) = run["sources"]
    # every second frame went (decimated), and the engine kept up with the others
    assert status["drops"].get("decimated", 0) == frames // 2, status["drops"]
    assert status["frames_emitted"] >= frames // 2 - 3, status
    true = true_counts(truth_of_every_frame(uri, frames), {k: k / fps for k in range(frames)},
                       [LineSpec(**x) for x in EDGES], [], (W, H))  # fmt: skip
    assert sum(sum(c) for c in crossings(true).values()) >= 4  # the scene crosses them
    counted = engine_counts(tmp_path / "out", run_id, "cam", EDGES, [])
    assert crossings(counted) == crossings(true)  # none invented, none lost
    tracks, _ = read_tracks(tmp_path / "out" / "cam.jsonl")
    metrics = mot_metrics(read_truth(tmp_path / "out" / "cam.truth.jsonl"), tracks)
    assert metrics["IDSW"] == 0 and metrics["IDF1"] >= 0.85, metrics


def test_track_ids_are_not_reused_after_ray_restarts_the_source_actor(client, tmp_path):
    source = {"id": "cam", "uri": synthetic("cross", None, objects=4), "lines": [LINE]}
    run_id = submit(client, tmp_path, "analytics-restart", source)
    jsonl = tmp_path / "out" / "cam.jsonl"

    def track_ids() -> int:
        (s,) = client.run(run_id).to_dict()["sources"]
        return (s.get("analytics") or {}).get("track_ids", 0)

    def restarts() -> int:
        (s,) = client.run(run_id).to_dict()["sources"]
        return s["restarts"]

    try:
        wait_for(lambda: track_ids() >= 3, 180, "three tracks")
        written = len(read_jsonl(jsonl))
        ray.kill(ray.get_actor(f"source:{run_id}/cam", namespace="vsa"), no_restart=False)
        wait_for(lambda: restarts() == 1, 120, "Ray to restart the source actor")
        wait_for(lambda: len(read_jsonl(jsonl)) > written + 4 * FPS, 180, "frames after it")
        before = track_ids()
        wait_for(lambda: track_ids() > before, 180, "a new track after the restart")
    finally:
        final = client.stop(run_id).to_dict()
    lines = read_jsonl(jsonl)
    first_ids = {d["track_id"] for r in lines[:written] for d in r["detections"] if "track_id" in d}
    later = {d["track_id"] for r in lines[written:] for d in r["detections"] if "track_id" in d}
    assert first_ids and later - first_ids
    assert min(later - first_ids) > max(first_ids)  # new ids go on above the old ones
    seen: dict[int, int] = {}
    for r in lines:  # an id is one object's: never seen again after a long gap
        for d in r["detections"]:
            tid = d.get("track_id")
            if tid is not None:
                assert r["frame"] - seen.get(tid, r["frame"]) <= 2 * FPS, (tid, r["frame"])
                seen[tid] = r["frame"]
    (status,) = final["sources"]
    assert status["restarts"] == 1
    assert status["analytics"]["track_ids"] == max(seen)


def test_a_line_counting_a_class_the_model_does_not_have_is_refused(client, tmp_path):
    line = {**LINE, "classes": ["circle", "bicycle"]}
    source = {"id": "cam", "uri": synthetic("cross", 30), "lines": [line]}
    with pytest.raises(ConfigError) as info:
        submit(client, tmp_path, "analytics-bad-class", source)
    assert "sources[0].lines[0].classes: unknown class 'bicycle'" in str(info.value)
    assert not (tmp_path / "out" / "cam.jsonl").exists()


def test_line_crossings_leave_snapshots_counted_in_the_status(client, tmp_path):
    frames = 150
    source = {"id": "cam", "uri": synthetic("cross", frames), "lines": [LINE]}
    snapshot = {
        "type": "snapshot",
        "on_detection": False,
        "events": ["line_cross"],
        "cooldown_s": 0,
    }
    run_id = submit(client, tmp_path, "analytics-snapshots", source,
                    sinks=[{"type": "jsonl"}, snapshot])  # fmt: skip
    run = client.wait(run_id, timeout_s=300).to_dict()
    assert run["state"] == "FINISHED", run
    (status,) = run["sources"]
    crossings = read_jsonl(tmp_path / "out" / "cam.events.jsonl")
    pictures = sorted((tmp_path / "out" / "cam").glob("*.jpg"))
    assert crossings and 1 <= len(pictures) <= len(crossings)
    assert {json.loads(p.with_suffix(".json").read_text())["trigger"] for p in pictures} == {
        "line_cross"
    }
    snap = status["sinks"]["snapshot"]
    assert snap["policy"] == "best_effort" and snap["snapshots"] == len(pictures)
    assert snap["written"] == status["frames_emitted"] == frames and snap["lost"] == {}
