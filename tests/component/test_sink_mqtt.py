"""The mqtt sink against a real broker (Debian's ``mosquitto``, started here on 127.0.0.1 for
each test), watched by a paho subscriber; no Ray. Skipped when mosquitto is not installed,
failed instead when VSA_REQUIRE_MQTT=1 (scripts/test.sh sets it).

A broker restarted for a test starts *gated* (anonymous clients refused, only the watching
subscriber's user let in) so that the subscriber is listening before the sink reconnects;
opening the gate (``allow_anonymous true`` and SIGHUP) lets the sink in.
"""

from __future__ import annotations

import getpass
import io
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt
import pytest

from tests.ports import free_port
from vsa.cli import main
from vsa.config import MqttSinkSpec
from vsa.core.detections import Detection
from vsa.core.frames import Frame, FrameResult
from vsa.core.scene import Event
from vsa.sinks.mqtt import (
    ENDED,
    OFFLINE,
    STREAMING,
    MqttSink,
    open_mqtt,
    payload_schemas,
    run_name,
    topic_prefix,
)
from vsa.sinktypes import SinkContext

ROOT = Path(__file__).resolve().parents[2]
RUN_ID = "door-20261207-014800-ab12"
PREFIX = "vsa/door/cam1"
WATCHER = ("watcher", "watcher-pass")  # the subscriber's user on every broker
TIMEOUT = 15.0
WRITE_LIMIT_S = 0.05


def _mosquitto() -> str:
    binary = shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if os.access("/usr/sbin/mosquitto", os.X_OK) else None
    )
    if binary is None:
        why = "mosquitto is not installed (apt install mosquitto)"
        if os.environ.get("VSA_REQUIRE_MQTT") == "1":
            pytest.fail(f"mosquitto is required (VSA_REQUIRE_MQTT=1): {why}")
        pytest.skip(why)
    return binary


def wait_for(condition: Callable[[], Any], what: str, timeout: float = TIMEOUT) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


