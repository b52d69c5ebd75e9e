"""Runs outlive the engine: drained and restarted (``vsa drain``, ``ray stop``, ``ray start``),
then crashed (every process of the cluster SIGKILLed, no drain) and started again. Each time a
new controller on a new cluster resumes the run from the state directory, same run id, files
continued. Its own pytest session, after the others: it starts and kills whole Ray clusters.

The cluster is isolated from anything else on the host by its own ``RAY_TMPDIR`` (its session
directory, its ``ray_current_cluster`` file) and port; the "crash" kills exactly the
processes that carry that ``RAY_TMPDIR`` in their environment (the head's daemons and every
worker inherit it)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.integration.conftest import require, wait_for
from tests.local_head import LocalHead, frames

FRAMES = 240


@pytest.fixture
def engine(tmp_path):
    head = LocalHead(tmp_path / "state")
    head.start()
    try:
        yield head
    finally:
        head.close()


def test_a_run_resumes_after_a_drained_restart_and_after_a_crash(engine, tmp_path):
    from vsa.tools.make_clip import make_clip

    clip = make_clip(tmp_path / "clip.mp4", seed=7, width=160, height=120, fps=25, frames=FRAMES)
    out = tmp_path / "out"
    run_file = tmp_path / "run.yaml"
    run_file.write_text(
        json.dumps(
            {
                "name": "outlives",
                "output_dir": str(out),
                "sources": [
                    {"id": "file", "uri": str(clip), "max_in_flight": 2},
                    {  # a counting camera: its track ids and counts go on across restarts
                        "id": "cam",
                        "uri": "synthetic://shapes?scene=cross&seed=4&fps=10&width=320&height=180"
                        "&objects=2",
                        "lines": [{"id": "middle", "points": [[0.5, 0], [0.5, 1]]}],
                    },
                ],
            }
        )
    )
    done = engine.vsa("submit", str(run_file), "--json")
    assert done.returncode == 0, done.stderr
    run_id = json.loads(done.stdout)["run_id"]
    wait_for(lambda: len(frames(out / "file.jsonl")) >= 20, 180, "frames before the drain")
    cam_jsonl = out / "cam.jsonl"
    wait_for(
        lambda: cam_jsonl.exists() and '"track_id"' in cam_jsonl.read_text(),
        180,
        "a track of the camera before the drain",
    )

    # a second run, changed while it runs and then paused: it comes back from each restart with
    # its latest target (two sources), still paused, and resumes its files when told
    out2 = tmp_path / "out2"
    syn = "synthetic://shapes?seed={}&fps=10&width=160&height=120"
    second = tmp_path / "second.yaml"
    second.write_text(json.dumps({"name": "paused", "output_dir": str(out2),
                                  "sources": [{"id": "a", "uri": syn.format(2)}]}))  # fmt: skip
    done = engine.vsa("submit", str(second), "--json")
    assert done.returncode == 0, done.stderr
    paused_id = json.loads(done.stdout)["run_id"]
    added = engine.vsa("source", "add", paused_id, "--id", "b", "--uri", syn.format(3))
    assert added.returncode == 0, added.stderr
    wait_for(lambda: len(frames(out2 / "b.jsonl")) >= 5, 180, "the added source's frames")
    paused = engine.vsa("pause", paused_id)
    assert paused.returncode == 0, paused.stderr

    def still_paused() -> None:
        status = engine.status(paused_id)
        assert status["state"] == "PAUSED", status
        assert [s["id"] for s in status["sources"]] == ["a", "b"]

    # 1. drain, ray stop, ray start: the files are closed cleanly, the run resumes
    drained = engine.vsa("drain", "--json")
    assert drained.returncode == 0, drained.stderr
    assert json.loads(drained.stdout)["drained"] == [run_id]
    at_drain = len(frames(out / "file.jsonl"))
    cam_at_drain = len(frames(out / "cam.jsonl"))
    refused = engine.vsa("submit", str(run_file))
    assert refused.returncode == 1 and "draining" in refused.stderr
    engine.stop()
    engine.start()
    t0 = time.monotonic()
    run = wait_for(lambda: engine.status(run_id), 180, "the run after the restart")
    assert run["id"] == run_id and run["state"] not in ("FINISHED", "STOPPED", "FAILED"), run
    wait_for(
        lambda: len(frames(out / "file.jsonl")) > at_drain + 10, 180, "frames after the restart"
    )
    print(f"drained restart: the file source emits again {time.monotonic() - t0:.1f} s after start")
    recovered = [e for e in engine.status(run_id)["events"] if e["event"] == "recovered"]
    assert recovered[-1]["after"] == "engine restart" and recovered[-1]["down_s"] > 0
    still_paused()

    # 2. crash: every process of the cluster SIGKILLed, no drain
    assert engine.crash() > 3
    engine.start()
    wait_for(lambda: engine.status(run_id), 180, "the run after the crash")
    final = wait_for(
        lambda: (s := engine.status(run_id)) and s["sources"][0]["state"] == "FINISHED" and s,
        300,
        "the file source to finish",
    )
    # the file is lossless through both restarts: every frame in its JSONL exactly once
    assert frames(out / "file.jsonl") == list(range(FRAMES))
    file_status = final["sources"][0]
    assert file_status["frames_emitted"] >= at_drain
    assert [e["after"] for e in final["events"] if e["event"] == "recovered"] == [
        "engine restart",
        "engine restart",
    ]
    # the camera went on too, its frames numbered on, none twice
    cam = frames(out / "cam.jsonl")
    assert len(cam) == len(set(cam)) and cam == sorted(cam)
    # its tracks ended at the drain and new ids went on above every id written before it;
    # the status's high-water mark and counts are those its files hold
    ids = [
        [d["track_id"] for d in json.loads(line)["detections"] if "track_id" in d]
        for line in (out / "cam.jsonl").read_text().splitlines()
    ]
    before = {i for row in ids[:cam_at_drain] for i in row}
    after = {i for row in ids[cam_at_drain:] for i in row}
    assert before and after and min(after) > max(before), (sorted(before), sorted(after))
    still_paused()  # after the crash too
    at_pause = {sid: len(frames(out2 / f"{sid}.jsonl")) for sid in "ab"}
    resumed = engine.vsa("resume", paused_id)
    assert resumed.returncode == 0, resumed.stderr
    wait_for(
        lambda: all(len(frames(out2 / f"{sid}.jsonl")) > n + 5 for sid, n in at_pause.items()),
        180,
        "the paused run's frames after resume",
    )
    assert engine.vsa("stop", paused_id).returncode == 0
    for sid in "ab":  # one file each, frames numbered on from where the pause left them
        got = frames(out2 / f"{sid}.jsonl")
        assert got == list(range(len(got))), sid
    videos = sorted(out.glob("file*.mp4"))
    assert len(videos) >= 3, videos  # one segment per process: a new one after each restart
    stopped = engine.vsa("stop", run_id, "--json")
    assert stopped.returncode == 0, stopped.stderr
    assert json.loads(stopped.stdout)["state"] == "STOPPED"
    # stopped: the status's high-water mark and counts are what the camera's files hold
    cam_status = next(x for x in json.loads(stopped.stdout)["sources"] if x["id"] == "cam")
    written = [i for line in (out / "cam.jsonl").read_text().splitlines()
               for d in json.loads(line)["detections"] if (i := d.get("track_id")) is not None]  # fmt: skip
    assert cam_status["analytics"]["track_ids"] == max(written)
    crossings = (out / "cam.events.jsonl").read_text().splitlines()
    counted = cam_status["analytics"]["lines"]["middle"]
    assert counted["in"] + counted["out"] == len(crossings) > 0


def test_a_camera_password_from_a_file_is_nowhere_after_a_resumed_run(engine, tmp_path):
    """A credentialed RTSP camera whose password comes from ``password_file``: it streams,
    is drained, resumes on a new cluster (the engine unseals its URI from the disk) and
    streams again; the password is then in no file the engine wrote (state directory, run
    records, outputs and their names, report, Ray's session logs) and in no status."""
    from tests.rtsp_server import RtspServer, available

    why = available()
    if why:
        require("the RTSP test server", "VSA_REQUIRE_RTSP", why)
    password = "Pw-0f-the-d00r"
    (tmp_path / "door.pw").write_text(password + "\n")
    (tmp_path / "door.pw").chmod(0o600)  # vsa refuses a password file others can read
    out = tmp_path / "out"
    with RtspServer(cameras=["door=160x120@10"], user="viewer", password=password) as server:
        run_file = tmp_path / "run.yaml"
        uri = server.url("door", user="viewer")
        run_file.write_text(
            json.dumps(
                {
                    "name": "door",
                    "output_dir": str(out),
                    "sources": [{"id": "door", "uri": uri, "password_file": "door.pw"}],
                }
            )
        )
        done = engine.vsa("submit", str(run_file), "--json", cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        run_id = json.loads(done.stdout)["run_id"]
        wait_for(lambda: len(frames(out / "door.jsonl")) >= 5, 180, "the camera's frames")
        assert engine.vsa("drain").returncode == 0
        before = len(frames(out / "door.jsonl"))
        engine.stop()
        engine.start()
        wait_for(lambda: engine.status(run_id), 180, "the run after the restart")
        wait_for(lambda: len(frames(out / "door.jsonl")) > before + 5, 180, "frames again")
        shown = [engine.vsa("status", run_id, "--json").stdout, engine.vsa("list").stdout]
        assert engine.vsa("stop", run_id).returncode == 0
    assert "viewer:***@" in shown[0]
    leaks = [text for text in shown if password in text]
    for root in (tmp_path / "state", out, engine.temp):
        for path in Path(root).rglob("*"):
            if password in str(path):
                leaks.append(f"file name {path}")
            elif path.is_file() and not path.is_socket() and password.encode() in _read(path):
                leaks.append(str(path))
    assert not leaks, leaks


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        return b""
