"""``vsa serve``, the engine as a service: it starts the Ray head when none runs, resumes the
runs that were active, drains on SIGTERM (files closed, runs kept) and stops the head it
started; started again, it resumes the drained run. Its own tier (``tests/restart``): the
head it stops is stopped with ``ray stop``, which stops every Ray cluster on the host."""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import sys
import threading

import pytest

from tests.integration.conftest import wait_for
from tests.local_head import REPO, LocalHead, frames


class Service:
    def __init__(self, head: LocalHead) -> None:
        ports = [f"--port={head.port}", f"--dashboard-agent-listen-port={head.ports[0]}",
                 f"--dashboard-agent-grpc-port={head.ports[1]}",
                 f"--metrics-export-port={head.ports[2]}",
                 f"--runtime-env-agent-port={head.ports[3]}", "--include-dashboard=false"]  # fmt: skip
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "vsa.serve", "--interval", "1",
             *(f"--ray-start-arg={p}" for p in ports)],
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
