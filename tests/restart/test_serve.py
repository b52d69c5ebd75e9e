"""``vsa serve``, the engine as a service: it starts the Ray head when none runs, resumes the
runs that were active, drains on SIGTERM (files closed, runs kept) and stops the head it
started, that head's processes only (another cluster on the host lives on); started again, it
resumes the drained run. On a head it joined (not its own, not stopped), a new service ends the
drain an earlier one left and the drained run resumes. Its own tier (``tests/restart``): real
Ray heads, each with its own ``RAY_TMPDIR`` and ports."""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.integration.conftest import wait_for
from tests.local_head import REPO, LocalHead, frames


class Service:
    """``vsa serve`` with ``head``'s environment: it starts that head (its ports) when none
    runs, or joins it (``join``: ``--address``, a head started by someone else)."""

    def __init__(self, head: LocalHead, join: bool = False) -> None:
        ports = [f"--port={head.port}", f"--dashboard-agent-listen-port={head.ports[0]}",
                 f"--dashboard-agent-grpc-port={head.ports[1]}",
                 f"--metrics-export-port={head.ports[2]}",
                 f"--runtime-env-agent-port={head.ports[3]}", "--include-dashboard=false"]  # fmt: skip
        where = ["--address", head.address] if join else [f"--ray-start-arg={p}" for p in ports]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "vsa.serve", "--interval", "1", *where],
            env=head.env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def expect(self, text: str, timeout: float) -> str:
        def found() -> str | None:
            while True:
                try:
                    line = self.lines.get_nowait()
                except queue.Empty:
                    return None
                self.seen.append(line)
                if text in line:
                    return line

        return wait_for(found, timeout, f"'{text}' from vsa serve (so far: {self.seen[-5:]})")

    def terminate(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=300)


@pytest.fixture
def head(tmp_path):
    head = LocalHead(tmp_path / "state")
    try:
        yield head
    finally:
        head.close()


def test_serve_starts_the_engine_drains_on_sigterm_and_resumes_the_run(head, tmp_path):
    out = tmp_path / "out"
    run_file = tmp_path / "run.yaml"
    run_file.write_text(json.dumps({
        "name": "served", "output_dir": str(out),
        "sources": [{"id": "cam", "uri": "synthetic://shapes?seed=2&fps=10&width=160&height=120"}],
    }))  # fmt: skip
    service = Service(head)
    try:
        service.expect("no Ray cluster on this host: ray start --head", 120)
        service.expect("engine up", 300)
        done = head.vsa("submit", str(run_file), "--json")
        assert done.returncode == 0, done.stderr
        run_id = json.loads(done.stdout)["run_id"]
        wait_for(lambda: len(frames(out / "cam.jsonl")) >= 5, 180, "frames")
        service.expect(f"{run_id} UP", 60)  # a status line per active run
        assert service.terminate() == 0
        service.expect("SIGTERM: draining", 10)
        service.expect("drained in", 10)
        service.expect("stopping the Ray head it started", 10)
        assert head.status(run_id) is None  # nothing answers: the head is gone
        at_stop = len(frames(out / "cam.jsonl"))

        service = Service(head)  # the host comes back
        line = service.expect("engine up", 300)
        assert f"1 active runs: {run_id}" in line
        wait_for(lambda: len(frames(out / "cam.jsonl")) > at_stop + 5, 180, "frames again")
        cam = frames(out / "cam.jsonl")
        assert cam == sorted(set(cam))  # numbered on, none twice
        assert head.vsa("stop", run_id).returncode == 0
        assert service.terminate() == 0
        service.expect("drained in 0.0 s (no runs)", 30)
    finally:
        if service.proc.poll() is None:
            service.proc.kill()


def _run_file(tmp_path: Path, name: str, out: Path) -> Path:
    run_file = tmp_path / f"{name}.yaml"
    run_file.write_text(json.dumps({
        "name": name, "output_dir": str(out),
        "sources": [{"id": "cam", "uri": "synthetic://shapes?seed=2&fps=10&width=160&height=120"}],
    }))  # fmt: skip
    return run_file


