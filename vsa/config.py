"""The run file: schema, ``${ENV}`` interpolation, path resolution, readable errors.

The pydantic models are the documentation: every field has a description and a
default, and ``docs/run-file.md`` is generated from them (``python -m vsa.config --markdown``).
"""

from __future__ import annotations

import errno
import functools
import inspect
import operator
import os
import re
import shlex
import stat
import sys
import types
import urllib.parse
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from vsa import sinktypes, yamlsafe
from vsa import uri as uri_mod
from vsa.analytics import geometry
from vsa.analytics.geometry import ANCHORS
from vsa.errors import ConfigError, VsaError

_ID_RE = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
# `<id>.part<n>.mp4` are the later segments of a video sink (vsa.sinks.VideoSink)
_SEGMENT_SUFFIX_RE = re.compile(r"\.part\d+$", re.IGNORECASE)

MAX_RUN_FILE_BYTES = yamlsafe.RUN_FILE.max_bytes  # 1 MiB: a run file lists streams and settings
MAX_YAML_DEPTH = yamlsafe.MAX_YAML_DEPTH  # nesting levels of a run file; it needs about 4
MAX_TEXT = 4096  # characters of a URI or a path
MAX_ARCH = 128
MAX_CLASS_NAME = 256  # the same limits as vsa.models.classes (not imported: it needs torch)
MAX_CLASSES = 10_000
_SHORT = yamlsafe.SHORT  # characters of a value echoed into an error message


# --- values echoed into error messages ------------------------------------------------------


_short = yamlsafe.short  # ``repr(value)`` cut to about 60 characters, its length said


# A quoted value: its opening quote follows no word character, its closing one precedes none.
_LONG_QUOTED_RE = re.compile(r"(?<![\w'])'([^'\n]{80,})'(?![\w'])")
_MAX_PROBLEM = 1000


def _clip_quoted(message: str) -> str:
    """``message`` with every long ``'quoted value'`` cut by ``_short``."""
    return _LONG_QUOTED_RE.sub(lambda m: _short(m.group(1)), message)


def _clip_problem(problem: str) -> str:
    """One short line: long quoted values cut (a safety net for messages formatted elsewhere)."""
    problem = _clip_quoted(problem)
    problem = problem.replace("\r", "\\r").replace("\n", "\\n")
    if len(problem) > _MAX_PROBLEM:
        problem = f"{problem[:_MAX_PROBLEM]}… ({len(problem)} chars)"
    return problem


def _config_error(problems: Iterable[str], source: str | None = None) -> ConfigError:
    return ConfigError([_clip_problem(p) for p in problems], source)


def _show_path(path: str | os.PathLike[str], limit: int = 300) -> str:
    """A path for an error message: as is, ``repr`` when it holds control characters, cut."""
    text = str(path)
    if not text.isprintable():
        return _short(text, limit)
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} chars)"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ReconnectSpec(_Strict):
    """How a network source retries after it fails or goes down (run level, overridable per source).

    Files and `synthetic://` sources are never retried: reading the same bytes again fails the same way.
    """

    policy: Literal["exponential", "fixed"] = Field(
        "exponential",
        description="`exponential`: `initial_s`, times `multiplier` per attempt, up to `max_s`, "
        "with `jitter`; `fixed`: every `interval_s` (the MVP's behaviour).",
    )
    interval_s: float = Field(5.0, gt=0, le=86400, description="Delay of the `fixed` policy.")
    initial_s: float = Field(1.0, gt=0, le=86400, description="First delay of `exponential`.")
    multiplier: float = Field(
        2.0, ge=1.0, le=100, description="Growth per attempt of `exponential`."
    )
    max_s: float = Field(
        30.0,
        gt=0,
        le=86400,
        description="Longest delay of `exponential`; permanent errors (bad credentials, not found, "
        "unsupported codec) wait this long at once instead of hammering the camera.",
    )
    jitter: float = Field(
        0.2,
        ge=0.0,
        le=1.0,
        description="Each delay is drawn uniformly from [delay x (1 - jitter), delay], so cameras "
        "that went down together do not all retry at the same instant.",
    )
    max_attempts: int | None = Field(
        None,
        ge=1,
        description="Attempts in a row before the source is FAILED; `null` = retry forever. "
        "A connection that delivers frames resets the count.",
    )

    @model_validator(mode="after")
    def _order(self) -> ReconnectSpec:
        if self.policy == "exponential" and self.max_s < self.initial_s:
            raise ValueError(f"max_s: {self.max_s} is smaller than initial_s {self.initial_s}")
        return self


class DegradationSpec(_Strict):
    """When a run counts as DEGRADED for its performance (it keeps running; nothing is killed)."""

    max_drop_ratio: float = Field(
        0.5,
        ge=0.0,
        le=1.0,
        description="Frames dropped / frames decoded over the window, per source, above which "
        "the run is DEGRADED (`decimated` drops do not count: they were asked for).",
    )
    max_p99_latency_ms: float = Field(
        5000.0, gt=0, description="p99 capture-to-result latency of a source over the window."
    )
    window_s: float = Field(30.0, gt=0, le=3600, description="The window both are measured on.")


ClassName = Annotated[str, Field(max_length=MAX_CLASS_NAME)]
ClassNames = Annotated[list[ClassName], Field(max_length=MAX_CLASSES)]
_Coordinate = Annotated[float, Field(allow_inf_nan=False, ge=-1_000_000, le=1_000_000)]
_Point = tuple[_Coordinate, _Coordinate]
MAX_ZONE_POINTS = 256


def _check_points(points: Sequence[tuple[float, float]], coords: str, field: str) -> None:
    if coords == "relative":
        for i, (x, y) in enumerate(points):
            if not (0 <= x <= 1 and 0 <= y <= 1):
                raise ValueError(
                    f"{field}[{i}]: [{x:g}, {y:g}] is outside the frame: relative coordinates "
                    "are in [0, 1] (fractions of the width and height); for pixels set "
                    "coords: pixels"
                )
    else:
        for i, (x, y) in enumerate(points):
            if x < 0 or y < 0:
                raise ValueError(f"{field}[{i}]: [{x:g}, {y:g}]: pixel coordinates are >= 0")


class LineSpec(_Strict):
    """A counting line: a track whose anchor crosses the segment between the two points
    counts one crossing, `in` towards `in_side`, `out` the other way."""

    id: str = Field(
        pattern=_ID_RE, description="Line id, unique among the source's lines and zones."
    )
    points: tuple[_Point, _Point] = Field(
        description="The segment's two ends, `[[x1, y1], [x2, y2]]`: fractions of the frame "
        "(`coords: relative`, the default) or pixels (`coords: pixels`); x to the right, y down."
    )
    coords: Literal["relative", "pixels"] = Field(
        "relative", description="`relative`: 0-1 of the width and height; `pixels`: source pixels."
    )
    in_side: Literal["left", "right"] = Field(
        "left",
        description='Which side is "in": left or right as you walk from the first point '
        "to the second on the screen (for a line drawn left to right, `left` is above it).",
    )
    classes: ClassNames | None = Field(
        None, description="Count only these model classes (default: all)."
    )
    anchor: Literal[ANCHORS] = Field(  # type: ignore[valid-type]
        "bottom_center",
        description="The point of a track's box that must cross: `bottom_center` (feet, "
        "wheels), `center`, ... (`" + "`, `".join(ANCHORS) + "`).",
    )

    @model_validator(mode="after")
    def _geometry(self) -> LineSpec:
        a, b = self.points
        if a == b:
            raise ValueError(
                f"points: the two ends are the same point [{a[0]:g}, {a[1]:g}]: a line needs "
                "two different points"
            )
        _check_points(self.points, self.coords, "points")
        return self


