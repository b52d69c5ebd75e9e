"""The ``mqtt`` sink: a stream's detections, analytics events and state published to an MQTT
broker with ``paho-mqtt`` (docs/mqtt.md).

Topics, under the spec's ``topic`` prefix (``{run}``: the run's name, ``{source}``: the stream
id): ``<prefix>/detections`` (every frame, or when the set in view changes), ``<prefix>/events``
(one message per analytics event) and ``<prefix>/state`` (retained: ``STREAMING`` at the
first frame, ``ENDED`` at close, ``OFFLINE`` as the connection's last will). Every payload is
a JSON object with ``"v": PAYLOAD_VERSION``; :func:`payload_schemas` gives their JSON Schema
(``vsa schema --mqtt``).

A dead or slow broker never slows the stream: ``write`` only builds the frame's messages and
appends them to a bounded outbox (``max_queued`` messages, counting those handed to the
client and not yet delivered); a frame whose messages do not fit is dropped whole and counted
as the sink's ``overflow`` loss (:meth:`MqttSink.losses`). One thread per sink owns the
client: it connects (with back-off up to ``reconnect_max_s``), publishes the outbox in order
and keeps the connection alive. The password (``password_file``) goes to the client only;
the sink's repr, status and logs never hold it.

paho is imported when a sink opens, so this module (and :func:`payload_schemas`) imports
without it.
"""

from __future__ import annotations

import json
import logging
import os
import re
import select
import socket
import stat
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from vsa.core.frames import Frame, FrameResult
from vsa.core.scene import EVENT_KINDS
from vsa.sinktypes import SinkContext

if TYPE_CHECKING:
    from vsa.config import MqttSinkSpec
    from vsa.core.scene import Event

log = logging.getLogger("vsa.sinks.mqtt")

PAYLOAD_VERSION = 1  # "v" of every payload (payload_schemas(), docs/mqtt.md)

STREAMING = "STREAMING"  # published (retained) with the stream's first frame
ENDED = "ENDED"  # published (retained) when the sink closes
OFFLINE = "OFFLINE"  # the last will: the broker publishes it when the engine vanishes
STATES = (STREAMING, ENDED, OFFLINE)

CLOSE_DRAIN_S = 5.0  # close() waits this long at most for the outbox to reach the broker
LOOP_S = 1.0  # the publisher's select() timeout (keepalive pings, back-off checks)
HANDOVER = 100  # messages handed to the client at once, at most (the rest wait in the outbox)
LOG_EVERY = 100  # overflow is logged at the first dropped frame, then every 100
MIN_RECONNECT_S = 1.0  # the first wait before a reconnect; doubles up to reconnect_max_s

# vsa.supervision.core.new_run_id: "<name>-<YYYYmmdd>-<HHMMSS>-<4 hex digits>"
_RUN_ID = re.compile(r"^(?P<name>.+)-\d{8}-\d{6}-[0-9a-f]{4}$")
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")


def run_name(run_id: str) -> str:
    """The run's name from its id (``door-20261207-014800-ab12`` -> ``door``); an id that is
    not of that form is its own name."""
    match = _RUN_ID.match(run_id)
    return match.group("name") if match else run_id


def topic_prefix(template: str, run: str, source: str) -> str:
    """``template`` with ``{run}`` and ``{source}`` replaced; ValueError for another
    placeholder or a prefix that is no MQTT topic name (empty, wildcards, ``$`` first)."""

    def value(match: re.Match[str]) -> str:
        key = match.group(1)
        if key == "run":
            return run
        if key == "source":
            return source
        raise ValueError(
            f"mqtt topic {template!r}: unknown placeholder {{{key}}} (use {{run}}, {{source}})"
        )

    prefix = _PLACEHOLDER.sub(value, template).rstrip("/")
    bad = next((c for c in "+#{}\0" if c in prefix), None)
    if not prefix or bad is not None or prefix.startswith("$"):
        raise ValueError(
            f"mqtt topic {template!r} gives {prefix!r}: a topic prefix must not be empty, start "
            "with '$' or hold '+', '#', '{', '}'"
        )
    return prefix


