"""The engine's metrics, through ``ray.util.metrics``: Ray's metrics agent exports them on
its Prometheus port (names get Ray's ``ray_`` prefix) next to Ray's own CPU, GPU and memory
metrics, and the Ray dashboard shows them. The table is in docs/metrics.md.

Tag keys: ``run`` and ``source`` for every per-stream metric (``cause`` for drops,
``state`` for the source state; ``line``, ``direction`` and ``class`` for line crossings,
``zone`` for zone occupancy, ``kind`` for analytics events), ``model`` for the inference
metrics. Tag values from the user or the model (class names) pass :func:`tag_value`.

Ray is imported by the metric classes alone: the pure helpers (:func:`tag_value`,
:func:`advance`, :func:`analytics_deltas`) import without it (the unit tier tests them).
"""

from __future__ import annotations

import threading
from typing import Any

from vsa.schema import Analytics, SourceState, SourceStatus

STREAM = ("run", "source")
LATENCY_BOUNDS = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]
DECODE_BOUNDS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25]
BATCH_SECONDS_BOUNDS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5]
BATCH_SIZE_BOUNDS = [1, 2, 4, 8, 16, 32, 64, 128]
SOURCE_STATES = tuple(s.value for s in SourceState)  # the order of vsa.schema.SourceState
DIRECTIONS = ("in", "out")


def tag_value(text: str) -> str:
    """``text`` as a metric tag value: printable ASCII stays (Ray's metrics take ASCII
    alone), every other character and the backslash are escaped as Python writes them
    (``é`` -> ``\\xe9``, a newline -> ``\\n``), so two names never share a tag value."""
    if text.isascii() and text.isprintable() and "\\" not in text:
        return text
    return "".join(
        c if " " <= c <= "~" and c != "\\" else c.encode("unicode_escape").decode("ascii")
        for c in text
    )


def advance(seen: dict[Any, int], key: Any, total: int) -> int:
    """How far the cumulative count ``key`` went since it was last ``seen`` (from 0 the first
    time), and remember ``total``. Never negative: a count lower than before was restarted,
    and its new value is the base from then on."""
    delta = total - seen.get(key, 0)
    seen[key] = total
    return max(0, delta)


def analytics_deltas(
    seen: dict[Any, int], analytics: Analytics
) -> tuple[list[tuple[dict[str, str], int]], list[tuple[str, int]]]:
    """What the analytics' cumulative counts advanced since ``seen`` (updated): line
    crossings as (tags line, direction, class; n) and events as (kind, n), those above 0."""
    crossings: list[tuple[dict[str, str], int]] = []
    for line_id, line in analytics.lines.items():
        for name, counts in line.classes.items():
            for direction, total in zip(DIRECTIONS, (counts.in_, counts.out), strict=True):
                delta = advance(seen, ("line", line_id, direction, name), total)
                if delta > 0:
                    tags = {"line": tag_value(str(line_id)), "direction": direction}
                    crossings.append(({**tags, "class": tag_value(str(name))}, delta))
    events = []
    for kind, total in analytics.events.items():
        delta = advance(seen, ("event", kind), total)
        if delta > 0:
            events.append((tag_value(str(kind)), delta))
    return crossings, events