class ZoneSpec(_Strict):
    """A zone: live occupancy, an event when a track enters or leaves (with its dwell time),
    and optionally when it stays longer than `loiter_s`."""

    id: str = Field(
        pattern=_ID_RE, description="Zone id, unique among the source's lines and zones."
    )
    polygon: list[_Point] = Field(
        min_length=3,
        max_length=MAX_ZONE_POINTS,
        description="The zone's corners in order, `[[x, y], ...]` (at least 3, not "
        "self-intersecting): fractions of the frame (`coords: relative`) or pixels.",
    )
    coords: Literal["relative", "pixels"] = Field(
        "relative", description="`relative`: 0-1 of the width and height; `pixels`: source pixels."
    )
    classes: ClassNames | None = Field(
        None, description="Count only these model classes (default: all)."
    )
    anchor: Literal[ANCHORS] = Field(  # type: ignore[valid-type]
        "bottom_center", description="The point of a track's box that must be inside."
    )
    loiter_s: float | None = Field(
        None,
        gt=0,
        le=86_400,
        description="A `loiter` event when a track stays in the zone this long (once per "
        "visit, stream time); default: none.",
    )

    @field_validator("polygon", mode="before")
    @classmethod
    def _enough(cls, value: Any) -> Any:
        if isinstance(value, list) and len(value) < 3:
            raise ValueError(f"a zone needs at least 3 points, got {len(value)}")
        return value

    @model_validator(mode="after")
    def _geometry(self) -> ZoneSpec:
        _check_points(self.polygon, self.coords, "polygon")
        crossing = geometry.self_intersection(self.polygon)
        if crossing is not None:
            i, j = crossing
            n = len(self.polygon)
            if self.polygon[i] == self.polygon[j]:
                raise ValueError(
                    f"polygon: points {i} and {j} are the same point: list each corner once"
                )
            raise ValueError(
                f"polygon: edge {i}-{(i + 1) % n} crosses edge {j}-{(j + 1) % n}: the polygon "
                "intersects itself; list the corners in order around the zone"
            )
        if geometry.area(self.polygon) == 0:
            raise ValueError("polygon: its points are on one line (no area)")
        return self


class TrackingSpec(_Strict):
    """The stream's multi-object tracker (ByteTrack, from the `trackers` library)."""

    lost_s: float = Field(
        1.0,
        gt=0,
        le=60,
        description="A track that is not seen for this long (stream time) ends; one seen again "
        "sooner keeps its id (occlusions, frames dropped in realtime mode).",
    )
    activation_score: float = Field(
        0.5, ge=0, le=1, description="Lowest detection score that starts a new track."
    )
    high_score: float = Field(
        0.6,
        ge=0,
        le=1,
        description="Detections at or above it are matched first; lower ones only continue "
        "tracks (ByteTrack's second stage).",
    )
    match_iou: float = Field(
        0.1, ge=0, le=1, description="Lowest IoU between a track's prediction and a detection."
    )
    min_frames: int = Field(
        2, ge=1, le=30, description="Frames a new track must be seen in before it gets an id."
    )
    trail_points: int = Field(
        30, ge=0, le=1000, description="Recent anchor points per track drawn as its trail."
    )


