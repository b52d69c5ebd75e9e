"""The controller's status endpoint as a real HTTP server, read by the real CLI (no Ray: the
controller is a function here; tests/integration reads the real controller's), and the
data plane's lower priority in a real process."""

from __future__ import annotations

import argparse
import io
import json
import os
import select
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.unit.test_cli_args import STOPPED_RUN
from vsa.cli import StatusReader, build_parser, follow
from vsa.constants import ENDPOINT_MAX_CONNECTIONS, FRESH_S
from vsa.control.endpoint import (
    StatusEndpoint,
    Unavailable,
    endpoint_path,
    find_run,
    http_get,
    publish,
    read_status,
    write_endpoint,
)
from vsa.errors import RunNotFound, VsaError

REPO = Path(__file__).resolve().parents[2]
UP_RUN = {**STOPPED_RUN, "state": "UP", "sources": [{"id": "cam1", "state": "STREAMING"}]}


def answer(runs: list[dict]):
    def status(run: str | None) -> dict:
        if run is None:
            return {"runs": runs}
        found = find_run(runs, run)
        if found is None:
            raise RunNotFound(f"no run with id or name '{run}' (see `vsa list`)")
        return {"runs": [found]}

    return status


@pytest.fixture
def ray_tmp(tmp_path: Path, monkeypatch) -> Path:
    """Ray's temp directory for this test; the endpoint file goes in its newest session."""
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # the endpoint index of this test only
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    return tmp_path


def serve(ray_tmp: Path, status) -> StatusEndpoint:
    endpoint = StatusEndpoint(status)
    url = endpoint.start()
    path = endpoint_path(ray_tmp / "ray" / "session_latest")
    write_endpoint(path, {"url": url, "token": endpoint.token, "gcs_address": "127.0.0.1:6379"})
    return endpoint


def cli_without_ray(ray_tmp: Path, *args: str) -> subprocess.CompletedProcess:
    """The CLI in a process that cannot import Ray: it must answer from the endpoint."""
    code = (
        "import sys; sys.modules['ray'] = None\n"
        "from vsa.cli import main\n"
        f"sys.exit(main({list(args)!r}))"
    )
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["RAY_TMPDIR"] = str(ray_tmp)
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO, timeout=60
    )


def test_vsa_status_and_list_answer_from_the_endpoint_without_ray(ray_tmp: Path):
    endpoint = serve(ray_tmp, answer([STOPPED_RUN]))
    try:
        done = cli_without_ray(ray_tmp, "status", "--json")
        assert done.returncode == 0, done.stderr
        assert [r["id"] for r in json.loads(done.stdout)["runs"]] == ["r1-1"]
        done = cli_without_ray(ray_tmp, "status", "r1")
        assert done.returncode == 0 and done.stdout.startswith("run r1-1  STOPPED"), done.stderr
        done = cli_without_ray(ray_tmp, "list")
        assert done.returncode == 0 and done.stdout.startswith("r1-1  STOPPED"), done.stderr
        done = cli_without_ray(ray_tmp, "status", "nope")
        assert done.returncode == 1
        assert done.stderr.strip() == "vsa: error: no run with id or name 'nope' (see `vsa list`)"
    finally:
        endpoint.close()


def test_a_request_without_the_token_is_refused_and_the_token_is_not_echoed(ray_tmp: Path):
    import urllib.error
    import urllib.request

    endpoint = serve(ray_tmp, answer([STOPPED_RUN]))
    try:
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            request = urllib.request.Request(endpoint.url + "/v1/status", headers=headers)
            with pytest.raises(urllib.error.HTTPError) as info:
                urllib.request.urlopen(request, timeout=10)
            assert info.value.code == 401
            assert endpoint.token not in info.value.read().decode()
        path = endpoint_path(ray_tmp / "ray" / "session_latest")
        info_file = json.loads(path.read_text())
        write_endpoint(path, {**info_file, "token": "stale"})  # a file from before a restart
        with pytest.raises(Unavailable, match="answered 401") as refused:
            read_status()
        assert "stale" not in str(refused.value) and endpoint.token not in str(refused.value)
    finally:
        endpoint.close()


def test_a_busy_controller_does_not_make_20_concurrent_readers_wait(ray_tmp: Path):
    release = threading.Event()

    def busy(run: str | None) -> dict:
        if not release.wait(FRESH_S):  # what the controller shell does with its event loop
            raise TimeoutError
        return {"runs": [STOPPED_RUN]}

    endpoint = serve(ray_tmp, busy)
    endpoint.answers.remember({"runs": [UP_RUN]})
    try:

        def timed_read(_: int) -> tuple[float, dict]:
            started = time.monotonic()
            return time.monotonic() - started, read_status("r1")

        with ThreadPoolExecutor(20) as pool:
            results = list(pool.map(lambda k: timed_read(k), range(20)))
        for _took, body in results:
            assert body == {"runs": [UP_RUN]}  # the snapshot
        # each waited for the controller once (FRESH_S) and got the snapshot: generous bound
        assert max(took for took, _ in results) < 10, results
    finally:
        release.set()
        endpoint.close()


