"""The run file: a table of good and bad files with the exact problem lines users see."""

from __future__ import annotations

import pickle
import tempfile
import textwrap
from pathlib import Path

import pytest

from vsa.config import (
    JsonlSinkSpec,
    RunSpec,
    VideoSinkSpec,
    interpolate_env,
    load_run,
    resolve_paths,
)
from vsa.errors import ConfigError, VsaError

REPO = Path(__file__).resolve().parents[2]

HEADER = "name: r1\noutput_dir: out\n"
TWO_GOOD_SOURCES = (
    "sources:\n"
    "  - {id: cam1, uri: 'synthetic://shapes?seed=1'}\n"
    "  - {id: cam2, uri: 'synthetic://shapes?seed=2'}\n"
)


def third_source(uri: str, sid: str = "cam3") -> str:
    """A run whose third source (``sources[2]``) is the one under test."""
    return HEADER + TWO_GOOD_SOURCES + f"  - {{id: '{sid}', uri: '{uri}'}}\n"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(textwrap.dedent(text))
    return path


MANY_PROBLEMS_TEXT = (
    "output_dir: out\n"
    "sources:\n  - {id: 'a b', uri: 'rtps://x'}\n"
    "sinks:\n  - {type: video}\n  - {type: nope}\n"
)
MANY_PROBLEMS = [
    "name: required field is missing",
    "sources[0].id: 'a b' is not a valid id (letters, digits, '_', '.', '-'; at most 64)",
    "sources[0].uri: unsupported scheme 'rtps' (use one of: synthetic, file, rtsp, rtsps, rtmp, http, https)",
    "sinks[1]: unknown sink type 'nope' (use 'video', 'jsonl', 'snapshot' or 'mqtt')",
]


def load_run_text(text: str, env: dict[str, str] | None = None) -> RunSpec:
    with tempfile.TemporaryDirectory() as tmp:
        return load_run(write(Path(tmp), text), env={} if env is None else env)