class SourceSpec(_Strict):
    """One stream."""

    id: str = Field(
        pattern=_ID_RE,
        description="Stream id, unique in the run (also ignoring case); names the output files "
        "(`<id>.mp4`, `<id>.jsonl`). Ids ending in `.part<n>` are reserved for video segments.",
    )
    uri: str = Field(
        max_length=MAX_TEXT,
        description=(
            "`synthetic://shapes?seed=1&fps=15&width=640&height=360&frames=300`, `file:///abs/clip.mp4`, "
            "a plain path (relative to the directory you submit from), `rtsp://`, `http(s)://`. "
            "`${ENV}` references are expanded, so credentials need not be written in the file."
        ),
    )
    max_in_flight: int | None = Field(
        None,
        ge=1,
        le=256,
        description="Frames of this stream in flight to inference at once (in its shared-memory ring or the object store) (default: 8 "
        "lossless, 1 realtime: a camera sends its newest frame when the last result came back, "
        "so a frame waits at most about one batch; for `mode: auto` that of the mode chosen).",
    )
    reconnect: ReconnectSpec = Field(
        default_factory=ReconnectSpec,
        description="Overrides of the run's `reconnect` block for this source (fields not "
        "given here come from the run's block).",
    )
    mode: Literal["auto", "lossless", "realtime"] = Field(
        "auto",
        description="`lossless`: every frame is processed, the source waits for the engine. "
        "`realtime`: never fall behind; when the engine is slower than the camera the newest "
        "frame is kept and older ones are dropped (`queue_full`), and frames older than "
        "`max_age_ms` are dropped (`stale`). `auto`: `lossless` for files, `synthetic://` and "
        "network streams with a known duration (a file served over HTTP, an HLS VOD playlist), "
        "`realtime` for live ones (`rtsp`/`rtmp`, live HLS, MJPEG, live TS); an `http(s)` "
        "stream is decided when it first opens (as `on_end: auto`) and keeps that mode across "
        "reconnects. `vsa status` shows the mode in effect.",
    )
    fps: float | None = Field(
        None,
        gt=0,
        le=1000,
        description="Process at most this many frames per second; the others are dropped at "
        "the source as `decimated`, before any copy.",
    )
    max_age_ms: float = Field(
        1000.0,
        gt=0,
        le=600_000,
        description="Realtime mode: a frame older than this (since capture, or since its "
        "release by the jitter buffer, `jitter_buffer_ms`) is dropped (`stale`) instead of "
        "being inferred late.",
    )
    jitter_buffer_ms: float = Field(
        2000.0,
        ge=0,
        le=60_000,
        description="Realtime mode, live sources: frames that arrive in a burst (HLS and DASH "
        "deliver a segment at once, so do many cameras behind a proxy) are released at the pace "
        "of their timestamps, each held at most this long after it arrived, so the engine sees "
        "a steady rate instead of one frame per burst; a smooth source is not held. Set it to "
        "the source's segment length or more; 0 releases every frame on arrival. Latency is "
        "counted from arrival, hold included; `arrival` in the status shows bursts and holds.",
    )
    priority: int = Field(
        0,
        ge=-100,
        le=100,
        description="Higher is served first when the inference actor has more frames than it "
        "can batch; under saturation lower-priority realtime streams lose frames first. Streams "
        "of one priority share the model max-min fairly whatever their mode: a realtime camera "
        "beside a lossless file gets as many frames as the file (or all it asks for, if less), "
        "at about one batch time of latency; runs share the engine the same way, run by run "
        "(see docs/performance.md, Delivery).",
    )
    on_end: Literal["auto", "reconnect", "finish"] = Field(
        "auto",
        description="When a network stream ends: `reconnect` (a camera that went away) or "
        "`finish` (a file served over HTTP). `auto`: reconnect `rtsp`/`rtmp`, and `http(s)` "
        "streams with no known duration (MJPEG, live TS, live HLS); finish the others (a file "
        "over HTTP, an HLS VOD playlist).",
    )
    password_file: str | None = Field(
        None,
        max_length=4096,
        description="File holding the password of a network source (its first line; a "
        "Docker/Kubernetes secret, a 0600 file): read by `vsa submit` (relative to the "
        "directory you submit from) and put into the URI's user info "
        "(`rtsp://viewer@host/...`), so the password is in neither the run file nor the "
        "environment. Like every credential it is then sealed in the engine's records and "
        "masked everywhere it could be shown.",
    )
    rtsp_transport: Literal["tcp", "udp"] = Field(
        "tcp", description="RTP transport for `rtsp://`: `tcp` (interleaved, the default) or `udp`."
    )
    open_timeout_s: float = Field(
        10.0, gt=0, le=600, description="Longest wait to connect and read the stream's header."
    )
    read_timeout_s: float = Field(
        10.0, gt=0, le=600, description="Longest wait for data from a connected source."
    )
    stall_timeout_s: float = Field(
        10.0,
        gt=0,
        le=3600,
        description="A connected source that delivers no frame for this long is reconnected "
        "(STALLED), even if its connection stays open.",
    )
    max_frame_pixels: int = Field(
        3840 * 2160,
        ge=64,
        description="Frames larger than this (width x height) are refused with FRAME_TOO_LARGE; "
        "raise it to accept bigger video.",
    )
    tracking: TrackingSpec | None = Field(
        None,
        description="Track objects across frames (ids in the JSONL's `track_id`). On by "
        "default when the source has `lines` or `zones`; `tracking: {}` turns it on with the "
        "defaults for a source without them. See docs/analytics.md.",
    )
    lines: list[LineSpec] = Field(
        default_factory=list, max_length=64, description="Counting lines (tracking is on)."
    )
    zones: list[ZoneSpec] = Field(
        default_factory=list, max_length=64, description="Zones (tracking is on)."
    )

    @field_validator("id")
    @classmethod
    def _check_id(cls, value: str) -> str:
        reserved = _SEGMENT_SUFFIX_RE.search(value)
        if reserved:
            raise ValueError(
                f"{_short(value)} ends with '{reserved.group(0)}', which vsa reserves for video "
                "segments; choose another id"
            )
        return value

    @field_validator("uri")
    @classmethod
    def _check_uri(cls, value: str) -> str:
        try:
            scheme = uri_mod.check_scheme(value)
            if scheme == "synthetic":
                from vsa.sources.synthetic import SyntheticParams

                SyntheticParams.from_uri(value)
        except ValueError as exc:  # they quote parts of the URI: keep the message one short line
            raise ValueError(_clip_quoted(str(exc))) from None
        return value

    @property
    def tracked(self) -> TrackingSpec | None:
        """The tracker in effect: as given, or the defaults when the source has lines or
        zones; None: no tracking."""
        if self.tracking is not None:
            return self.tracking
        return TrackingSpec() if self.lines or self.zones else None

    @model_validator(mode="after")
    def _unique_areas(self) -> SourceSpec:
        seen: dict[str, str] = {}
        for kind, items in (("lines", self.lines), ("zones", self.zones)):
            for i, item in enumerate(items):
                where = f"{kind}[{i}]"
                if item.id in seen:
                    raise ValueError(
                        f"{where}.id: duplicate id '{item.id}' (also {seen[item.id]}): lines "
                        "and zones of a source need different ids"
                    )
                seen[item.id] = where
        return self

    @property
    def in_flight(self) -> int | None:
        """``max_in_flight`` in effect (its default depends on the delivery mode); None while
        the mode is not known (``realtime``)."""
        if self.max_in_flight is not None:
            return self.max_in_flight
        realtime = self.realtime
        return None if realtime is None else 1 if realtime else 8

    @property
    def realtime(self) -> bool | None:
        """The delivery mode as far as the run file says: ``auto`` is lossless for files and
        ``synthetic://``, realtime for ``rtsp``/``rtmp`` (never a known end), and None for an
        ``http(s)`` stream: decided when it opens (``vsa.sources.base.has_known_end``)."""
        if self.mode != "auto":
            return self.mode == "realtime"
        scheme = uri_mod.scheme_of(self.uri)
        if scheme not in uri_mod.NETWORK_SCHEMES:
            return False
        from vsa.sources.base import LIVE_SCHEMES

        return True if scheme in LIVE_SCHEMES else None

    @model_validator(mode="after")
    def _password_file(self) -> SourceSpec:
        if self.password_file is not None and (
            uri_mod.scheme_of(self.uri) not in uri_mod.NETWORK_SCHEMES
        ):
            raise ValueError("password_file: only applies to network sources (rtsp://, http://...)")
        return self

    @model_validator(mode="after")
    def _transport(self) -> SourceSpec:
        if self.rtsp_transport != "tcp" and not uri_mod.scheme_of(self.uri).startswith("rtsp"):
            raise ValueError("rtsp_transport: only applies to rtsp:// sources")
        return self

    @model_validator(mode="after")
    def _synthetic_size(self) -> SourceSpec:
        if uri_mod.scheme_of(self.uri) != "synthetic":
            return self
        from vsa.sources.synthetic import SyntheticParams

        params = SyntheticParams.from_uri(self.uri)
        pixels = params.width * params.height
        if pixels > self.max_frame_pixels:
            raise ValueError(
                f"uri: synthetic frames {params.width}x{params.height} ({pixels} pixels) are "
                f"larger than max_frame_pixels {self.max_frame_pixels}; raise max_frame_pixels "
                "or lower width/height"
            )
        return self


def _classes_kind(value: Any) -> str | None:
    """Which form of ``model.classes`` a value is: ``list``, ``file`` (a path), or neither."""
    if isinstance(value, list | tuple):
        return "list"
    if isinstance(value, str):
        return "file"
    return None


FilePath = Annotated[str, Field(max_length=MAX_TEXT)]
# Tagged, so a bad value is reported once, against the form it has, not once per form.
_Classes = Annotated[
    Annotated[ClassNames, Tag("list")] | Annotated[FilePath, Tag("file")],
    Discriminator(
        _classes_kind,
        custom_error_type="classes_type",
        custom_error_message="expected a list of class names or the path of a names file",
    ),
]
_UNION_TAGS = {"classes": ("list", "file")}  # removed from error locations


