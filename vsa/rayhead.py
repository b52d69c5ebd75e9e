"""A Ray head of one's own: started with ``ray start --head`` and stopped without touching any
other Ray cluster on the host.

``ray stop`` finds Ray's processes by their names and stops every cluster on the host (as root:
every user's). A head started here carries a mark, ``VSA_RAY_HEAD=<random>``, in the
environment of its ``ray start``; the GCS, the raylet, the agents, the dashboard and every
worker inherit it. Stopping the head signals exactly the processes that carry the mark, and
their descendants: SIGTERM in the order ``ray stop`` uses (the raylet, then the other daemons
and the workers, the GCS last), SIGKILL for those still alive after the grace period. The
host's ``ray_current_cluster`` file is removed only when it still names this head.

:func:`find` and :func:`terminate` also stop a cluster marked otherwise (the tests' heads are
marked by their own ``RAY_TMPDIR``).
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import psutil

from vsa.errors import VsaError

MARK = "VSA_RAY_HEAD"
RAY = [sys.executable, "-m", "ray.scripts.scripts"]


def find(entry: str) -> list[psutil.Process]:
    """The processes whose environment holds ``entry`` (``NAME=value``), and their descendants;
    never this process. Processes of other users that cannot be read are not ours."""
    wanted = entry.encode()
    found: dict[int, psutil.Process] = {}
    for pid in psutil.pids():
        if pid == os.getpid():
            continue
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:  # gone, or not ours to read
            continue
        if wanted not in environ:
            continue
        try:
            proc = psutil.Process(pid)
            found[pid] = proc
            for child in proc.children(recursive=True):
                found.setdefault(child.pid, child)
        except psutil.Error:
            continue
    found.pop(os.getpid(), None)
    return list(found.values())


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _signal(procs: Iterable[psutil.Process], sig: int) -> None:
    for proc in procs:
        try:
            proc.send_signal(sig)  # psutil refuses a pid that was reused meanwhile
        except psutil.Error:
            pass


def _wait(procs: Sequence[psutil.Process], timeout_s: float) -> list[psutil.Process]:
    """Wait until ``procs`` are gone (a zombie is gone), ``timeout_s`` at most; those left."""
    deadline = time.monotonic() + timeout_s
    while True:
        left = [p for p in procs if _alive(p)]
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.05)


def kill(procs: Sequence[psutil.Process], wait_s: float = 60.0) -> int:
    """SIGKILL ``procs`` and wait until they are gone; how many there were."""
    _signal(procs, signal.SIGKILL)
    _wait(procs, wait_s)
    return len(procs)


def terminate(procs: Sequence[psutil.Process], grace_s: float = 30.0) -> int:
    """Stop ``procs`` as ``ray stop`` stops a cluster, in three steps (the raylet; the other
    daemons and the workers; the GCS last), each SIGTERM then SIGKILL after ``grace_s / 3``
    for those left; how many there were."""

    def name(proc: psutil.Process) -> str:
        try:
            return proc.name()
        except psutil.Error:
            return ""

    names = {p.pid: name(p) for p in procs}
    steps = [
        [p for p in procs if names[p.pid] == "raylet"],
        [p for p in procs if names[p.pid] not in ("raylet", "gcs_server")],
        [p for p in procs if names[p.pid] == "gcs_server"],
    ]
    for step in steps:
        _signal(step, signal.SIGTERM)
        left = _wait(step, grace_s / len(steps))
        if left:
            kill(left, 10.0)
    return len(procs)


def _address_file() -> Path | None:
    """The host's ``ray_current_cluster`` (what ``ray.init()`` and the CLI join by default)."""
    try:
        from ray._common.utils import get_ray_address_file

        return Path(get_ray_address_file(None))
    except Exception:  # noqa: BLE001 - another Ray keeps it elsewhere: left alone
        return None


class OwnHead:
    """A Ray head this process starts (:meth:`start`) and stops (:meth:`stop`): its own
    processes only, whatever else runs on the host."""

    def __init__(self, extra: Sequence[str] = (), env: Mapping[str, str] | None = None) -> None:
        self.extra = list(extra)
        self.mark = f"{MARK}={secrets.token_hex(8)}"
        self.env = dict(os.environ if env is None else env)
        self.env[MARK] = self.mark.split("=", 1)[1]
        self.address: str | None = None  # the GCS address, once started

    def start(self, timeout_s: float = 300.0) -> str:
        """``ray start --head`` with ``extra``; the GCS address. :class:`VsaError` with Ray's
        words when it fails (what it started by then is stopped)."""
        command = [*RAY, "start", "--head", "--disable-usage-stats", *self.extra]
        try:
            done = subprocess.run(
                command, env=self.env, capture_output=True, text=True, timeout=timeout_s
            )
        except subprocess.TimeoutExpired:
            self.stop()
            raise VsaError(f"`ray start --head` did not finish within {timeout_s:.0f} s") from None
        if done.returncode != 0:
            self.stop()
            tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
            raise VsaError("`ray start --head` failed: " + " | ".join(tail))
        self.address = self._gcs_address()
        if self.address is None:  # joining "auto" could join another cluster of the host
            self.stop()
            raise VsaError("`ray start --head` started no GCS this process can find: stopped it")
        return self.address

    def _gcs_address(self) -> str | None:
        """This head's GCS address, read from its own ``gcs_server``'s command line
        (``--node-ip-address``, ``--gcs_server_port``): not from ``ray_current_cluster``, which
        names another head when one started at the same moment, or lies in another temp dir
        (``--temp-dir``). None when no such process runs."""
        for proc in self.processes():
            try:
                if proc.name() != "gcs_server":
                    continue
                args = {}
                for arg in proc.cmdline():
                    if arg.startswith("--") and "=" in arg:
                        key, value = arg[2:].split("=", 1)
                        args[key.replace("-", "_")] = value
            except psutil.Error:
                continue
            ip, port = args.get("node_ip_address"), args.get("gcs_server_port")
            if ip and port:
                return f"{ip}:{port}"
        return None

    def processes(self) -> list[psutil.Process]:
        """This head's processes that are running now."""
        return find(self.mark)

    def stop(self, grace_s: float = 30.0) -> int:
        """Stop this head's processes (SIGTERM, then SIGKILL after ``grace_s``), none other;
        forget it in ``ray_current_cluster`` when the file still names it. How many
        processes there were."""
        stopped = terminate(self.processes(), grace_s)
        path = _address_file()
        if self.address and path is not None:
            try:
                if path.read_text().strip() == self.address:
                    path.unlink()
            except OSError:
                pass
        return stopped
