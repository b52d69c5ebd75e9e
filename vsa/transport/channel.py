"""A call channel between the source actors and the inference actor of one host: a Unix socket.

Each message is a 4-byte length and a pickle. A client sends ``("infer", call id, request)``
and ``("cancel", call id)``; the server answers each call once with ``("ok", call id, value)``
or ``("err", call id, "ErrorType: message")``. The server runs on the inference actor's event
loop (asyncio); the client is a socket with one reader thread (the source actor's threads are
plain threads).

Why not a Ray actor call per frame: measured on the 2-core host, one call with a few bytes of
arguments costs ~1.9 ms of CPU across the caller, the actor and Ray's bookkeeping; a message on
this socket costs tens of microseconds. Ray still creates, places, supervises and restarts the
actors and hands a source its inference actor; only the frames' path bypasses it.

The socket lives in a directory only the engine's user can enter (mode 0700), so only that user's
processes can connect; pickle is read only from them (the same trust Ray's workers give each
other). A connection that closes fails every call still open on it with :class:`ChannelClosed`
(the source treats that as the inference actor gone); the server cancels the calls of a client
that went away, as ``ray.cancel`` would.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import itertools
import logging
import os
import pickle
import socket
import struct
import tempfile
import threading
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger("vsa.transport")

_HEADER = struct.Struct(">I")
MAX_MESSAGE = 64 << 20  # a reply holds a chunk's detections (masks included), never frames


class ChannelClosed(ConnectionError):
    """The connection ended; the calls still open on it will not be answered. ``local``: this
    side closed it (the other end may be fine)."""

    def __init__(self, message: str, local: bool = False) -> None:
        super().__init__(message)
        self.local = local


class RemoteError(RuntimeError):
    """The server's handler raised: ``"ErrorType: message"``."""


def _pack(message: Any) -> bytes:
    body = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return _HEADER.pack(len(body)) + body


SOCKET_PREFIX = "vsa-chan-"
SOCKET_NAME = "infer.sock"


def socket_dir() -> str:
    """A new directory for one server's socket, mode 0700 (``tempfile.mkdtemp``)."""
    return tempfile.mkdtemp(prefix=SOCKET_PREFIX)


def sweep_sockets(directory: str | None = None) -> int:
    """Remove the socket directories of servers that are gone (an inference actor killed
    before it could remove its own): nothing listens on their socket any more."""
    directory = directory or tempfile.gettempdir()
    removed = 0
    try:
        names = [n for n in os.listdir(directory) if n.startswith(SOCKET_PREFIX)]
    except OSError:
        return 0
    for name in names:
        folder = os.path.join(directory, name)
        path = os.path.join(folder, SOCKET_NAME)
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.settimeout(1.0)
        try:
            probe.connect(path)
            continue  # a server answers: in use
        except FileNotFoundError:
            if any(True for _ in os.scandir(folder)):
                continue  # not a channel directory we know: leave it
        except ConnectionRefusedError:
            pass  # a socket nobody listens on
        except OSError:
            continue  # not ours to judge (permissions, a busy server)
        finally:
            probe.close()
        with contextlib.suppress(OSError):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            os.rmdir(folder)
            removed += 1
    return removed


# --- server (asyncio) --------------------------------------------------------------------------
Handler = Callable[[dict[str, Any]], Awaitable[Any]]