class ModelSpec(_Strict):
    """The model every stream of the run is analysed with."""

    name: Literal["builtin", "torchscript", "torchvision"] = Field(
        "builtin",
        description=(
            "`builtin`: the detector + segmenter shipped in the package (no download); "
            "`torchscript`: a TorchScript file with an Ultralytics YOLO (v8/11) output layout; "
            "`torchvision`: a torchvision detection / Mask R-CNN model with a local weights file "
            "(needs the optional torchvision package)."
        ),
    )
    path: FilePath | None = Field(
        None,
        description="Model file (`torchscript`) or weights file (`torchvision`); relative to the submit directory.",
    )
    task: Literal["detect", "segment"] = Field(
        "detect",
        description="`segment` for models that also give instance masks (YOLO-seg, Mask R-CNN).",
    )
    arch: str | None = Field(
        None,
        max_length=MAX_ARCH,
        description="torchvision architecture, e.g. `fasterrcnn_resnet50_fpn` or `maskrcnn_resnet50_fpn`.",
    )
    input_size: tuple[int, int] = Field(
        (640, 640),
        description="Model input `[height, width]` for `torchscript`; frames are letterboxed to it.",
    )
    classes: _Classes | None = Field(
        None,
        description=(
            "Class names: a list, or a names file (one per line, or a YAML/JSON list or `names:` mapping). "
            "For `torchscript`, omitted = the names embedded by the Ultralytics exporter."
        ),
    )
    class_filter: ClassNames | None = Field(None, description="Keep only these class names.")
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="`auto` takes the GPU when the cluster has one, else the CPU."
    )
    half: bool = Field(False, description="Run in float16 on CUDA (ignored on the CPU).")
    score_threshold: float = Field(
        0.5, ge=0.0, le=1.0, description="Detections below this score are dropped."
    )
    iou_threshold: float = Field(
        0.45, ge=0.0, le=1.0, description="Non-maximum suppression IoU (per class)."
    )
    max_detections: int = Field(300, ge=1, le=10_000, description="Detections per frame at most.")

    @field_validator("input_size")
    @classmethod
    def _check_input_size(cls, value: tuple[int, int]) -> tuple[int, int]:
        if not all(32 <= v <= 4096 for v in value):
            raise ValueError(f"must be two sizes in [32, 4096], got {list(value)}")
        return value

    @model_validator(mode="after")
    def _needs(self) -> ModelSpec:
        if self.name in ("torchscript", "torchvision") and not self.path:
            raise ValueError(f"model.path: required for model '{self.name}'")
        if self.name == "torchvision" and not self.arch:
            raise ValueError(
                "model.arch: required for model 'torchvision' (e.g. maskrcnn_resnet50_fpn)"
            )
        if self.name == "torchvision" and not self.classes:
            raise ValueError("model.classes: required for model 'torchvision'")
        return self


class BatchingSpec(_Strict):
    """How the inference actor forms batches across all streams.

    Fair share: round-robin across runs (each run's turn, then by priority and round-robin across
    its streams), and credit does not buy a larger share: a stream that may have only a few
    frames in flight (a realtime camera) and sends as soon as its result came back caps its
    peers at its own count (plus its credit), so a lossless stream with eight frames waiting
    cannot fill the batches around it. On a CPU, batches are then one frame per stream."""

    max_batch_size: int = Field(8, ge=1, le=256, description="Frames per model call at most.")
    max_wait_ms: float = Field(
        20.0,
        ge=0.0,
        le=10_000.0,
        description="How long a batch may wait for more frames after its first one.",
    )
    stall_timeout_s: float = Field(
        30.0,
        gt=0,
        le=3600,
        description="Watchdog: an inference actor that finishes no batch for this long while "
        "frames wait is killed and restarted (a hung device or driver).",
    )


class _SinkBase(_Strict):
    policy: Literal["required", "best_effort"] = Field(
        "required",
        description="`required`: a failure of this sink (a write that fails, its file "
        "deleted) fails the stream (`SINK_ERROR`), as the stream's record must be complete. "
        "`best_effort`: the frame is lost for this sink only, counted as its loss by cause "
        "(status `sinks`, metric `vsa_sink_frames_lost`), and the stream and the other sinks "
        "go on. Network sinks default to `best_effort`.",
    )


_BYTE_UNITS = {"": 1, "b": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}
_BYTES_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?)(b?)\s*$", re.IGNORECASE)


def _parse_bytes(value: Any) -> Any:
    """``50GB`` (powers of 1000), ``50GiB`` (of 1024), ``500MB``, or a number of bytes."""
    if not isinstance(value, str):
        return value
    match = _BYTES_RE.match(value)
    if match is None or (match.group(3) and not match.group(2)):
        raise ValueError(
            f"{_short(value)} is not a size: give bytes (an integer) or a number with a unit "
            "(B, KB, MB, GB, TB; KiB, MiB, GiB, TiB), e.g. 50GB"
        )
    number, prefix, binary, _ = match.groups()
    unit = 1024 ** "kmgt".index(prefix.lower()) * 1024 if binary else _BYTE_UNITS[prefix.lower()]
    return int(float(number) * unit)


class VideoRetentionSpec(_Strict):
    """Which segments of a stream's recording are deleted, each time a segment closes: the
    oldest closed ones first, until the stream's segments are within every limit given. The
    segment being written is never deleted (nor, once the stream ended, its last one)."""

    max_age_h: float | None = Field(
        None,
        gt=0,
        le=24 * 366 * 10,
        description="Delete segments that started more than this many hours ago.",
    )
    max_bytes: int | None = Field(
        None,
        ge=1,
        description="The stream's segments hold at most this many bytes in all when one "
        "closes (the open one grows on top until the next cut): an integer, or a size such as "
        "`50GB` (powers of 1000) or `50GiB` (of 1024).",
    )

    @field_validator("max_bytes", mode="before")
    @classmethod
    def _bytes(cls, value: Any) -> Any:
        return _parse_bytes(value)

    @model_validator(mode="after")
    def _some_limit(self) -> VideoRetentionSpec:
        if self.max_age_h is None and self.max_bytes is None:
            raise ValueError("give max_age_h, max_bytes or both (or leave retention out)")
        return self


class VideoSinkSpec(_SinkBase):
    """Annotated H.264 MP4 per stream: `<output_dir>/<source id>.mp4` (fragmented: playable at
    any time). With `segment_s`, a recording cut into segments instead:
    `<output_dir>/<source id>/video/<source id>_<UTC start, YYYYMMDDTHHMMSSZ>.mp4`
    (docs/recordings.md)."""

    type: Literal["video"]
    draw_masks: bool = Field(True, description="Blend instance masks into the video.")
    crf: int = Field(
        23, ge=0, le=51, description="x264 constant rate factor (lower = better, bigger)."
    )
    segment_s: float | None = Field(
        None,
        le=7 * 86_400,
        description="Cut the recording into segments of this many seconds of the stream's "
        "timestamps (each starts on a keyframe and is a complete MP4), named by their UTC "
        "start time; `null`: one file.",
    )
    retention: VideoRetentionSpec | None = Field(
        None,
        description="Delete the oldest closed segments by age and/or total size (needs "
        "`segment_s`); `null`: keep every segment.",
    )
    draw: Literal["overlay", "none"] = Field(
        "overlay",
        description="`overlay`: detections (and scene analytics) drawn on the video; "
        "`none`: the frames as decoded.",
    )
    info: bool = Field(
        False,
        description="Write a line in the top left corner of each frame: the stream id, the "
        "frame's capture time (UTC) and the recording's frame rate.",
    )
    fps: float | None = Field(
        None,
        le=1000,
        description="Record at most this many frames a second (the others are skipped by the "
        "recording only, not lost); `null`: every frame.",
    )
    scale: float = Field(
        1.0,
        description="Resize frames by this factor, in (0, 1], before encoding (0.5: half the "
        "width and height); inference is not affected.",
    )

    @field_validator("segment_s")
    @classmethod
    def _segment_s(cls, value: float | None) -> float | None:
        if value is not None and not value >= 1:
            raise ValueError(f"must be at least 1 second, got {value}")
        return value

    @field_validator("fps")
    @classmethod
    def _fps(cls, value: float | None) -> float | None:
        if value is not None and not value > 0:
            raise ValueError(f"must be more than 0 frames a second, got {value}")
        return value

    @field_validator("scale")
    @classmethod
    def _scale(cls, value: float) -> float:
        if not 0 < value <= 1:
            raise ValueError(f"must be in (0, 1] (0.5: half the width and height), got {value}")
        return value

    @model_validator(mode="after")
    def _retention_needs_segments(self) -> VideoSinkSpec:
        if self.retention is not None and self.segment_s is None:
            raise ValueError(
                "retention: needs segment_s (only closed segments are deleted); set segment_s, "
                "e.g. 600, or remove retention"
            )
        return self


