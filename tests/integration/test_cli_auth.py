"""The command line against a private Ray cluster that uses token authentication.

A cluster that refuses the client's token (or its lack of one) is reported as that, in one
line and at once, not as "no Ray cluster is running" after Ray's 20 s of retries; the tokens
never appear in what the CLI prints.

The cluster is this module's own: ``ray start --head --block`` in a new session, on free
ports, with its own ``--temp-dir`` and HOME. Teardown kills exactly the processes of that
session (``ray stop`` would stop every Ray cluster on the host).
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.conftest import REPO, cli_env, free_ports, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

RAY = str(Path(sys.executable).with_name("ray"))
TOKEN_ENV = ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_AUTH_MODE", "RAY_ADDRESS")


@dataclass
class AuthCluster:
    address: str
    token: str
    temp_dir: Path


def _session_members(sid: int) -> list[int]:
    """Pids of the processes in session ``sid`` (Ray's workers have process groups of their
    own, but stay in the session of the ``ray start`` that made them)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.getsid(int(entry)) == sid:
                pids.append(int(entry))
        except OSError:  # gone meanwhile
            continue
    return pids


def _kill_session(proc: subprocess.Popen, grace_s: float = 5.0) -> None:
    """SIGTERM then SIGKILL every process of the cluster's session, and only those."""
    sid = proc.pid  # start_new_session=True: the session (and group) id is ray start's pid
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in _session_members(sid):
            try:
                os.kill(pid, sig)
            except OSError:
                pass
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline:
            proc.poll()  # reap ray start itself
            if not [p for p in _session_members(sid) if not _is_zombie(p)]:
                break
            time.sleep(0.2)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] == "Z"


def _cluster_env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in cli_env().items() if k not in TOKEN_ENV}
    env.update(HOME=str(home), RAY_USAGE_STATS_ENABLED="0", **extra)
    return env


@pytest.fixture(scope="module")
def auth_cluster() -> Iterator[AuthCluster]:
    """A one-node cluster started with RAY_AUTH_MODE=token and a random token."""
    if not os.path.isfile(RAY):
        pytest.skip(f"no `ray` next to {sys.executable}")
    temp_dir = Path(tempfile.mkdtemp(prefix="vsa-auth-", dir="/tmp"))  # short: socket paths
    home = temp_dir / "home"
    home.mkdir()
    token = secrets.token_hex(24)
    flags = [
        "--port",
        "--dashboard-port",
        "--ray-client-server-port",
        "--node-manager-port",
        "--object-manager-port",
        "--metrics-export-port",
        "--dashboard-agent-listen-port",
        "--dashboard-agent-grpc-port",
        "--runtime-env-agent-port",
    ]
    chosen = free_ports(len(flags) + 8)  # all different: ray start refuses a port given twice
    ports = dict(zip(flags, chosen, strict=False))
    port, worker_ports = ports["--port"], ",".join(str(p) for p in chosen[len(flags) :])
    command = [RAY, "start", "--head", "--block", "--temp-dir", str(temp_dir)]
    command += [str(x) for kv in ports.items() for x in kv]
    command += ["--worker-port-list", worker_ports, "--num-cpus", "1", "--disable-usage-stats"]
    log_path = temp_dir / "ray-start.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=REPO,
            env=_cluster_env(home, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token),
            start_new_session=True,
        )
    try:

        def started() -> bool:
            if proc.poll() is not None:
                pytest.fail(
                    f"`ray start` with RAY_AUTH_MODE=token exited with {proc.returncode}:\n"
                    + log_path.read_text(errors="replace")[-3000:]
                )
            return "Ray runtime started" in log_path.read_text(errors="replace")

        wait_for(started, timeout=120, what="the token-auth cluster to start")
        yield AuthCluster(address=f"127.0.0.1:{port}", token=token, temp_dir=temp_dir)
    finally:
        _kill_session(proc)
        shutil.rmtree(temp_dir, ignore_errors=True)


