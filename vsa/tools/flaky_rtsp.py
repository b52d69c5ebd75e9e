"""A local RTSP test server whose cameras you can stall, drop, resize or take down on purpose.

Use it to rehearse camera outages against vsa (or any RTSP client) without real cameras.
Each ``--camera NAME=WxH@FPS`` is served at ``rtsp://HOST:PORT/NAME`` as a live H.264
test pattern (a moving ball with a running clock where the overlay plugin is installed).

It needs GStreamer's RTSP server and its Python bindings from Debian::

    apt-get install python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base \\
        gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly

and runs under the system interpreter; ``python -m vsa.tools.flaky_rtsp`` from a virtual
environment without ``gi`` re-executes itself with ``/usr/bin/python3``.

Examples::

    # one camera, cam1=640x360@15, on a free port; prints "READY rtsp://127.0.0.1:PORT"
    python -m vsa.tools.flaky_rtsp --port 0

    # two cameras behind Basic auth on port 8554
    python -m vsa.tools.flaky_rtsp --port 8554 --camera door=1280x720@25 \\
        --camera yard=640x360@10 --user admin --password secret
    # -> rtsp://admin:secret@127.0.0.1:8554/door

    # a camera that drops for 10 s every minute (starting 30 s in),
    # and stalls (connection open, no packets) for 5 s at second 50 of each minute
    python -m vsa.tools.flaky_rtsp --port 8554 --event 30:drop:cam1:10 \\
        --event 50:stall:cam1:5 --repeat 60

    # the whole server goes away for 20 s after 2 minutes (clients get "connection refused")
    python -m vsa.tools.flaky_rtsp --port 8554 --event 120:down::20

Schedule entries are ``T:ACTION:CAM[:ARG]``: T seconds after start (of each ``--repeat``
cycle), ACTION one of stall, resume, drop, restore, resize, down, up.  ARG is ``WxH`` for
resize, or for stall/drop/down a duration in seconds after which the action is undone
(resume/restore/up).  CAM is ignored (may be empty or ``*``) for down/up.

While it runs, stdin takes one command a line, each answered ``OK <command>`` or
``ERR <reason>``::

    stall CAM       stop sending that camera's video (connections stay open)
    resume CAM      send it again
    drop CAM        disconnect that camera's clients; its mount answers 404
    restore CAM     serve the mount again
    resize CAM WxH  change that camera's picture size for connected and new clients
    down            close every connection and the listening socket (connection refused)
    up              listen again on the same port
    quit            exit

Output: one line ``READY rtsp://HOST:PORT`` once listening, then one line
``EVENT <seconds since start> <action> <camera or *> [arg]`` per applied action.
Passwords are never printed.  SIGINT/SIGTERM exit cleanly.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

try:
    import gi
except ImportError:  # the venv interpreter; main() re-executes with the system one
    gi = None

SYSTEM_PYTHON = "/usr/bin/python3"
APT_HINT = (
    "apt-get install python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base "
    "gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly"
)
_REEXEC_ENV = "VSA_FLAKY_RTSP_REEXEC"

Gst: Any = None
GstRtspServer: Any = None
GLib: Any = None
GstRtsp: Any = None

ACTIONS = ("stall", "resume", "drop", "restore", "resize", "down", "up")
UNDO = {"stall": "resume", "drop": "restore", "down": "up"}
SERVER_ACTIONS = ("down", "up")
ROLE = "viewer"

_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]+$")
_SIZE_RE = re.compile(r"^(\d+)x(\d+)$")


# ---------------------------------------------------------------------------- parsing


def parse_size(text: str) -> tuple[int, int]:
    """``"640x360"`` -> ``(640, 360)``; sizes must be even and at least 16 pixels."""
    m = _SIZE_RE.match(text.strip())
    if not m:
        raise ValueError(f"size {text!r} is not WxH")
    w, h = int(m.group(1)), int(m.group(2))
    if w < 16 or h < 16 or w > 7680 or h > 4320 or w % 2 or h % 2:
        raise ValueError(f"size {text!r}: width and height must be even, 16..7680 x 16..4320")
    return w, h


@dataclass
class Camera:
    name: str
    width: int
    height: int
    fps: Fraction
    stalled: bool = False
    dropped: bool = False
    factory: Any = None
    medias: list[Any] = field(default_factory=list)

    @property
    def mount(self) -> str:
        return "/" + self.name


def parse_camera(text: str) -> Camera:
    """``"NAME=WxH@FPS"`` -> :class:`Camera`."""
    name, sep, rest = text.partition("=")
    size, sep2, fps_text = rest.partition("@")
    if not sep or not sep2 or not _NAME_RE.match(name):
        raise ValueError(f"camera {text!r} is not NAME=WxH@FPS (NAME: letters, digits, _.-)")
    width, height = parse_size(size)
    try:
        fps = Fraction(fps_text).limit_denominator(1001)
    except (ValueError, ZeroDivisionError):
        raise ValueError(f"camera {text!r}: FPS {fps_text!r} is not a number") from None
    if not 0 < fps <= 120:
        raise ValueError(f"camera {text!r}: FPS must be in (0, 120]")
    return Camera(name, width, height, fps)


@dataclass(frozen=True)
class Event:
    at: float
    action: str
    camera: str
    arg: str


def parse_event(text: str) -> Event:
    """``"T:ACTION:CAM[:ARG]"`` -> :class:`Event` (checks the ARG, not the camera name)."""
    parts = text.split(":")
    if len(parts) == 2:
        parts.append("")
    if len(parts) not in (3, 4):
        raise ValueError(f"event {text!r} is not T:ACTION:CAM[:ARG]")
    t_text, action, cam = parts[0], parts[1].strip().lower(), parts[2].strip()
    arg = parts[3].strip() if len(parts) == 4 else ""
    try:
        at = float(t_text)
    except ValueError:
        raise ValueError(f"event {text!r}: time {t_text!r} is not a number") from None
    if at < 0:
        raise ValueError(f"event {text!r}: time must be >= 0")
    if action not in ACTIONS:
        raise ValueError(f"event {text!r}: action must be one of {', '.join(ACTIONS)}")
    if action in SERVER_ACTIONS:
        cam = "*"
    elif not cam:
        raise ValueError(f"event {text!r}: {action} needs a camera")
    if action == "resize":
        parse_size(arg)
    elif arg:
        if action not in UNDO:
            raise ValueError(f"event {text!r}: {action} takes no argument")
        try:
            if float(arg) <= 0:
                raise ValueError
        except ValueError:
            raise ValueError(f"event {text!r}: duration {arg!r} must be seconds > 0") from None
    return Event(at, action, cam, arg)


# ---------------------------------------------------------------------------- server


def _launch_line(cam: Camera) -> str:
    fps = f"{cam.fps.numerator}/{cam.fps.denominator}"
    keyint = max(1, round(float(cam.fps)))
    overlay = ""
    if Gst.ElementFactory.find("timeoverlay") is not None:
        overlay = f'timeoverlay text="{cam.name}" font-desc="Sans 18" ! '
    return (
        "( videotestsrc is-live=true pattern=ball "
        f"! video/x-raw,width={cam.width},height={cam.height},framerate={fps} "
        f"! videoscale ! capsfilter name=caps caps={_caps_text(cam.width, cam.height)} "
        f"! {overlay}videoconvert ! valve name=valve drop={'true' if cam.stalled else 'false'} "
        "! x264enc tune=zerolatency speed-preset=ultrafast "
        f"key-int-max={keyint} bframes=0 "
        "! rtph264pay name=pay0 pt=96 config-interval=1 )"
    )


def _caps_text(width: int, height: int) -> str:
    return f"video/x-raw,width={width},height={height},pixel-aspect-ratio=1/1"


class FlakyServer:
    """The RTSP server and the actions on it; every method runs on the GLib main loop."""

    def __init__(
        self,
        host: str,
        port: int,
        cameras: list[Camera],
        user: str | None,
        password: str | None,
    ) -> None:
        self.host = host
        self.port = port
        self.cameras = {c.name: c for c in cameras}
        self.user = user
        self.password = password
        self.t0 = time.monotonic()
        self.loop = GLib.MainLoop()
        self.server: Any = None
        self.source_id: int | None = None
        self.lock = threading.Lock()
        self.client_paths: dict[Any, set[str]] = {}
        self.mounts = GstRtspServer.RTSPMountPoints()
        self.auth: Any = None
        if user is not None:
            self.auth = GstRtspServer.RTSPAuth()
            token = GstRtspServer.RTSPToken()
            token.set_string(GstRtspServer.RTSP_TOKEN_MEDIA_FACTORY_ROLE, ROLE)
            self.auth.add_basic(GstRtspServer.RTSPAuth.make_basic(user, password or ""), token)
        for cam in cameras:
            cam.factory = self._make_factory(cam)
            self.mounts.add_factory(cam.mount, cam.factory)

    # -- construction

    def _make_factory(self, cam: Camera) -> Any:
        factory = GstRtspServer.RTSPMediaFactory()
        factory.set_launch(_launch_line(cam))
        # one pipeline per client: with a shared media, a client that reconnects right after
        # its TEARDOWN (while the media unprepares) is answered 5XX by GstRtspServer 1.22
        factory.set_shared(False)
        if self.auth is not None:
            perms = GstRtspServer.RTSPPermissions()
            perms.add_permission_for_role(ROLE, GstRtspServer.RTSP_PERM_MEDIA_FACTORY_ACCESS, True)
            perms.add_permission_for_role(
                ROLE, GstRtspServer.RTSP_PERM_MEDIA_FACTORY_CONSTRUCT, True
            )
            factory.set_permissions(perms)
        factory.connect("media-configure", self._on_media_configure, cam)
        return factory

    def _on_media_configure(self, _factory: Any, media: Any, cam: Camera) -> None:
        # may run on a client thread: bring the new media to the camera's current state
        with self.lock:
            cam.medias.append(media)
            self._apply_state(cam, media)
        media.connect("unprepared", self._on_media_unprepared, cam)

    def _on_media_unprepared(self, media: Any, cam: Camera) -> None:
        with self.lock:
            if media in cam.medias:
                cam.medias.remove(media)

    def _apply_state(self, cam: Camera, media: Any) -> None:
        bin_ = media.get_element()
        valve = bin_.get_by_name("valve")
        caps = bin_.get_by_name("caps")
        if valve is not None:
            valve.set_property("drop", cam.stalled)
        if caps is not None:
            want = Gst.Caps.from_string(_caps_text(cam.width, cam.height))
            if not caps.get_property("caps").is_equal(want):
                caps.set_property("caps", want)

    def _start_server(self) -> None:
        server = GstRtspServer.RTSPServer()
        server.set_address(self.host)
        server.set_service(str(self.port))
        server.set_mount_points(self.mounts)
        if self.auth is not None:
            server.set_auth(self.auth)
        server.get_thread_pool().set_max_threads(64)
        server.connect("client-connected", self._on_client_connected)
        source_id = server.attach(None)
        if not source_id:
            raise OSError(f"cannot listen on {self.host}:{self.port}")
        self.server, self.source_id = server, source_id
        self.port = server.get_bound_port()  # an "up" after "down" reuses the port

    def _on_client_connected(self, _server: Any, client: Any) -> None:
        with self.lock:
            self.client_paths[client] = set()
        for sig in ("pre-options-request", "pre-describe-request", "pre-setup-request"):
            client.connect(sig, self._on_client_request)
        client.connect("closed", self._on_client_closed)

    def _on_client_request(self, client: Any, ctx: Any) -> Any:
        try:
            path = ctx.uri.abspath if ctx.uri is not None else None
        except Exception:  # the bindings may not expose the url
            path = None
        if path:
            with self.lock:
                self.client_paths.setdefault(client, set()).add(path.rstrip("/"))
        return GstRtsp.RTSPStatusCode.OK

    def _on_client_closed(self, client: Any) -> None:
        with self.lock:
            self.client_paths.pop(client, None)

    def _drop_clients(self, mount: str | None) -> int:
        """Close the clients that touched ``mount`` (every client when None)."""
        if self.server is None:
            return 0
        with self.lock:
            doomed = {
                c
                for c, paths in self.client_paths.items()
                if mount is None or any(p == mount or p.startswith(mount + "/") for p in paths)
            }

        def keep_or_remove(_server: Any, client: Any, *_: Any) -> Any:
            if mount is None or client in doomed:
                return GstRtspServer.RTSPFilterResult.REMOVE
            return GstRtspServer.RTSPFilterResult.KEEP

        self.server.client_filter(keep_or_remove, None)
        with self.lock:
            for c in doomed:
                self.client_paths.pop(c, None)
        return len(doomed)

    # -- output

    def say(self, line: str) -> None:
        try:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()
        except (BrokenPipeError, ValueError):
            pass

    def _event(self, action: str, camera: str, arg: str = "") -> None:
        t = time.monotonic() - self.t0
        self.say(f"EVENT {t:.3f} {action} {camera}{' ' + arg if arg else ''}")

    # -- actions (raise ValueError with the reason on a bad request)

    def _camera(self, name: str) -> Camera:
        cam = self.cameras.get(name)
        if cam is None:
            raise ValueError(f"unknown camera {name!r} (have: {', '.join(self.cameras)})")
        return cam

    def apply(self, action: str, camera: str = "*", arg: str = "") -> None:
        """Apply one action now and print its EVENT line."""
        if action == "down":
            if self.server is not None:
                self._drop_clients(None)
                GLib.Source.remove(self.source_id)
                # drop the last reference: the listening socket closes (connection refused)
                self.server, self.source_id = None, None
            self._event(action, "*")
            return
        if action == "up":
            if self.server is None:
                self._start_server()
            self._event(action, "*")
            return
        cam = self._camera(camera)
        if action in ("stall", "resume"):
            with self.lock:
                cam.stalled = action == "stall"
                for media in cam.medias:
                    self._apply_state(cam, media)
            self._event(action, cam.name)
        elif action == "drop":
            if not cam.dropped:
                cam.dropped = True
                self.mounts.remove_factory(cam.mount)
            n = self._drop_clients(cam.mount)
            self._event(action, cam.name, f"clients={n}")
        elif action == "restore":
            if cam.dropped:
                cam.dropped = False
                self.mounts.add_factory(cam.mount, cam.factory)
            self._event(action, cam.name)
        elif action == "resize":
            width, height = parse_size(arg)
            with self.lock:
                cam.width, cam.height = width, height
                for media in cam.medias:
                    self._apply_state(cam, media)
            self._event(action, cam.name, f"{width}x{height}")
        else:
            raise ValueError(f"unknown action {action!r}")

    def schedule(self, events: list[Event], repeat: float | None) -> None:
        """Run ``events`` relative to start, again every ``repeat`` seconds if given."""

        def at(when: float, fn: Any, *args: Any) -> None:
            delay_ms = max(0, int((self.t0 + when - time.monotonic()) * 1000))
            GLib.timeout_add(delay_ms, fn, *args)

        def fire(ev: Event) -> bool:
            try:
                self.apply(ev.action, ev.camera, "" if ev.action in UNDO else ev.arg)
            except ValueError as e:
                self.say(f"ERR {ev.action} {ev.camera}: {e}")
            if ev.action in UNDO and ev.arg:
                undo = Event(0.0, UNDO[ev.action], ev.camera, "")
                GLib.timeout_add(int(float(ev.arg) * 1000), fire, undo)
            return False

        def cycle(k: int) -> bool:
            base = k * repeat if repeat else 0.0
            for ev in events:
                at(base + ev.at, fire, ev)
            if repeat:
                at((k + 1) * repeat, cycle, k + 1)
            return False

        if events:
            cycle(0)

    # -- stdin

    def command(self, line: str) -> str:
        """Run one stdin command and return its ``OK ...`` / ``ERR ...`` answer."""
        words = line.split()
        if not words:
            return "ERR empty command"
        action, args = words[0].lower(), words[1:]
        norm = " ".join([action, *args])
        try:
            if action == "quit":
                GLib.idle_add(self._quit)
                return f"OK {norm}"
            if action in SERVER_ACTIONS:
                if args:
                    raise ValueError(f"{action} takes no argument")
                self.apply(action)
            elif action == "resize":
                if len(args) != 2:
                    raise ValueError("usage: resize CAM WxH")
                self._camera(args[0])
                parse_size(args[1])
                self.apply(action, args[0], args[1])
            elif action in ACTIONS:
                if len(args) != 1:
                    raise ValueError(f"usage: {action} CAM")
                self.apply(action, args[0])
            else:
                raise ValueError(f"unknown command {action!r} (use {', '.join(ACTIONS)}, quit)")
        except (ValueError, OSError) as e:
            return f"ERR {e}"
        return f"OK {norm}"

    def watch_stdin(self, exit_on_eof: bool) -> None:
        fd = sys.stdin.fileno()
        buf = bytearray()

        def on_input(_fd: int, _cond: Any) -> bool:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                chunk = b""
            if not chunk:
                if exit_on_eof:
                    self._quit()
                return False
            buf.extend(chunk)
            while b"\n" in buf:
                raw, _, rest = bytes(buf).partition(b"\n")
                buf[:] = rest
                text = raw.decode("utf-8", "replace").strip()
                if text:
                    self.say(self.command(text))
            return True

        GLib.io_add_watch(fd, GLib.PRIORITY_DEFAULT, GLib.IO_IN | GLib.IO_HUP, on_input)

    # -- run

    def _quit(self) -> bool:
        self.loop.quit()
        return False

    def run(self, events: list[Event], repeat: float | None, exit_on_eof: bool) -> None:
        self._start_server()
        self.say(f"READY rtsp://{self.host}:{self.port}")
        for sig in (signal.SIGINT, signal.SIGTERM):
            GLib.unix_signal_add(GLib.PRIORITY_HIGH, sig, self._quit)
        self.watch_stdin(exit_on_eof)
        self.schedule(events, repeat)
        self.loop.run()
        if self.server is not None:
            self._drop_clients(None)


# ---------------------------------------------------------------------------- main


def _load_gi() -> None:
    """Import Gst/GstRtspServer/GLib, re-executing under the system Python when needed."""
    global Gst, GstRtspServer, GLib, GstRtsp
    if gi is None:
        me = os.path.abspath(__file__)
        if (
            os.path.exists(SYSTEM_PYTHON)
            and not os.environ.get(_REEXEC_ENV)
            and os.path.realpath(sys.executable) != os.path.realpath(SYSTEM_PYTHON)
        ):
            os.environ[_REEXEC_ENV] = "1"
            sys.stdout.flush()
            os.execv(SYSTEM_PYTHON, [SYSTEM_PYTHON, me, *sys.argv[1:]])
        sys.stderr.write(f"flaky_rtsp: needs python3 with GStreamer bindings: {APT_HINT}\n")
        sys.exit(2)
    try:
        gi.require_version("Gst", "1.0")
        gi.require_version("GstRtsp", "1.0")
        gi.require_version("GstRtspServer", "1.0")
        from gi.repository import GLib as _GLib
        from gi.repository import Gst as _Gst
        from gi.repository import GstRtsp as _GstRtsp
        from gi.repository import GstRtspServer as _GstRtspServer
    except (ImportError, ValueError) as e:
        sys.stderr.write(f"flaky_rtsp: {e}; install: {APT_HINT}\n")
        sys.exit(2)
    _Gst.init(None)
    missing = [
        name
        for name in ("videotestsrc", "videoscale", "videoconvert", "valve", "x264enc", "rtph264pay")
        if _Gst.ElementFactory.find(name) is None
    ]
    if missing:
        sys.stderr.write(
            f"flaky_rtsp: missing GStreamer elements {', '.join(missing)}; install: {APT_HINT}\n"
        )
        sys.exit(2)
    Gst, GstRtspServer, GLib, GstRtsp = _Gst, _GstRtspServer, _GLib, _GstRtsp


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m vsa.tools.flaky_rtsp",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8554, help="port; 0 picks a free one (8554)")
    p.add_argument(
        "--camera",
        action="append",
        metavar="NAME=WxH@FPS",
        help="a camera served at /NAME (repeatable; default cam1=640x360@15)",
    )
    p.add_argument("--user", help="require RTSP Basic auth with this user")
    p.add_argument("--password", help="the password for --user")
    p.add_argument(
        "--event",
        action="append",
        default=[],
        metavar="T:ACTION:CAM[:ARG]",
        help="scheduled action (repeatable); ARG: WxH for resize, seconds-until-undo for "
        "stall/drop/down",
    )
    p.add_argument("--repeat", type=float, metavar="SECONDS", help="loop the --event schedule")
    p.add_argument(
        "--exit-on-stdin-eof",
        action="store_true",
        help="exit when stdin closes (for a parent process that drives it)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _load_gi()
    try:
        cameras = [parse_camera(c) for c in (args.camera or ["cam1=640x360@15"])]
        names = [c.name for c in cameras]
        if len(set(names)) != len(names):
            raise ValueError("camera names must be unique")
        events = [parse_event(e) for e in args.event]
        for ev in events:
            if ev.camera != "*" and ev.camera not in names:
                raise ValueError(f"event for unknown camera {ev.camera!r}")
        if args.repeat is not None:
            if args.repeat <= 0:
                raise ValueError("--repeat must be > 0")
            late = [ev for ev in events if ev.at >= args.repeat]
            if late:
                raise ValueError(f"event at {late[0].at}s is not within --repeat {args.repeat}s")
        if (args.user is None) != (args.password is None):
            raise ValueError("--user and --password go together")
        if not 0 <= args.port <= 65535:
            raise ValueError("--port must be 0..65535")
    except ValueError as e:
        sys.stderr.write(f"flaky_rtsp: {e}\n")
        return 2
    server = FlakyServer(args.host, args.port, cameras, args.user, args.password)
    try:
        server.run(events, args.repeat, args.exit_on_stdin_eof)
    except OSError as e:
        sys.stderr.write(f"flaky_rtsp: {e}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