class JsonlSinkSpec(_SinkBase):
    """One JSON line per frame: `<output_dir>/<source id>.jsonl`.

    Each line starts with `"v": 2`, the version of the line's schema; a line without `v` is
    version 1 (written by an older vsa: the same fields, none of a detection's `track_id` or
    `attributes`). A detection carries `track_id` (int) only once a tracker set one and
    `attributes` (an object of JSON values) only when it has any. A file begun by an older
    vsa is resumed and appended to as it is, so it may hold both versions; readers look
    fields up by name.
    """

    type: Literal["jsonl"]
    rotate_size: int | None = Field(
        None,
        ge=1024,
        description="Rotate at this size (`100MB`, `1GiB` or bytes): `<id>.jsonl` is renamed "
        "`<id>.<UTC>.jsonl` and a new one begun, so the current file keeps its name and the "
        "rotated ones sort by time; a source's `<id>.events.jsonl` rotates the same way. A "
        "restarted stream finds its place and its counts in the rotated files that are still "
        "there (delete old ones as you like). Default: never.",
    )

    @field_validator("rotate_size", mode="before")
    @classmethod
    def _size(cls, value: Any) -> Any:
        return _parse_bytes(value)


class SnapshotSinkSpec(_SinkBase):
    """A JPEG of the annotated frame when something worth seeing happens:
    `<output_dir>/<source id>/<UTC time>_<class>.jpg`, with a JSON side file of the frame's
    detections (and the events that triggered it). Triggers: a detection of `classes` (score
    >= `min_score`, its box's bottom centre inside `zone` if given) that appears (a new track
    when the source tracks; otherwise any such detection), and scene analytics events
    (`events`), each class at most once per `cooldown_s`."""

    type: Literal["snapshot"]
    policy: Literal["required", "best_effort"] = Field(
        "best_effort",
        description="As for every sink; a snapshot sink is `best_effort` by default: a full "
        "disk loses snapshots, not the stream.",
    )
    classes: ClassNames | None = Field(
        None, description="Snapshot detections of these classes (default: every class)."
    )
    min_score: float = Field(0.5, ge=0, le=1, description="Lowest detection score that triggers.")
    zone: list[_Point] | None = Field(
        None,
        min_length=3,
        max_length=MAX_ZONE_POINTS,
        description="Only detections whose box's bottom centre is inside this polygon "
        "(0-1 of the frame) trigger.",
    )
    events: list[Literal["line_cross", "zone_enter", "zone_leave", "loiter"]] = Field(
        default_factory=lambda: ["line_cross", "zone_enter", "loiter"],
        description="Scene analytics events that trigger a snapshot (a source with lines or "
        "zones); `[]`: none.",
    )
    on_detection: bool = Field(
        True, description="Whether a detection appearing triggers (false: only `events`)."
    )
    cooldown_s: float = Field(
        10.0, ge=0, le=86_400, description="At most one snapshot per class per this many seconds."
    )
    quality: int = Field(85, ge=10, le=100, description="JPEG quality.")
    max_files: int | None = Field(
        10_000,
        ge=1,
        description="Keep at most this many snapshots per stream (the oldest are deleted); "
        "`null`: no limit.",
    )

    @model_validator(mode="after")
    def _zone(self) -> SnapshotSinkSpec:
        if self.zone is not None:
            _check_points(self.zone, "relative", "zone")
            if geometry.self_intersection(self.zone) is not None or geometry.area(self.zone) == 0:
                raise ValueError("zone: the polygon intersects itself or has no area")
        return self


class MqttSinkSpec(_SinkBase):
    """Detections, scene analytics events and state changes published to an MQTT broker
    (`paho-mqtt`): `<topic>/detections`, `<topic>/events`, `<topic>/state` (retained). A dead
    or slow broker never slows the stream: messages wait in a bounded outbox per stream and
    what does not fit is that sink's `overflow` loss. Topics and payloads: docs/mqtt.md."""

    type: Literal["mqtt"]
    policy: Literal["required", "best_effort"] = Field(
        "best_effort", description="As for every sink; `best_effort` by default (a network sink)."
    )
    host: str = Field(max_length=255, description="The broker's host name or address.")
    port: int | None = Field(
        None, ge=1, le=65535, description="The broker's port (default 1883, 8883 with `tls`)."
    )
    topic: str = Field(
        "vsa/{run}/{source}",
        max_length=512,
        description="Topic prefix; `{run}` (the run's name) and `{source}` (the stream id) are "
        "replaced.",
    )
    detections: Literal["every_frame", "on_change", "off"] = Field(
        "on_change",
        description="`every_frame`: one message per frame; `on_change`: when the set of "
        "classes (or track ids, when tracking) in view changes; `off`: none.",
    )
    qos: Literal[0, 1] = Field(0, description="MQTT quality of service of every message.")
    retain_state: bool = Field(True, description="Publish the state topic retained.")
    username: str | None = Field(None, max_length=255, description="Broker user name.")
    password_file: str | None = Field(
        None,
        max_length=MAX_TEXT,
        description="File holding the broker password (its first line), read on the engine "
        "host when the sink opens: the password is never in the run file, the engine's "
        "records, logs or status.",
    )
    tls: bool = Field(False, description="Connect with TLS.")
    ca_file: str | None = Field(
        None,
        max_length=MAX_TEXT,
        description="CA certificate file for `tls` (default: the system's).",
    )
    client_id: str | None = Field(
        None, max_length=128, description="MQTT client id (default: vsa-<run>-<source>)."
    )
    keepalive_s: int = Field(30, ge=5, le=3600, description="MQTT keepalive.")
    max_queued: int = Field(
        1000,
        ge=1,
        le=1_000_000,
        description="Messages waiting for the broker per stream at most; more are lost as "
        "`overflow`.",
    )
    reconnect_max_s: float = Field(
        30.0, gt=0, le=3600, description="Longest wait between reconnect attempts (back-off)."
    )

    @field_validator("topic")
    @classmethod
    def _topic(cls, value: str) -> str:
        unknown = [k for k in re.findall(r"\{([^{}]*)\}", value) if k not in ("run", "source")]
        if unknown:
            raise ValueError(
                f"unknown placeholder {{{_short(unknown[0])[1:-1]}}} (use {{run}}, {{source}})"
            )
        rest = re.sub(r"\{(run|source)\}", "x", value).rstrip("/")
        if not rest or rest.startswith("$") or any(c in rest for c in "+#{}\0"):
            raise ValueError(
                "a topic prefix must not be empty, start with '$' or hold '+', '#', '{', '}'"
            )
        return value

    @model_validator(mode="after")
    def _credentials(self) -> MqttSinkSpec:
        if self.password_file is not None and not self.username:
            raise ValueError("password_file: needs username (the broker's user)")
        if self.ca_file is not None and not self.tls:
            raise ValueError("ca_file: only applies with tls: true")
        return self


def rotated_pattern(name: str) -> re.Pattern[str]:
    """The files ``name`` (``<id>.jsonl``) is rotated into (``vsa.sinks.jsonl.rotated_name``)."""
    stem, _, suffix = name.rpartition(".")
    return re.compile(rf"^{re.escape(stem)}\.\d{{8}}T\d{{6}}Z(?:-\d+)?\.{re.escape(suffix)}$")