BAD = [
    pytest.param(third_source("rtps://x"), ["sources[2].uri: unsupported scheme 'rtps' (use one of: synthetic, file, rtsp, rtsps, rtmp, http, https)"], id="bad-scheme"),
    pytest.param(HEADER + TWO_GOOD_SOURCES + "colour: red\n", ["colour: unknown key"], id="unknown-top-level-key"),
    pytest.param(HEADER + TWO_GOOD_SOURCES + "batching:\n  max_wait: 20\n", ["batching.max_wait: unknown key"], id="unknown-nested-key"),
    pytest.param(HEADER + "sources:\n  - {id: a, uri: 'synthetic://shapes', fpss: 3}\n", ["sources[0].fpss: unknown key"], id="unknown-source-key"),
    pytest.param(HEADER + TWO_GOOD_SOURCES + "sinks:\n  - {type: video, bogus: 1}\n", ["sinks[0].bogus: unknown key"], id="unknown-sink-key"),
    pytest.param("output_dir: out\n" + TWO_GOOD_SOURCES, ["name: required field is missing"], id="missing-name"),
    pytest.param("name: r1\n" + TWO_GOOD_SOURCES, ["output_dir: required field is missing"], id="missing-output-dir"),
    pytest.param(HEADER, ["sources: required field is missing"], id="missing-sources"),
    pytest.param(HEADER + "sources: []\n", ["sources: List should have at least 1 item after validation, not 0"], id="empty-sources"),
    pytest.param(HEADER + "sources:\n  - {uri: 'synthetic://shapes'}\n", ["sources[0].id: required field is missing"], id="source-without-id"),
    pytest.param(HEADER + "sources:\n  - {id: a}\n", ["sources[0].uri: required field is missing"], id="source-without-uri"),
    pytest.param(third_source("synthetic://shapes?seed=3", sid="cam1"), ["sources[2].id: duplicate id 'cam1' (also sources[0])"], id="duplicate-id"),
    pytest.param(third_source("synthetic://shapes", sid="cam 3"), ["sources[2].id: 'cam 3' is not a valid id (letters, digits, '_', '.', '-'; at most 64)"], id="id-with-space"),
    pytest.param(third_source("synthetic://shapes", sid="-cam"), ["sources[2].id: '-cam' is not a valid id (letters, digits, '_', '.', '-'; at most 64)"], id="id-leading-dash"),
    pytest.param(third_source("synthetic://shapes", sid="c" * 65), [f"sources[2].id: '{'c' * 65}' is not a valid id (letters, digits, '_', '.', '-'; at most 64)"], id="id-too-long"),
    pytest.param("name: 'my run'\noutput_dir: out\n" + TWO_GOOD_SOURCES, ["name: 'my run' is not a valid id (letters, digits, '_', '.', '-'; at most 64)"], id="bad-run-name"),
    pytest.param(third_source("synthetic://shapes?speed=3"), ["sources[2].uri: unknown synthetic parameter 'speed' (known: seed, fps, width, height, frames, objects, pace, burst, scene, truth)"], id="synthetic-unknown-param"),
    pytest.param(third_source("synthetic://shapes?fps=fast"), ["sources[2].uri: synthetic parameter 'fps' must be a number, got 'fast'"], id="synthetic-fps-not-numeric"),
    pytest.param(third_source("synthetic://shapes?width=641"), ["sources[2].uri: synthetic parameter 'width' must be an even number in [32, 7680], got 641"], id="synthetic-odd-width"),
    pytest.param(third_source("synthetic://shapes?fps=0"), ["sources[2].uri: synthetic parameter 'fps' must be in (0, 1000], got 0"], id="synthetic-fps-zero"),
    pytest.param(third_source("synthetic://cubes"), ["sources[2].uri: unknown synthetic generator 'cubes' (only 'shapes' exists)"], id="synthetic-unknown-generator"),
    pytest.param(HEADER + TWO_GOOD_SOURCES + "model: {device: tpu}\n", ["model.device: Input should be 'auto', 'cpu' or 'cuda'"], id="bad-device"),
    pytest.param(HEADER + TWO_GOOD_SOURCES + "model: {name: yolo}\n", ["model.name: Input should be 'builtin', 'torchscript' or 'torchvision'"], id="bad-model-name"),
    pytest.param(HEADER + TWO_GOOD_SOURCES + "model: {name: torchscript}\n", ["model.path: required for model 'torchscript'"], id="torchscript-without-path"),
    pytest.param(HEADER + TWO_GOOD_SOURCES + "model: {name: torchvision, path: w.pt, classes: [a]}\n", ["model.arch: required for model 'torchvision' (e.g. maskrcnn_resnet50_fpn)"], id="torchvision-without-arch"),
    pytest.param(HEADER + TWO_GOOD_SOURCES + "model: {name: torchscript, path: m.pt, input_size: [640, 8]}\n", ["model.input_size: must be two sizes in [32, 4096], got [640, 8]"], id="input-size-too-small"),
    pytest.param(HEADER + TWO_GOOD_SOURCES + "model: {name: torchscript, path: m.pt, task: track}\n", ["model.task: Input should be 'detect' or 'segment'"], id="bad-task"),
    pytest.param(HEADER + TWO_GOOD_SOURCES + "model: {score_threshold: 1.5}\n", ["model.score_threshold: Input should be less than or equal to 1"], id="score-threshold-above-1"),
    pytest.param(HEADER + TWO_GOOD_SOURCES + "sinks:\n  - type: video\n  - type: rtmp\n", ["sinks[1]: unknown sink type 'rtmp' (use 'video', 'jsonl', 'snapshot' or 'mqtt')"], id="unknown-sink-type"),
    pytest.param(HEADER + TWO_GOOD_SOURCES + "sinks:\n  - {crf: 20}\n", ["sinks[0]: sink needs a 'type' ('video', 'jsonl', 'snapshot' or 'mqtt')"], id="sink-without-type"),
    pytest.param(HEADER + TWO_GOOD_SOURCES + "sinks:\n  - type: jsonl\n  - type: video\n  - type: jsonl\n", ["sinks: 'jsonl' is listed more than once"], id="duplicated-sink-type"),
    pytest.param(HEADER + TWO_GOOD_SOURCES + "sinks:\n  - {type: video, crf: 52}\n", ["sinks[0].crf: Input should be less than or equal to 51"], id="crf-too-high"),
    pytest.param(HEADER + TWO_GOOD_SOURCES + "batching: {max_batch_size: 0}\n", ["batching.max_batch_size: Input should be greater than or equal to 1"], id="max-batch-size-0"),
    pytest.param(HEADER + TWO_GOOD_SOURCES + "batching: {max_wait_ms: -1}\n", ["batching.max_wait_ms: Input should be greater than or equal to 0"], id="negative-max-wait"),
    pytest.param(HEADER + "sources:\n  - {id: a, uri: 'synthetic://shapes', max_in_flight: 0}\n", ["sources[0].max_in_flight: Input should be greater than or equal to 1"], id="max-in-flight-0"),
    pytest.param(MANY_PROBLEMS_TEXT, MANY_PROBLEMS, id="every-problem-reported-at-once"),
    pytest.param("name: r1\n  output_dir: out\n", ["line 2, column 13: invalid YAML: mapping values are not allowed here"], id="invalid-yaml-indent"),
    pytest.param(HEADER + "sources: [\n  - {id: a, uri: x}\n", ["line 4, column 3: invalid YAML: expected the node content, but found '-'"], id="invalid-yaml-block-in-flow"),
    pytest.param("- name: r1\n- output_dir: out\n", ["(top level): expected a mapping with name, output_dir, sources, ..."], id="top-level-list"),
    pytest.param("just a string\n", ["(top level): expected a mapping with name, output_dir, sources, ..."], id="top-level-scalar"),
    pytest.param("", ["(top level): expected a mapping with name, output_dir, sources, ..."], id="empty-file"),
    pytest.param(HEADER + "sources:\n  - {id: a, uri: 'rtsp://cam/${CAM_PATH}'}\n", ["sources[0].uri: environment variable 'CAM_PATH' is not set (export it, or write ${CAM_PATH:-default})"], id="env-missing"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "problems"), BAD)
