"""Live sources through the real engine against a real RTSP server (GStreamer's, driven by
``vsa/tools/flaky_rtsp.py``): down at start, killed mid-run, stalled, credentials, two
cameras of different sizes, and ``stop`` from every run state.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path
from urllib.parse import quote

import pytest
import ray

from tests.integration.conftest import (
    count_video_frames,
    free_port,
    read_jsonl,
    require,
    wait_for,
)
from tests.rtsp_server import RtspServer, available
from vsa.config import parse_run, resolve_paths

pytestmark = pytest.mark.integration

FAST = {"initial_s": 0.5, "multiplier": 2.0, "max_s": 2.0, "jitter": 0.2}
# short timeouts keep the tests quick; the defaults (10 s) are what users get
TIMEOUTS = {"open_timeout_s": 5, "read_timeout_s": 3, "stall_timeout_s": 3}
SECRET = "s3cr3t-pw"
ODD_SECRET = "it's!$(odd)*+,;=pw"
KEY_SECRET = "K3Y-v4lue-42"


@pytest.fixture(scope="module", autouse=True)
def _need_rtsp():
    require("the RTSP test server", "VSA_REQUIRE_RTSP", available())


def spec(tmp_path: Path, name: str, sources: list[dict], **extra):
    run = {
        "name": name,
        "output_dir": str(tmp_path / "out"),
        "sources": sources,
        "reconnect": FAST,
        "batching": {"max_batch_size": 4, "max_wait_ms": 30},
        **extra,
    }
    return resolve_paths(parse_run(run), tmp_path)


def camera(cid: str, url: str, **extra) -> dict:
    return {"id": cid, "uri": url, **TIMEOUTS, **extra}


def source(client, run_id: str, sid: str) -> dict:
    run = client.run(run_id).to_dict()
    return next(s for s in run["sources"] if s["id"] == sid)


def run_of(client, run_id: str) -> dict:
    return client.run(run_id).to_dict()


def test_server_down_at_start_then_up(client, tmp_path):
    """No source can connect: the run WAITs and keeps retrying; it is UP once the camera is."""
    server = RtspServer(port=free_port(), cameras=["cam1=320x240@15"])
    run_id = client.submit(spec(tmp_path, "late-camera", [camera("cam1", server.url("cam1"))]))[
        "run_id"
    ]
    try:
        wait_for(
            lambda: source(client, run_id, "cam1")["attempt"] >= 2, 60, "two reconnect attempts"
        )
        run = run_of(client, run_id)
        assert run["state"] == "WAITING"
        cam = run["sources"][0]
        assert cam["state"] in ("RECONNECTING", "CONNECTING")
        assert "UNREACHABLE" in [t.get("code") for t in cam["transitions"]]
        assert "cam1" in (run["reason"] or "")

        server.start()
        wait_for(lambda: run_of(client, run_id)["state"] == "UP", 90, "the run to come UP")
        wait_for(
            lambda: source(client, run_id, "cam1")["frames_emitted"] >= 10, 60, "frames from cam1"
        )
        states = [t["state"] for t in run_of(client, run_id)["transitions"]]
        assert states[:2] == ["WAITING", "UP"]
    finally:
        final = client.stop(run_id).to_dict()
        server.stop()
    cam = final["sources"][0]
    assert final["state"] == "STOPPED"
    assert cam["frames_decoded"] == cam["frames_emitted"] + cam["frames_dropped"]
    assert count_video_frames(tmp_path / "out" / "cam1.mp4") == cam["frames_emitted"]


def test_camera_killed_mid_run_comes_back_and_others_keep_their_pace(client, tmp_path):
    fps = 10.0
    with RtspServer(port=free_port(), cameras=["cam1=320x240@15"]) as server:
        synthetic = f"synthetic://shapes?seed=3&fps={fps:g}&width=160&height=120"
        run_id = client.submit(
            spec(
                tmp_path,
                "outage",
                [camera("cam1", server.url("cam1")), {"id": "syn", "uri": synthetic}],
            )
        )["run_id"]
        try:
            wait_for(
                lambda: (
                    source(client, run_id, "cam1")["frames_emitted"] >= 15
                    and source(client, run_id, "syn")["frames_emitted"] >= 10
                ),
                120,
                "both streams delivering",
            )
            base_n, base_t = source(client, run_id, "syn")["frames_emitted"], time.monotonic()
            wait_for(lambda: time.monotonic() - base_t >= 4, 10, "4 s of baseline")
            baseline = (source(client, run_id, "syn")["frames_emitted"] - base_n) / (
                time.monotonic() - base_t
            )
            server.kill()  # a real crash: no RTSP teardown
            wait_for(
                lambda: source(client, run_id, "cam1")["state"] == "RECONNECTING",
                60,
                "cam1 to notice the outage",
            )
            assert run_of(client, run_id)["state"] == "DEGRADED"
            before, t0 = source(client, run_id, "syn")["frames_emitted"], time.monotonic()
            wait_for(lambda: source(client, run_id, "cam1")["attempt"] >= 2, 60, "retries")
            # the outage lasts at least a few seconds; the synthetic stream does not slow down
            wait_for(lambda: time.monotonic() - t0 >= 4, 10, "an outage of 4 s")
            during = source(client, run_id, "syn")["frames_emitted"] - before
            rate = during / (time.monotonic() - t0)
            assert rate >= 0.8 * baseline, (
                f"syn ran at {rate:.1f} fps during cam1's outage, {baseline:.1f} before"
            )

            server.start()  # same port
            wait_for(
                lambda: source(client, run_id, "cam1")["state"] == "STREAMING", 90, "cam1 back"
            )
            back = source(client, run_id, "cam1")
            assert back["reconnects"] == 1
            codes = {t.get("code") for t in back["transitions"] if t["state"] == "RECONNECTING"}
            assert codes & {"DISCONNECTED", "ENDED", "STALLED", "TIMEOUT"}, codes
            assert codes <= {"DISCONNECTED", "ENDED", "STALLED", "TIMEOUT", "UNREACHABLE"}, codes
            n = back["frames_emitted"]
            wait_for(
                lambda: source(client, run_id, "cam1")["frames_emitted"] >= n + 10,
                60,
                "frames after the reconnect",
            )
            wait_for(lambda: run_of(client, run_id)["state"] == "UP", 30, "the run UP again")
        finally:
            final = client.stop(run_id).to_dict()
    out = tmp_path / "out"
    for s in final["sources"]:
        assert s["state"] == "STOPPED"
        assert s["frames_decoded"] == s["frames_emitted"] + s["frames_dropped"]
        frames = [r["frame"] for r in read_jsonl(out / f"{s['id']}.jsonl")]
        # one record across the outage: numbered on, never repeated (realtime drops leave gaps)
        assert len(frames) == s["frames_emitted"] and frames == sorted(set(frames))
        assert count_video_frames(out / f"{s['id']}.mp4") == s["frames_emitted"]


def test_credentials_right_and_wrong_and_never_shown(client, ray_cluster, tmp_path):
    with RtspServer(
        port=free_port(), cameras=["cam1=320x240@15"], user="viewer", password=SECRET
    ) as server:
        right = server.url("cam1", user="viewer", password=SECRET)
        wrong = server.url("cam1", user="viewer", password="not-" + SECRET)
        # a password typed raw with RFC 3986 sub-delims, and a secret query parameter whose
        # name is not on any fixed list: masked too (the camera is down: errors quote the URI)
        odd = f"rtsp://viewer:{ODD_SECRET}@127.0.0.1:{free_port()}/cam?api_key={KEY_SECRET}"
        run_id = client.submit(
            spec(
                tmp_path,
                "auth",
                [camera("good", right), camera("bad", wrong), camera("odd", odd)],
                reconnect={**FAST, "max_s": 30.0},
            )
        )["run_id"]
        try:
            wait_for(
                lambda: source(client, run_id, "good")["frames_emitted"] >= 10,
                120,
                "frames with the right credentials",
            )
            wait_for(
                lambda: source(client, run_id, "bad")["state"] == "RECONNECTING",
                60,
                "the wrong credentials to be refused",
            )
            bad = source(client, run_id, "bad")
            assert bad["code"] == "AUTH_FAILED", bad
            # a permanent error waits max_s (30 s, jitter 0.2) instead of hammering the server
            assert bad["next_retry_at"] - time.time() > 15
            run = run_of(client, run_id)
            assert run["state"] == "DEGRADED" and "bad RECONNECTING (AUTH_FAILED)" in run["reason"]
            text = json.dumps(client.status_dicts(run_id))
            assert SECRET not in text and "viewer:***@" in text
            assert not any(x in text for x in (ODD_SECRET, KEY_SECRET, "it's!$")), text
            # the controller's durable record holds masked URIs and sealed copies only
            from ray.experimental import internal_kv

            record = internal_kv._internal_kv_get(f"run/{run_id}", namespace="vsa").decode()
            assert "vsa-sealed:v1:" in record
            for secret in (SECRET, ODD_SECRET, KEY_SECRET, quote(SECRET, safe="")):
                assert secret not in record
        finally:
            final = client.stop(run_id).to_dict()
    assert SECRET not in json.dumps(final)
    assert ODD_SECRET not in json.dumps(final) and KEY_SECRET not in json.dumps(final)
    report = (tmp_path / "out" / "report.json").read_text()
    assert not any(x in report for x in (SECRET, ODD_SECRET, KEY_SECRET))
    out = tmp_path / "out"
    for path in out.rglob("*"):
        assert SECRET not in path.name
        if path.suffix == ".jsonl":
            assert SECRET not in path.read_text()
    # nor in any log of the cluster (controller, source and inference actors, raylet, ...)
    logs = [p for p in (Path(ray_cluster["session_dir"]) / "logs").rglob("*") if p.is_file()]
    texts = {p.name: p.read_bytes() for p in logs}
    assert any(b"bad RECONNECTING" in t or b"AUTH_FAILED" in t for t in texts.values())
    leaked = [
        name
        for name, text in texts.items()
        if any(x.encode() in text for x in (SECRET, ODD_SECRET, KEY_SECRET))
    ]
    assert not leaked, f"the password is in {leaked}"


def test_a_stalled_camera_is_reconnected(client, tmp_path):
    with RtspServer(port=free_port(), cameras=["cam1=320x240@15"]) as server:
        run_id = client.submit(spec(tmp_path, "stall", [camera("cam1", server.url("cam1"))]))[
            "run_id"
        ]
        try:
            wait_for(lambda: source(client, run_id, "cam1")["frames_emitted"] >= 10, 120, "frames")
            server.command("stall cam1")  # the connection stays open; no packet flows
            wait_for(
                lambda: (
                    "STALLED"
                    in [t.get("code") for t in source(client, run_id, "cam1")["transitions"]]
                ),
                60,
                "the stall to be noticed",
            )
            server.command("resume cam1")
            wait_for(
                lambda: (
                    source(client, run_id, "cam1")["state"] == "STREAMING"
                    and source(client, run_id, "cam1")["reconnects"] >= 1
                ),
                90,
                "cam1 streaming again",
            )
        finally:
            final = client.stop(run_id).to_dict()
    cam = final["sources"][0]
    assert cam["frames_decoded"] == cam["frames_emitted"] + cam["frames_dropped"]


def test_two_cameras_of_different_size_and_rate_are_batched_together(client, tmp_path):
    """One over TCP, one over UDP; frames of both share batches of the inference actor, or,
    where it runs two batches at once, are split evenly across them."""
    with RtspServer(port=free_port(), cameras=["big=320x240@15", "small=160x120@10"]) as server:
        run_id = client.submit(
            spec(
                tmp_path,
                "two-cams",
                [
                    camera("big", server.url("big")),
                    camera("small", server.url("small"), rtsp_transport="udp"),
                ],
                batching={"max_batch_size": 8, "max_wait_ms": 80},
            )
        )["run_id"]
        try:
            wait_for(
                lambda: all(
                    source(client, run_id, s)["frames_emitted"] >= 30 for s in ("big", "small")
                ),
                120,
                "frames from both cameras",
            )
        finally:
            final = client.stop(run_id).to_dict()
    out = tmp_path / "out"
    big, small = read_jsonl(out / "big.jsonl"), read_jsonl(out / "small.jsonl")
    assert {(r["width"], r["height"]) for r in big} == {(320, 240)}
    assert {(r["width"], r["height"]) for r in small} == {(160, 120)}
    shared = {r["batch"] for r in big} & {r["batch"] for r in small}
    # on a CPU the inference actor may run two batches at once (vsa.inference.threads); then
    # the two realtime cameras are split evenly across them instead, one frame per batch
    stats = ray.get(ray.get_actor("inference", namespace="vsa").stats.remote(), timeout=60)
    concurrent = max(int(c.split("x")[0]) for c in stats["torch_threads"]["candidates"]) > 1
    sizes = {r["batch_size"] for r in big + small}
    assert shared or (concurrent and sizes == {1}), (
        f"no batch held frames of both cameras (batch sizes {sizes}, split {stats['torch_threads']})"
    )
    assert all(s["state"] == "STOPPED" for s in final["sources"])


class BlackHole:
    """A TCP server that accepts and never answers: an RTSP open that hangs (CONNECTING)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)

    def close(self) -> None:
        self.sock.close()
        for c in self.conns:
            c.close()


