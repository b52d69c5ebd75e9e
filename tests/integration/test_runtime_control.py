"""Runtime control on the real engine (docs/runtime-control.md): a running run changed by a
re-submit and by `vsa source add/remove`, paused and resumed, runs sharing one inference
engine and a run waiting PENDING for its model to fit, two clients changing one run at once.

The guarantee checked frame by frame: a source a change does not touch keeps streaming in
the same actor, and its JSONL holds every frame once, in order, in one file."""

from __future__ import annotations

import json
import threading

import pytest
import ray

from tests.integration.conftest import read_jsonl, run_cli, wait_for, write_run
from vsa.client import Client
from vsa.config import parse_run, resolve_paths

pytestmark = pytest.mark.integration

SYN = "synthetic://shapes?seed={seed}&fps=20&width=160&height=120"


def uri(seed: int, frames: int | None = None) -> str:
    return SYN.format(seed=seed) + (f"&frames={frames}" if frames else "")


def run_dict(tmp_path, name, sources, **extra):
    return {"name": name, "output_dir": str(tmp_path / name), "sources": sources, **extra}


def spec(tmp_path, name, sources, **extra):
    return resolve_paths(parse_run(run_dict(tmp_path, name, sources, **extra)), tmp_path)


def source(client, run_id, sid):
    return client.run(run_id).source(sid)


def emitted(client, run_id, sid):
    return source(client, run_id, sid).frames_emitted


def check_whole(out, final_source, frames=None, every=True):
    """Every frame the source emitted is in its one JSONL once, in order (``every``: from
    frame 0 without a gap: nothing decimated), and every frame decoded is emitted or dropped
    with a cause."""
    s = final_source
    assert s["frames_decoded"] == s["frames_emitted"] + sum(s["drops"].values()), s
    got = [r["frame"] for r in read_jsonl(out / f"{s['id']}.jsonl")]
    if every:
        assert got == list(range(len(got))), "a frame missing, repeated or out of order"
    assert got == sorted(set(got)), "a frame repeated or out of order"
    assert len(got) == s["frames_emitted"]
    if frames is not None:  # the whole input, once: only a stop's frame decoded twice
        assert got == list(range(frames)) and s["drops"].keys() <= {"shutdown"}, s
    assert [p.name for p in out.glob(f"{s['id']}.*jsonl")] == [f"{s['id']}.jsonl"]


def test_changes_leave_an_untouched_stream_whole(client, tmp_path, ray_cluster):
    sources = [
        {"id": "ref", "uri": uri(1, frames=300)},  # 15 s at 20 fps, lossless
        {"id": "b", "uri": uri(2)},
    ]
    run_id = client.submit(spec(tmp_path, "ctl", sources))["run_id"]
    wait_for(lambda: emitted(client, run_id, "ref") >= 20, 60, "the reference stream")
    incarnation = source(client, run_id, "ref").incarnation

    added = client.add_source(run_id, {"id": "c", "uri": uri(3)})
    assert added["applied"] and {s["id"]: s["action"] for s in added["plan"]["sources"]} == {
        "ref": "keep",
        "b": "keep",
        "c": "add",
    }
    wait_for(lambda: emitted(client, run_id, "c") >= 10, 60, "the added source")
    removed = client.remove_source(run_id, "b")
    assert [s["action"] for s in removed["plan"]["sources"]] == ["keep", "keep", "remove"]

    # the run file again, with c's rate changed: a dry run first (the CLI), then for real
    changed = [sources[0], {"id": "c", "uri": uri(3), "fps": 10}]
    run_file = write_run(tmp_path / "ctl.yaml", run_dict(tmp_path, "ctl", changed))
    address = ray_cluster["gcs_address"]
    dry = run_cli("-m", "vsa", "submit", str(run_file), "--dry-run", "--address", address)
    assert dry.returncode == 0, dry.stderr
    assert "~ c restart (fps)" in dry.stdout and "= ref keep" in dry.stdout, dry.stdout
    applied = run_cli("-m", "vsa", "submit", str(run_file), "--json", "--address", address)
    assert applied.returncode == 0, applied.stderr
    plan = json.loads(applied.stdout)["plan"]
    assert {s["id"]: s["action"] for s in plan["sources"]} == {"ref": "keep", "c": "restart"}
    after = wait_for(
        lambda: (s := source(client, run_id, "c")).restarts == 1 and s.frames_emitted,
        60,
        "c's new actor",
    )
    wait_for(lambda: emitted(client, run_id, "c") >= after + 5, 60, "c after its restart")

    wait_for(lambda: source(client, run_id, "ref").state.value == "FINISHED", 90, "ref's end")
    final = client.stop(run_id).to_dict()
    out = tmp_path / "ctl"
    by_id = {s["id"]: s for s in final["sources"]}
    ref = by_id["ref"]
    assert ref["incarnation"] == incarnation and ref["restarts"] == 0
    check_whole(out, ref, frames=300)
    assert ref["drops"] == {}, ref  # untouched: not a frame dropped
    check_whole(out, by_id["c"], every=False)  # at fps 10, every other frame is decimated
    # a stop counts the frame it decoded as it stopped: 'shutdown' (decoded again after a
    # restart, which continues after the last frame written)
    assert by_id["c"]["drops"].keys() <= {"decimated", "shutdown"}, by_id["c"]
    assert [s["id"] for s in final["removed"]] == ["b"]
    check_whole(out, final["removed"][0])
    events = [e["event"] for e in final["events"]]
    for event in ("changed", "source_added", "source_removed", "source_changed"):
        assert event in events, events
    report = json.loads((out / "report.json").read_text())
    assert "source_removed" in [e["event"] for e in report["events"]]