def _video_parts(source_id: str) -> re.Pattern[str]:
    return re.compile(rf"^{re.escape(source_id)}\.part\d+\.mp4$")


def video_folder(source_id: str) -> str:
    """The folder of a segmented recording (``segment_s``), in the output directory."""
    return f"{source_id}/video"


def video_files(spec: VideoSinkSpec, source_id: str) -> list[str]:
    """The files a video sink that wrote frames leaves for sure, by its spec: ``<id>.mp4``;
    none when segmented (retention deletes the oldest segments, and names hold start times)."""
    return [] if spec.segment_s is not None else [f"{source_id}.mp4"]


# The built-in sink types (vsa.sinktypes): the run file's union below follows from them.
sinktypes.register(
    sinktypes.SinkType(
        "video",
        VideoSinkSpec,
        "vsa.sinks.video:open_video",
        files=video_files,
        more=_video_parts,
        draws=True,
        folder=video_folder,  # the segments of a segmented recording
    )
)
sinktypes.register(
    sinktypes.SinkType(
        "jsonl",
        JsonlSinkSpec,
        "vsa.sinks:open_jsonl",
        files=lambda _, sid: [f"{sid}.jsonl"],
        more=lambda sid: rotated_pattern(f"{sid}.jsonl"),
    )
)

sinktypes.register(
    sinktypes.SinkType(
        "snapshot",
        SnapshotSinkSpec,
        "vsa.sinks.snapshot:open_snapshot",
        files=lambda _, sid: [],
        folder=lambda sid: sid,
        reads_pixels=True,  # it draws its own overlays, on its own copy
    )
)
sinktypes.register(
    sinktypes.SinkType("mqtt", MqttSinkSpec, "vsa.sinks.mqtt:open_mqtt", files=lambda _, sid: [])
)

SinkSpec = Annotated[
    Union[tuple(t.spec for t in sinktypes.sink_types().values())],  # noqa: UP007
    Field(discriminator="type"),
]


class RunSpec(_Strict):
    """A run: streams, one model, batching and sinks."""

    name: str = Field(
        pattern=_ID_RE,
        description="Run name; submitting a running name again applies the difference "
        "(docs/runtime-control.md).",
    )
    output_dir: str = Field(
        max_length=MAX_TEXT,
        description="Where sinks write; relative paths are taken from the submit directory.",
    )
    sources: list[SourceSpec] = Field(min_length=1, description="The streams.")
    reconnect: ReconnectSpec = Field(
        default_factory=ReconnectSpec,
        description="Reconnect policy of every network source; a source's own `reconnect` "
        "block overrides single fields.",
    )
    degradation: DegradationSpec = Field(
        default_factory=DegradationSpec,
        description="Thresholds of sustained degradation (drop ratio, p99 latency).",
    )
    model: ModelSpec = Field(default_factory=ModelSpec)
    batching: BatchingSpec = Field(default_factory=BatchingSpec)
    sinks: list[SinkSpec] = Field(
        default_factory=lambda: [VideoSinkSpec(type="video"), JsonlSinkSpec(type="jsonl")],
        description="Outputs per stream; default: video and jsonl.",
    )

    @model_validator(mode="before")
    @classmethod
    def _inherit_reconnect(cls, data: Any) -> Any:
        """Give each source the run's reconnect fields it does not set itself."""
        if not isinstance(data, dict):
            return data
        base = data.get("reconnect") or {}
        sources = data.get("sources")
        if not isinstance(base, dict) or not isinstance(sources, list):
            return data
        try:
            ReconnectSpec.model_validate(base)
        except ValidationError:
            return data  # reported once, at `reconnect`, not again under every source
        merged = []
        for source in sources:
            if isinstance(source, dict):
                own = source.get("reconnect")
                if own is None or isinstance(own, dict):
                    source = {**source, "reconnect": {**base, **(own or {})}}
            merged.append(source)
        return {**data, "sources": merged}

    @model_validator(mode="after")
    def _unique(self) -> RunSpec:
        # Ids name files: ids that differ only by case are one file on case-insensitive
        # filesystems (macOS, Windows, many network shares).
        seen: dict[str, int] = {}
        for i, source in enumerate(self.sources):
            key = source.id.lower()
            if key in seen:
                j = seen[key]
                if self.sources[j].id == source.id:
                    raise ValueError(
                        f"sources[{i}].id: duplicate id '{source.id}' (also sources[{j}])"
                    )
                raise ValueError(
                    f"sources[{i}].id: duplicate id '{source.id}' (also sources[{j}] "
                    f"'{self.sources[j].id}': ids that differ only by case name the same files on "
                    "case-insensitive filesystems)"
                )
            seen[key] = i
        kinds = [s.type for s in self.sinks]
        for kind in set(kinds):
            if kinds.count(kind) > 1:
                raise ValueError(f"sinks: '{kind}' is listed more than once")
        return self


def output_names(spec: RunSpec, segments: int = 3) -> list[str]:
    """Every file name a run may write in its ``output_dir``, in order.

    Per source: ``<id>.mp4`` and ``<id>.part2.mp4`` .. ``<id>.part<segments>.mp4`` with a video
    sink (a resolution change starts a segment), ``<id>.jsonl`` with a jsonl sink; then
    ``report.json`` and ``report.png``. The validation of ids keeps these names distinct,
    also on case-insensitive filesystems.
    """
    order = list(sinktypes.sink_types())
    sinks = sorted(spec.sinks, key=lambda sink: order.index(sink.type))  # registry order
    names: list[str] = []
    for source in spec.sources:
        for sink in sinks:
            names += sinktypes.sink_type(sink.type).files(sink, source.id)
            if sink.type == "video":
                names += [f"{source.id}.part{n}.mp4" for n in range(2, segments + 1)]
        names += side_files(source)
    return [*names, "report.json", "report.png"]


def class_problems(spec: RunSpec, classes: Sequence[str]) -> list[str]:
    """One problem per class name that a source's line or zone filters on and the model does
    not have (checked at submit, once the model is loaded and its classes are known)."""
    known = set(classes)
    shown = ", ".join(_short(c) for c in list(classes)[:12]) + (
        f" and {len(classes) - 12} more" if len(classes) > 12 else ""
    )
    problems = []
    for i, source in enumerate(spec.sources):
        for kind, items in (("lines", source.lines), ("zones", source.zones)):
            for j, item in enumerate(items):
                for name in item.classes or ():
                    if name not in known:
                        problems.append(
                            f"sources[{i}].{kind}[{j}].classes: unknown class {_short(name)}; "
                            f"the model's classes are {shown}"
                        )
    return problems


def side_files(source: SourceSpec) -> list[str]:
    """The files a source writes whatever its sinks: ``<id>.events.jsonl`` (its lines' and
    zones' events) and ``<id>.truth.jsonl`` (a ``synthetic://...&truth=1`` source's truth)."""
    names = []
    if source.lines or source.zones:
        names.append(f"{source.id}.events.jsonl")
    if writes_truth(source.uri):
        names.append(f"{source.id}.truth.jsonl")
    return names


def writes_truth(uri: str) -> bool:
    """Whether a source URI is a synthetic one asked for its truth (``truth=1``)."""
    if uri_mod.scheme_of(uri) != "synthetic":
        return False
    from vsa.sources.synthetic import SyntheticParams

    try:
        return bool(getattr(SyntheticParams.from_uri(uri), "truth", False))
    except ValueError:
        return False


# --- ${ENV} interpolation -------------------------------------------------------------------

_ENV_RE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


