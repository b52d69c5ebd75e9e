"""The controller's status endpoint: HTTP on 127.0.0.1, read without a Ray driver.

A ``vsa status`` that goes through Ray starts a whole driver (connect to the GCS, register a
job, start a core worker) and then waits for the controller's event loop: seconds on a
saturated host. The controller therefore also serves its status here, from a thread of its
own, and writes where to find it (URL, token, its pid and the cluster's GCS address) to
``<Ray session dir>/vsa/controller.json``: a file only its user can read (mode 0600, in a
directory of mode 0700). Every request must carry that token (``Authorization: Bearer``), so
the endpoint is exactly as private as the file; it listens on 127.0.0.1 only.

- :class:`StatusEndpoint` (the controller's side; what it answers: :class:`StatusAnswers`)
  answers ``GET /v1/status[?run=ID|NAME]`` with ``{"runs": [...]}`` (the controller's status,
  as ``Controller.status`` returns it), 404 with ``{"error": ...}`` for an unknown run, 503
  while it has nothing to serve, 401 without the token. The answer comes from ``status(run)``,
  a callable that asks the controller's event loop and gives up after ``FRESH_S``; then the
  last snapshot is served (its age in the ``X-Vsa-Age`` header), so a busy loop never makes
  the endpoint wait;
- :func:`read_status` (the client's side) finds the file of the cluster on this host and
  asks; it raises :class:`Unavailable` when there is no endpoint or it does not answer (the
  caller then goes through Ray, or says the controller is restarting).
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
import urllib.parse
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from vsa.constants import ENDPOINT_TIMEOUT_S
from vsa.errors import RunNotFound, VsaError

if TYPE_CHECKING:
    from pathlib import Path

# A `vsa status` process imports this module: what only the server needs (http.server, secrets,
# hmac, pathlib) is imported where it is used, so the client costs as little CPU as it can.

OK, UNAUTHORIZED, NOT_FOUND, UNAVAILABLE = 200, 401, 404, 503  # (http.HTTPStatus: an import)
ENDPOINT_DIR = "vsa"
ENDPOINT_FILE = "controller.json"

StatusFn = Callable[[str | None], dict[str, Any]]


class Unavailable(VsaError):
    """No status endpoint on this host, or it did not answer (the controller is restarting,
    or the cluster runs elsewhere)."""


class NoEndpoint(Unavailable):
    """This user has no endpoint file to read: none was written (no controller on this host
    yet), or it is another user's (mode 0600) or not one. Status goes through Ray instead."""


def ray_temp_dir() -> str:
    """Ray's temp directory on this host, found as Ray finds it (``RAY_TMPDIR``, else
    ``TMPDIR`` on Linux, else /tmp, then ``ray``) without importing Ray."""
    if "RAY_TMPDIR" in os.environ:
        base = os.environ["RAY_TMPDIR"]
    elif sys.platform.startswith("linux") and "TMPDIR" in os.environ:
        base = os.environ["TMPDIR"]
    else:
        base = "/tmp"
    return os.path.join(base, "ray")


def session_dir() -> str:
    """The newest Ray session directory on this host."""
    return os.path.join(ray_temp_dir(), "session_latest")


def current_cluster() -> str | None:
    """The GCS address ``ray start --head`` recorded on this host (what ``address="auto"``
    joins first), or None."""
    try:
        with open(os.path.join(ray_temp_dir(), "ray_current_cluster")) as f:
            return f.read().strip() or None
    except OSError:
        return None


def endpoint_path(session: str | os.PathLike[str] | None = None) -> Path:
    """``<session>/vsa/controller.json`` (the newest session's by default)."""
    from pathlib import Path

    return Path(session or session_dir()) / ENDPOINT_DIR / ENDPOINT_FILE


def write_endpoint(path: Path, info: dict[str, Any]) -> None:
    """Write ``info`` to ``path`` atomically, readable by this user only."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, json.dumps(info).encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def read_endpoint(path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """The endpoint file's content; :class:`Unavailable` when it is missing or unreadable."""
    path = path or os.path.join(session_dir(), ENDPOINT_DIR, ENDPOINT_FILE)
    try:
        with open(path) as f:
            info = json.load(f)
        if not isinstance(info, dict) or not {"url", "token"} <= info.keys():
            raise ValueError("missing url or token")
        return info
    except FileNotFoundError:
        raise NoEndpoint(f"no controller endpoint at {path}") from None
    except (OSError, ValueError) as exc:
        raise NoEndpoint(f"cannot read {path}: {exc}") from None