def test_a_closed_endpoint_is_unavailable(ray_tmp: Path):
    endpoint = serve(ray_tmp, answer([STOPPED_RUN]))
    endpoint.close()
    with pytest.raises(Unavailable, match="did not answer"):
        read_status()


def test_follow_says_the_controller_is_restarting_and_goes_on(ray_tmp: Path, monkeypatch):
    """The endpoint goes away (the controller was killed) and a new one comes up elsewhere."""
    import vsa.cli as cli

    def no_ray(*_a, **_k):
        raise AssertionError("follow went through Ray while the endpoint was there")

    monkeypatch.setattr(cli, "_client", no_ray)
    first = serve(ray_tmp, answer([UP_RUN]))
    out = io.StringIO()
    reader = StatusReader(build_parser().parse_args(["status", "r1"]))
    code: list[int] = []
    thread = threading.Thread(
        target=lambda: code.append(follow(reader, "r1-1", out, interval_s=0.05)), daemon=True
    )
    thread.start()
    second = None
    try:
        _wait(lambda: "UP" in out.getvalue(), "the run UP")
        first.close()
        _wait(lambda: "controller restarting" in out.getvalue(), "the restarting line")
        second = serve(ray_tmp, answer([STOPPED_RUN]))  # new port, new token, file replaced
        thread.join(30)
        assert code == [0], out.getvalue()
        assert out.getvalue().rstrip().splitlines()[-3].startswith("run r1-1  STOPPED")
    finally:
        if second is not None:
            second.close()


class ThroughRay:
    """A stand-in for the client that goes through Ray: answers ``answer`` or raises it."""

    def __init__(self, answer: dict | Exception) -> None:
        self.answer = answer

    def status_dicts(self, run: str | None = None) -> dict:
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def test_the_cli_finds_the_endpoint_of_the_cluster_it_addresses_and_says_why_not(
    ray_tmp: Path, capsys: pytest.CaptureFixture[str]
):
    """Issue 23 items 1 and 11: the newest session's endpoint is another cluster's (a ray
    start --head elsewhere on the host, or one started with --temp-dir=DIR that this client's
    RAY_TMPDIR does not name): the endpoint of the cluster addressed is found in the index by
    its GCS address; an address with no endpoint of its own says in one line why it is slow."""
    other = serve(ray_tmp, answer([UP_RUN]))  # session_latest: 127.0.0.1:6379's
    mine = StatusEndpoint(answer([STOPPED_RUN]))
    try:
        info = {"url": mine.start(), "token": mine.token, "gcs_address": "10.0.0.5:41000"}
        info["pid"] = os.getpid()
        assert publish(info, ray_tmp / "elsewhere" / "session_1")[1] is None
        for address in ("127.0.0.1:41000", "10.0.0.5:41000"):
            done = cli_without_ray(ray_tmp, "status", "--json", "--address", address)
            assert done.returncode == 0, done.stderr
            assert [r["id"] for r in json.loads(done.stdout)["runs"]] == ["r1-1"]
            assert [r["state"] for r in json.loads(done.stdout)["runs"]] == ["STOPPED"]
            assert done.stderr == ""  # the normal case says nothing
        done = cli_without_ray(ray_tmp, "status", "--json")  # auto: the newest session's
        assert done.returncode == 0 and json.loads(done.stdout)["runs"][0]["state"] == "UP"
        # an address with no endpoint of its own: through Ray (a stand-in here), and once Ray
        # answered, one line saying why it was slow; a failure is its error alone
        note = (
            "vsa: the controller's status endpoint on this host serves the cluster at "
            "127.0.0.1:6379, not 127.0.0.1:7000; asking 127.0.0.1:7000 through Ray (slower)\n"
        )
        args = argparse.Namespace(address="127.0.0.1:7000")
        reader = StatusReader(args, client=ThroughRay({"runs": []}))
        assert reader.status_dicts() == {"runs": []}
        assert capsys.readouterr().err == note
        reader = StatusReader(args, client=ThroughRay(VsaError("no cluster at 127.0.0.1:7000")))
        with pytest.raises(VsaError, match="no cluster"):
            reader.status_dicts()
        assert capsys.readouterr().err == ""
    finally:
        mine.close()
        other.close()


def _closed(sock: socket.socket) -> bool:
    """Whether the server closed ``sock`` (read end-of-file or a reset); never blocks."""
    readable, _, _ = select.select([sock], [], [], 0)
    if not readable:
        return False
    try:
        return sock.recv(1024) == b""
    except OSError:
        return True