def detections_payload(run_id: str, source_id: str, frame: Frame, result: FrameResult) -> dict:
    """A ``<prefix>/detections`` message: the frame and its detections (as in the JSONL)."""
    h, w = frame.image.shape[:2]
    return {
        "v": PAYLOAD_VERSION,
        "run": run_id,
        "source": source_id,
        "frame": frame.index,
        "pts": None if frame.pts is None else round(frame.pts, 6),
        "time": round(frame.wall_time, 6),
        "width": w,
        "height": h,
        "detections": [d.to_json(h, w) for d in result.detections],
    }


def event_payload(run_id: str, source_id: str, event: Event) -> dict:
    """A ``<prefix>/events`` message: one analytics event (as in ``<id>.events.jsonl``)."""
    return {"v": PAYLOAD_VERSION, **event.to_json(run_id, source_id)}


def state_payload(run_id: str, source_id: str, state: str, t: float | None) -> dict:
    """A ``<prefix>/state`` message; ``t`` None for the last will (the broker sends it)."""
    return {
        "v": PAYLOAD_VERSION,
        "run": run_id,
        "source": source_id,
        "state": state,
        "time": None if t is None else round(t, 6),
    }


def _encode(payload: dict) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode("utf-8")


_NUMBER_OR_NULL = {"type": ["number", "null"]}


def _header(what: str) -> dict[str, Any]:
    return {
        "v": {"const": PAYLOAD_VERSION, "description": "The payload's version."},
        "run": {"type": "string", "description": "The run id (as in the JSONL files)."},
        "source": {"type": "string", "description": "The stream id."},
        "frame": {"type": "integer", "minimum": 0, "description": f"The {what}'s frame."},
        "pts": {
            **_NUMBER_OR_NULL,
            "description": "Presentation time (s), when the stream has one.",
        },
        "time": {"type": "number", "description": "Capture time of the frame (Unix s)."},
    }


def payload_schemas() -> dict[str, Any]:
    """The JSON Schema of the payloads (``vsa schema --mqtt``): one document that any payload
    matches, with each topic's own under ``$defs/<topic>`` (``detections``, ``events``,
    ``state``)."""
    rle = {
        "type": "object",
        "description": "COCO uncompressed RLE over the full frame (column-major).",
        "required": ["size", "counts"],
        "properties": {
            "size": {"type": "array", "items": {"type": "integer"}, "minItems": 2, "maxItems": 2},
            "counts": {"type": "array", "items": {"type": "integer", "minimum": 0}},
        },
    }
    detection = {
        "type": "object",
        "description": "One detection, as in the JSONL lines (source pixels).",
        "required": ["label", "class_id", "score", "box"],
        "properties": {
            "label": {"type": "string"},
            "class_id": {"type": "integer"},
            "score": {"type": "number"},
            "box": {
                "type": "array",
                "items": {"type": "number"},
                "minItems": 4,
                "maxItems": 4,
                "description": "x1, y1, x2, y2",
            },
            "track_id": {"type": "integer", "description": "When the stream is tracked."},
            "attributes": {"type": "object", "description": "Values a later stage added."},
            "mask": rle,
        },
    }
    header = _header("detections")
    detections = {
        "title": "vsa MQTT detections",
        "description": "<prefix>/detections: a frame's detections (every frame, or when the "
        "set of classes, or of track ids when tracked, in view changed).",
        "type": "object",
        "required": [*header, "width", "height", "detections"],
        "properties": {
            **header,
            "width": {"type": "integer", "minimum": 1},
            "height": {"type": "integer", "minimum": 1},
            "detections": {"type": "array", "items": detection},
        },
    }
    header = _header("event")
    events = {
        "title": "vsa MQTT event",
        "description": "<prefix>/events: one scene analytics event (docs/analytics.md).",
        "type": "object",
        "required": [*header, "kind", "track_id", "class"],
        "properties": {
            **header,
            "kind": {"enum": list(EVENT_KINDS)},
            "line": {"type": "string", "description": "line_cross: the line's id."},
            "zone": {"type": "string", "description": "Zone events: the zone's id."},
            "track_id": {"type": "integer"},
            "class": {"type": "string", "description": "The track's class."},
            "direction": {"enum": ["in", "out"], "description": "line_cross."},
            "dwell_s": {"type": "number", "description": "zone_leave, loiter: seconds in it."},
        },
        "oneOf": [{"required": ["line"]}, {"required": ["zone"]}],
    }
    state = {
        "title": "vsa MQTT state",
        "description": "<prefix>/state (retained): STREAMING from the stream's first frame, "
        "ENDED when its sink closed, OFFLINE (the connection's last will, published by the "
        "broker) when the engine vanished without closing.",
        "type": "object",
        "required": ["v", "run", "source", "state", "time"],
        "properties": {
            "v": {"const": PAYLOAD_VERSION},
            "run": {"type": "string", "description": "The run id."},
            "source": {"type": "string", "description": "The stream id."},
            "state": {"enum": list(STATES)},
            "time": {**_NUMBER_OR_NULL, "description": "When (Unix s); null in the last will."},
        },
    }
    for schema in (detections, events, state):
        schema["additionalProperties"] = True  # a later version 1 may add fields
    topics = {"detections": detections, "events": events, "state": state}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": f"vsa MQTT payloads, version {PAYLOAD_VERSION}",
        "description": "Any payload of the mqtt sink; $defs/<topic> is that topic's own "
        "(<prefix>/detections, <prefix>/events, <prefix>/state).",
        "$defs": topics,
        "anyOf": [{"$ref": f"#/$defs/{name}"} for name in topics],
    }