class ChannelServer:
    """Answers ``infer`` calls with ``handler(request)``; ``on_close(streams)`` is told which
    streams a connection carried once it closed (to let go of their frame rings)."""

    def __init__(
        self, handler: Handler, on_close: Callable[[set[str]], None] | None = None
    ) -> None:
        self._handler, self._on_close = handler, on_close
        self._dir = socket_dir()
        self.path = os.path.join(self._dir, SOCKET_NAME)
        self._server: asyncio.AbstractServer | None = None
        self.connections = 0  # accepted so far

    async def start(self) -> str:
        if self._server is None:
            self._server = await asyncio.start_unix_server(self._serve, path=self.path)
            os.chmod(self.path, 0o600)
        return self.path

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        with contextlib.suppress(OSError):
            os.unlink(self.path)
            os.rmdir(self._dir)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        connection = self.connections
        calls: dict[int, asyncio.Task] = {}

        def answer(call: int, task: asyncio.Task) -> None:
            calls.pop(call, None)
            if task.cancelled() or writer.is_closing():
                return
            exc = task.exception()
            if exc is None:
                reply: tuple = ("ok", call, task.result())
            else:
                reply = ("err", call, f"{type(exc).__name__}: {exc}")
            try:
                writer.write(_pack(reply))
            except Exception as err:  # noqa: BLE001 - the client went away meanwhile
                log.debug("channel reply lost: %s", err)

        try:
            while True:
                size = _HEADER.unpack(await reader.readexactly(_HEADER.size))[0]
                if size > MAX_MESSAGE:
                    log.warning("channel: a %d-byte message, closing the connection", size)
                    break
                message = pickle.loads(await reader.readexactly(size))
                kind, call = message[0], message[1]
                if kind == "infer":
                    request = {**message[2], "connection": connection}
                    task = asyncio.ensure_future(self._handler(request))
                    calls[call] = task
                    task.add_done_callback(lambda t, c=call: answer(c, t))
                elif kind == "cancel":
                    task = calls.pop(call, None)
                    if task is not None:
                        task.cancel()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the client closed
        except Exception:  # noqa: BLE001 - a malformed message ends this connection only
            log.exception("channel: bad message, closing the connection")
        finally:
            for task in list(calls.values()):
                task.cancel()
            writer.close()
            if self._on_close is not None:
                self._on_close(connection)


# --- client (threads) ---------------------------------------------------------------------------
class ChannelClient:
    """One connection to a :class:`ChannelServer`; ``call`` returns a future of the answer."""

    def __init__(self, path: str, connect_timeout_s: float = 5.0) -> None:
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.settimeout(connect_timeout_s)
        try:
            self._sock.connect(path)
        except BaseException:
            self._sock.close()
            raise
        self._sock.settimeout(None)
        self._ids = itertools.count()
        self._calls: dict[int, concurrent.futures.Future] = {}
        self._lock = threading.Lock()  # the map of open calls, and whole messages on the socket
        self.closed: BaseException | None = None
        self._closing = False
        self._reader = threading.Thread(target=self._read, name="channel-reader", daemon=True)
        self._reader.start()

    def call(self, request: dict[str, Any]) -> tuple[int, concurrent.futures.Future]:
        future: concurrent.futures.Future = concurrent.futures.Future()
        with self._lock:
            if self.closed is not None:
                raise ChannelClosed(f"the inference channel is closed: {self.closed}")
            call = next(self._ids)
            self._calls[call] = future
            try:
                self._sock.sendall(_pack(("infer", call, request)))
            except OSError as exc:
                self._calls.pop(call, None)
                raise ChannelClosed(f"the inference channel is closed: {exc}") from None
        return call, future

    def cancel(self, call: int) -> None:
        with self._lock:
            if self._calls.pop(call, None) is None or self.closed is not None:
                return
            with contextlib.suppress(OSError):
                self._sock.sendall(_pack(("cancel", call)))

    def close(self) -> None:
        """Close the connection; calls still open fail with a ``local`` ``ChannelClosed``."""
        self._closing = True
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._reader.join(5.0)
        self._sock.close()

    def _recv(self, size: int) -> bytearray:
        data = bytearray(size)
        view, got = memoryview(data), 0
        while got < size:
            n = self._sock.recv_into(view[got:])
            if n == 0:
                raise ChannelClosed("the inference actor closed the channel")
            got += n
        return data  # pickle reads it as it is: no second copy

    def _read(self) -> None:
        reason: BaseException = ChannelClosed("the channel was closed")
        try:
            while True:
                size = _HEADER.unpack(self._recv(_HEADER.size))[0]
                kind, call, value = pickle.loads(self._recv(size))
                with self._lock:
                    future = self._calls.pop(call, None)
                if future is None or future.done():  # cancelled meanwhile
                    continue
                if kind == "ok":
                    future.set_result(value)
                else:
                    future.set_exception(RemoteError(value))
        except ChannelClosed as exc:
            reason = exc
        except OSError as exc:
            reason = ChannelClosed(f"the inference channel broke: {exc}")
        except Exception as exc:  # noqa: BLE001 - a reply we cannot read: the channel is unusable
            log.exception("channel: unreadable reply")
            reason = ChannelClosed(f"the inference channel sent an unreadable reply: {exc}")
        if self._closing:
            reason = ChannelClosed("this source closed the channel", local=True)
        with self._lock:
            self.closed = reason
            open_calls, self._calls = list(self._calls.values()), {}
        for future in open_calls:
            if not future.done():
                future.set_exception(ChannelClosed(str(reason), local=self._closing))
