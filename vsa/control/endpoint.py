"""The controller's status endpoint: HTTP on 127.0.0.1, read without a Ray driver.

A ``vsa status`` that goes through Ray starts a whole driver (connect to the GCS, register a
job, start a core worker) and then waits for the controller's event loop: seconds on a
saturated host. The controller therefore also serves its status here, from a thread of its
own, and writes where to find it (URL, token, its pid and the cluster's GCS address) to
``<Ray session dir>/vsa/controller.json`` and to ``~/.vsa/endpoints/<host>_<GCS port>.json``
(:func:`publish`): files only its user can read (mode 0600, in directories of mode 0700).
Every request must carry that token (``Authorization: Bearer``), so the endpoint is exactly as
private as the files; it listens on 127.0.0.1 only, serves ``ENDPOINT_MAX_CONNECTIONS`` at
once and times out each read after ``ENDPOINT_READ_TIMEOUT_S``.

- :class:`StatusEndpoint` (the controller's side; what it answers: :class:`StatusAnswers`)
  answers ``GET /v1/status[?run=ID|NAME]`` with ``{"runs": [...]}`` (the controller's status,
  as ``Controller.status`` returns it), 404 with ``{"error": ...}`` for an unknown run, 503
  while it has nothing to serve, 401 without the token. The answer comes from ``status(run)``,
  a callable that asks the controller's event loop and gives up after ``FRESH_S``; then the
  last snapshot is served (its age in the ``X-Vsa-Age`` header), so a busy loop never makes
  the endpoint wait;
- :func:`locate` (the client's side) finds the file of the cluster addressed, by its GCS
  address, whatever temp dir Ray was started with; :func:`read_status` asks; it raises
  :class:`Unavailable` when there is no endpoint or it does not answer (the caller then goes
  through Ray, or says the controller is restarting).
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

from vsa.constants import (
    ENDPOINT_MAX_CONNECTIONS,
    ENDPOINT_READ_TIMEOUT_S,
    ENDPOINT_TIMEOUT_S,
)
from vsa.errors import RunNotFound, VsaError

if TYPE_CHECKING:
    from pathlib import Path

# A `vsa status` process imports this module: what only the server needs (http.server, secrets,
# hmac, pathlib) is imported where it is used, so the client costs as little CPU as it can.

OK, UNAUTHORIZED, NOT_FOUND, UNAVAILABLE = 200, 401, 404, 503  # (http.HTTPStatus: an import)
ENDPOINT_DIR = "vsa"
ENDPOINT_FILE = "controller.json"
INDEX_DIR = os.path.join(".vsa", "endpoints")

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
    """Write ``info`` to ``path`` atomically, readable by this user only (a temporary file
    of a random name, created new and never through a link: ``vsa.fsutil.atomic_write``)."""
    from vsa.fsutil import atomic_write, make_private_dirs

    make_private_dirs(path.parent)
    atomic_write(path, json.dumps(info), 0o600)


def index_dir() -> Path:
    """``~/.vsa/endpoints``: where the controller of every cluster this user runs on this
    host also writes its endpoint, keyed by its GCS port (:func:`index_path`), so that a
    client finds it whatever temp dir Ray was started with (``ray start --temp-dir``)."""
    from pathlib import Path

    return Path(os.path.expanduser("~")) / INDEX_DIR


def _host() -> str:
    name = socket.gethostname() or "localhost"
    return "".join(c if c.isalnum() or c in ".-" else "_" for c in name)


def index_path(gcs_address: str, directory: Path | None = None) -> Path:
    """``<index_dir>/<host>_<GCS port>.json``: the host's name is in it for a home directory
    shared between hosts (the endpoint listens on 127.0.0.1: another host's is of no use)."""
    port = gcs_address.rpartition(":")[2]
    return (directory or index_dir()) / f"{_host()}_{port}.json"


def publish(
    info: dict[str, Any], session: str | os.PathLike[str], directory: Path | None = None
) -> tuple[Path, str | None]:
    """Write ``info`` (url, token, pid, gcs_address) to ``<session>/vsa/controller.json`` and,
    when it names its GCS, to :func:`index_path` too (adding this host's name); endpoints of
    this host in the index whose controller is gone are removed. Returns (the session file's
    path, why the index could not be written or None); the session file's errors raise."""
    path = endpoint_path(session)
    write_endpoint(path, info)
    gcs = str(info.get("gcs_address") or "")
    if not gcs:
        return path, "the cluster's GCS address is not known"
    index = index_path(gcs, directory)
    try:
        _prune(index.parent)
        write_endpoint(index, {**info, "host": _host()})
    except OSError as exc:
        return path, f"cannot write {index}: {exc}"
    return path, None


def _prune(directory: Path) -> None:
    """Remove this host's index entries whose controller process has ended."""
    try:
        names = os.listdir(directory)
    except OSError:
        return
    prefix = f"{_host()}_"
    for name in names:
        if name.startswith(prefix) and name.endswith(".json"):
            info = _peek(directory / name)
            if info is not None and not _alive(info):
                try:
                    os.unlink(directory / name)
                except OSError:
                    pass


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


def _peek(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """An endpoint file's content, None when it is missing, unreadable or not this user's (a
    file of the index another user owns is ignored: it could point anywhere)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return None
    try:
        if hasattr(os, "geteuid") and os.fstat(fd).st_uid not in (os.geteuid(), 0):
            return None
        with os.fdopen(fd, closefd=False) as f:
            info = json.load(f)
    except (OSError, ValueError):
        return None
    finally:
        os.close(fd)
    if not isinstance(info, dict) or not {"url", "token"} <= info.keys():
        return None
    return info


def _alive(info: dict[str, Any]) -> bool:
    """Whether the controller that wrote ``info`` still runs on this host (a file without a
    pid or a host is taken as it is)."""
    if info.get("host") not in (None, _host()):
        return False
    pid = info.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process: alive
        pass
    return True


def serves(info: dict[str, Any], address: str) -> bool:
    """Whether the endpoint ``info`` describes serves the cluster at ``address`` (host:port):
    the same port, and the address's host is the GCS's or this host's loopback."""
    gcs = str(info.get("gcs_address") or "")
    host, _, port = address.rpartition(":")
    gcs_host, _, gcs_port = gcs.rpartition(":")
    return bool(gcs) and port == gcs_port and host in ("127.0.0.1", "localhost", gcs_host)


def locate(address: str | None) -> tuple[Path | None, str | None]:
    """(the endpoint file of the cluster ``address`` names, None when there is none to use;
    why status goes through Ray instead, when that is worth a line on stderr).

    ``address``: ``--address``, else ``RAY_ADDRESS``, else ``auto``: the cluster ``ray start``
    recorded in ``ray_current_cluster`` (of ``RAY_TMPDIR``, as Ray reads it), else the
    newest session's endpoint, else the only live one in the index. For a ``host:port``:
    its index entry (:func:`index_path`), else the newest session's file; either must name
    that cluster's GCS and a controller that still runs. A ``ray://`` or ``http://``
    address has no endpoint here."""
    from pathlib import Path

    if not address or address == "auto":
        address = current_cluster()
        if address is None:
            return _only_endpoint()
    if "://" in address or ":" not in address:
        return None, None
    other = None
    for path in (index_path(address), Path(endpoint_path())):
        info = _peek(path)
        if info is None or not _alive(info):
            continue
        if serves(info, address):
            return path, None
        other = other or info.get("gcs_address")
    if other:
        return None, (
            f"the controller's status endpoint on this host serves the cluster at {other}, "
            f"not {address}; asking {address} through Ray (slower)"
        )
    return None, None


def _only_endpoint() -> tuple[Path | None, str | None]:
    """``auto`` with no cluster recorded: the newest session's endpoint, else the only live
    one in this user's index (several: which one Ray joins is not known)."""
    from pathlib import Path

    newest = Path(endpoint_path())
    info = _peek(newest)
    if info is not None and _alive(info):
        return newest, None
    try:
        names = sorted(os.listdir(index_dir()))
    except OSError:
        return None, None
    prefix = f"{_host()}_"
    live = []
    for name in names:
        if name.startswith(prefix) and name.endswith(".json"):
            info = _peek(index_dir() / name)
            if info is not None and _alive(info):
                live.append((index_dir() / name, info.get("gcs_address")))
    if len(live) == 1:
        return live[0][0], None
    if live:
        clusters = ", ".join(str(gcs) for _, gcs in live)
        return None, (
            f"several clusters with a vsa controller run on this host ({clusters}) and none "
            "is recorded as current: give --address (or RAY_ADDRESS) for status without Ray"
        )
    return None, None


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
        max_connections: int = ENDPOINT_MAX_CONNECTIONS,
        read_timeout_s: float = ENDPOINT_READ_TIMEOUT_S,
    ) -> None:
        import secrets

        self.token = token or secrets.token_urlsafe(32)
        self.answers = StatusAnswers(status, clock)
        self.read_timeout_s = read_timeout_s
        self._server = _bounded_server((host, 0), self._handler(), max_connections)
        self._thread: Any = None

    @property
    def connections(self) -> int:
        """Connections being served now (each on a thread of its own)."""
        return self._server.active

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
            timeout = endpoint.read_timeout_s  # each read (and write) of a connection

            def parse_request(self) -> bool:
                # the request is read: this connection is no longer an idle one to evict
                return super().parse_request() and self.server.started(self.connection)

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


BUSY_ANSWER = (
    b"HTTP/1.0 503 Service Unavailable\r\nContent-Type: application/json\r\n"
    b"Connection: close\r\n\r\n"
    b'{"error": "too many connections to the status endpoint"}'
)


def _bounded_server(address: tuple[str, int], handler: type[Any], limit: int) -> Any:
    """A ``ThreadingHTTPServer`` that serves at most ``limit`` connections at once, each on a
    thread of its own. A connection beyond the bound takes the place of the oldest one that
    has not sent its request yet (shut down: its thread ends at once), so that idle or slow
    connections never keep a ``vsa status`` out; when every one is serving a request, it is
    answered 503 from the accepting thread (no thread of its own) and closed. With the
    handler's read timeout, an idle connection holds a thread ``timeout`` seconds at most."""
    import threading
    from http.server import ThreadingHTTPServer

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        # connections the kernel holds until accepted: socketserver's 5 drops a burst's SYNs
        # (20 concurrent `vsa status`), and a dropped SYN is retried only after a second
        request_queue_size = 128

        def __init__(self) -> None:
            super().__init__(address, handler)
            self.limit = limit
            self.active = 0
            self._waiting: dict[Any, None] = {}  # connections yet to send a request, oldest first
            self._lock = threading.Lock()

        def process_request(self, request: Any, client_address: Any) -> None:
            evicted = None
            with self._lock:
                # an evicted thread holds its slot a moment longer: twice the bound at most;
                # one is evicted only for a connection that is then served
                full = self.active >= 2 * self.limit or (
                    self.active >= self.limit and not self._waiting
                )
                if not full and self.active >= self.limit:
                    evicted = next(iter(self._waiting))
                    del self._waiting[evicted]
                if not full:
                    self.active += 1
                    self._waiting[request] = None
            if evicted is not None:
                _shut(evicted)  # its thread reads end-of-file and ends, freeing its slot
            if full:
                try:
                    request.settimeout(0.1)
                    request.sendall(BUSY_ANSWER)
                except OSError:
                    pass
                self.shutdown_request(request)
                return
            try:
                super().process_request(request, client_address)
            except BaseException:
                self._done(request)
                raise

        def handle_error(self, request: Any, client_address: Any) -> None:
            if not isinstance(sys.exc_info()[1], OSError):  # a client gone, timed out, evicted
                super().handle_error(request, client_address)

        def started(self, request: Any) -> bool:
            """Mark ``request`` as serving a request; False when it was evicted meanwhile."""
            with self._lock:
                return self._waiting.pop(request, False) is None

        def _done(self, request: Any) -> None:
            with self._lock:
                self._waiting.pop(request, None)
                self.active -= 1

        def process_request_thread(self, request: Any, client_address: Any) -> None:
            try:
                super().process_request_thread(request, client_address)
            finally:
                self._done(request)

    return Server()


def _shut(sock: Any) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


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