_key = yamlsafe.key_text  # a mapping key of a location: as is, or quoted and cut


def _loc(path: tuple[Any, ...]) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + _key(part)
    return out or "(top level)"


def interpolate_env(data: Any, env: dict[str, str] | None = None) -> Any:
    """Expand ``${VAR}`` and ``${VAR:-default}`` in every string; ``$$`` is a literal ``$``.

    Raises ConfigError naming the field and the variable when one is not set.
    """
    env = dict(os.environ) if env is None else env
    problems: list[str] = []

    def expand(value: Any, path: tuple[Any, ...]) -> Any:
        if isinstance(value, dict):
            return {k: expand(v, (*path, k)) for k, v in value.items()}
        if isinstance(value, list):
            return [expand(v, (*path, i)) for i, v in enumerate(value)]
        if not isinstance(value, str):
            return value

        def repl(match: re.Match[str]) -> str:
            if match.group(0) == "$$":
                return "$"
            name, default = match.group(1), match.group(2)
            if name in env:
                return env[name]
            if default is not None:
                return default
            problems.append(
                f"{_loc(path)}: environment variable {_short(name)} is not set "
                f"(export it, or write ${{{_key(name)}:-default}})"
            )
            return ""

        return _ENV_RE.sub(repl, value)

    result = expand(data, ())
    if problems:
        raise _config_error(problems)
    return result


# --- loading -------------------------------------------------------------------------------


def _is_tag(loc: tuple[Any, ...], i: int) -> bool:
    """Whether ``loc[i]`` is the tag of a tagged union (pydantic puts it in the location)."""
    part, before = loc[i], loc[i - 1] if i else None
    if isinstance(before, int) and i >= 2 and loc[i - 2] == "sinks":
        return part in sinktypes.sink_types()
    return isinstance(before, str) and part in _UNION_TAGS.get(before, ())


def _sink_names() -> str:
    names = [f"'{n}'" for n in sinktypes.sink_types()]
    return ", ".join(names[:-1]) + f" or {names[-1]}" if len(names) > 1 else names[0]


def _format_error(err: dict[str, Any]) -> str:
    loc = tuple(p for i, p in enumerate(err["loc"]) if not _is_tag(err["loc"], i))
    kind, msg = err["type"], err["msg"]
    if kind == "extra_forbidden":
        return f"{_loc(loc)}: unknown key"
    if kind == "missing":
        return f"{_loc(loc)}: required field is missing"
    if kind == "union_tag_invalid":
        kind_given = err["input"].get("type") if isinstance(err["input"], dict) else None
        return f"{_loc(loc)}: unknown sink type {_short(kind_given)} (use {_sink_names()})"
    if kind == "union_tag_not_found":
        return f"{_loc(loc)}: sink needs a 'type' ({_sink_names()})"
    if kind == "string_pattern_mismatch":
        # 72: an id a few characters over the limit of 64 is shown whole, to be counted
        return (
            f"{_loc(loc)}: {_short(err['input'], 72)} is not a valid id "
            "(letters, digits, '_', '.', '-'; at most 64)"
        )
    if kind == "string_too_long":
        return (
            f"{_loc(loc)}: is {len(err['input'])} characters long, more than "
            f"{err['ctx']['max_length']}; shorten it"
        )
    if kind == "too_long":
        return (
            f"{_loc(loc)}: has {err['ctx']['actual_length']} entries, more than "
            f"{err['ctx']['max_length']}"
        )
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
        # model-level validators already name their field
        if re.match(r"^[a-z_]+(\[\d+\])?[.:]", msg):
            if not loc or msg.startswith(f"{loc[-1]}."):
                return msg if len(loc) <= 1 else f"{_loc(loc[:-1])}.{msg}"
            return f"{_loc(loc)}.{msg}"
    return f"{_loc(loc)}: {msg}"


def parse_run(data: Any, source: str | None = None, env: dict[str, str] | None = None) -> RunSpec:
    """Validate a run from already-loaded YAML data."""
    if not isinstance(data, dict):
        raise ConfigError(
            ["(top level): expected a mapping with name, output_dir, sources, ..."], source
        )
    try:
        data = interpolate_env(data, env)
    except ConfigError as exc:
        raise ConfigError(exc.problems, source) from None
    try:
        return RunSpec.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_context=True, include_input=True)
        raise _config_error([_format_error(e) for e in errors], source) from None


def _read_run_file(path: Path) -> str:
    """The text of a run file, at most ``MAX_RUN_FILE_BYTES``; ConfigError (without source)."""
    try:
        return yamlsafe.read_text(path, yamlsafe.RUN_FILE)
    except yamlsafe.Refused as exc:
        raise ConfigError(exc.problems) from None


def _load_yaml(text: str) -> Any:
    """Parse run-file YAML (:mod:`vsa.yamlsafe`, the host file's loader too); ConfigError
    (without source) for what vsa refuses or cannot parse."""
    try:
        return yamlsafe.load(text, yamlsafe.RUN_FILE)
    except yamlsafe.Refused as exc:
        raise _config_error(exc.problems) from None


_RUN_DEFAULT_MODELS: dict[str, type[BaseModel]] = {"reconnect": ReconnectSpec}


def _check_run_defaults(defaults: dict[str, Any], host_file: str | None) -> None:
    """The host file's defaults for runs (its ``reconnect:`` block) must be valid on their
    own: ConfigError naming the host file, not the run file it would be merged into."""
    problems: list[str] = []
    for key, value in defaults.items():
        try:
            _RUN_DEFAULT_MODELS[key].model_validate(value)
        except ValidationError as exc:
            errors = exc.errors(include_url=False, include_context=True, include_input=True)
            problems += [_format_error({**e, "loc": (key, *e["loc"])}) for e in errors]
    if problems:
        raise _config_error(problems, host_file)


def load_run(path: str | os.PathLike[str], env: dict[str, str] | None = None) -> RunSpec:
    """Read, interpolate and validate a run file. Raises ConfigError with every problem.

    The file may be at most ``MAX_RUN_FILE_BYTES``, UTF-8, without YAML aliases, anchors or
    duplicate keys.
    """
    from vsa.hostconfig import host_file_path, run_defaults

    path = Path(path)
    try:
        data = _load_yaml(_read_run_file(path))
    except ConfigError as exc:
        raise ConfigError(exc.problems, str(path)) from None
    try:
        defaults = run_defaults()
    except VsaError as exc:  # a bad host file: its message starts with the host file's path
        raise ConfigError([str(exc)]) from None
    _check_run_defaults(defaults, host_file_path())
    if isinstance(data, dict):
        for key, value in defaults.items():  # the host's defaults under the run's own
            own = data.get(key)
            data[key] = {**value, **own} if isinstance(own, dict) else own or dict(value)
    return parse_run(data, str(path), env)


