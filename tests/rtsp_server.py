"""Drive ``vsa/tools/flaky_rtsp.py`` (a GStreamer RTSP server) from tests.

The server runs under the system interpreter (``/usr/bin/python3``, which has ``gi``);
this helper runs in the test interpreter and talks to it over stdin/stdout::

    from tests.rtsp_server import RtspServer, available

    if (why := available()) is not None:
        pytest.skip(why)
    with RtspServer(cameras=["cam1=640x360@15"]) as srv:
        url = srv.url("cam1")
        srv.command("stall cam1")
        srv.kill()   # a real crash (SIGKILL)
        srv.start()  # back on the same port
"""

from __future__ import annotations

import functools
import os
import queue
import signal
import subprocess
import threading
import time
from pathlib import Path
from urllib.parse import quote

SYSTEM_PYTHON = "/usr/bin/python3"
SCRIPT = Path(__file__).resolve().parents[1] / "vsa" / "tools" / "flaky_rtsp.py"

_PROBE = (
    "import gi; gi.require_version('Gst', '1.0'); gi.require_version('GstRtspServer', '1.0'); "
    "from gi.repository import Gst, GstRtspServer; Gst.init(None); "
    "missing = [e for e in ('videotestsrc', 'videoscale', 'videoconvert', 'valve', 'x264enc', "
    "'rtph264pay') if Gst.ElementFactory.find(e) is None]; "
    "print('missing GStreamer elements: ' + ', '.join(missing) if missing else 'ok')"
)


@functools.lru_cache(maxsize=1)
def available() -> str | None:
    """None when the RTSP test server can run here, else the reason it cannot."""
    if not os.path.exists(SYSTEM_PYTHON):
        return f"{SYSTEM_PYTHON} not found"
    if not SCRIPT.exists():
        return f"{SCRIPT} not found"
    try:
        r = subprocess.run(
            [SYSTEM_PYTHON, "-c", _PROBE], capture_output=True, text=True, timeout=60
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"{SYSTEM_PYTHON} cannot probe GStreamer: {e}"
    out = r.stdout.strip()
    if r.returncode != 0:
        last = (r.stderr.strip().splitlines() or ["?"])[-1]
        return f"{SYSTEM_PYTHON} cannot import gi/GstRtspServer: {last}"
    if out != "ok":
        return out
    return None


class RtspServer:
    """One ``flaky_rtsp`` process; ``start()`` again after ``kill()``/``stop()`` reuses the port."""

    def __init__(
        self,
        port: int | None = None,
        cameras: list[str] | None = None,
        user: str | None = None,
        password: str | None = None,
        events: list[str] | None = None,
        repeat: float | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        self.host = host
        self.port = port
        self.cameras = list(cameras) if cameras else ["cam1=640x360@15"]
        self.user = user
        self.password = password
        self.events = list(events or [])
        self.repeat = repeat
        self.proc: subprocess.Popen[str] | None = None
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.events_seen: list[str] = []
        self._reader: threading.Thread | None = None

    # -- lifecycle

    def start(self, timeout: float = 60) -> RtspServer:
        if self.running:
            raise RuntimeError("already running")
        cmd = [SYSTEM_PYTHON, str(SCRIPT), "--host", self.host, "--port", str(self.port or 0)]
        cmd.append("--exit-on-stdin-eof")
        for cam in self.cameras:
            cmd += ["--camera", cam]
        if self.user is not None:
            cmd += ["--user", self.user, "--password", self.password or ""]
        for ev in self.events:
            cmd += ["--event", ev]
        if self.repeat is not None:
            cmd += ["--repeat", str(self.repeat)]
        self.lines = queue.Queue()
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self._reader = threading.Thread(
            target=self._read, args=(self.proc, self.lines), daemon=True, name="rtsp-server-out"
        )
        self._reader.start()
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._next_line(deadline)
            except TimeoutError:
                self.kill()
                raise TimeoutError(f"flaky_rtsp printed no READY in {timeout}s") from None
            if line is None:
                rc = self.proc.poll()
                self.kill()
                raise RuntimeError(f"flaky_rtsp exited (rc={rc}) before READY: {' '.join(cmd)}")
            if line.startswith("READY "):
                self.port = int(line.rsplit(":", 1)[1].strip())
                return self

    def _read(self, proc: subprocess.Popen[str], lines: queue.Queue[str | None]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip("\n")
            if line.startswith("EVENT "):
                self.events_seen.append(line)
            lines.put(line)
        lines.put(None)

    def _next_line(self, deadline: float) -> str | None:
        """The next stdout line; None when the process ended; TimeoutError at ``deadline``."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("flaky_rtsp did not answer in time")
        try:
            return self.lines.get(timeout=remaining)
        except queue.Empty:
            raise TimeoutError("flaky_rtsp did not answer in time") from None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL the server (a real crash: sockets close with no RTSP teardown)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self._reap()

    def stop(self, timeout: float = 15) -> None:
        """Ask the server to exit (SIGTERM); SIGKILL it if it does not within ``timeout``."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self._reap()

    def _reap(self) -> None:
        assert self.proc is not None
        self.proc.wait()
        if self.proc.stdin is not None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
        if self._reader is not None:
            self._reader.join(timeout=5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def __enter__(self) -> RtspServer:
        if not self.running:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- use

    def url(
        self, camera: str = "cam1", user: str | None = None, password: str | None = None
    ) -> str:
        if self.port is None:
            raise RuntimeError("start() the server first")
        auth = ""
        if user is not None:
            auth = quote(user, safe="")
            if password is not None:
                auth += ":" + quote(password, safe="")
            auth += "@"
        return f"rtsp://{auth}{self.host}:{self.port}/{camera}"

    def command(self, line: str, timeout: float = 30, check: bool = True) -> str:
        """Send one stdin command and return its reply line (``OK ...`` or ``ERR ...``).

        With ``check`` (the default) an ``ERR`` reply raises RuntimeError instead.
        """
        if not self.running:
            raise RuntimeError("flaky_rtsp is not running")
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(line.strip() + "\n")
        self.proc.stdin.flush()
        deadline = time.monotonic() + timeout
        while True:
            reply = self._next_line(deadline)
            if reply is None:
                raise RuntimeError(f"flaky_rtsp exited while running {line!r}")
            if reply.startswith("OK "):
                return reply
            if reply.startswith("ERR "):
                if check:
                    raise RuntimeError(f"flaky_rtsp: {line!r}: {reply[4:]}")
                return reply
