"""The run file: schema, ``${ENV}`` interpolation, path resolution, readable errors.

The pydantic models are the documentation: every field has a description and a
default, and ``docs/run-file.md`` is generated from them (``python -m vsa.config --markdown``).
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from vsa import uri as uri_mod
from vsa.errors import ConfigError

_ID_RE = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


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


class SourceSpec(_Strict):
    """One stream."""

    id: str = Field(
        pattern=_ID_RE,
        description="Stream id, unique in the run; names the output files (`<id>.mp4`, `<id>.jsonl`).",
    )
    uri: str = Field(
        description=(
            "`synthetic://shapes?seed=1&fps=15&width=640&height=360&frames=300`, `file:///abs/clip.mp4`, "
            "a plain path (relative to the directory you submit from), `rtsp://`, `http(s)://`. "
            "`${ENV}` references are expanded, so credentials need not be written in the file."
        )
    )
    max_in_flight: int = Field(
        8,
        ge=1,
        le=256,
        description="Frames of this stream that may be in the object store at once.",
    )
    reconnect: ReconnectSpec = Field(
        default_factory=ReconnectSpec,
        description="Overrides of the run's `reconnect` block for this source (fields not "
        "given here come from the run's block).",
    )
    mode: Literal["auto", "lossless", "realtime"] = Field(
        "auto",
        description="`lossless`: every frame is processed, the source waits for the engine "
        "(default for files and `synthetic://`). `realtime`: never fall behind; when the engine "
        "is slower than the camera the newest frame is kept and older ones are dropped "
        "(`queue_full`), and frames older than `max_age_ms` are dropped (`stale`) (default for "
        "network streams; set `lossless` for a file served over HTTP).",
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
        description="Realtime mode: a frame older than this (since capture) is dropped "
        "(`stale`) instead of being inferred late.",
    )
    priority: int = Field(
        0,
        ge=-100,
        le=100,
        description="Higher is served first when the inference actor has more frames than it "
        "can batch; under saturation lower-priority realtime streams lose frames first.",
    )
    on_end: Literal["auto", "reconnect", "finish"] = Field(
        "auto",
        description="When a network stream ends: `reconnect` (a camera that went away) or "
        "`finish` (a file served over HTTP). `auto`: reconnect `rtsp`/`rtmp`, and `http(s)` "
        "streams with no known duration (MJPEG, live TS); finish the others.",
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

    @field_validator("uri")
    @classmethod
    def _check_uri(cls, value: str) -> str:
        scheme = uri_mod.check_scheme(value)
        if scheme == "synthetic":
            from vsa.sources.synthetic import SyntheticParams

            SyntheticParams.from_uri(value)
        return value

    @property
    def realtime(self) -> bool:
        """The delivery mode in effect: ``auto`` is realtime for network streams."""
        if self.mode == "auto":
            return uri_mod.scheme_of(self.uri) in uri_mod.NETWORK_SCHEMES
        return self.mode == "realtime"

    @model_validator(mode="after")
    def _transport(self) -> SourceSpec:
        if self.rtsp_transport != "tcp" and not uri_mod.scheme_of(self.uri).startswith("rtsp"):
            raise ValueError("rtsp_transport: only applies to rtsp:// sources")
        return self


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
    path: str | None = Field(
        None,
        description="Model file (`torchscript`) or weights file (`torchvision`); relative to the submit directory.",
    )
    task: Literal["detect", "segment"] = Field(
        "detect",
        description="`segment` for models that also give instance masks (YOLO-seg, Mask R-CNN).",
    )
    arch: str | None = Field(
        None,
        description="torchvision architecture, e.g. `fasterrcnn_resnet50_fpn` or `maskrcnn_resnet50_fpn`.",
    )
    input_size: tuple[int, int] = Field(
        (640, 640),
        description="Model input `[height, width]` for `torchscript`; frames are letterboxed to it.",
    )
    classes: list[str] | str | None = Field(
        None,
        description=(
            "Class names: a list, or a names file (one per line, or a YAML/JSON list or `names:` mapping). "
            "For `torchscript`, omitted = the names embedded by the Ultralytics exporter."
        ),
    )
    class_filter: list[str] | None = Field(None, description="Keep only these class names.")
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
    """How the inference actor forms batches across all streams."""

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


class VideoSinkSpec(_Strict):
    """Annotated H.264 MP4 per stream: `<output_dir>/<source id>.mp4` (fragmented: playable at any time)."""

    type: Literal["video"]
    draw_masks: bool = Field(True, description="Blend instance masks into the video.")
    crf: int = Field(
        23, ge=0, le=51, description="x264 constant rate factor (lower = better, bigger)."
    )


class JsonlSinkSpec(_Strict):
    """One JSON line per frame: `<output_dir>/<source id>.jsonl`."""

    type: Literal["jsonl"]


SinkSpec = Annotated[VideoSinkSpec | JsonlSinkSpec, Field(discriminator="type")]


class RunSpec(_Strict):
    """A run: streams, one model, batching and sinks."""

    name: str = Field(
        pattern=_ID_RE, description="Run name; a running name cannot be submitted twice."
    )
    output_dir: str = Field(
        description="Where sinks write; relative paths are taken from the submit directory."
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
        seen: dict[str, int] = {}
        for i, source in enumerate(self.sources):
            if source.id in seen:
                raise ValueError(
                    f"sources[{i}].id: duplicate id '{source.id}' (also sources[{seen[source.id]}])"
                )
            seen[source.id] = i
        kinds = [s.type for s in self.sinks]
        for kind in set(kinds):
            if kinds.count(kind) > 1:
                raise ValueError(f"sinks: '{kind}' is listed more than once")
        return self


# --- ${ENV} interpolation -------------------------------------------------------------------

_ENV_RE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _loc(path: tuple[Any, ...]) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
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
                f"{_loc(path)}: environment variable '{name}' is not set "
                f"(export it, or write ${{{name}:-default}})"
            )
            return ""

        return _ENV_RE.sub(repl, value)

    result = expand(data, ())
    if problems:
        raise ConfigError(problems)
    return result


# --- loading -------------------------------------------------------------------------------


def _format_error(err: dict[str, Any]) -> str:
    loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p in ("video", "jsonl")))
    kind, msg = err["type"], err["msg"]
    if kind == "extra_forbidden":
        return f"{_loc(loc)}: unknown key"
    if kind == "missing":
        return f"{_loc(loc)}: required field is missing"
    if kind == "union_tag_invalid":
        return (
            f"{_loc(loc)}: unknown sink type {err['input'].get('type')!r} (use 'video' or 'jsonl')"
        )
    if kind == "union_tag_not_found":
        return f"{_loc(loc)}: sink needs a 'type' ('video' or 'jsonl')"
    if kind == "string_pattern_mismatch":
        return f"{_loc(loc)}: {err['input']!r} is not a valid id (letters, digits, '_', '.', '-'; at most 64)"
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
        raise ConfigError([_format_error(e) for e in exc.errors()], source) from None


def load_run(path: str | os.PathLike[str], env: dict[str, str] | None = None) -> RunSpec:
    """Read, interpolate and validate a run file. Raises ConfigError with every problem."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError([f"cannot read the run file: {exc.strerror}"], str(path)) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([f"{where}invalid YAML: {problem}"], str(path)) from None
    return parse_run(data, str(path), env)