def test_idle_connections_are_bounded_timed_out_and_never_keep_status_out(ray_tmp: Path):
    """Issue 23 item 8: connections that send nothing hold a thread each, at most
    ENDPOINT_MAX_CONNECTIONS of them (a new one takes the place of the oldest idle one),
    each for the read timeout at most; a status with the token still answers in under 1 s."""
    # a read timeout long enough that no idle connection times out before the bound is seen
    endpoint = StatusEndpoint(answer([STOPPED_RUN]), read_timeout_s=10.0)
    url = endpoint.start()
    path = endpoint_path(ray_tmp / "ray" / "session_latest")
    write_endpoint(path, {"url": url, "token": endpoint.token, "gcs_address": "127.0.0.1:6379"})
    host, port = url.removeprefix("http://").split(":")
    threads_before = threading.active_count()
    idle: list[socket.socket] = []
    try:
        for _ in range(ENDPOINT_MAX_CONNECTIONS + 40):
            idle.append(socket.create_connection((host, int(port)), timeout=10))
        _wait(lambda: endpoint.connections == ENDPOINT_MAX_CONNECTIONS, "the bound reached")
        _wait(
            lambda: threading.active_count() <= threads_before + ENDPOINT_MAX_CONNECTIONS,
            "the threads of evicted connections gone",
        )
        # the oldest were let go for the newer ones
        _wait(lambda: all(_closed(s) for s in idle[:40]), "the oldest idle connections closed")
        for _ in range(5):  # each one takes the place of an idle connection
            started = time.monotonic()
            assert read_status("r1") == {"runs": [STOPPED_RUN]}
            assert time.monotonic() - started < 1.0
            assert threading.active_count() <= threads_before + ENDPOINT_MAX_CONNECTIONS + 1
        # the rest are closed by the server after the read timeout
        _wait(lambda: all(_closed(s) for s in idle), "idle connections timed out", 60)
        _wait(lambda: endpoint.connections == 0, "no connection left")
    finally:
        for sock in idle:
            sock.close()
        endpoint.close()


def test_connections_beyond_the_bound_all_serving_are_answered_503_at_once(ray_tmp: Path):
    release = threading.Event()

    def slow(run: str | None) -> dict:
        release.wait(60)
        return {"runs": [STOPPED_RUN]}

    endpoint = StatusEndpoint(slow, max_connections=2)
    url = endpoint.start()
    try:
        with ThreadPoolExecutor(2) as pool:
            busy = [pool.submit(http_get, f"{url}/v1/status", endpoint.token, 60) for _ in range(2)]
            _wait(lambda: endpoint.connections == 2, "two requests being served")
            _wait(lambda: not endpoint._server._waiting, "both requests read")
            started = time.monotonic()
            code, body = http_get(f"{url}/v1/status", endpoint.token, 30)
            assert code == 503 and b"too many connections" in body
            assert time.monotonic() - started < 1.0
            release.set()
            assert [f.result(60)[0] for f in busy] == [200, 200]
        _wait(lambda: endpoint.connections == 0, "no connection left")
        assert http_get(f"{url}/v1/status", endpoint.token, 30)[0] == 200
    finally:
        release.set()
        endpoint.close()


def _wait(condition, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


PRIORITY_CHILD = """
import json, os, threading
from vsa.control.priority import lower_priority, raise_priority
base = os.getpriority(os.PRIO_PROCESS, 0)   # CI may run niced already
target = base + 5
hold = threading.Event()
before = threading.Thread(target=hold.wait); before.start()
changed = lower_priority(target)
after = threading.Thread(target=hold.wait); after.start()   # created by a reniced thread
tids = [int(t) for t in os.listdir("/proc/self/task")]
nices = sorted({os.getpriority(os.PRIO_PROCESS, t) for t in tids})
again = lower_priority(base)   # never lowers it back
still = os.getpriority(os.PRIO_PROCESS, 0)
raised = raise_priority(base)  # allowed for root (or CAP_SYS_NICE) only
back = sorted({os.getpriority(os.PRIO_PROCESS, t) for t in tids})
hold.set()
print(json.dumps([changed, len(tids), nices == [target], again, still == target,
                  raised, back == [base if raised else target]]))
"""


@pytest.mark.skipif(
    not Path("/proc/self/task").exists() or os.getpriority(os.PRIO_PROCESS, 0) > 14,
    reason="Linux, and room to raise the nice value by 5",
)
def test_lower_priority_renices_every_thread_and_new_ones_follow():
    done = subprocess.run(
        [sys.executable, "-c", PRIORITY_CHILD], capture_output=True, text=True, cwd=REPO
    )
    assert done.returncode == 0, done.stderr
    changed, threads, nices, again, still, raised, back = json.loads(done.stdout)
    assert (changed, threads, nices, again, still, back) == (2, 3, True, 0, True, True)
    assert raised is (os.geteuid() == 0)
