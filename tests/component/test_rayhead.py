"""``vsa.rayhead``: a head's processes are found by the mark in their environment (and their
descendants) and stopped, SIGTERM then SIGKILL; no other process is touched. Plain processes
stand for Ray's daemons here; ``tests/restart/test_serve.py`` stops a real head beside
another one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil

from vsa import rayhead

# blocks until signalled; with "child", first starts a grandchild without the mark
BLOCK = """
import os, signal, subprocess, sys, threading
if sys.argv[1:] == ["stubborn"]:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
if sys.argv[1:] == ["child"]:
    env = {k: v for k, v in os.environ.items() if k != "VSA_RAY_HEAD"}
    subprocess.Popen([sys.executable, "-c", "import threading; threading.Event().wait()"], env=env)
print("ready", flush=True)
threading.Event().wait()
"""


def _start(mark: str | None, *args: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != rayhead.MARK}
    if mark is not None:
        env[rayhead.MARK] = mark
    proc = subprocess.Popen(
        [sys.executable, "-c", BLOCK, *args], env=env, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
    return proc


def _children(proc: subprocess.Popen, count: int) -> list[psutil.Process]:
    deadline = time.monotonic() + 30
    while len(kids := psutil.Process(proc.pid).children()) < count:
        assert time.monotonic() < deadline, "the grandchild never started"
        time.sleep(0.01)
    return kids


def test_only_the_marked_processes_and_their_descendants_are_stopped() -> None:
    ours = _start("abc", "child")
    grandchild = _children(ours, 1)[0]
    stubborn = _start("abc", "stubborn")
    other = _start("abd")  # another head's mark
    unmarked = _start(None)
    try:
        found = {p.pid for p in rayhead.find(f"{rayhead.MARK}=abc")}
        assert found == {ours.pid, grandchild.pid, stubborn.pid}
        assert rayhead.terminate(rayhead.find(f"{rayhead.MARK}=abc"), grace_s=1.5) == 3
        assert ours.wait(10) == -signal.SIGTERM
        assert stubborn.wait(10) == -signal.SIGKILL  # SIGTERM ignored: killed after the grace
        assert not grandchild.is_running() or grandchild.status() == psutil.STATUS_ZOMBIE
        assert other.poll() is None and unmarked.poll() is None
        assert rayhead.find(f"{rayhead.MARK}=abc") == []
    finally:
        for proc in (ours, stubborn, other, unmarked):
            proc.kill()
            proc.wait()


def test_an_own_head_is_marked_apart_from_any_other() -> None:
    a, b = rayhead.OwnHead(["--port=1"]), rayhead.OwnHead()
    assert a.mark != b.mark and a.mark.startswith(f"{rayhead.MARK}=")
    assert a.env[rayhead.MARK] == a.mark.split("=", 1)[1]
    assert rayhead.MARK not in os.environ  # this process is not marked
    assert a.processes() == [] and a.stop() == 0  # nothing started: nothing stopped
