"""One real local Ray cluster per test session (``ray.init(address="local")``).

Everything here runs the real engine: the detached controller, source actors,
the inference actor, PyAV decoding/encoding and the object store.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
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


@pytest.fixture(scope="session")
def ray_cluster(tmp_path_factory) -> dict[str, str]:
    import ray

    # the engine's state (run records, credentials key) in this session's own directory: the
    # runs of a test session are never resumed by a later cluster on this host (workers
    # inherit the environment of the process that starts the cluster)
    os.environ["VSA_STATE_DIR"] = str(tmp_path_factory.mktemp("vsa-state"))
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
    yield info
    ray.shutdown()


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