def test_bad_run_file_reports_exact_problems(tmp_path: Path, text: str, problems: list[str]):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_run(path, env={})
    assert info.value.problems == problems
    assert info.value.source == str(path)
    # The message shows every problem prefixed with the file, one per line.
    assert str(info.value) == "\n".join(f"{path}: {p}" for p in problems)


def test_config_error_is_a_value_error_and_a_vsa_error(tmp_path: Path):
    with pytest.raises(ConfigError) as info:
        load_run(write(tmp_path, HEADER), env={})
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, VsaError)


def test_unreadable_run_file(tmp_path: Path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as info:
        load_run(missing)
    assert info.value.problems == ["cannot read the run file: No such file or directory"]
    assert str(info.value) == f"{missing}: cannot read the run file: No such file or directory"


GOOD = [
    pytest.param(HEADER + TWO_GOOD_SOURCES, {}, id="minimal"),
    pytest.param(
        HEADER
        + "sources:\n"
        + "  - {id: cam.1_a-b, uri: 'synthetic://shapes?seed=1&fps=15&width=640&height=360&frames=300&objects=5&pace=0'}\n"
        + "  - {id: clip, uri: clips/a.mp4}\n"
        + "  - {id: abs, uri: 'file:///data/b.mp4'}\n"
        + "  - {id: cam, uri: 'rtsp://user:pw@cam.local:554/stream', max_in_flight: 256}\n"
        + "  - {id: web, uri: 'https://example.com/live.m3u8'}\n"
        + "model: {name: builtin, device: cpu, score_threshold: 0.25}\n"
        + "batching: {max_batch_size: 256, max_wait_ms: 0}\n"
        + "sinks:\n  - {type: video, draw_masks: false, crf: 0}\n  - {type: jsonl}\n",
        {},
        id="everything-set",
    ),
    pytest.param(
        HEADER + "sources:\n  - {id: cam, uri: 'rtsp://admin:${CAM_PASS}@cam/x'}\n",
        {"CAM_PASS": "pw"},
        id="env-credentials",
    ),
    pytest.param(
        "name: ${RUN:-r1}\noutput_dir: ${OUT:-out}\n" + TWO_GOOD_SOURCES, {}, id="env-defaults"
    ),
]


@pytest.mark.parametrize(("text", "env"), GOOD)
def test_good_run_files_validate(tmp_path: Path, text: str, env: dict[str, str]):
    spec = load_run(write(tmp_path, text), env=env)
    assert isinstance(spec, RunSpec)
    assert spec.name == "r1"
    assert spec.output_dir == "out"


def test_defaults():
    spec = load_run_text("name: r1\noutput_dir: out\nsources:\n  - {id: a, uri: x.mp4}\n")
    assert spec.model.name == "builtin"
    assert spec.model.device == "auto"
    assert spec.model.score_threshold == 0.5
    assert spec.batching.max_batch_size == 8
    assert spec.batching.max_wait_ms == 20.0
    assert spec.sources[0].max_in_flight is None and spec.sources[0].in_flight == 8
    assert spec.sinks == [VideoSinkSpec(type="video"), JsonlSinkSpec(type="jsonl")]
    assert spec.sinks[0].draw_masks is True and spec.sinks[0].crf == 23


def test_everything_set_keeps_values(tmp_path: Path):
    spec = load_run(write(tmp_path, GOOD[1].values[0]), env={})
    assert [s.id for s in spec.sources] == ["cam.1_a-b", "clip", "abs", "cam", "web"]
    assert spec.sources[3].max_in_flight == spec.sources[3].in_flight == 256
    assert spec.model.device == "cpu" and spec.model.score_threshold == 0.25
    assert spec.batching.max_batch_size == 256 and spec.batching.max_wait_ms == 0
    assert spec.sinks == [
        VideoSinkSpec(type="video", draw_masks=False, crf=0),
        JsonlSinkSpec(type="jsonl"),
    ]


def test_demo_config_validates():
    spec = load_run(REPO / "configs" / "demo.yaml", env={})
    assert spec.name == "demo"
    assert [s.id for s in spec.sources] == ["cam1", "cam2", "cam3", "cam4", "clip"]
    assert [s.type for s in spec.sinks] == ["video", "jsonl"]
    assert spec.sources[1].tracked is not None and spec.sources[1].lines[0].id == "middle"


# --- ${ENV} interpolation -------------------------------------------------------------------

ENV_CASES = [
    pytest.param("rtsp://cam/${CAM}", {"CAM": "front"}, "rtsp://cam/front", id="set"),
    pytest.param("rtsp://cam/${CAM:-back}", {}, "rtsp://cam/back", id="default-used"),
    pytest.param("rtsp://cam/${CAM:-back}", {"CAM": "front"}, "rtsp://cam/front", id="default-ignored"),
    pytest.param("rtsp://cam/x${CAM:-}", {}, "rtsp://cam/x", id="empty-default"),
    pytest.param("rtsp://u:$${P}@cam/x", {"P": "no"}, "rtsp://u:${P}@cam/x", id="dollar-dollar-is-literal"),
    pytest.param("rtsp://u:a$$b@cam/x", {}, "rtsp://u:a$b@cam/x", id="dollar-dollar-alone"),
    pytest.param("rtsp://u:${P}@cam/x", {"P": "p$${Q}"}, "rtsp://u:p$${Q}@cam/x", id="values-not-re-expanded"),
    pytest.param("rtsp://${U}:${P}@cam/${S:-main}", {"U": "admin", "P": "hunter2"}, "rtsp://admin:hunter2@cam/main", id="several"),
]  # fmt: skip


@pytest.mark.parametrize(("uri", "env", "expected"), ENV_CASES)
def test_env_interpolation(tmp_path: Path, uri: str, env: dict[str, str], expected: str):
    text = HEADER + f"sources:\n  - {{id: a, uri: '{uri}'}}\n"
    spec = load_run(write(tmp_path, text), env=env)
    assert spec.sources[0].uri == expected


def test_env_interpolation_in_every_string_field(tmp_path: Path):
    text = "name: ${RUN}\noutput_dir: ${OUT:-/tmp/o}\nsources:\n  - {id: '${ID}', uri: x.mp4}\n"
    spec = load_run(write(tmp_path, text), env={"RUN": "night", "ID": "gate"})
    assert (spec.name, spec.output_dir, spec.sources[0].id) == ("night", "/tmp/o", "gate")


def test_env_missing_names_every_field_and_variable(tmp_path: Path):
    text = (
        "name: r1\noutput_dir: ${OUT}\nsources:\n"
        "  - {id: a, uri: x.mp4}\n"
        "  - {id: b, uri: 'rtsp://${CAM_USER}:${CAM_PASS}@cam/x'}\n"
    )
    with pytest.raises(ConfigError) as info:
        load_run(write(tmp_path, text), env={"CAM_USER": "admin"})
    assert info.value.problems == [
        "output_dir: environment variable 'OUT' is not set (export it, or write ${OUT:-default})",
        "sources[1].uri: environment variable 'CAM_PASS' is not set "
        "(export it, or write ${CAM_PASS:-default})",
    ]


def test_env_defaults_to_process_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("VSA_UNIT_TEST_CAM", "lobby")
    text = HEADER + "sources:\n  - {id: '${VSA_UNIT_TEST_CAM}', uri: x.mp4}\n"
    assert load_run(write(tmp_path, text)).sources[0].id == "lobby"


def test_interpolate_env_leaves_non_strings_alone():
    data = {"a": 1, "b": [True, None, 2.5, "${X}"], "c": {"d": "$$"}}
    assert interpolate_env(data, {"X": "y"}) == {
        "a": 1,
        "b": [True, None, 2.5, "y"],
        "c": {"d": "$"},
    }


# --- resolve_paths --------------------------------------------------------------------------


def test_resolve_paths_makes_output_and_files_absolute(tmp_path: Path):
    base = tmp_path / "project"
    (base / "clips").mkdir(parents=True)
    (base / "clips" / "a.mp4").write_bytes(b"x")
    absolute = tmp_path / "elsewhere.mp4"
    absolute.write_bytes(b"x")
    spec = load_run_text(
        "name: r1\noutput_dir: out/run1\nsources:\n"
        "  - {id: syn, uri: 'synthetic://shapes?seed=1'}\n"
        "  - {id: rel, uri: clips/a.mp4}\n"
        "  - {id: dot, uri: ./clips/../clips/a.mp4}\n"
        f"  - {{id: abs, uri: 'file://{absolute}'}}\n"
        "  - {id: net, uri: 'rtsp://u:p@cam/x'}\n"
    )
    resolved = resolve_paths(spec, base)
    assert resolved.output_dir == str((base / "out" / "run1").resolve())
    assert [s.uri for s in resolved.sources] == [
        "synthetic://shapes?seed=1",
        f"file://{(base / 'clips' / 'a.mp4').resolve()}",
        f"file://{(base / 'clips' / 'a.mp4').resolve()}",
        f"file://{absolute.resolve()}",
        "rtsp://u:p@cam/x",
    ]
    # The input spec is not modified (specs are frozen values).
    assert spec.output_dir == "out/run1"
    assert spec.sources[1].uri == "clips/a.mp4"


def test_resolve_paths_keeps_absolute_output_dir(tmp_path: Path):
    spec = load_run_text(
        f"name: r1\noutput_dir: {tmp_path / 'o'}\nsources:\n  - {{id: a, uri: 'synthetic://shapes'}}\n"
    )
    assert resolve_paths(spec, "/somewhere/else").output_dir == str((tmp_path / "o").resolve())


def test_resolve_paths_reports_every_missing_file(tmp_path: Path):
    spec = load_run_text(
        "name: r1\noutput_dir: out\nsources:\n"
        "  - {id: a, uri: 'synthetic://shapes'}\n"
        "  - {id: b, uri: clips/missing.mp4}\n"
        "  - {id: c, uri: 'file:///definitely/not/here.mp4'}\n"
    )
    with pytest.raises(ConfigError) as info:
        resolve_paths(spec, tmp_path)
    assert info.value.problems == [
        f"sources[1].uri: file not found: {tmp_path.resolve() / 'clips' / 'missing.mp4'}",
        "sources[2].uri: file not found: /definitely/not/here.mp4",
    ]


def test_resolve_paths_directory_is_not_a_file(tmp_path: Path):
    (tmp_path / "clips").mkdir()
    spec = load_run_text("name: r1\noutput_dir: out\nsources:\n  - {id: a, uri: clips}\n")
    with pytest.raises(ConfigError) as info:
        resolve_paths(spec, tmp_path)
    assert info.value.problems == [
        f"sources[0].uri: file not found: {tmp_path.resolve() / 'clips'}"
    ]


# --- ConfigError ----------------------------------------------------------------------------


def test_config_error_survives_pickle(tmp_path: Path):
    path = write(tmp_path, MANY_PROBLEMS_TEXT)
    with pytest.raises(ConfigError) as info:
        load_run(path, env={})
    original = info.value
    assert len(original.problems) == 4
    copy = pickle.loads(pickle.dumps(original))
    assert type(copy) is ConfigError
    assert copy.problems == original.problems
    assert copy.source == original.source == str(path)
    assert str(copy) == str(original)


def test_config_error_without_source_has_no_prefix():
    err = ConfigError(["a: b", "c: d"])
    assert str(err) == "a: b\nc: d"
    copy = pickle.loads(pickle.dumps(err))
    assert copy.problems == ["a: b", "c: d"] and copy.source is None


@pytest.mark.parametrize(
    "entry, in_flight",
    [
        ("{id: a, uri: 'synthetic://shapes'}", 8),  # lossless: back-pressure over 8 frames
        ("{id: a, uri: 'rtsp://cam/x'}", 1),  # realtime: the newest frame, one at a time
        ("{id: a, uri: 'synthetic://shapes', mode: realtime}", 1),
        ("{id: a, uri: 'rtsp://cam/x', mode: lossless}", 8),
        ("{id: a, uri: 'rtsp://cam/x', max_in_flight: 3}", 3),
    ],
)
def test_frames_in_flight_default_by_delivery_mode(tmp_path: Path, entry: str, in_flight: int):
    spec = load_run(write(tmp_path, HEADER + f"sources:\n  - {entry}\n"), env={})
    assert spec.sources[0].in_flight == in_flight