class StreamMetrics:
    """Per-stream metrics of one source actor.

    ``frame_emitted`` is called for every emitted frame (so the latency histogram's count is
    the number of frames emitted); ``update`` folds a status into counters and gauges.
    """

    def __init__(self, run_id: str, source_id: str) -> None:
        from ray.util.metrics import Counter, Gauge, Histogram

        tags = {"run": run_id, "source": source_id}
        self._lock = threading.Lock()
        self.decoded = Counter("vsa_frames_decoded", "Frames decoded.", STREAM)
        self.inferred = Counter("vsa_frames_inferred", "Frames with inference results.", STREAM)
        self.emitted = Counter("vsa_frames_emitted", "Frames written to the sinks.", STREAM)
        self.dropped = Counter(
            "vsa_frames_dropped", "Frames dropped, by cause.", (*STREAM, "cause")
        )
        self.reconnects = Counter("vsa_reconnects", "Reconnections after an outage.", STREAM)
        self.fps = Gauge("vsa_source_fps", "Frames emitted per second (last 3 s).", STREAM)
        self.in_flight = Gauge(
            "vsa_source_queue_depth", "Frames decoded, not yet emitted or dropped.", STREAM
        )
        self.store_bytes = Gauge(
            "vsa_object_store_bytes",
            "Bytes of this stream's frames in flight to inference (ring or object store).",
            STREAM,
        )
        self.state = Gauge(
            "vsa_source_state", "1 for the source's current state.", (*STREAM, "state")
        )
        self.latency = Histogram(
            "vsa_latency_seconds", "Capture to result, per emitted frame.", LATENCY_BOUNDS, STREAM
        )
        self.decode = Histogram(
            "vsa_decode_seconds", "Decoding (and BGR conversion) per frame.", DECODE_BOUNDS, STREAM
        )
        self.burst_frames = Gauge(
            "vsa_source_burst_frames",
            "Mean frames per burst a live realtime source delivered over the status window "
            "(1: smooth; HLS with 1 s segments at 15 fps: about 15); 0 before any.",
            STREAM,
        )
        self.cpu = Counter(
            "vsa_stream_cpu_seconds",
            "CPU seconds of the emitted frames by stage: decode (and BGR conversion), sinks "
            "(drawing, encoding, writing).",
            (*STREAM, "stage"),
        )
        self.line_crossings = Counter(
            "vsa_line_crossings",
            "Tracks that crossed a counting line, by line, direction (in, out) and class.",
            (*STREAM, "line", "direction", "class"),
        )
        self.zone_occupancy = Gauge(
            "vsa_zone_occupancy", "Tracks inside a zone now.", (*STREAM, "zone")
        )
        self.analytics_events = Counter(
            "vsa_analytics_events",
            "Scene analytics events by kind (line_cross, zone_enter, zone_leave, loiter).",
            (*STREAM, "kind"),
        )
        self.tracks = Gauge("vsa_tracks", "Live (confirmed) tracks now.", STREAM)
        self.sink_items = Counter(
            "vsa_sink_items",
            "What a sink made, by sink and kind (snapshot: snapshots written, cooled: "
            "triggers skipped by the cool-down; mqtt: messages published...).",
            (*STREAM, "sink", "kind"),
        )
        self.sink_lost = Counter(
            "vsa_sink_frames_lost",
            "Frames a best-effort sink lost, by sink (its type) and cause (sink_error, "
            "output_lost, overflow, unsent); the stream emitted them, the other sinks wrote them.",
            (*STREAM, "sink", "cause"),
        )
        for metric in (
            self.decoded,
            self.inferred,
            self.emitted,
            self.dropped,
            self.reconnects,
            self.fps,
            self.in_flight,
            self.store_bytes,
            self.state,
            self.latency,
            self.decode,
            self.burst_frames,
            self.cpu,
            self.line_crossings,
            self.zone_occupancy,
            self.analytics_events,
            self.tracks,
            self.sink_lost,
            self.sink_items,
        ):
            metric.set_default_tags(tags)
        self._seen: dict[str, Any] = {"drops": {}, "cpu": {}, "analytics": {}, "sinks": {}}

    def frame_emitted(self, latency_s: float, decode_s: float | None) -> None:
        self.latency.observe(max(0.0, latency_s))
        if decode_s is not None:
            self.decode.observe(decode_s)

    def update(
        self, status: dict[str, Any], frame_bytes: int, cpu: dict[str, float] | None = None
    ) -> None:
        """Counters advance by what changed since the last call; gauges take the values.
        ``cpu``: CPU seconds so far by stage."""
        typed = SourceStatus.from_dict(status)
        with self._lock:
            seen = self._seen
            for stage, total in (cpu or {}).items():
                delta = total - seen["cpu"].get(stage, 0.0)
                if delta > 0:
                    self.cpu.inc(delta, tags={"stage": stage})
                seen["cpu"][stage] = total
            for key, value, counter in (
                ("frames_decoded", typed.frames_decoded, self.decoded),
                ("frames_inferred", typed.frames_inferred, self.inferred),
                ("frames_emitted", typed.frames_emitted, self.emitted),
                ("reconnects", typed.reconnects, self.reconnects),
            ):
                delta = value - seen.get(key, 0)
                if delta > 0:
                    counter.inc(delta)
                seen[key] = value
            for cause, n in typed.drops.items():
                delta = n - seen["drops"].get(cause, 0)
                if delta > 0:
                    self.dropped.inc(delta, tags={"cause": cause})
                seen["drops"][cause] = n
            for name, counts in typed.sinks.items():
                for cause, total in counts.lost.items():
                    delta = advance(seen["sinks"], (name, cause), total)
                    if delta > 0:
                        self.sink_lost.inc(delta, tags={"sink": name, "cause": cause})
                for kind, total in counts.extra.items():  # its own counts (snapshots...)
                    if isinstance(total, int) and not isinstance(total, bool):
                        delta = advance(seen["sinks"], (name, "items", kind), total)
                        if delta > 0:
                            tags = {"sink": name, "kind": tag_value(str(kind))}
                            self.sink_items.inc(delta, tags=tags)
            if typed.analytics is not None:
                crossings, events = analytics_deltas(seen["analytics"], typed.analytics)
                for tags, n in crossings:
                    self.line_crossings.inc(n, tags=tags)
                for kind, n in events:
                    self.analytics_events.inc(n, tags={"kind": kind})
        if typed.analytics is not None:
            self.tracks.set(typed.analytics.tracks)
            for zone_id, zone in typed.analytics.zones.items():
                self.zone_occupancy.set(zone.occupancy, tags={"zone": tag_value(str(zone_id))})
        self.fps.set(typed.fps)
        self.in_flight.set(typed.in_flight)
        self.store_bytes.set(typed.in_flight * frame_bytes)
        self.burst_frames.set(typed.arrival.burst_frames or 0.0)
        for state in SOURCE_STATES:
            self.state.set(1.0 if typed.state.value == state else 0.0, tags={"state": state})


class InferenceMetrics:
    def __init__(self) -> None:
        from ray.util.metrics import Counter, Gauge, Histogram

        self.batch_seconds = Histogram(
            "vsa_inference_batch_seconds", "Model time per batch.", BATCH_SECONDS_BOUNDS, ("model",)
        )
        self.batch_size = Histogram(
            "vsa_batch_size", "Frames per batch.", BATCH_SIZE_BOUNDS, ("model",)
        )
        self.stale = Counter(
            "vsa_inference_stale", "Frames past their deadline when their batch formed.", ("model",)
        )
        self.gpu_memory = Gauge(
            "vsa_gpu_memory_bytes", "Device memory allocated by the models (0 on the CPU).", ()
        )

    def batch(self, model: str, seconds: float, size: int) -> None:
        tags = {"model": model}
        self.batch_seconds.observe(seconds, tags=tags)
        self.batch_size.observe(size, tags=tags)

    def gpu(self) -> None:
        try:
            import torch

            used = torch.cuda.memory_allocated() if torch.cuda.is_available() else 0
        except Exception:  # noqa: BLE001
            used = 0
        self.gpu_memory.set(used)