class StatusAnswers:
    """What the endpoint answers (no server: unit tested with a fake ``status`` and clock).

    ``status(run)`` asks the controller and raises ``TimeoutError`` when it does not answer
    in time; then the last snapshot of every run (:meth:`remember`) is served, with its age.
    """

    def __init__(self, status: StatusFn, clock: Callable[[], float] = time.monotonic) -> None:
        import threading

        self._status, self._clock = status, clock
        self._snapshot: dict[str, Any] | None = None
        self._snapshot_at = 0.0
        self._lock = threading.Lock()

    def remember(self, answer: dict[str, Any]) -> None:
        """Keep ``answer`` (every run's status) as the snapshot served when the controller is
        slow to answer."""
        with self._lock:
            self._snapshot, self._snapshot_at = answer, self._clock()

    def answer(self, run: str | None) -> tuple[int, dict[str, Any], float]:
        """(HTTP status, body, age of the data in seconds) for a status request."""
        try:
            body = self._status(run)
            if run is None:
                self.remember(body)
            return OK, body, 0.0
        except RunNotFound as exc:
            return NOT_FOUND, {"error": str(exc)}, 0.0
        except TimeoutError:
            pass  # the controller is busy: its last snapshot
        except Exception as exc:  # noqa: BLE001 - a status must not take the server down
            return UNAVAILABLE, {"error": f"{type(exc).__name__}: {exc}"}, 0.0
        with self._lock:
            snapshot, at = self._snapshot, self._snapshot_at
        if snapshot is None:
            return UNAVAILABLE, {"error": "the controller is starting"}, 0.0
        age = self._clock() - at
        if run is None:
            return OK, snapshot, age
        found = find_run(snapshot["runs"], run)
        if found is None:
            return NOT_FOUND, {"error": not_found(run)}, age
        return OK, {"runs": [found]}, age


class StatusEndpoint:
    """The HTTP server (a daemon thread) over :class:`StatusAnswers`; ``start()`` returns its
    URL."""

    def __init__(
        self,
        status: StatusFn,
        token: str | None = None,
        host: str = "127.0.0.1",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        import secrets
        from http.server import ThreadingHTTPServer

        self.token = token or secrets.token_urlsafe(32)
        self.answers = StatusAnswers(status, clock)
        self._server = ThreadingHTTPServer((host, 0), self._handler())
        self._server.daemon_threads = True
        self._thread: Any = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> str:
        import threading

        if self._thread is None:
            self._thread = threading.Thread(
                target=self._server.serve_forever, name="vsa-status-endpoint", daemon=True
            )
            self._thread.start()
        return self.url

    def close(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
        self._server.server_close()

    def _handler(self) -> type[Any]:
        import hmac
        from http.server import BaseHTTPRequestHandler

        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "vsa"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass  # not one log line per status request

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                given = self.headers.get("Authorization", "")
                expected = f"Bearer {endpoint.token}"
                if not hmac.compare_digest(given.encode(), expected.encode()):
                    self._reply(UNAUTHORIZED, {"error": "a valid token is required"})
                    return
                url = urllib.parse.urlsplit(self.path)
                if url.path != "/v1/status":
                    self._reply(NOT_FOUND, {"error": f"no such path: {url.path}"})
                    return
                run = urllib.parse.parse_qs(url.query).get("run", [None])[0]
                code, body, age = endpoint.answers.answer(run)
                self._reply(code, body, age)

            def _reply(self, code: int, body: dict[str, Any], age: float = 0.0) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("X-Vsa-Age", f"{age:.3f}")
                self.end_headers()
                self.wfile.write(data)

        return Handler


def find_run(runs: list[dict[str, Any]], run: str) -> dict[str, Any] | None:
    """The run with id ``run``, else the latest one named ``run`` (as the controller finds it)."""
    for r in runs:
        if r.get("id") == run:
            return r
    named = [r for r in runs if r.get("name") == run]
    return max(named, key=lambda r: r.get("created_at") or 0) if named else None


def not_found(run: str) -> str:
    return f"no run with id or name '{run}' (see `vsa list`)"


def read_status(
    run: str | None = None,
    path: str | os.PathLike[str] | None = None,
    timeout_s: float = ENDPOINT_TIMEOUT_S,
) -> dict[str, Any]:
    """``{"runs": [...]}`` from the controller's endpoint on this host. Raises
    :class:`RunNotFound` for an unknown run and :class:`Unavailable` when there is no endpoint
    or it does not answer."""
    info = read_endpoint(path)
    query = "" if run is None else "?" + urllib.parse.urlencode({"run": run})
    try:
        code, body = http_get(f"{info['url']}/v1/status{query}", info["token"], timeout_s)
        answer = json.loads(body)
    except (OSError, ValueError) as exc:  # refused, reset, timed out, not HTTP, not JSON
        raise Unavailable(f"the controller's endpoint did not answer: {exc}") from None
    if code == OK:
        return answer
    reason = answer.get("error") if isinstance(answer, dict) else None
    if code == NOT_FOUND and run is not None:
        raise RunNotFound(reason or not_found(run))
    raise Unavailable(f"the controller's endpoint answered {code}: {reason}")


def http_get(url: str, token: str, timeout_s: float) -> tuple[int, bytes]:
    """(status code, body) of an HTTP/1.0 GET on a plain socket.

    ``urllib.request`` would do, but importing it (``http.client``, ``email``, ``ssl``) costs
    a ``vsa status`` process about as much CPU as everything else it does; on a saturated
    host that is what 20 concurrent calls wait for."""
    parts = urllib.parse.urlsplit(url)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    request = (
        f"GET {target} HTTP/1.0\r\nHost: {parts.netloc}\r\n"
        f"Authorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    ).encode()
    with socket.create_connection((parts.hostname, parts.port or 80), timeout=timeout_s) as sock:
        sock.settimeout(timeout_s)
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    head, sep, body = b"".join(chunks).partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].split()
    if not sep or len(status_line) < 2 or not status_line[0].startswith(b"HTTP/"):
        raise ValueError("not an HTTP answer")
    return int(status_line[1]), body