def _cli(cluster: AuthCluster, *args: str, **env: str) -> subprocess.CompletedProcess:
    home = Path(tempfile.mkdtemp(prefix="home-", dir=cluster.temp_dir))  # no ~/.ray/auth_token
    if "AUTH_TOKEN_FILE" in env:
        (home / ".ray").mkdir()
        (home / ".ray" / "auth_token").write_text(env.pop("AUTH_TOKEN_FILE"))
    return subprocess.run(
        [sys.executable, "-m", "vsa.cli", *args],
        capture_output=True,
        text=True,
        timeout=90,
        cwd=REPO,
        env=_cluster_env(home, **env),
    )


REFUSED = (
    "vsa: error: the Ray cluster at {address} refused this client's token: make "
    "~/.ray/auth_token (or RAY_AUTH_TOKEN) hold the token the cluster was started with"
)
NO_TOKEN = (
    "vsa: error: the Ray cluster at {address} refused this client, which has no token: make "
    "~/.ray/auth_token (or RAY_AUTH_TOKEN) hold the token the cluster was started with"
)


def _assert_refused(done: subprocess.CompletedProcess, expected: str, *secrets_: str) -> None:
    assert done.returncode == 1, done.stderr
    assert done.stdout == ""
    assert done.stderr.splitlines() == [expected], done.stderr  # one line, no Ray log spam
    assert "no Ray cluster" not in done.stderr
    for secret in secrets_:
        assert secret not in done.stdout + done.stderr


def test_a_wrong_token_is_reported_as_refused_not_as_no_cluster(auth_cluster):
    wrong = secrets.token_hex(24)
    started = time.monotonic()
    done = _cli(auth_cluster, "status", "--address", auth_cluster.address, RAY_AUTH_TOKEN=wrong)
    elapsed = time.monotonic() - started
    _assert_refused(done, REFUSED.format(address=auth_cluster.address), wrong, auth_cluster.token)
    assert elapsed < 30, f"took {elapsed:.0f}s: the refusal should not wait out Ray's retries"


def test_a_wrong_token_in_the_token_file_or_with_ray_address(auth_cluster):
    wrong = secrets.token_hex(24)
    done = _cli(auth_cluster, "list", "--address", auth_cluster.address, AUTH_TOKEN_FILE=wrong)
    _assert_refused(done, REFUSED.format(address=auth_cluster.address), wrong, auth_cluster.token)
    done = _cli(
        auth_cluster, "stop", "some-run", RAY_ADDRESS=auth_cluster.address, RAY_AUTH_TOKEN=wrong
    )
    _assert_refused(done, REFUSED.format(address=auth_cluster.address), wrong, auth_cluster.token)


def test_no_token_is_reported_as_refused(auth_cluster):
    done = _cli(auth_cluster, "status", "--address", auth_cluster.address)
    _assert_refused(done, NO_TOKEN.format(address=auth_cluster.address), auth_cluster.token)


def test_token_mode_without_a_token_says_so(auth_cluster):
    done = _cli(auth_cluster, "status", "--address", auth_cluster.address, RAY_AUTH_MODE="token")
    assert done.returncode == 1, done.stderr
    assert done.stderr.splitlines() == [
        "vsa: error: token authentication is on (RAY_AUTH_MODE=token) and this client has no "
        "token: make ~/.ray/auth_token (or RAY_AUTH_TOKEN) hold the token the cluster was "
        "started with"
    ], done.stderr
    assert auth_cluster.token not in done.stdout + done.stderr


def test_the_right_token_connects(auth_cluster):
    """The control: the same cluster accepts a client with its token, so the refusals above
    are about the token and not about a cluster that does not work."""
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from vsa.client import connect; connect(sys.argv[1]); print('connected')",
            auth_cluster.address,
        ],
        capture_output=True,
        text=True,
        timeout=90,
        cwd=REPO,
        env=_cluster_env(auth_cluster.temp_dir / "home", RAY_AUTH_TOKEN=auth_cluster.token),
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "connected"
    assert auth_cluster.token not in done.stdout + done.stderr