def test_runs_share_an_engine_and_one_that_does_not_fit_waits_pending(client, tmp_path, host_file):
    host_file.write_text("max_engines: 1\n")
    a = client.submit(spec(tmp_path, "sa", [{"id": "x", "uri": uri(1)}]))
    b = client.submit(spec(tmp_path, "sb", [{"id": "y", "uri": uri(2)}]))
    actor = ray.get_actor("inference", namespace="vsa")
    assert ray.get(actor.stats.remote())["loaded"] == 1  # one model load for both runs
    wait_for(lambda: emitted(client, b["run_id"], "y") >= 5, 60, "the second run's frames")
    other = spec(
        tmp_path, "sc", [{"id": "z", "uri": uri(3, frames=40)}], batching={"max_batch_size": 2}
    )
    c = client.submit(other)
    assert c["state"] == "PENDING" and "VSA_MAX_ENGINES=1" in c["reason"], c
    assert client.run(c["run_id"]).state.value == "PENDING"
    client.stop(a["run_id"])
    assert client.run(c["run_id"]).state.value == "PENDING"  # b still uses the engine
    client.stop(b["run_id"])
    final = client.wait(c["run_id"], timeout_s=120).to_dict()
    assert final["state"] == "FINISHED", final
    assert "started" in [e["event"] for e in final["events"]]
    check_whole(tmp_path / "sc", final["sources"][0], frames=40)


def test_pause_and_resume_continue_the_files_and_a_drain_keeps_the_pause(
    client, tmp_path, ray_cluster
):
    sources = [{"id": f"p{k}", "uri": uri(k, frames=160)} for k in range(2)]
    run_id = client.submit(spec(tmp_path, "pz", sources))["run_id"]
    wait_for(lambda: emitted(client, run_id, "p0") >= 20, 60, "frames before the pause")
    address = ray_cluster["gcs_address"]
    paused = run_cli("-m", "vsa", "pause", run_id, "--json", "--address", address)
    assert paused.returncode == 0, paused.stderr
    status = client.run(run_id)
    assert status.state.value == "PAUSED" and "resume" in (status.reason or "")
    for s in sources:  # decoders released
        with pytest.raises(ValueError):
            ray.get_actor(f"source:{run_id}/{s['id']}", namespace="vsa")
    at_pause = {s.id: s.frames_emitted for s in status.sources}
    assert all(0 < n < 160 for n in at_pause.values()), at_pause

    drained = client.drain()
    assert run_id not in drained["drained"]
    client.resume_drained()
    assert client.run(run_id).state.value == "PAUSED"  # a drain keeps the pause
    assert {s.id: s.frames_emitted for s in client.run(run_id).sources} == at_pause

    resumed = run_cli("-m", "vsa", "resume", run_id, "--address", address)
    assert resumed.returncode == 0, resumed.stderr
    final = client.wait(run_id, timeout_s=120).to_dict()
    assert final["state"] == "FINISHED", final
    for s in final["sources"]:
        check_whole(tmp_path / "pz", s, frames=160)
    events = [e["event"] for e in final["events"]]
    assert events.index("paused") < events.index("resumed"), events


def test_two_clients_adding_and_removing_at_once_end_consistent(client, tmp_path):
    run_id = client.submit(spec(tmp_path, "two", [{"id": "ref", "uri": uri(1)}]))["run_id"]
    wait_for(lambda: emitted(client, run_id, "ref") >= 5, 60, "the reference stream")
    incarnation = source(client, run_id, "ref").incarnation
    errors: list[BaseException] = []

    def commands(sid: str, seed: int) -> None:
        own = Client()  # a client of its own, as a second script would have
        written = 0
        try:
            for i in range(10):
                if i % 2 == 0:
                    own.add_source(run_id, {"id": sid, "uri": uri(seed)})
                    # it streams before it goes: each incarnation writes frames
                    wait_for(
                        lambda written=written: (
                            (s := source(own, run_id, sid)).state.value == "STREAMING"
                            and s.frames_emitted >= written + 3
                        ),
                        120,
                        f"{sid}'s frames",
                    )
                else:
                    own.remove_source(run_id, sid)
                    written = next(s for s in own.run(run_id).removed if s.id == sid).frames_emitted
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=commands, args=(sid, n)) for n, sid in ((5, "a"), (6, "b"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    assert not errors, errors
    now = client.run(run_id)
    assert [s.id for s in now.sources] == ["ref"]
    assert sorted(s.id for s in now.removed) == ["a", "b"]
    assert now.source("ref").incarnation == incarnation
    final = client.stop(run_id).to_dict()
    out = tmp_path / "two"
    check_whole(out, final["sources"][0])
    for s in final["removed"]:
        assert s["restarts"] == 4, s  # added 5 times: 4 incarnations after the first
        check_whole(out, s)
    assert [e["event"] for e in final["events"]].count("changed") == 20