MAX_PASSWORD_BYTES = 4096


def read_password(path: str) -> str:
    """The first line of ``path`` (the broker password), without its line ending.

    As for a source's ``password_file``: a regular file (opened without blocking, so a FIFO
    cannot hang the stream) that no other user can read or write (mode 0600 or 0400), of at
    most ``MAX_PASSWORD_BYTES``. Errors name the file, never its contents.
    """
    where = f"mqtt password_file {path}"
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise ValueError(f"{where}: cannot read it: {exc.strerror or exc}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ValueError(f"{where}: not a regular file (a FIFO, a device or a directory)")
        if st.st_mode & 0o077:
            raise ValueError(
                f"{where}: other users can read or write it (mode "
                f"{stat.S_IMODE(st.st_mode):04o}); it holds a password: chmod 600 it"
            )
        data = os.read(fd, MAX_PASSWORD_BYTES + 1)
    except OSError as exc:
        raise ValueError(f"{where}: cannot read it: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    if len(data) > MAX_PASSWORD_BYTES:
        raise ValueError(f"{where}: longer than {MAX_PASSWORD_BYTES} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{where}: not UTF-8 text") from None
    password = text.split("\n", 1)[0].rstrip("\r")
    if not password:
        raise ValueError(f"{where}: the first line (the password) is empty")
    return password


@dataclass
class _Message:
    topic: str
    payload: bytes
    retain: bool
    frame: int | None  # the frame it belongs to; None: a state message (outside the bound)
    state: str | None = None  # a state message's state


class MqttSink:
    """Publishes a stream's messages through one client, from one thread (see the module).

    ``losses()``: frames lost by cause (``overflow``: the outbox was full; ``unsent``: still
    waiting when the sink closed). ``counts()``: messages ``published`` (delivered: acknowledged
    at QoS 1, written to the connection at QoS 0) and ``dropped``.
    """

    def __init__(
        self,
        spec: MqttSinkSpec,
        context: SinkContext,
        client: Any,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.run_id, self.source_id = context.run_id, context.source_id
        self.host = spec.host
        self.port = spec.port or (8883 if spec.tls else 1883)
        self.prefix = topic_prefix(spec.topic, run_name(context.run_id), context.source_id)
        self.detections, self.qos = spec.detections, spec.qos
        self.retain_state, self.max_queued = spec.retain_state, spec.max_queued
        self._max_delay = float(spec.reconnect_max_s)
        self._min_delay = min(MIN_RECONNECT_S, self._max_delay)
        self._clock = clock
        self._name = f"mqtt sink run={self.run_id} source={self.source_id}"
        self._client = client  # touched by the publisher thread only (and close, after it)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        # the external-loop interface: publish() only queues, the thread does all network I/O
        client.on_socket_register_write = _ignore
        client.on_socket_unregister_write = _ignore

        self._lock = threading.Lock()  # the outbox and the counters (write vs the thread)
        self._outbox: deque[_Message] = deque()  # not yet handed to the client
        self._handed: OrderedDict[int, _Message] = OrderedDict()  # by mid, not yet delivered
        self._held = 0  # frame messages in the outbox or handed over (<= max_queued)
        self._started = False  # STREAMING queued
        self._last_key: object = None  # on_change: the set last queued
        self._closing = False
        self._deadline = 0.0  # closing: give up at this clock time
        self._done = False  # the thread finished; what was left is counted
        self._lost = {"overflow": 0, "unsent": 0}  # frames
        self._published = 0  # messages
        self._dropped = 0  # messages

        # the thread's own state
        self._connected = False  # CONNACK accepted, connection not lost since
        self._delay = self._min_delay
        self._down_since: float | None = None  # first failure of the current outage
        self._ended_sent = False
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._interrupt = threading.Event()  # close(): cut a back-off wait short
        self._thread = threading.Thread(
            target=self._run, name=f"vsa-mqtt:{self.source_id}", daemon=True
        )
        self._thread.start()

    def __repr__(self) -> str:
        return f"MqttSink({self.host}:{self.port}, topic={self.prefix!r}, qos={self.qos})"

    # --- the stream's side (never blocks on the network) -------------------------------------

    def write(self, frame: Frame, result: FrameResult) -> None:
        """Queue the frame's messages (its detections, by ``detections``, and its events); a
        frame whose messages do not fit the outbox is dropped whole and counted as overflow."""
        messages: list[_Message] = []
        key: object = self._last_key
        if self.detections != "off":
            if self.detections == "on_change":
                key = _in_view(result)
            if self.detections == "every_frame" or key != self._last_key:
                payload = detections_payload(self.run_id, self.source_id, frame, result)
                messages.append(self._message("detections", payload, False, frame.index))
        for event in result.events:
            payload = event_payload(self.run_id, self.source_id, event)
            messages.append(self._message("events", payload, False, frame.index))
        state = None
        if not self._started:
            state = self._state_message(STREAMING)
        with self._lock:
            if self._closing:
                raise RuntimeError(f"{self._name}: write after close")
            if state is not None:
                self._outbox.append(state)
                self._started = True
            overflow = bool(messages) and self._held + len(messages) > self.max_queued
            if overflow:
                self._lost["overflow"] += 1
                self._dropped += len(messages)
                frames = self._lost["overflow"]
            elif messages:
                self._outbox.extend(messages)
                self._held += len(messages)
                self._last_key = key
        if (messages and not overflow) or state is not None:
            self._wake()
        if overflow:
            if frames == 1 or frames % LOG_EVERY == 0:
                log.warning(
                    "%s: the outbox is full (%d messages wait for %s:%d); %d frames dropped as "
                    "overflow so far",
                    self._name,
                    self.max_queued,
                    self.host,
                    self.port,
                    frames,
                )

    def losses(self) -> dict[str, int]:
        """Frames this sink accepted and then lost, by cause (cumulative): ``overflow`` (the
        outbox was full) and ``unsent`` (still waiting when it closed); causes with none are
        left out."""
        with self._lock:
            return {cause: n for cause, n in self._lost.items() if n}

    def counts(self) -> dict[str, int]:
        """Messages ``published`` (state messages included) and ``dropped`` (cumulative)."""
        with self._lock:
            return {"published": self._published, "dropped": self._dropped}

    def status(self) -> dict[str, Any]:
        """Where the sink stands: connected, messages queued (frame messages waiting or in
        flight), the counts and the losses. Never the credentials."""
        with self._lock:
            return {
                "broker": f"{self.host}:{self.port}",
                "topic": self.prefix,
                "connected": self._connected,
                "queued": self._held,
                "published": self._published,
                "dropped": self._dropped,
                "lost": {cause: n for cause, n in self._lost.items() if n},
            }

    def close(self) -> None:
        """Queue the ``ENDED`` state and wait (``CLOSE_DRAIN_S`` at most; not at all when the
        broker is away: the last attempt failed) for the outbox to reach the broker; what is
        left is counted ``unsent``.
        Then disconnect cleanly (the retained state stays ``ENDED``), or, when ``ENDED`` did
        not get through, drop the connection so that the broker publishes ``OFFLINE``."""
        ended = self._state_message(ENDED)
        with self._lock:
            if self._closing:
                return
            self._closing = True
            self._outbox.append(ended)
            # no wait once an attempt failed (the broker is away): only while connected or
            # still making the first connection
            wait = CLOSE_DRAIN_S if self._connected or self._down_since is None else 0.0
            self._deadline = self._clock() + wait
        self._interrupt.set()
        self._wake()
        self._thread.join(wait + 2 * LOOP_S)
        self._finish()  # the thread does it when it ends; here if it is still connecting
        for s in (self._wake_r, self._wake_w):
            s.close()

    # --- helpers --------------------------------------------------------------------------------

    def _message(self, kind: str, payload: dict, retain: bool, frame: int | None) -> _Message:
        return _Message(f"{self.prefix}/{kind}", _encode(payload), retain, frame)

    def _state_message(self, state: str) -> _Message:
        payload = state_payload(self.run_id, self.source_id, state, time.time())
        return _Message(f"{self.prefix}/state", _encode(payload), self.retain_state, None, state)

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"\0")
        except (BlockingIOError, OSError):
            pass  # a wake-up is pending already, or the sink is closed

    def _finish(self) -> None:
        """Count what never reached the broker (once)."""
        with self._lock:
            if self._done:
                return
            self._done = True
            left = [*self._handed.values(), *self._outbox]
            self._outbox.clear()
            self._handed.clear()
            frames = {m.frame for m in left if m.frame is not None}
            self._lost["unsent"] += len(frames)
            self._dropped += len(left)
            self._held = 0
        if left:
            log.warning(
                "%s: closed with %d messages (%d frames) not delivered to %s:%d",
                self._name,
                len(left),
                len(frames),
                self.host,
                self.port,
            )

    # --- the publisher thread -------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while not self._should_stop():
                if self._client.socket() is None:
                    self._connect()
                    continue
                self._step()
        except Exception:  # noqa: BLE001 - the thread must end counted, never silently
            log.exception("%s: the publisher thread failed", self._name)
        finally:
            self._hang_up()
            self._finish()

    def _should_stop(self) -> bool:
        with self._lock:
            if self._done:
                return True
            if not self._closing:
                return False
            drained = not self._outbox and not self._handed
            return drained or self._clock() >= self._deadline

    def _connect(self) -> None:
        """One connection attempt (after the back-off wait when the last one failed)."""
        try:
            self._client.reconnect()  # TCP (and TLS) connect, then CONNECT; CONNACK comes later
            return
        except Exception as exc:  # noqa: BLE001 - refused, unreachable, TLS, DNS...
            self._failed(f"cannot connect: {_reason(exc)}")
        self._pause()

    def _failed(self, why: str) -> None:
        now = self._clock()
        if self._down_since is None:
            self._down_since = now
            log.warning(
                "%s: %s:%d %s; messages wait in the outbox (at most %d), retrying with "
                "back-off up to %gs",
                self._name,
                self.host,
                self.port,
                why,
                self.max_queued,
                self._max_delay,
            )
        else:
            log.debug("%s: %s:%d %s", self._name, self.host, self.port, why)

    def _pause(self) -> None:
        """The back-off wait before the next attempt (cut short by close)."""
        delay = self._delay
        self._delay = min(self._delay * 2, self._max_delay)
        with self._lock:
            if self._closing:
                delay = min(delay, max(0.0, self._deadline - self._clock()))
        self._interrupt.wait(delay)

    def _step(self) -> None:
        """Hand the outbox to the client, then one round of network I/O."""
        client = self._client
        if self._connected:
            self._hand_over()
        sock = client.socket()
        if sock is None:
            return
        pending = getattr(sock, "pending", None)  # TLS: bytes decrypted but not yet read
        ready = pending() > 0 if pending is not None else False
        wlist = [sock] if client.want_write() else []
        try:
            readable, writable, _ = select.select(
                [sock, self._wake_r], wlist, [], 0.0 if ready else LOOP_S
            )
        except (OSError, ValueError):
            readable, writable = [sock], []  # the socket went bad: the read reports it
        if self._wake_r in readable:
            try:
                self._wake_r.recv(4096)
            except BlockingIOError:
                pass
        if sock in readable or ready:
            client.loop_read()
        if client.socket() is not None and sock in writable:
            client.loop_write()
        if client.socket() is not None:
            client.loop_misc()
        if client.socket() is None:  # lost (on_disconnect said why): wait, then reconnect
            self._lost_connection()
            if not self._should_stop():
                self._pause()

    def _hand_over(self) -> None:
        """Publish the outbox's head, in order, up to HANDOVER messages in the client."""
        while True:
            with self._lock:
                if self._done or not self._outbox or len(self._handed) >= HANDOVER:
                    return
                message = self._outbox.popleft()
            info = self._client.publish(
                message.topic, message.payload, qos=self.qos, retain=message.retain
            )
            with self._lock:
                if info.rc != 0 and self.qos == 0:  # not queued (no connection): back it goes
                    self._outbox.appendleft(message)
                    return
                # QoS 1 keeps it even without a connection and sends it again after one
                self._handed[info.mid] = message

    def _hang_up(self) -> None:
        """The thread's end: a clean DISCONNECT once ENDED is delivered (the retained state
        stays ENDED); otherwise the connection just closes and the broker publishes the will."""
        client = self._client
        try:
            if client.socket() is not None and self._ended_sent:
                client.disconnect()
                client.loop_write()
        except Exception as exc:  # noqa: BLE001
            log.debug("%s: disconnecting: %s", self._name, _reason(exc))
        finally:
            sock = client.socket()
            if sock is not None:
                try:
                    sock.close()
                except OSError:
                    pass

    # --- paho's callbacks (called on the publisher thread) --------------------------------------

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            self._failed(f"refused the connection: {reason}")
            return
        self._connected = True
        self._delay = self._min_delay
        if self._down_since is not None:
            log.info(
                "%s: connected to %s:%d after %.1f s",
                self._name,
                self.host,
                self.port,
                self._clock() - self._down_since,
            )
        else:
            log.info("%s: connected to %s:%d", self._name, self.host, self.port)
        self._down_since = None

    def _on_disconnect(
        self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any
    ) -> None:
        if self._connected and not self._closing:
            self._failed(f"connection lost ({reason})")
        self._lost_connection()

    def _lost_connection(self) -> None:
        self._connected = False
        if self.qos == 0:  # what the client had not written yet is dropped: send it again
            with self._lock:
                back = list(self._handed.values())
                self._handed.clear()
                self._outbox.extendleft(reversed(back))

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        with self._lock:
            message = self._handed.pop(mid, None)
            if message is None:
                return
            self._published += 1
            if message.frame is not None:
                self._held -= 1
            elif message.state == ENDED:
                self._ended_sent = True


def _ignore(*args: Any) -> None:
    pass


def _reason(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def _in_view(result: FrameResult) -> object:
    """What ``on_change`` compares: the track ids in view when the stream is tracked, else the
    set of classes."""
    tracks = frozenset(d.track_id for d in result.detections if d.track_id is not None)
    if tracks:
        return ("tracks", tracks)
    return ("classes", frozenset(d.label for d in result.detections))


def open_mqtt(spec: MqttSinkSpec, context: SinkContext) -> MqttSink:
    """The ``mqtt`` sink type's factory (``vsa.sinktypes``): reads the password file, sets up
    the client (TLS, last will) and returns at once; the connection is made by the sink's
    thread."""
    import paho.mqtt.client as mqtt

    name = run_name(context.run_id)
    prefix = topic_prefix(spec.topic, name, context.source_id)  # refused before anything opens
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=spec.client_id or f"vsa-{name}-{context.source_id}",
        protocol=mqtt.MQTTv311,
        clean_session=True,
    )
    if spec.password_file is not None and spec.username is None:
        raise ValueError("mqtt sink: password_file needs a username")
    if spec.username is not None:
        password = read_password(spec.password_file) if spec.password_file else None
        client.username_pw_set(spec.username, password)
        del password
    if spec.tls:
        client.tls_set(ca_certs=spec.ca_file)
    will = state_payload(context.run_id, context.source_id, OFFLINE, None)
    client.will_set(f"{prefix}/state", _encode(will), qos=spec.qos, retain=spec.retain_state)
    client.connect_async(spec.host, spec.port or (8883 if spec.tls else 1883), spec.keepalive_s)
    return MqttSink(spec, context, client)


__all__ = [
    "ENDED",
    "OFFLINE",
    "PAYLOAD_VERSION",
    "STREAMING",
    "MqttSink",
    "open_mqtt",
    "payload_schemas",
    "read_password",
    "run_name",
    "topic_prefix",
]