class Broker:
    """A mosquitto on 127.0.0.1:``port``: users from ``users`` (plus the watcher), anonymous
    clients let in unless ``gated``."""

    def __init__(
        self,
        root: Path,
        port: int,
        users: dict[str, str] | None = None,
        *,
        tls_port: int | None = None,  # a second listener, TLS (certificates in root)
    ) -> None:
        self.binary, self.root, self.port, self.tls_port = _mosquitto(), root, port, tls_port
        self.users = {WATCHER[0]: WATCHER[1], **(users or {})}
        self.passwd = root / "passwd"
        self.passwd.touch()
        for user, password in self.users.items():
            subprocess.run(
                ["mosquitto_passwd", "-b", str(self.passwd), user, password],
                check=True,
                capture_output=True,
            )
        self.proc: subprocess.Popen | None = None

    def _config(self, anonymous: bool) -> Path:
        config = self.root / "mosquitto.conf"
        config.write_text(
            f"listener {self.port} 127.0.0.1\n"
            f"allow_anonymous {'true' if anonymous else 'false'}\n"
            f"password_file {self.passwd}\n"
            f"user {getpass.getuser()}\n"  # as root, mosquitto would drop to 'mosquitto'
            "persistence false\n"
        )
        if self.tls_port is not None:
            with config.open("a") as f:
                f.write(
                    f"listener {self.tls_port} 127.0.0.1\n"
                    f"cafile {self.root / 'ca.pem'}\n"
                    f"certfile {self.root / 'server.pem'}\n"
                    f"keyfile {self.root / 'server.key'}\n"
                )
        return config

    def start(self, *, gated: bool = False, anonymous: bool = True) -> Broker:
        config = self._config(anonymous and not gated)
        log = open(self.root / "mosquitto.log", "a")  # noqa: SIM115 - the broker's own
        self.proc = subprocess.Popen(
            [self.binary, "-c", str(config)], stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        wait_for(self._listening, f"mosquitto on port {self.port}")
        return self

    def _listening(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError((self.root / "mosquitto.log").read_text()[-2000:])
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
            return True
        except OSError:
            return False

    def open_gate(self) -> None:
        assert self.proc is not None
        self._config(anonymous=True)
        self.proc.send_signal(signal.SIGHUP)  # mosquitto reloads allow_anonymous

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()  # SIGKILL: no goodbye to anyone
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


class Watcher:
    """A subscriber to ``<PREFIX>/#``: every message as (topic, payload, retained)."""

    def __init__(self, port: int) -> None:
        self.messages: list[tuple[str, dict, bool]] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
        self.client.username_pw_set(*WATCHER)
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(f"{PREFIX}/#", qos=1)
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self._subscribed.wait(TIMEOUT), "the watcher did not subscribe"

    def _on_message(self, client: Any, userdata: Any, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((message.topic, json.loads(message.payload), message.retain))

    def of(self, kind: str) -> list[dict]:
        with self._lock:
            return [p for t, p, _ in self.messages if t == f"{PREFIX}/{kind}"]

    def frames(self) -> list[int]:
        return [p["frame"] for p in self.of("detections")]

    def states(self) -> list[str]:
        return [p["state"] for p in self.of("state")]

    def retained_state(self) -> tuple[str, bool] | None:
        with self._lock:
            found = [(p["state"], r) for t, p, r in self.messages if t == f"{PREFIX}/state"]
        return found[-1] if found else None

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def port() -> int:
    return free_port()


@pytest.fixture
def brokers(tmp_path: Path) -> Iterator[list[Broker]]:
    made: list[Broker] = []
    yield made
    for broker in made:
        broker.stop()


@pytest.fixture
def watchers() -> Iterator[list[Watcher]]:
    made: list[Watcher] = []
    yield made
    for watcher in made:
        watcher.close()


@pytest.fixture
def sinks() -> Iterator[list[MqttSink]]:
    made: list[MqttSink] = []
    yield made
    for sink in made:
        sink.close()  # a second close does nothing


def context(tmp_path: Path) -> SinkContext:
    return SinkContext(tmp_path, RUN_ID, "cam1", 25.0, False)


def spec(port: int, **fields: Any) -> MqttSinkSpec:
    return MqttSinkSpec(type="mqtt", host="127.0.0.1", port=port, **fields)


IMAGE = np.zeros((48, 64, 3), np.uint8)


def frame(index: int, labels: tuple[str, ...] = ("person",), *, tracks=None, events=()):
    detections = [
        Detection(
            label,
            0 if label == "person" else 2,
            0.9,
            (1.0 + i, 2.0, 20.0, 30.0),
            track_id=None if tracks is None else tracks[i],
        )
        for i, label in enumerate(labels)
    ]
    f = Frame(index, index / 25, 1_800_000_000 + index / 25, IMAGE)
    return f, FrameResult(index, detections, 1.0, 1, events=tuple(events))


def event(index: int, kind: str) -> Event:
    where = "gate" if kind == "line_cross" else "lobby"
    direction = "in" if kind == "line_cross" else None
    t = 1_800_000_000 + index / 25
    return Event(kind, where, 7, "person", index, index / 25, t, direction=direction)


def timed_write(sink: MqttSink, index: int, durations: list[float]) -> None:
    started = time.perf_counter()
    sink.write(*frame(index))
    durations.append(time.perf_counter() - started)


def validator() -> Callable[[str, dict], None]:
    jsonschema = pytest.importorskip("jsonschema")
    schema = payload_schemas()
    jsonschema.Draft202012Validator.check_schema(schema)

    validators = {
        kind: jsonschema.Draft202012Validator({**schema, "anyOf": [{"$ref": f"#/$defs/{kind}"}]})
        for kind in schema["$defs"]
    }

    def check(kind: str, payload: dict) -> None:
        validators[kind].validate(payload)

    return check


# --- the tests ----------------------------------------------------------------------------------


def test_every_message_arrives_in_order_and_the_state_is_retained(
    tmp_path, port, brokers, watchers, sinks
):
    brokers.append(Broker(tmp_path, port).start())
    watcher = Watcher(port)
    watchers.append(watcher)
    sink = open_mqtt(spec(port, detections="every_frame"), context(tmp_path))
    sinks.append(sink)
    events = {50: [event(50, "line_cross")], 120: [event(120, "zone_enter")]}
    for i in range(10):
        sink.write(*frame(i, events=events.get(i, ())))
    wait_for(lambda: len(watcher.frames()) == 10, "the first 10 frames")
    late = Watcher(port)  # connects after the first frame: gets the retained state
    watchers.append(late)
    assert wait_for(late.retained_state, "the retained state") == (STREAMING, True)
    for i in range(10, 200):
        sink.write(*frame(i, events=events.get(i, ())))
    sink.close()

    wait_for(lambda: ENDED in watcher.states(), "ENDED")
    assert watcher.frames() == list(range(200))  # every one, in order
    assert [(e["frame"], e["kind"]) for e in watcher.of("events")] == [
        (50, "line_cross"),
        (120, "zone_enter"),
    ]
    assert watcher.states() == [STREAMING, ENDED]
    with watcher._lock:
        topics = [t.rsplit("/", 1)[1] for t, _, _ in watcher.messages]
    # one FIFO: the state first, each event right after its frame's detections, ENDED last
    assert topics[0] == "state" and topics[-1] == "state"
    assert topics[52] == "events" and watcher.messages[51][1]["frame"] == 50
    check = validator()
    for kind in ("detections", "events", "state"):
        for payload in watcher.of(kind):
            check(kind, payload)
    first = watcher.of("detections")[0]
    assert first["v"] == 1 and first["run"] == RUN_ID and first["source"] == "cam1"
    assert (first["width"], first["height"]) == (64, 48)
    assert first["detections"] == [frame(0)[1].detections[0].to_json(48, 64)]
    assert sink.losses() == {}
    assert sink.counts() == {"published": 204, "dropped": 0}
    after = Watcher(port)  # after the end: the retained state is the last one
    watchers.append(after)
    assert wait_for(after.retained_state, "the retained state") == (ENDED, True)


def test_on_change_publishes_only_when_the_set_in_view_changes(
    tmp_path, port, brokers, watchers, sinks
):
    brokers.append(Broker(tmp_path, port).start())
    watcher = Watcher(port)
    watchers.append(watcher)
    sink = open_mqtt(spec(port), context(tmp_path))  # on_change is the default
    sinks.append(sink)
    classes = [(), ("person",), ("person",), ("person", "car"), ("car", "person"), ("car",), ()]
    for i, labels in enumerate(classes):
        sink.write(*frame(i, labels))
    # tracked: the set of track ids, whatever the classes
    tracked = [(7,), (7,), (7, 8), (8,), (8,)]
    for i, ids in enumerate(tracked, start=len(classes)):
        sink.write(*frame(i, ("person",) * len(ids), tracks=ids))
    sink.write(*frame(12, events=[event(12, "loiter")]))  # events whatever the detections
    sink.close()
    wait_for(lambda: ENDED in watcher.states(), "ENDED")
    assert watcher.frames() == [0, 1, 3, 5, 6, 7, 9, 10, 12]
    assert [e["frame"] for e in watcher.of("events")] == [12]


def test_a_killed_broker_never_blocks_writes_and_overflow_is_counted_exactly(
    tmp_path, port, brokers, watchers, sinks
):
    broker = Broker(tmp_path, port).start()
    brokers.append(broker)
    before = Watcher(port)
    watchers.append(before)
    fields = {"detections": "every_frame", "qos": 1, "max_queued": 30, "reconnect_max_s": 1.0}
    sink = open_mqtt(spec(port, **fields), context(tmp_path))
    sinks.append(sink)
    wait_for(lambda: sink.status()["connected"], "the connection")
    durations: list[float] = []
    for i in range(50):  # at the broker's pace: nothing overflows yet
        wait_for(lambda: sink.status()["queued"] < 10, "room in the outbox")
        timed_write(sink, i, durations)
    wait_for(lambda: len(before.frames()) == 50, "the first 50 frames")
    wait_for(lambda: sink.status()["queued"] == 0, "every PUBACK")
    assert sink.losses() == {}

    broker.kill()
    wait_for(lambda: not sink.status()["connected"], "the sink to see the broker gone")
    for i in range(50, 150):  # 30 fit the outbox, 70 overflow
        timed_write(sink, i, durations)
    assert sink.status()["queued"] == 30
    assert sink.losses() == {"overflow": 70}

    broker.start(gated=True)  # the watcher first, then the sink
    after = Watcher(port)
    watchers.append(after)
    broker.open_gate()
    wait_for(lambda: len(after.frames()) == 30, "the 30 queued frames after the restart")
    for i in range(150, 170):
        timed_write(sink, i, durations)
    sink.close()
    wait_for(lambda: ENDED in after.states(), "ENDED")

    assert max(durations) < WRITE_LIMIT_S, max(durations)
    arrived = after.frames()
    assert arrived == [*range(50, 80), *range(150, 170)]  # in order, each once
    delivered = set(before.frames()) | set(arrived)  # (the first watcher came back too)
    assert before.frames()[:50] == list(range(50))
    assert len(delivered) + sink.losses()["overflow"] == 170  # every frame produced
    assert sink.losses() == {"overflow": 70}
    assert sink.counts() == {"published": 102, "dropped": 70}  # 100 frames + 2 states


def test_a_broker_down_at_open_gets_the_messages_when_it_comes_up(
    tmp_path, port, brokers, watchers, sinks
):
    started = time.monotonic()
    sink = open_mqtt(spec(port, detections="every_frame"), context(tmp_path))
    sinks.append(sink)
    assert time.monotonic() - started < 1.0
    durations: list[float] = []
    for i in range(20):
        timed_write(sink, i, durations)
    assert max(durations) < WRITE_LIMIT_S
    time.sleep(0.3)
    assert sink.status()["connected"] is False and sink.status()["queued"] == 20

    broker = Broker(tmp_path, port).start(gated=True)
    brokers.append(broker)
    watcher = Watcher(port)
    watchers.append(watcher)
    broker.open_gate()
    wait_for(lambda: len(watcher.frames()) == 20, "the 20 frames that waited")
    sink.close()
    wait_for(lambda: ENDED in watcher.states(), "ENDED")
    assert watcher.frames() == list(range(20))
    assert watcher.states() == [STREAMING, ENDED]
    assert sink.losses() == {}


def test_the_password_comes_from_its_file_and_is_shown_nowhere(
    tmp_path, port, brokers, watchers, sinks, caplog
):
    secret = "pw-Zq8!s3cret-" + os.urandom(4).hex()
    brokers.append(Broker(tmp_path, port, {"engine": secret}).start(anonymous=False))
    watcher = Watcher(port)
    watchers.append(watcher)
    good = tmp_path / "mqtt-password"
    good.write_text(secret + "\nignored second line\n")
    bad = tmp_path / "wrong-password"
    bad.write_text("not-" + secret + "\n")
    for path in (good, bad):
        path.chmod(0o600)
    caplog.set_level(logging.DEBUG)

    sink = open_mqtt(spec(port, username="engine", password_file=str(good)), context(tmp_path))
    sinks.append(sink)
    for i in range(5):
        sink.write(*frame(i, ("person",) if i % 2 else ("car",)))
    wait_for(lambda: len(watcher.frames()) == 5, "5 frames from the authenticated sink")
    shown = [repr(sink), str(sink.status()), str(sink.counts()), str(sink.losses())]
    sink.close()

    refused = open_mqtt(
        spec(port, username="engine", password_file=str(bad), reconnect_max_s=0.5),
        SinkContext(tmp_path, RUN_ID, "cam2", None, False),
    )
    sinks.append(refused)
    refused.write(*frame(0))
    wait_for(lambda: "Not authorized" in caplog.text, "the refusal in the log")
    assert refused.status()["connected"] is False
    shown += [repr(refused), str(refused.status())]
    started = time.monotonic()
    refused.close()  # disconnected: no wait; what waited is counted
    assert time.monotonic() - started < 1.0
    assert refused.losses() == {"unsent": 1}

    assert watcher.frames() == list(range(5))
    records = [r.getMessage() for r in caplog.records] + [caplog.text]
    for text in [*records, *shown]:
        assert secret not in text
    assert "refused the connection" in caplog.text


def test_a_vanished_engine_leaves_offline_retained(tmp_path, port, brokers, watchers):
    brokers.append(Broker(tmp_path, port).start())
    watcher = Watcher(port)
    watchers.append(watcher)
    script = textwrap.dedent(
        f"""
        import sys, time
        sys.path.insert(0, {str(ROOT)!r})
        from pathlib import Path
        from tests.component.test_sink_mqtt import context, frame, spec
        from vsa.sinks.mqtt import open_mqtt
        sink = open_mqtt(spec({port}), context(Path({str(tmp_path)!r})))
        sink.write(*frame(0))
        print("written", flush=True)
        time.sleep(60)
        """
    )
    engine = subprocess.Popen(
        [sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert engine.stdout.readline().strip() == "written"
        wait_for(lambda: STREAMING in watcher.states(), "STREAMING")
    finally:
        engine.kill()
        engine.wait(10)
    wait_for(lambda: OFFLINE in watcher.states(), "the last will")
    assert watcher.of("state")[-1]["time"] is None
    late = Watcher(port)
    watchers.append(late)
    assert wait_for(late.retained_state, "the retained state") == (OFFLINE, True)


def make_ca(root: Path, name: str) -> tuple[Any, Any]:
    """A self-signed CA (``<name>.pem``): its certificate and key."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    (root / f"{name}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert, key


def make_server_cert(root: Path) -> None:
    """ca.pem, and server.pem/server.key for 127.0.0.1 signed by it."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    ca, ca_key = make_ca(root, "ca")
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    (root / "server.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (root / "server.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )


def test_tls_with_the_brokers_ca(tmp_path, port, brokers, watchers, sinks, caplog):
    make_server_cert(tmp_path)
    make_ca(tmp_path, "other-ca")
    tls_port = free_port()
    brokers.append(Broker(tmp_path, port, tls_port=tls_port).start())
    watcher = Watcher(port)  # on the plain listener
    watchers.append(watcher)
    fields = {"port": tls_port, "tls": True, "detections": "every_frame"}
    sink = open_mqtt(spec(ca_file=str(tmp_path / "ca.pem"), **fields), context(tmp_path))
    sinks.append(sink)
    for i in range(3):
        sink.write(*frame(i))
    wait_for(lambda: len(watcher.frames()) == 3, "3 frames over TLS")

    # a broker whose certificate the CA does not sign: no connection, the reason logged
    stranger = open_mqtt(
        spec(ca_file=str(tmp_path / "other-ca.pem"), **fields),
        SinkContext(tmp_path, RUN_ID, "cam2", None, False),
    )
    sinks.append(stranger)
    stranger.write(*frame(0))
    wait_for(lambda: "certificate verify failed" in caplog.text, "the TLS refusal")
    stranger.close()
    assert stranger.losses() == {"unsent": 1}
    sink.close()
    wait_for(lambda: ENDED in watcher.states(), "ENDED")
    assert watcher.frames() == [0, 1, 2]


# --- no broker needed ---------------------------------------------------------------------------


def test_a_password_file_others_can_read_or_no_file_is_refused_without_showing_it(tmp_path):
    secret = "s3cret-" + os.urandom(4).hex()
    path = tmp_path / "pw"
    path.write_text(secret + "\n")
    path.chmod(0o644)
    fields = {"username": "engine", "password_file": str(path)}
    problems = []
    for case in ("shared", "fifo", "missing", "empty"):
        if case == "fifo":
            path.unlink()
            os.mkfifo(path, 0o600)  # would block a plain open()
        elif case == "missing":
            path.unlink()
        elif case == "empty":
            path.write_text("\n")
            path.chmod(0o600)
        with pytest.raises(ValueError) as raised:
            open_mqtt(spec(1883, **fields), context(tmp_path))
        problems.append(str(raised.value))
    assert all(str(path) in p and secret not in p for p in problems), problems
    assert "chmod 600" in problems[0] and "not a regular file" in problems[1]
    with pytest.raises(ValueError, match="needs username"):  # refused by the spec already
        open_mqtt(spec(1883, password_file=str(path)), context(tmp_path))


def test_vsa_schema_mqtt_prints_the_payload_schemas_and_the_default_is_unchanged():
    out = io.StringIO()
    assert main(["schema", "--mqtt"], out) == 0
    printed = json.loads(out.getvalue())
    assert printed == json.loads(json.dumps(payload_schemas()))
    assert set(printed["$defs"]) == {"detections", "events", "state"}
    out = io.StringIO()
    assert main(["schema"], out) == 0
    assert "sources" in json.loads(out.getvalue())["properties"]


def test_the_topic_has_the_run_name_and_the_source():
    from vsa.supervision.core import new_run_id

    assert run_name(new_run_id("door-2.b", time.time())) == "door-2.b"
    assert run_name("not-an-id") == "not-an-id"
    assert topic_prefix("vsa/{run}/{source}", "door", "cam1") == "vsa/door/cam1"
    assert topic_prefix("site/{source}/", "door", "cam1") == "site/cam1"
    for bad in ("vsa/{who}", "vsa/+/{source}", "#", "$SYS/{source}", "{nothing}"):
        with pytest.raises(ValueError):
            topic_prefix(bad, "door", "cam1")