@pytest.mark.parametrize("state", ["WAITING", "UP", "DEGRADED"])
def test_stop_from_every_run_state(client, tmp_path, state):
    """Each run state, with sources CONNECTING, RECONNECTING, STREAMING and FAILED among them."""
    hole = BlackHole()
    dead = f"rtsp://127.0.0.1:{free_port()}/cam"
    syn = "synthetic://shapes?seed=2&fps=10&width=160&height=120"
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    sources = {
        # one source hangs in its open (CONNECTING), one is refused (RECONNECTING)
        "WAITING": [
            camera("hang", f"rtsp://127.0.0.1:{hole.port}/cam", open_timeout_s=30),
            camera("dead", dead),
        ],
        "UP": [{"id": "syn", "uri": syn}],
        # one streams, one is refused, one file is FAILED
        "DEGRADED": [
            {"id": "syn", "uri": syn},
            camera("dead", dead),
            {"id": "bad", "uri": str(empty)},
        ],
    }[state]
    run_id = client.submit(spec(tmp_path, f"stop-{state.lower()}", sources))["run_id"]
    try:
        wait_for(lambda: run_of(client, run_id)["state"] == state, 120, f"the run {state}")
        if state == "WAITING":
            wait_for(
                lambda: source(client, run_id, "dead")["state"] == "RECONNECTING", 60, "a retry"
            )
            assert source(client, run_id, "hang")["state"] == "CONNECTING"
        if state == "DEGRADED":
            assert source(client, run_id, "bad")["code"] == "CORRUPT_DATA"
        started = time.monotonic()
        final = client.stop(run_id, timeout_s=30).to_dict()
        took = time.monotonic() - started
    finally:
        hole.close()
    assert final["state"] == "STOPPED"
    assert took < 45, f"stop took {took:.0f} s"
    for s in final["sources"]:
        assert s["state"] in ("STOPPED", "FAILED"), s
        assert s["frames_decoded"] == s["frames_emitted"] + s["frames_dropped"]
    assert run_of(client, run_id)["state"] == "STOPPED"
    assert client.stop(run_id).to_dict()["state"] == "STOPPED"  # stopping a stopped run is a no-op