def resolve_paths(spec: RunSpec, base_dir: str | os.PathLike[str]) -> RunSpec:
    """Make ``output_dir``, file sources and model files absolute against ``base_dir``; check files exist.

    Done by the client, because actors run in other working directories.
    """
    base = Path(base_dir)
    problems: list[str] = []
    sources = []
    for i, source in enumerate(spec.sources):
        if uri_mod.scheme_of(source.uri) == "file":
            path = uri_mod.file_path(source.uri).expanduser()
            path = path if path.is_absolute() else (base / path)
            path = path.resolve()
            if not path.is_file():
                problems.append(f"sources[{i}].uri: file not found: {path}")
            source = source.model_copy(update={"uri": f"file://{path}"})
        sources.append(source)
    model = spec.model
    updates: dict[str, str] = {}
    for field in ("path", "classes"):
        value = getattr(model, field)
        if not isinstance(value, str):
            continue
        path = Path(value).expanduser()
        path = (path if path.is_absolute() else base / path).resolve()
        if not path.is_file():
            problems.append(f"model.{field}: file not found: {path}")
        updates[field] = str(path)
    if problems:
        raise ConfigError(problems)
    if updates:
        spec = spec.model_copy(update={"model": model.model_copy(update=updates)})
    out = Path(spec.output_dir).expanduser()
    out = out if out.is_absolute() else (base / out)
    return spec.model_copy(update={"sources": sources, "output_dir": str(out.resolve())})


def markdown_reference() -> str:
    """The run-file reference, generated from the schema."""
    lines = [
        "# Run-file reference",
        "",
        "Generated from `vsa/config.py` by `python -m vsa.config --markdown`.",
        "",
    ]
    for model in (
        RunSpec,
        SourceSpec,
        ReconnectSpec,
        ModelSpec,
        BatchingSpec,
        VideoSinkSpec,
        JsonlSinkSpec,
    ):
        lines += [f"## {model.__name__}", "", (model.__doc__ or "").strip(), ""]
        lines += ["| field | type | default | description |", "|---|---|---|---|"]
        for name, field in model.model_fields.items():
            ann = getattr(field.annotation, "__name__", None) or str(field.annotation)
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
