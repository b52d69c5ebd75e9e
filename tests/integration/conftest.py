"""One real local Ray cluster per test session (``ray.init(address="local")``).

Everything here runs the real engine: the detached controller, source actors,
the inference actor, PyAV decoding/encoding and the object store.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.ports import free_port, free_ports  # noqa: F401 - the tests import them from here

REPO = Path(__file__).resolve().parents[2]
RECOVERY_S = 20.0
"""Kill to recovery, at most: under 10 s on this host even under a saturating load
(``scripts/control_plane.py``, docs/control-plane.md); twice that for CI's margin."""


def require(what: str, env: str, why: str | None) -> None:
    """Skip when ``why`` says a system tool is missing, or fail when ``env`` is 1 (CI sets it)."""
    if why is None:
        return
    if os.environ.get(env) == "1":
        pytest.fail(f"{what} is required ({env}=1): {why}")
    pytest.skip(why)


def wait_for(
    condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.25
) -> Any:
    """Poll ``condition`` until it returns something truthy; fail with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


@contextlib.contextmanager
def _free_dashboard_agent_port() -> Iterator[None]:
    """``ray.init(address="local")`` starts its dashboard agent on Ray's fixed port 52365 (no
    argument of ``ray.init`` changes it): beside another cluster on the host (the demo's ``ray
    start --head``) the agent cannot bind, and no job can be submitted (``ray job submit``:
    "No available agent"). The node is started with a free port instead: Ray's own
    ``RayParams`` given one, for this ``ray.init`` only."""
    from ray._private import parameter

    original = parameter.RayParams.__init__
    (port,) = free_ports(1)

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("dashboard_agent_listen_port", port)
        original(self, *args, **kwargs)

    parameter.RayParams.__init__ = init  # type: ignore[method-assign]
    try:
        yield
    finally:
        parameter.RayParams.__init__ = original  # type: ignore[method-assign]


@pytest.fixture(scope="session")
def ray_cluster(tmp_path_factory) -> dict[str, str]:
    import ray

    # the engine's state (run records, credentials key) in this session's own directory: the
    # runs of a test session are never resumed by a later cluster on this host (workers
    # inherit the environment of the process that starts the cluster)
    os.environ["VSA_STATE_DIR"] = str(tmp_path_factory.mktemp("vsa-state"))
    # a host file of this session's own: the engine reads it on each use, so a test can change
    # a setting of the running engine (the ``host_file`` fixture)
    host = tmp_path_factory.mktemp("vsa-host") / "vsa.yaml"
    host.write_text(HOST_FILE_EMPTY)
    os.environ["VSA_CONFIG"] = str(host)
    # Ray's temp dir of this session's own (short: socket paths), inherited by the workers and
    # every CLI a test runs: another cluster on the host (the demo's `ray start --head`) is
    # recorded in /tmp/ray, and Ray's job supervisor sends a job's driver to the cluster
    # recorded in its temp dir ("auto"), which would be that other one
    temp = tempfile.mkdtemp(prefix="vsait", dir="/tmp")
    os.environ["RAY_TMPDIR"] = temp
    with _free_dashboard_agent_port():
        ctx = ray.init(
            address="local",
            namespace="vsa",
            log_to_driver=False,
            include_dashboard=True,
            object_store_memory=1_000_000_000,
            # metrics reach Ray's Prometheus endpoint every second (10 s by default)
            _system_config={"metrics_report_interval_ms": 1000},
        )
    info = {
        "gcs_address": ctx.address_info["gcs_address"],
        "dashboard_url": ctx.dashboard_url,
        "session_dir": ctx.address_info["session_dir"],
    }
    from ray._private.utils import write_ray_address

    write_ray_address(info["gcs_address"])  # as `ray start` does: "auto" is this cluster
    yield info
    ray.shutdown()
    os.environ["VSA_CONFIG"] = ""  # none, as for every other test (tests/conftest.py)
    os.environ.pop("RAY_TMPDIR", None)
    shutil.rmtree(temp, ignore_errors=True)


HOST_FILE_EMPTY = "# the integration tests' host file: a test sets what it needs\n"


@pytest.fixture
def host_file(ray_cluster) -> Iterator[Path]:
    """The running engine's host file (``VSA_CONFIG``), empty again after the test."""
    path = Path(os.environ["VSA_CONFIG"])
    try:
        yield path
    finally:
        path.write_text(HOST_FILE_EMPTY)


@pytest.fixture
def client(ray_cluster):
    """A fresh client per test (a test may replace the controller)."""
    from vsa.client import Client

    return Client()


@pytest.fixture(scope="session")
def clips(tmp_path_factory) -> dict[str, Path]:
    """Real H.264 MP4 clips of different sizes and rates, made once per session."""
    from vsa.tools.make_clip import make_clip

    root = tmp_path_factory.mktemp("clips")
    specs = {
        "wide": dict(seed=11, width=640, height=360, fps=25, frames=36),
        "small": dict(seed=12, width=320, height=240, fps=10, frames=24),
        "portrait": dict(seed=13, width=360, height=640, fps=15, frames=30),
    }
    return {name: make_clip(root / f"{name}.mp4", **kw) for name, kw in specs.items()}


def cli_env(**extra: str) -> dict[str, str]:
    """Environment for a CLI subprocess: no RAY_ADDRESS and no RAY_AUTH_MODE (the CLI must cope)."""
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_MODE")}
    env.update(extra)
    return env


def run_cli(
    *args: str, timeout: float = 180, cwd: Path | None = None, **env: str
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd or REPO,
        env=cli_env(**env),
    )


def write_run(path: Path, run: dict[str, Any]) -> Path:
    path.write_text(json.dumps(run))  # JSON is YAML
    return path


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def count_video_frames(path: Path) -> int:
    import av

    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))