def test_http_sources_and_bad_files_beside_a_healthy_stream(client, clips, tmp_path):
    """An HTTP file finishes, an HTTP 404 fails with NOT_FOUND after its attempts, bad files
    fail or skip damage with codes, and the healthy stream is untouched by all of it."""
    import functools
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    from tests import media

    served = tmp_path / "www"
    served.mkdir()
    media.good_clip(served, name="clip.mp4")  # has a duration: finishes at its end

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(served))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{httpd.server_address[1]}"
    bad = tmp_path / "bad"
    bad.mkdir()
    syn = "synthetic://shapes?seed=9&fps=10&width=160&height=120&frames=40"
    try:
        run_id = client.submit(
            spec(
                tmp_path,
                "http-and-bad",
                [
                    {"id": "syn", "uri": syn},
                    camera("web", f"{base}/clip.mp4", mode="lossless"),  # a file: every frame
                    camera(
                        "gone", f"{base}/missing.mp4", reconnect={"max_attempts": 1, "max_s": 1}
                    ),
                    {"id": "empty", "uri": str(media.empty_file(bad))},
                    {"id": "codec", "uri": str(media.unsupported_codec(bad))},
                    {"id": "damaged", "uri": str(media.corrupt_packets(bad))},
                ],
            )
        )["run_id"]
        run = client.wait(run_id, timeout_s=180).to_dict()
    finally:
        httpd.shutdown()
    by_id = {s["id"]: s for s in run["sources"]}
    assert run["state"] == "FINISHED", run
    assert by_id["syn"]["state"] == "FINISHED" and by_id["syn"]["frames_emitted"] == 40
    assert by_id["web"]["state"] == "FINISHED" and by_id["web"]["frames_emitted"] == 30
    assert (by_id["gone"]["state"], by_id["gone"]["code"]) == ("FAILED", "NOT_FOUND")
    assert (by_id["empty"]["state"], by_id["empty"]["code"]) == ("FAILED", "CORRUPT_DATA")
    assert (by_id["codec"]["state"], by_id["codec"]["code"]) == ("FAILED", "UNSUPPORTED_CODEC")
    damaged = by_id["damaged"]
    assert damaged["state"] == "FINISHED" and damaged["drops"].get("decode_error", 0) > 0
    for s in run["sources"]:
        assert s["frames_decoded"] == s["frames_emitted"] + s["frames_dropped"], s


