"""``vsa serve``: the engine as a service in the foreground (systemd, a container's entry point).

It joins the Ray cluster of this host, or starts its head (``ray start --head``) when none
runs; it starts the controller, which resumes the runs that were active when the engine last
went down (after ``vsa drain``, an upgrade, a reboot, a crash: ``vsa.supervision.store``).
On a head it joined, the controller (detached) may have outlived an earlier service that
drained it: the drain ends and the drained runs resume (``Client.resume_drained``). It prints a
line per active run every ``--interval`` seconds, from the controller's status of that moment
(a drained run reads ``DRAINED``; fps counts streaming sources only); SIGTERM or Ctrl-C drains
the runs (their files closed, they resume on the next start) and stops the Ray head it started:
that head's own processes, none of another cluster on the host (``vsa.rayhead``, not
``ray stop``).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from typing import TYPE_CHECKING, Any, TextIO

from vsa.errors import ClusterNotFound, VsaError
from vsa.schema import SourceState

if TYPE_CHECKING:
    from vsa.rayhead import OwnHead
    from vsa.schema import RunStatus


def _say(out: TextIO, text: str) -> None:
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} vsa serve: {text}", file=out, flush=True)


def start_head(extra: list[str], out: TextIO) -> OwnHead:
    """``ray start --head`` (with ``extra``), a head of this process's own (``vsa.rayhead``);
    :class:`VsaError` with Ray's words when it fails."""
    from vsa.rayhead import OwnHead

    _say(out, "no Ray cluster on this host: ray start --head " + " ".join(extra))
    head = OwnHead(extra)
    head.start()
    return head


def _this_hosts_cluster() -> str:
    """What to join without ``--address``: ``RAY_ADDRESS``, else the cluster that ``ray start``
    recorded on this host (``ray_current_cluster`` in Ray's temp dir). Not Ray's ``auto``,
    which without that record joins any GCS it sees running on the host: another service's
    or another user's cluster. No record: ``ClusterNotFound`` (serve starts its own head)."""
    from vsa.hostconfig import environ

    address = environ().get("RAY_ADDRESS")
    if address:
        return address
    try:
        from ray._private.utils import read_ray_address

        recorded = read_ray_address(None)
    except Exception:  # noqa: BLE001 - unreadable: as if none
        recorded = None
    if not recorded:
        raise ClusterNotFound("no Ray cluster recorded on this host")
    return recorded  # a stale record does not answer: ClusterNotFound from Client


def _drained(run: RunStatus) -> bool:
    """Whether the run's sources are stopped by a drain (its last drain or resume says)."""
    marks = [e.event for e in run.events if e.event in ("drained", "recovered")]
    return bool(marks) and marks[-1] == "drained"


def status_line(run: RunStatus) -> str:
    """A run's line, from its status now: fps only of the sources that stream (a drained or
    reconnecting source's last rate is not a rate)."""
    emitted = sum(s.frames_emitted for s in run.sources)
    fps = sum(s.fps for s in run.sources if s.state is SourceState.STREAMING)
    if _drained(run):
        return f"{run.id} DRAINED (resumes when the engine starts again) 0.0 fps, {emitted} emitted"
    return f"{run.id} {run.state.value} {fps:.1f} fps, {emitted} emitted"


def drained_lines(answer: dict[str, Any]) -> tuple[list[str], int]:
    """What serve says of a drain, and its exit code: the runs that resume on the next start,
    and those it could not save (1: never promised to resume; ``vsa status`` says why)."""
    not_saved = list(answer.get("not_saved") or [])
    saved = [r for r in answer["drained"] if r not in not_saved]
    runs = ", ".join(saved) or "no runs"
    lines = [f"drained in {answer['took_s']:.1f} s ({runs}); they resume on the next start"]
    if not_saved:
        lines.append(f"NOT SAVED, will not resume: {', '.join(not_saved)} (see vsa status)")
    return lines, 1 if not_saved else 0


def resume_drained(client: Any, out: TextIO) -> None:
    """End a drain that an earlier service left on this engine: its runs resume."""
    try:
        answer = client.resume_drained()
    except (VsaError, AttributeError) as exc:
        _say(out, f"could not resume the drained runs: {exc}")
        return
    if answer["resumed"]:
        _say(
            out,
            f"the engine was drained: {len(answer['resumed'])} drained runs resume: "
            + ", ".join(answer["resumed"]),
        )
    elif answer["draining"]:
        _say(out, "the engine was drained (no runs): new runs are accepted again")


def serve(args: argparse.Namespace, out: TextIO) -> int:
    from vsa import __version__
    from vsa.client import Client

    head: OwnHead | None = None
    replace = bool(getattr(args, "replace_controller", False))
    try:
        client = Client(address=args.address or _this_hosts_cluster(), replace_controller=replace)
    except ClusterNotFound:
        if args.address:
            raise
        head = start_head(list(args.ray_start_arg), out)
        try:
            client = Client(address=head.address, replace_controller=replace)
        except BaseException:
            _stop_head(head, out)
            raise
    # a drain left by an earlier service on a head it did not stop (this one joined it)
    resume_drained(client, out)
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
    ui = None
    if getattr(args, "ui", False):
        from vsa.ui import UiServer, client_picture

        ui = UiServer(client.status_dicts, client_picture(client), args.ui_host, args.ui_port)
        _say(out, f"live page: {ui.start()}")
    while not stop.wait(args.interval):
        try:
            for run in client.status():
                if not run.terminal:
                    _say(out, status_line(run))
        except VsaError as exc:
            _say(out, f"status unavailable: {exc}")
    if ui is not None:
        ui.close()
    _say(out, f"{received[0]}: draining")
    code = 0
    try:
        answer = client.drain()
        lines, code = drained_lines(answer)
        for line in lines:
            _say(out, line)
    except VsaError as exc:
        _say(out, f"drain failed: {exc}")
        code = 1
    if head is not None:
        _stop_head(head, out)
    return code


def _stop_head(head: OwnHead, out: TextIO) -> None:
    """Stop the head this service started: its own processes (not ``ray stop``, which stops
    every Ray cluster on the host)."""
    import ray

    ray.shutdown()
    _say(out, f"stopping the Ray head it started ({head.address or 'address unknown'}) only")
    _say(out, f"stopped its {head.stop()} processes")


if __name__ == "__main__":
    from vsa.cli import main

    sys.exit(main(["serve", *sys.argv[1:]]))
