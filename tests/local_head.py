"""A Ray head started with ``ray start --head`` the way an operator starts one, isolated from
anything else on the host by its own ``RAY_TMPDIR`` (session directory, ``ray_current_cluster``)
and port, driven through the ``vsa`` CLI; it can be stopped, started again and crashed (every
process carrying that ``RAY_TMPDIR`` in its environment, which the head's daemons and every
worker inherit, is SIGKILLed; ``stop`` sends them SIGTERM as ``ray stop`` would, without
touching other clusters: ``vsa.rayhead``, which ``vsa serve`` uses for the head it starts).
Used by ``tests/restart`` and ``scripts/restart_cycle.py``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import psutil

from tests.ports import free_ports
from vsa import rayhead

REPO = Path(__file__).resolve().parents[1]
RAY = [sys.executable, "-m", "ray.scripts.scripts"]


class LocalHead:
    def __init__(self, state_dir: Path, **env: str) -> None:
        self.temp = tempfile.mkdtemp(prefix="vsar", dir="/tmp")  # socket paths stay short
        # every port of its own: Ray's fixed defaults (the dashboard agent's 52365, ...) would
        # meet those of another cluster on the host, or of one still going away
        self.port, *self.ports = free_ports(5)  # all different
        self.address = f"127.0.0.1:{self.port}"
        self.env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
        self.env.update(
            RAY_TMPDIR=self.temp, VSA_STATE_DIR=str(state_dir), PYTHONPATH=str(REPO), **env
        )

    def start(self) -> None:
        done = subprocess.run(
            [*RAY, "start", "--head", f"--port={self.port}", "--disable-usage-stats",
             "--include-dashboard=false", "--object-store-memory=400000000",
             f"--dashboard-agent-listen-port={self.ports[0]}",
             f"--dashboard-agent-grpc-port={self.ports[1]}",
             f"--metrics-export-port={self.ports[2]}",
             f"--runtime-env-agent-port={self.ports[3]}"],
            env=self.env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(
                "ray start --head failed:\n" + done.stdout + done.stderr + self._log_tails()
            )

    def _log_tails(self, lines: int = 15) -> str:
        """The ends of this cluster's GCS, raylet and agent logs (why a start failed)."""
        out = []
        for name in ("gcs_server.out", "raylet.out", "raylet.err", "dashboard_agent.log"):
            for path in sorted(Path(self.temp).glob(f"**/session_latest/logs/{name}")):
                tail = path.read_text(errors="replace").splitlines()[-lines:]
                out.append(f"\n--- {path.name} (last {len(tail)} lines) ---\n" + "\n".join(tail))
        return "".join(out)

    def processes(self) -> list[psutil.Process]:
        """This cluster's processes (and whatever else carries its ``RAY_TMPDIR``: a ``vsa``
        command or ``vsa serve`` started with :attr:`env`)."""
        return rayhead.find(f"RAY_TMPDIR={self.temp}")

    def stop(self, grace_s: float = 30.0) -> int:
        """What ``ray stop`` does (SIGTERM, then SIGKILL after ``grace_s``) to this cluster's
        processes only: ``ray stop`` itself stops every Ray cluster on the host."""
        return rayhead.terminate(self.processes(), grace_s)

    def crash(self) -> int:
        """SIGKILL every process of this cluster; how many there were."""
        return rayhead.kill(self.processes())

    def close(self) -> None:
        self.crash()
        shutil.rmtree(self.temp, ignore_errors=True)

    def vsa(
        self, *args: str, timeout: float = 300, cwd: Path = REPO
    ) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "vsa.cli", *args, "--address", self.address],
            env=self.env, cwd=cwd, capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip

    def status(self, run_id: str) -> dict[str, Any] | None:
        """The run's status, None while the engine does not answer."""
        done = self.vsa("status", run_id, "--json")
        return json.loads(done.stdout)["runs"][0] if done.returncode == 0 else None


def frames(path: Path) -> list[int]:
    """The frame numbers a stream's JSONL holds, in order."""
    if not path.exists():
        return []
    return [json.loads(line)["frame"] for line in path.read_text().splitlines() if line]