def test_camera_resolution_change_mid_run_continues_in_a_new_segment(client, tmp_path):
    with RtspServer(port=free_port(), cameras=["cam1=320x240@15"]) as server:
        run_id = client.submit(spec(tmp_path, "resize", [camera("cam1", server.url("cam1"))]))[
            "run_id"
        ]
        try:
            wait_for(lambda: source(client, run_id, "cam1")["frames_emitted"] >= 10, 120, "frames")
            server.command("resize cam1 160x120")
            out = tmp_path / "out"
            wait_for(lambda: (out / "cam1.part2.mp4").exists(), 60, "a second video segment")
            n = source(client, run_id, "cam1")["frames_emitted"]
            wait_for(
                lambda: source(client, run_id, "cam1")["frames_emitted"] >= n + 10,
                60,
                "frames at the new size",
            )
            assert source(client, run_id, "cam1")["state"] == "STREAMING"
        finally:
            final = client.stop(run_id).to_dict()
    cam = final["sources"][0]
    sizes = [(r["width"], r["height"]) for r in read_jsonl(out / "cam1.jsonl")]
    first_small = sizes.index((160, 120))
    assert set(sizes[:first_small]) == {(320, 240)} and set(sizes[first_small:]) == {(160, 120)}
    assert count_video_frames(out / "cam1.mp4") == first_small
    assert count_video_frames(out / "cam1.part2.mp4") == cam["frames_emitted"] - first_small


def test_stop_on_a_finished_or_failed_run_changes_nothing(client, tmp_path):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    failed = client.submit(spec(tmp_path, "all-bad", [{"id": "bad", "uri": str(empty)}]))
    run = client.wait(failed["run_id"], timeout_s=120).to_dict()
    assert run["state"] == "FAILED" and "bad: CORRUPT_DATA" in run["error"]
    assert client.stop(failed["run_id"]).to_dict()["state"] == "FAILED"
    syn = "synthetic://shapes?seed=1&fps=10&width=160&height=120&frames=5"
    done = client.submit(spec(tmp_path / "short", "short", [{"id": "syn", "uri": syn}]))
    assert client.wait(done["run_id"], timeout_s=120).to_dict()["state"] == "FINISHED"
    assert client.stop(done["run_id"]).to_dict()["state"] == "FINISHED"
