"""``vsa serve``: the engine as a service in the foreground (systemd, a container's entry point).

It joins the Ray cluster of this host, or starts its head (``ray start --head``) when none
runs; it starts the controller, which resumes the runs that were active when the engine last
went down (after ``vsa drain``, an upgrade, a reboot, a crash: ``vsa.supervision.store``);
it prints a line per active run every ``--interval`` seconds; SIGTERM or Ctrl-C drains the
runs (their files closed, they resume on the next start) and stops the Ray head it started.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import threading
import time
from typing import Any, TextIO

from vsa.errors import ClusterNotFound, VsaError


def _say(out: TextIO, text: str) -> None:
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} vsa serve: {text}", file=out, flush=True)


def _ray(*args: str) -> subprocess.CompletedProcess:
    """The ``ray`` CLI of this interpreter's installation."""
    command = [sys.executable, "-m", "ray.scripts.scripts", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


def start_head(extra: list[str], out: TextIO) -> None:
    """``ray start --head`` (with ``extra``); :class:`VsaError` with Ray's words when it fails."""
    _say(out, "no Ray cluster on this host: ray start --head " + " ".join(extra))
    done = _ray("start", "--head", "--disable-usage-stats", *extra)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
        raise VsaError("`ray start --head` failed: " + " | ".join(tail))


def serve(args: argparse.Namespace, out: TextIO) -> int:
    from vsa import __version__
    from vsa.client import Client

    started_head = False
    replace = bool(getattr(args, "replace_controller", False))
    try:
        client = Client(address=args.address, replace_controller=replace)
    except ClusterNotFound:
        if args.address:
            raise
        start_head(list(args.ray_start_arg), out)
        started_head = True
        client = Client(replace_controller=replace)
    active = [r for r in client.status() if not r.terminal]
    # the controller answers once it has recovered: the active runs are resumed by now
    _say(
        out,
        f"engine up (vsa {__version__}); {len(active)} active runs"
        + (": " + ", ".join(r.id for r in active) if active else ""),
    )
    stop = threading.Event()
    received: list[str] = []

    def on_signal(signum: int, frame: Any) -> None:
        received.append(signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    while not stop.wait(args.interval):
        try:
            for run in client.status():
                if not run.terminal:
                    emitted = sum(s.frames_emitted for s in run.sources)
                    fps = sum(s.fps for s in run.sources)
                    _say(out, f"{run.id} {run.state.value} {fps:.1f} fps, {emitted} emitted")
        except VsaError as exc:
            _say(out, f"status unavailable: {exc}")
    _say(out, f"{received[0]}: draining")
    code = 0
    try:
        answer = client.drain()
        runs = ", ".join(answer["drained"]) or "no runs"
        _say(out, f"drained in {answer['took_s']:.1f} s ({runs}); they resume on the next start")
    except VsaError as exc:
        _say(out, f"drain failed: {exc}")
        code = 1
    if started_head:
        import ray

        ray.shutdown()
        _say(out, "stopping the Ray head it started")
        _ray("stop")
    return code


if __name__ == "__main__":
    from vsa.cli import main

    sys.exit(main(["serve", *sys.argv[1:]]))