def test_serve_on_a_head_it_joined_resumes_the_runs_an_earlier_service_drained(head, tmp_path):
    """``systemctl restart`` of a service whose Ray head is not its own: the controller
    (detached) outlives the service, drained; the next service ends the drain."""
    head.start()
    out = tmp_path / "out"
    service = Service(head, join=True)
    try:
        service.expect("engine up", 300)
        done = head.vsa("submit", str(_run_file(tmp_path, "served", out)), "--json")
        assert done.returncode == 0, done.stderr
        run_id = json.loads(done.stdout)["run_id"]
        wait_for(lambda: len(frames(out / "cam.jsonl")) >= 5, 180, "frames")
        service.expect(f"{run_id} UP", 60)
        assert service.terminate() == 0
        service.expect("drained in", 30)
        assert not any("stopping the Ray head" in line for line in service.seen)
        # the head and the controller live on, drained: the run's sources are not running
        run = wait_for(lambda: head.status(run_id), 120, "the engine to answer")
        assert run["events"][-1]["event"] == "drained"
        assert {(s["state"], s["fps"]) for s in run["sources"]} == {("CONNECTING", 0.0)}
        refused = head.vsa("submit", str(_run_file(tmp_path, "other", tmp_path / "other")))
        assert refused.returncode != 0 and "draining" in refused.stderr
        at_drain = len(frames(out / "cam.jsonl"))

        service = Service(head, join=True)  # systemctl restart
        service.expect(f"the engine was drained: 1 drained runs resume: {run_id}", 300)
        line = service.expect("engine up", 60)
        assert f"1 active runs: {run_id}" in line
        wait_for(lambda: len(frames(out / "cam.jsonl")) > at_drain + 5, 180, "frames again")
        cam = frames(out / "cam.jsonl")
        assert cam == sorted(set(cam))  # numbered on, none twice
        run = head.status(run_id)
        assert run is not None
        events = [e["event"] for e in run["events"]]
        assert "recovered" in events[events.index("drained") :]
        assert head.vsa("stop", run_id).returncode == 0
        assert service.terminate() == 0
        service.expect("drained in 0.0 s (no runs)", 30)
    finally:
        if service.proc.poll() is None:
            service.proc.kill()


def _gcs_answers(address: str) -> bool:
    """Whether the GCS at ``address`` answers a request (its cluster id; refusing this
    process's token, where token authentication is on, is an answer too)."""
    import grpc
    from ray._private.grpc_utils import init_grpc_channel
    from ray.core.generated import gcs_service_pb2, gcs_service_pb2_grpc

    channel = init_grpc_channel(address)
    try:
        stub = gcs_service_pb2_grpc.NodeInfoGcsServiceStub(channel)
        stub.GetClusterId(gcs_service_pb2.GetClusterIdRequest(), timeout=10)
        return True
    except grpc.RpcError as exc:
        return exc.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
    finally:
        channel.close()


def test_serve_stops_only_the_head_it_started(head, tmp_path):
    """Another Ray cluster on the host (another service's, another user's) outlives the
    service's SIGTERM: only the head the service started is stopped, not ``ray stop``."""
    other = LocalHead(tmp_path / "other-state")
    try:
        other.start()
        theirs = [p for p in other.processes() if p.name() in ("gcs_server", "raylet")]
        assert len(theirs) == 2
        service = Service(head)
        try:
            service.expect("no Ray cluster on this host: ray start --head", 120)
            service.expect("engine up", 300)
            ours = [p for p in head.processes() if p.pid != service.proc.pid]
            assert {"gcs_server", "raylet"} <= {p.name() for p in ours}
            assert service.terminate() == 0
            line = service.expect("stopping the Ray head it started (", 30)
            assert f":{head.port}) only" in line  # the address of its own head
            service.expect("stopped its", 60)
        finally:
            if service.proc.poll() is None:
                service.proc.kill()
        assert head.processes() == []  # its head, every process of it, is gone
        assert all(p.is_running() for p in theirs)  # the other cluster's daemons live
        assert _gcs_answers(other.address)
        assert not _gcs_answers(head.address)
    finally:
        other.close()
