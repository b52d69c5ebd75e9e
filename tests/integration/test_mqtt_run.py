"""The mqtt sink through the whole engine, against a real broker (Debian's mosquitto): every
message of a run arrives, in order per stream; the broker killed mid-run and restarted: the
pipeline keeps its pace, publishing resumes, and the sink's losses are counted exactly."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from tests.component.test_sink_mqtt import WATCHER, Broker
from tests.integration.conftest import wait_for
from tests.ports import free_port
from vsa.config import parse_run, resolve_paths

pytestmark = pytest.mark.integration


class Subscriber:
    """Every message under ``vsa/<run name>/#``: (topic, payload)."""

    def __init__(self, port: int, run: str) -> None:
        self.messages: list[tuple[str, dict[str, Any]]] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        self.client.username_pw_set(*WATCHER)
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(f"vsa/{run}/#", qos=1)
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(0.1, 0.5)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self._subscribed.wait(15), "the subscriber did not subscribe"

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        with self._lock:
            self.messages.append((message.topic, json.loads(message.payload)))

    def frames(self, source: str) -> list[int]:
        with self._lock:
            return [p["frame"] for t, p in self.messages if t.endswith(f"/{source}/detections")]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def submit(client, tmp_path, name: str, port: int, frames: int, **mqtt_fields) -> str:
    uri = "synthetic://shapes?seed={}&fps=30&width=320&height=180&frames=" + str(frames)
    run = {
        "name": name,
        "output_dir": str(tmp_path / name),
        "sources": [{"id": f"cam{i}", "uri": uri.format(i)} for i in (1, 2)],
        "sinks": [
            {"type": "jsonl"},
            {"type": "mqtt", "host": "127.0.0.1", "port": port, "detections": "every_frame",
             "qos": 1, **mqtt_fields},
        ],
    }  # fmt: skip
    return client.submit(resolve_paths(parse_run(run), tmp_path))["run_id"]


def test_every_message_of_a_run_arrives_in_order_per_stream(client, tmp_path):
    port = free_port()
    broker = Broker(tmp_path, port).start()
    sub = Subscriber(port, "mqtt-all")
    try:
        run_id = submit(client, tmp_path, "mqtt-all", port, frames=90)
        run = client.wait(run_id, timeout_s=300).to_dict()
        assert run["state"] == "FINISHED", run
        for s in run["sources"]:
            assert s["sinks"]["mqtt"]["written"] == s["frames_emitted"] == 90, s["sinks"]
            assert s["sinks"]["mqtt"]["lost"] == {}
            wait_for(lambda s=s: len(sub.frames(s["id"])) == 90, 60, "every message")
            assert sub.frames(s["id"]) == list(range(90))  # in order, none twice
    finally:
        sub.close()
        broker.stop()


def test_a_broker_killed_mid_run_costs_counted_messages_not_the_pipelines_pace(client, tmp_path):
    port = free_port()
    broker = Broker(tmp_path, port).start()
    sub = Subscriber(port, "mqtt-kill")
    frames = 300  # 10 s of two paced 30 fps cameras
    started = time.monotonic()
    run_id = submit(client, tmp_path, "mqtt-kill", port, frames=frames, max_queued=30)
    try:
        wait_for(lambda: len(sub.frames("cam1")) >= 30, 120, "messages before the kill")
        broker.kill()
        killed = time.monotonic()
        wait_for(lambda: time.monotonic() - killed > 2.0, 10, "2 s without a broker")
        broker.start()
        run = client.wait(run_id, timeout_s=300).to_dict()
        elapsed = time.monotonic() - started
    finally:
        sub.close()
        broker.stop()
    assert run["state"] == "FINISHED", run
    # the outage cost the pipeline nothing: every frame emitted, at the cameras' pace
    assert elapsed < 10 * 3, elapsed
    for s in run["sources"]:
        assert s["frames_emitted"] == frames and s["frames_dropped"] == 0, s
        mqtt_counts = s["sinks"]["mqtt"]
        lost = sum(mqtt_counts["lost"].values())
        assert mqtt_counts["written"] + lost == frames, mqtt_counts  # every frame accounted
        assert mqtt_counts["lost"].get("overflow", 0) > 0, mqtt_counts  # 2 s at 30 fps > 30
        seen = sub.frames(s["id"])
        assert seen == sorted(seen) and max(seen) == frames - 1  # in order, and it resumed
