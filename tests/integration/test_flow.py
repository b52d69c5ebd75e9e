"""Flow control through the real engine: an overloaded run accounts for every frame, keeps
latency bounded in realtime mode, and serves higher-priority streams first."""

from __future__ import annotations

import pytest

from tests.integration.conftest import read_jsonl, wait_for
from vsa.config import parse_run, resolve_paths

pytestmark = pytest.mark.integration


def test_overloaded_realtime_run_accounts_for_every_frame(client, tmp_path):
    # three 30 fps cameras at 320x240 are far more than this host's engine can infer; cam0
    # (10 fps, priority 5) is served first and keeps more of its frames
    sources = [
        {
            "id": f"cam{k}",
            "uri": f"synthetic://shapes?seed={k}&fps={10 if k == 0 else 30}&width=320&height=240",
            "mode": "realtime",
            "max_age_ms": 500,
            "priority": 5 if k == 0 else 0,
        }
        for k in range(4)
    ] + [
        {
            "id": "capped",
            "uri": "synthetic://shapes?seed=9&fps=30&width=160&height=120",
            "mode": "realtime",
            "fps": 5,
        }
    ]
    spec = resolve_paths(
        parse_run(
            {
                "name": "overload",
                "output_dir": str(tmp_path / "out"),
                "sources": sources,
                "batching": {"max_batch_size": 4, "max_wait_ms": 20},
            }
        ),
        tmp_path,
    )
    run_id = client.submit(spec)["run_id"]
    try:
        wait_for(
            lambda: all(s["frames_emitted"] >= 10 for s in client.run(run_id).to_dict()["sources"]),
            180,
            "every stream emitting",
        )
        wait_for(
            lambda: sum(s["frames_dropped"] for s in client.run(run_id).to_dict()["sources"]) > 200,
            120,
            "the engine to be overloaded",
        )
    finally:
        run = client.stop(run_id).to_dict()
    by_id = {s["id"]: s for s in run["sources"]}
    for s in run["sources"]:
        assert s["frames_decoded"] == s["frames_emitted"] + sum(s["drops"].values()), s
        assert set(s["drops"]) <= {"queue_full", "stale", "decimated", "shutdown"}, s
        assert s["mode"] == "realtime"
        records = read_jsonl(tmp_path / "out" / f"{s['id']}.jsonl")
        assert len(records) == s["frames_emitted"]
        # bounded latency: stale frames are dropped, so what is emitted is at most ~max_age old
        # plus one batch of inference; never a backlog of seconds
        assert max(r["latency_ms"] for r in records) < 5000, s["id"]
    causes = set().union(*(s["drops"] for s in run["sources"]))
    assert "queue_full" in causes
    # the capped stream is decimated to ~5 of its 30 fps at the source
    capped = by_id["capped"]
    assert capped["drops"]["decimated"] >= 3 * capped["frames_emitted"]

    # priority: the high-priority camera loses a smaller share of its frames than the others
    def lost(s: dict) -> float:
        return (s["drops"].get("stale", 0) + s["drops"].get("queue_full", 0)) / s["frames_decoded"]

    others = [lost(by_id[f"cam{k}"]) for k in range(1, 4)]
    assert lost(by_id["cam0"]) < min(others), (lost(by_id["cam0"]), others)


def test_a_high_priority_run_does_not_starve_another_run(client, tmp_path):
    """Priority orders streams within a run; runs on one model share the engine in turn."""

    def run(name, seeds, priority):
        sources = [
            {
                "id": f"cam{k}",
                "uri": f"synthetic://shapes?seed={k}&fps=30&width=320&height=240",
                "mode": "realtime",
                "max_age_ms": 1000,
                "priority": priority,
            }
            for k in seeds
        ]
        spec = {
            "name": name,
            "output_dir": str(tmp_path / name),
            "sources": sources,
            "batching": {"max_batch_size": 4, "max_wait_ms": 20},  # one engine for both runs
        }
        return client.submit(resolve_paths(parse_run(spec), tmp_path))["run_id"]

    def emitted(run_id):
        return {s["id"]: s["frames_emitted"] for s in client.run(run_id).to_dict()["sources"]}

    greedy = run("greedy", range(3), 100)
    modest = run("modest", [7], 0)
    try:
        wait_for(
            lambda: sum(emitted(greedy).values()) >= 30 and emitted(modest)["cam7"] >= 5,
            180,
            "both runs emitting",
        )
        wait_for(
            lambda: sum(s["frames_dropped"] for s in client.run(greedy).to_dict()["sources"]) > 100,
            120,
            "the engine to be saturated by the greedy run",
        )
        before = emitted(modest)["cam7"]
        # saturated, the other run's camera keeps its share (it fell to 0 fps before)
        wait_for(lambda: emitted(modest)["cam7"] >= before + 20, 90, "the modest run's frames")
    finally:
        runs = [client.stop(greedy).to_dict(), client.stop(modest).to_dict()]
    for final in runs:
        for s in final["sources"]:
            assert s["frames_decoded"] == s["frames_emitted"] + s["frames_dropped"], s
