"""The RTSP test server tool itself (``vsa/tools/flaky_rtsp.py``), with PyAV as the client.

No Ray here: these check what a user of ``python -m vsa.tools.flaky_rtsp`` relies on --
the cameras are served at their sizes, Basic auth works and the password is never printed,
every stdin command does what it says, and the ``--event`` schedule (with ``--repeat``)
fires and undoes its actions.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import av
import av.error
import pytest

from tests.integration.conftest import require, wait_for
from tests.rtsp_server import SYSTEM_PYTHON, RtspServer, available

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
OPTS = {"rtsp_transport": "tcp", "analyzeduration": "500000"}
CAM = "cam1=160x120@10"
SECRET = "pa55-w0rd-xyzzy"


@pytest.fixture(scope="module", autouse=True)
def _need_rtsp():
    require("the RTSP test server", "VSA_REQUIRE_RTSP", available())


class _Tee:
    """Stands in for RtspServer's line queue: records every stdout line, then forwards it."""

    def __init__(self, lines: queue.Queue, record: list[str]) -> None:
        self._lines, self._record = lines, record

    def put(self, item: str | None) -> None:
        if item is not None:
            self._record.append(item)
        self._lines.put(item)


class RecordingServer(RtspServer):
    """An RtspServer that keeps every line the tool printed on stdout."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.stdout_lines: list[str] = []

    def _read(self, proc, lines) -> None:
        super()._read(proc, _Tee(lines, self.stdout_lines))


def open_cam(url: str, read_timeout: float = 5) -> av.container.InputContainer:
    return av.open(url, options=OPTS, timeout=(5, read_timeout))


def frame_sizes(url: str, n: int = 3) -> list[tuple[int, int]]:
    """Open ``url`` and decode ``n`` frames; their (width, height)."""
    with open_cam(url) as c:
        sizes = []
        for frame in c.decode(video=0):
            sizes.append((frame.width, frame.height))
            if len(sizes) == n:
                return sizes
    raise AssertionError(f"{url}: the stream ended after {len(sizes)} frames")


def probe(url: str) -> str:
    """``"frames"`` when a frame decodes, else the name of the error opening/reading raised."""
    try:
        frame_sizes(url, n=1)
    except Exception as e:  # noqa: BLE001 - the name is the answer
        return type(e).__name__
    return "frames"


def events(server: RtspServer) -> list[list[str]]:
    """``EVENT <t> <action> <camera> [arg]`` lines, split (``[t, action, camera, ...]``)."""
    return [line.split()[1:] for line in list(server.events_seen)]


def drain_until_error(container, within: float) -> tuple[BaseException | None, float]:
    """Demux until the stream errors or ends; (the error or None at EOF, seconds it took)."""
    t0 = time.monotonic()
    try:
        for _ in container.demux(video=0):
            if time.monotonic() - t0 > within:
                pytest.fail(f"the stream still delivered packets {within}s later")
    except Exception as e:  # noqa: BLE001
        return e, time.monotonic() - t0
    return None, time.monotonic() - t0


# ---------------------------------------------------------------------------- the command


def test_help_from_the_venv():
    r = subprocess.run(
        [sys.executable, "-m", "vsa.tools.flaky_rtsp", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert r.returncode == 0, r.stderr
    for word in ("--camera", "--event", "--repeat", "--user", "--password", "--port"):
        assert word in r.stdout
    for action in ("stall", "drop", "resize", "down"):
        assert action in r.stdout


def test_runs_from_the_venv_by_reexec():
    """``python -m vsa.tools.flaky_rtsp`` from the venv (no gi) re-executes the system python."""
    import importlib.util

    assert importlib.util.find_spec("gi") is None, "the venv has gi: re-exec is not exercised"
    env = {k: v for k, v in os.environ.items() if k != "VSA_FLAKY_RTSP_REEXEC"}
    env["PYTHONFAULTHANDLER"] = "1"  # SIGABRT dumps its Python stacks if it hangs
    cmd = [sys.executable, "-m", "vsa.tools.flaky_rtsp", "--port", "0", "--camera", CAM]
    proc = subprocess.Popen(
        [*cmd, "--exit-on-stdin-eof"],
        cwd=REPO,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        for line in proc.stdout:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    errors: list[str] = []

    def read_stderr() -> None:  # drained, so that a burst of GLib warnings cannot block it
        for line in proc.stderr:
            errors[:] = [*errors[-40:], line]

    readers = [threading.Thread(target=f, daemon=True) for f in (read, read_stderr)]
    for t in readers:
        t.start()
    try:
        line = lines.get(timeout=60)
        if line is None or not line.startswith("READY rtsp://127.0.0.1:"):
            proc.kill()
            proc.wait()
            pytest.fail(f"no READY ({line!r}, rc={proc.returncode}): {''.join(errors)}")
        exe = os.path.realpath(f"/proc/{proc.pid}/exe")
        assert exe == os.path.realpath(SYSTEM_PYTHON)
        assert frame_sizes(line.split()[1] + "/cam1") == [(160, 120)] * 3
        proc.stdin.close()  # --exit-on-stdin-eof
        try:
            rc = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGABRT)
            proc.wait()
            pytest.fail(f"still running 30s after stdin closed: {''.join(errors)}")
        assert rc == 0, "".join(errors)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        for t in readers:
            t.join(timeout=10)
        proc.stdout.close()
        proc.stderr.close()


# ---------------------------------------------------------------------------- serving


def test_two_cameras_of_different_sizes():
    with RtspServer(cameras=[CAM, "cam2=96x64@10"]) as srv:
        assert frame_sizes(srv.url("cam1")) == [(160, 120)] * 3
        assert frame_sizes(srv.url("cam2")) == [(96, 64)] * 3
        with pytest.raises(av.error.HTTPNotFoundError):
            open_cam(srv.url("nope"))


def test_basic_auth_and_the_password_is_never_printed():
    with RecordingServer(cameras=[CAM], user="admin", password=SECRET) as srv:
        assert frame_sizes(srv.url("cam1", "admin", SECRET)) == [(160, 120)] * 3
        with pytest.raises(av.error.HTTPUnauthorizedError):
            open_cam(srv.url("cam1", "admin", "wrong"))
        with pytest.raises(av.error.HTTPUnauthorizedError):
            open_cam(srv.url("cam1", "someone", SECRET))
        with pytest.raises(av.error.HTTPUnauthorizedError):
            open_cam(srv.url("cam1"))
        # commands print lines too (EVENT and OK)
        srv.command("drop cam1")
        srv.command("restore cam1")
        assert frame_sizes(srv.url("cam1", "admin", SECRET), n=1) == [(160, 120)]
        srv.stop()
    out = srv.stdout_lines
    assert out and out[0].startswith("READY "), out
    assert any(line.startswith("EVENT ") and " drop cam1" in line for line in out), out
    assert not [line for line in out if SECRET in line]


# ---------------------------------------------------------------------------- stdin commands


def test_drop_and_restore():
    with RtspServer(cameras=[CAM, "cam2=96x64@10"]) as srv:
        with open_cam(srv.url("cam1")) as connected:
            next(connected.decode(video=0))
            assert srv.command("drop cam1") == "OK drop cam1"
            # the connected client is disconnected ...
            err, took = drain_until_error(connected, within=15)
        assert took < 15, (err, took)
        assert events(srv)[-1][1:] == ["drop", "cam1", "clients=1"]
        # ... and the mount answers 404, while the other camera is untouched
        with pytest.raises(av.error.HTTPNotFoundError):
            open_cam(srv.url("cam1"))
        assert frame_sizes(srv.url("cam2"), n=1) == [(96, 64)]
        assert srv.command("restore cam1") == "OK restore cam1"
        assert frame_sizes(srv.url("cam1")) == [(160, 120)] * 3


def test_down_and_up():
    with RtspServer(cameras=[CAM]) as srv:
        port = srv.port
        with open_cam(srv.url("cam1")) as connected:
            next(connected.decode(video=0))
            assert srv.command("down") == "OK down"
            err, took = drain_until_error(connected, within=15)
        assert took < 15, (err, took)
        with pytest.raises(ConnectionRefusedError):
            open_cam(srv.url("cam1"))
        assert srv.command("up") == "OK up"
        assert srv.port == port
        assert frame_sizes(srv.url("cam1")) == [(160, 120)] * 3
        assert [e[1:] for e in events(srv)] == [["down", "*"], ["up", "*"]]


def test_resize_reaches_a_connected_client():
    with RtspServer(cameras=[CAM]) as srv:
        with open_cam(srv.url("cam1")) as c:
            frames = c.decode(video=0)
            first = next(frames)
            assert (first.width, first.height) == (160, 120)
            assert srv.command("resize cam1 80x60") == "OK resize cam1 80x60"
            deadline = time.monotonic() + 15
            for frame in frames:
                if (frame.width, frame.height) == (80, 60):
                    break
                assert (frame.width, frame.height) == (160, 120)
                assert time.monotonic() < deadline, "no 80x60 frame within 15s of resize"
            else:
                pytest.fail("the stream ended before an 80x60 frame")
        # new clients get the new size too
        assert frame_sizes(srv.url("cam1")) == [(80, 60)] * 3
        assert events(srv)[-1][1:] == ["resize", "cam1", "80x60"]


def test_stall_and_resume():
    with RtspServer(cameras=[CAM]) as srv:
        with open_cam(srv.url("cam1"), read_timeout=1) as c:
            next(c.decode(video=0))
            assert srv.command("stall cam1") == "OK stall cam1"
            err, took = drain_until_error(c, within=20)
        assert isinstance(err, av.error.ExitError), (err, took)
        assert took < 10, f"the read timeout fired {took:.1f}s after stall"
        assert srv.command("resume cam1") == "OK resume cam1"
        assert frame_sizes(srv.url("cam1")) == [(160, 120)] * 3
        assert [e[1:] for e in events(srv)] == [["stall", "cam1"], ["resume", "cam1"]]


def test_bad_commands_get_err():
    with RtspServer(cameras=[CAM]) as srv:
        for line in ("bogus", "stall nocam", "resize cam1 81x60", "resize cam1", "down now"):
            reply = srv.command(line, check=False)
            assert reply.startswith("ERR "), (line, reply)
        # still serving, and nothing was applied
        assert frame_sizes(srv.url("cam1"), n=1) == [(160, 120)]
        assert srv.events_seen == []


# ---------------------------------------------------------------------------- --event schedule


def test_scheduled_drop_repeats():
    with RtspServer(cameras=[CAM], events=["1:drop:cam1:2"], repeat=5) as srv:
        url = srv.url("cam1")
        for cycle in range(2):
            wait_for(lambda: probe(url) == "HTTPNotFoundError", 20, f"404 in cycle {cycle}")
            wait_for(lambda: probe(url) == "frames", 20, f"frames after drop {cycle}")
        wait_for(lambda: len(srv.events_seen) >= 4, 20, "two drops and two restores")
        seen = events(srv)[:4]
        actions = [(e[1], e[2]) for e in seen]
        assert actions == [("drop", "cam1"), ("restore", "cam1")] * 2, srv.events_seen
        t = [float(e[0]) for e in seen]
        for got, want in zip(t, (1, 3, 6, 8), strict=True):
            assert abs(got - want) < 1.5, srv.events_seen


def test_scheduled_down_and_back_up():
    with RtspServer(cameras=[CAM], events=["1:down::2"]) as srv:
        url = srv.url("cam1")
        wait_for(lambda: probe(url) == "ConnectionRefusedError", 20, "connection refused")
        wait_for(lambda: probe(url) == "frames", 20, "frames after the server is up again")
        assert [e[1:] for e in events(srv)] == [["down", "*"], ["up", "*"]]
