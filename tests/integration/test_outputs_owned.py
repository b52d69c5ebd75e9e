"""The engine owns its outputs and its limits, on the real engine: two runs never write the same
files, an earlier run's files are replaced only on request, an output that cannot be written or
vanishes is a SINK_ERROR (never a camera outage, never frames claimed emitted that no file
holds), a stop always ends in exact counts, and a run too big for the host is refused."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.integration.conftest import free_port, read_jsonl, require, wait_for
from tests.rtsp_server import RtspServer, available
from vsa.config import parse_run, resolve_paths
from vsa.errors import VsaError

pytestmark = pytest.mark.integration

SYN = "synthetic://shapes?seed={seed}&fps=15&width=160&height=120"


def spec(tmp_path: Path, name: str, sources: list[dict], out: str = "out", **extra):
    run = {"name": name, "output_dir": str(tmp_path / out), "sources": sources, **extra}
    return resolve_paths(parse_run(run), tmp_path)


def syn(sid: str, seed: int = 1, frames: int | None = None) -> dict:
    uri = SYN.format(seed=seed) + (f"&frames={frames}" if frames else "")
    return {"id": sid, "uri": uri}


def run_of(client, run_id: str) -> dict:
    return client.run(run_id).to_dict()


def source(client, run_id: str, sid: str) -> dict:
    return next(s for s in run_of(client, run_id)["sources"] if s["id"] == sid)


def test_two_runs_never_write_the_same_directory_and_overwrite_is_deliberate(client, tmp_path):
    first = client.submit(spec(tmp_path, "owner-a", [syn("cam1")]))["run_id"]
    try:
        with pytest.raises(VsaError, match=rf"being written by run {first}.*vsa stop {first}"):
            client.submit(spec(tmp_path, "owner-b", [syn("cam1", seed=2)]))
        # another directory is fine, even with the same source ids
        other = client.submit(spec(tmp_path, "owner-c", [syn("cam1")], out="other"))["run_id"]
        client.stop(other)
        wait_for(lambda: source(client, first, "cam1")["frames_emitted"] >= 5, 120, "frames")
    finally:
        done = client.stop(first).to_dict()
    out = tmp_path / "out"
    lines = read_jsonl(out / "cam1.jsonl")
    assert len(lines) == done["sources"][0]["frames_emitted"]
    assert {r["run"] for r in lines} == {first}  # nobody else wrote into it
    # the finished run's files are not replaced silently ...
    with pytest.raises(VsaError, match=r"already holds outputs of an earlier run .*--overwrite"):
        client.submit(spec(tmp_path, "owner-a", [syn("cam1", frames=5)]))
    assert read_jsonl(out / "cam1.jsonl") == lines
    # ... but on request
    again = client.submit(spec(tmp_path, "owner-a", [syn("cam1", frames=5)]), overwrite=True)
    final = client.wait(again["run_id"], 120).to_dict()
    assert final["state"] == "FINISHED"
    assert {r["run"] for r in read_jsonl(out / "cam1.jsonl")} == {again["run_id"]}


def test_a_run_too_big_for_the_engine_is_refused_with_the_numbers(client, tmp_path):
    sources = [syn(f"c{i}", seed=i) for i in range(65)]
    with pytest.raises(VsaError, match=r"the run has 65 sources; this engine admits at most 64"):
        client.submit(spec(tmp_path, "too-big", sources))
    assert not any(r.name == "too-big" for r in client.status())


@pytest.mark.parametrize("timeout_s", [0, -1, float("nan"), float("inf")])
def test_stop_refuses_a_timeout_that_is_not_a_positive_number(client, tmp_path, timeout_s):
    with pytest.raises(VsaError, match="timeout"):
        client.stop("no-such-run-needed", timeout_s=timeout_s)


def test_a_short_stop_leaves_every_source_terminal_with_exact_counts(client, tmp_path):
    run_id = client.submit(spec(tmp_path, "short-stop", [syn("a"), syn("b", seed=2)]))["run_id"]
    wait_for(lambda: source(client, run_id, "b")["frames_emitted"] >= 5, 120, "frames")
    final = client.stop(run_id, timeout_s=0.01).to_dict()
    assert final["state"] == "STOPPED"
    for s in final["sources"]:
        assert s["state"] == "STOPPED", s
        assert s["frames_decoded"] == s["frames_emitted"] + s["frames_dropped"], s
        assert s["in_flight"] == 0, s


def test_output_directory_deleted_mid_run_is_a_sink_error_not_emitted_frames(client, tmp_path):
    run_id = client.submit(spec(tmp_path, "deleted-dir", [syn("cam1")]))["run_id"]
    try:
        wait_for(lambda: source(client, run_id, "cam1")["frames_emitted"] >= 10, 120, "frames")
        shutil.rmtree(tmp_path / "out")
        wait_for(lambda: source(client, run_id, "cam1")["state"] == "FAILED", 60, "SINK_ERROR")
    finally:
        final = client.stop(run_id).to_dict()
    cam = final["sources"][0]
    assert cam["code"] == "SINK_ERROR" and "deleted" in cam["error"], cam
    assert cam["frames_emitted"] == 0, cam  # no file holds the frames written before
    assert cam["drops"].get("output_lost", 0) >= 10, cam
    assert cam["frames_decoded"] == cam["frames_emitted"] + cam["frames_dropped"], cam


def test_a_camera_whose_outputs_cannot_be_opened_fails_with_sink_error_not_retries(
    client, tmp_path
):
    require("the RTSP test server", "VSA_REQUIRE_RTSP", available())
    server = RtspServer(port=free_port(), cameras=["cam1=160x120@15"])
    cam = {
        "id": "cam1",
        "uri": server.url("cam1"),
        "open_timeout_s": 5,
        "read_timeout_s": 3,
        "reconnect": {"initial_s": 0.5, "max_s": 1.0},
    }
    run_id = client.submit(spec(tmp_path, "unwritable", [cam]))["run_id"]
    try:
        # the camera is down at start; meanwhile the video's path is taken by a directory
        wait_for(lambda: source(client, run_id, "cam1")["state"] == "RECONNECTING", 60, "retry")
        (tmp_path / "out" / "cam1.mp4").mkdir()
        server.start()
        wait_for(lambda: source(client, run_id, "cam1")["state"] == "FAILED", 90, "SINK_ERROR")
        cam1 = source(client, run_id, "cam1")
        assert cam1["code"] == "SINK_ERROR", cam1
        wait_for(lambda: run_of(client, run_id)["state"] == "FAILED", 30, "the run FAILED")
        # the camera was never blamed: no retry after the outputs failed
        assert cam1["transitions"][-1] == {**cam1["transitions"][-1], "state": "FAILED"}
        assert not any(
            t.get("code") in ("IO_ERROR", "SINK_ERROR")
            for t in cam1["transitions"]
            if t["state"] == "RECONNECTING"
        ), cam1["transitions"]
    finally:
        server.stop()
        client.stop(run_id)