def _resolve(
    value: str | os.PathLike[str], base: Path, where: str, problems: list[str], file: bool
) -> Path | None:
    """``value`` made absolute against ``base`` and resolved; None after adding a problem.

    A symbolic link loop, a path with a NUL byte or an unknown ``~user`` is a problem of the
    run file, not a crash of the client.
    """
    path = Path(value)
    try:
        path = path.expanduser()
        path = path if path.is_absolute() else base / path
        resolved = path.resolve()
    except (OSError, RuntimeError, ValueError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        # Python < 3.13 raises RuntimeError("Symlink loop from ..."), later ones OSError(ELOOP)
        if getattr(exc, "errno", None) == errno.ELOOP or (
            isinstance(exc, RuntimeError) and "loop" in reason.lower()
        ):
            reason = "symbolic link loop"
        problems.append(f"{where}: cannot resolve {_show_path(path)}: {reason}")
        return None
    if not file:
        return resolved
    try:
        found = resolved.is_file()
    except OSError as exc:  # permission denied, name too long
        problems.append(f"{where}: cannot read {_show_path(resolved)}: {exc.strerror or exc}")
        return None
    if not found:
        problems.append(f"{where}: file not found: {_show_path(resolved)}")
    return resolved


def resolve_paths(spec: RunSpec, base_dir: str | os.PathLike[str]) -> RunSpec:
    """Make ``output_dir``, file sources and model files absolute against ``base_dir``; check files exist.

    Done by the client, because actors run in other working directories. Every problem is
    reported at once as a ConfigError.
    """
    base = Path(base_dir)
    problems: list[str] = []
    sources = []
    for i, source in enumerate(spec.sources):
        if uri_mod.scheme_of(source.uri) == "file":
            path = _resolve(
                uri_mod.file_path(source.uri), base, f"sources[{i}].uri", problems, file=True
            )
            if path is not None:
                source = source.model_copy(update={"uri": f"file://{path}"})
        elif source.password_file is not None:
            source = _with_password(source, base, f"sources[{i}].password_file", problems)
        sources.append(source)
    sinks = []
    for i, sink in enumerate(spec.sinks):  # files a sink reads on the engine host
        files = {}
        for field in ("password_file", "ca_file"):
            value = getattr(sink, field, None)
            if isinstance(value, str):
                path = _resolve(value, base, f"sinks[{i}].{field}", problems, file=True)
                files[field] = str(path)
        sinks.append(sink.model_copy(update=files) if files else sink)
    model = spec.model
    updates: dict[str, str] = {}
    for field in ("path", "classes"):
        value = getattr(model, field)
        if isinstance(value, str):
            path = _resolve(value, base, f"model.{field}", problems, file=True)
            updates[field] = str(path)
    out = _resolve(spec.output_dir, base, "output_dir", problems, file=False)
    if problems:
        raise _config_error(problems)
    if updates:
        spec = spec.model_copy(update={"model": model.model_copy(update=updates)})
    return spec.model_copy(update={"sources": sources, "sinks": sinks, "output_dir": str(out)})


MAX_PASSWORD_FILE_BYTES = 4096


def _read_password_file(path: Path, where: str, problems: list[str]) -> bytes | None:
    """The bytes of a password file (at most ``MAX_PASSWORD_FILE_BYTES`` + 1); None after
    adding a problem. The file must be a regular file (opened without blocking, so a FIFO or
    a device cannot hang ``vsa submit``) that no other user can read or write (mode 0600 or
    0400), as the key that seals it is refused otherwise (``vsa.secrets``)."""
    shown = _show_path(path)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        problems.append(f"{where}: cannot read {shown}: {exc.strerror or exc}")
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            problems.append(
                f"{where}: {shown} is not a regular file (a FIFO, a device or a directory); "
                "give a file that holds the password"
            )
            return None
        if st.st_mode & 0o077:
            problems.append(
                f"{where}: {shown} can be read or written by other users (mode "
                f"{stat.S_IMODE(st.st_mode):04o}); it holds a camera password, so vsa refuses "
                f"it: run `chmod 600 {shlex.quote(str(path))}`"
            )
            return None
        chunks: list[bytes] = []
        size = 0
        while size <= MAX_PASSWORD_FILE_BYTES:
            chunk = os.read(fd, MAX_PASSWORD_FILE_BYTES + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks)
    except OSError as exc:
        problems.append(f"{where}: cannot read {shown}: {exc.strerror or exc}")
        return None
    finally:
        os.close(fd)


def _with_password(source: SourceSpec, base: Path, where: str, problems: list[str]) -> SourceSpec:
    """``source`` with the password of its ``password_file`` in its URI's user info (the
    user name stays as the URI gives it). A problem names the field, never the password."""
    path = _resolve(source.password_file or "", base, where, problems, file=False)
    if path is None:
        return source
    raw = _read_password_file(path, where, problems)
    if raw is None:
        return source
    lines = raw.decode("utf-8", errors="replace").splitlines()
    password = lines[0].strip("\r") if lines else ""
    if len(raw) > MAX_PASSWORD_FILE_BYTES or not password or "\x00" in password:
        problems.append(f"{where}: {_show_path(path)} must hold the password on its first line")
        return source
    uri = source.uri
    scheme, sep, rest = uri.partition("://")
    hostpart, slash, tail = rest.partition("/")
    user, at, host = hostpart.rpartition("@")
    if not at:
        problems.append(
            f"{where}: the URI needs a user name to go with the password (scheme://user@host/...)"
        )
        return source
    user = user.split(":", 1)[0]
    quoted = urllib.parse.quote(password, safe="!$&'()*+,;=-._~")
    uri = f"{scheme}{sep}{user}:{quoted}@{host}{slash}{tail}"
    return source.model_copy(update={"uri": uri, "password_file": str(path)})


def json_schema() -> dict[str, Any]:
    """The run file's JSON Schema (``vsa schema``)."""
    schema = RunSpec.model_json_schema()
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "vsa run file",
        **schema,
    }


def _plain_type(tp: Any) -> Any:
    """``tp`` without ``Annotated`` constraints, for the docs: ``list[str] | str | None``."""
    origin, args = get_origin(tp), get_args(tp)
    if origin is Annotated:
        return _plain_type(args[0])
    if origin in (Union, types.UnionType):
        return functools.reduce(operator.or_, [_plain_type(a) for a in args])
    if origin is list:
        return list[_plain_type(args[0])]
    return tp


def _nested_models(tp: Any) -> list[type[BaseModel]]:
    """The pydantic models inside one field's type (``list[X]``, ``X | None``, ``Annotated``)."""
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return [tp]
    return [m for arg in get_args(tp) for m in _nested_models(arg)]


def run_file_models() -> list[type[BaseModel]]:
    """Every model reachable from :class:`RunSpec`, breadth first in field order."""
    found: list[type[BaseModel]] = [RunSpec]
    for model in found:  # grows while it is walked
        for field in model.model_fields.values():
            found += [m for m in _nested_models(field.annotation) if m not in found]
    return found


def markdown_reference() -> str:
    """The run-file reference, generated from the schema: every model a run file can hold."""
    lines = [
        "# Run-file reference",
        "",
        "Generated from `vsa/config.py` by `python -m vsa.config --markdown`.",
        "",
    ]
    for model in run_file_models():
        lines += [f"## {model.__name__}", "", inspect.cleandoc(model.__doc__ or ""), ""]
        lines += ["| field | type | default | description |", "|---|---|---|---|"]
        for name, field in model.model_fields.items():
            plain = _plain_type(field.annotation)
            ann = getattr(plain, "__name__", None) or str(plain)
            ann = ann.replace("typing.", "").replace("vsa.config.", "").replace("|", "\\|")
            if field.is_required():
                default = "required"
            elif field.default_factory is not None:
                default = "see type"
            else:
                default = f"`{field.default!r}`"
            lines.append(f"| `{name}` | {ann} | {default} | {field.description or ''} |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover - doc generator
    if "--markdown" in sys.argv:
        print(markdown_reference())
    elif "--json-schema" in sys.argv:
        import json

        print(json.dumps(RunSpec.model_json_schema(), indent=2))
