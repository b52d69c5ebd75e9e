"""Run files from careless or hostile users: bombs, huge values, duplicate keys, loops, collisions.

Every case is a table of good and bad inputs with the exact problem line users see; no input
may crash the client, exhaust its memory, or echo more than a short excerpt of itself.
"""

from __future__ import annotations

import os
import textwrap
import tracemalloc
from pathlib import Path

import pytest

from vsa.config import (
    MAX_RUN_FILE_BYTES,
    RunSpec,
    _short,
    load_run,
    output_names,
    parse_run,
    resolve_paths,
)
from vsa.errors import ConfigError

HEADER = "name: r1\noutput_dir: out\n"
ONE_SOURCE = "sources:\n  - {id: cam1, uri: 'synthetic://shapes?seed=1'}\n"
VALID = HEADER + ONE_SOURCE


def write(tmp_path: Path, text: str | bytes) -> Path:
    path = tmp_path / "run.yaml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(textwrap.dedent(text))
    return path


def problems_of(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_run(path, env={})
    assert info.value.source == str(path)
    return info.value.problems


def data(**overrides: object) -> dict:
    """A valid run as loaded YAML, with some top-level values replaced."""
    return {
        "name": "r1",
        "output_dir": "out",
        "sources": [{"id": "cam1", "uri": "synthetic://shapes?seed=1"}],
        **overrides,
    }


def parse_problems(value: dict) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_run(value, env={})
    return info.value.problems


# --- 1a. YAML aliases and anchors ----------------------------------------------------------

BILLION_LAUGHS = (
    VALID
    + "junk:\n"
    + "".join(
        f"  {name}: &{name} [{', '.join([f'*{prev}'] * 9 if prev else ['x'] * 9)}]\n"
        for prev, name in zip([None, *"abcdefgh"], "abcdefghi", strict=True)
    )
)

ALIAS_CASES = [
    pytest.param(BILLION_LAUGHS, ["line 6, column 6: YAML anchors (&a) are not allowed in a run file; write the value out"], id="billion-laughs"),
    pytest.param(HEADER + "sources:\n  - &cam {id: cam1, uri: 'synthetic://shapes'}\n", ["line 4, column 5: YAML anchors (&cam) are not allowed in a run file; write the value out"], id="anchor-alone"),
    pytest.param(HEADER + "sources:\n  - *cam\n", ["line 4, column 5: YAML aliases (*cam) are not allowed in a run file; write the value out"], id="alias-alone"),
    pytest.param(VALID + "model:\n  <<: *base\n", ["line 6, column 7: YAML aliases (*base) are not allowed in a run file; write the value out"], id="merge-key-alias"),
    pytest.param(VALID + "junk: *" + "a" * 200 + "\n", [f"line 5, column 7: YAML aliases (*{'a' * 60}…) are not allowed in a run file; write the value out"], id="long-alias-name"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "problems"), ALIAS_CASES)
def test_yaml_aliases_and_anchors_are_refused(tmp_path: Path, text: str, problems: list[str]):
    assert problems_of(write(tmp_path, text)) == problems


def test_billion_laughs_is_refused_in_bounded_memory(tmp_path: Path):
    path = write(tmp_path, BILLION_LAUGHS)
    assert len(path.read_bytes()) < 600  # the 539-byte bomb of the review, give or take
    tracemalloc.start()
    try:
        with pytest.raises(ConfigError):
            load_run(path, env={})
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 5_000_000


# --- 1b. size, encoding and structure of the file ------------------------------------------


def padded(size: int) -> bytes:
    """A valid run file of exactly ``size`` bytes (a comment pads it)."""
    body = VALID.encode()
    return body + b"#" + b"x" * (size - len(body) - 2) + b"\n"


FILE_CASES = [
    pytest.param(padded(MAX_RUN_FILE_BYTES + 1), [f"the run file is {MAX_RUN_FILE_BYTES + 1} bytes, more than the limit of {MAX_RUN_FILE_BYTES} bytes (1 MiB); a run file lists streams and settings: check that this is the right file"], id="one-byte-too-big"),
    pytest.param(padded(50 << 20), [f"the run file is {50 << 20} bytes, more than the limit of {MAX_RUN_FILE_BYTES} bytes (1 MiB); a run file lists streams and settings: check that this is the right file"], id="50-MiB"),
    pytest.param(VALID.encode() + b"# caf\xe9\n", ["line 5: not UTF-8 text; save the run file as UTF-8"], id="latin-1"),
    pytest.param(b"\x00\x01\x02binary", ["line 1, column 1: invalid YAML: unacceptable character #x0000: special characters are not allowed"], id="binary"),
    pytest.param(VALID + "junk: \"a\\0b\"\n", ["junk: unknown key"], id="escaped-nul-is-a-string"),
    pytest.param(VALID + "junk: " + "[" * 1000 + "]" * 1000 + "\n", ["line 5, column 106: nested deeper than 100 levels; a run file needs a few"], id="deep-nesting"),
    pytest.param(VALID + "batching: {max_batch_size: " + "9" * 5000 + "}\n", [f"line 5, column 28: invalid YAML: {_short('9' * 5000)} is not a valid int; quote it to make it a string"], id="int-of-5000-digits"),
    pytest.param("name: 2020-13-45\noutput_dir: out\n" + ONE_SOURCE, ["line 1, column 7: invalid YAML: '2020-13-45' is not a valid timestamp; quote it to make it a string"], id="impossible-date"),
    pytest.param(VALID + "junk: !!python/object:os.system {}\n", ["line 5, column 7: invalid YAML: could not determine a constructor for the tag 'tag:yaml.org,2002:python/object:os.system'"], id="python-tag"),
]  # fmt: skip


@pytest.mark.parametrize(("content", "problems"), FILE_CASES)
def test_hostile_files(tmp_path: Path, content: str | bytes, problems: list[str]):
    assert problems_of(write(tmp_path, content)) == problems


def test_run_file_at_the_size_limit_is_read(tmp_path: Path):
    path = write(tmp_path, padded(MAX_RUN_FILE_BYTES))
    assert path.stat().st_size == MAX_RUN_FILE_BYTES
    assert load_run(path, env={}).name == "r1"


def test_run_file_that_grows_past_the_limit_is_read_no_further(tmp_path: Path):
    # /dev/zero reports size 0 and never ends: only limit + 1 bytes are read.
    if not Path("/dev/zero").exists():
        pytest.skip("no /dev/zero")
    with pytest.raises(ConfigError) as info:
        load_run("/dev/zero", env={})
    assert info.value.problems == [
        f"the run file is larger than the limit of {MAX_RUN_FILE_BYTES} bytes (1 MiB); "
        "a run file lists streams and settings: check that this is the right file"
    ]


def test_utf8_bom_is_accepted(tmp_path: Path):
    assert load_run(write(tmp_path, b"\xef\xbb\xbf" + VALID.encode()), env={}).name == "r1"


# --- 2. duplicate keys ---------------------------------------------------------------------

DUPLICATE_CASES = [
    pytest.param(VALID + "name: r2\n", ["line 5: duplicate key 'name' (also on line 1)"], id="top-level"),
    pytest.param(HEADER + "sources:\n  - {id: cam1, uri: 'synthetic://shapes', fps: 1, fps: 2}\n", ["line 4: duplicate key 'fps' (also on line 4)"], id="flow-mapping"),
    pytest.param(HEADER + "sources:\n  - id: cam1\n    uri: 'synthetic://shapes'\n    id: cam2\n", ["line 6: duplicate key 'id' (also on line 4)"], id="block-mapping-in-list"),
    pytest.param(VALID + "model:\n  name: builtin\n  device: cpu\n  device: cuda\n", ["line 8: duplicate key 'device' (also on line 7)"], id="nested"),
    pytest.param(VALID + "reconnect: {policy: fixed}\nbatching: {max_wait_ms: 1, max_wait_ms: 2}\nreconnect: {}\n", ["line 6: duplicate key 'max_wait_ms' (also on line 6)", "line 7: duplicate key 'reconnect' (also on line 5)"], id="every-duplicate-reported"),
    pytest.param(VALID + "junk: {1: a, 0x1: b}\n", ["line 5: duplicate key 1 (also on line 5)"], id="same-value-other-spelling"),
    pytest.param(VALID + "junk: {" + "k" * 300 + ": 1, " + "k" * 300 + ": 2}\n", [f"line 5: duplicate key {_short('k' * 300)} (also on line 5)"], id="long-key-clipped"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "problems"), DUPLICATE_CASES)
def test_duplicate_keys_are_refused(tmp_path: Path, text: str, problems: list[str]):
    assert problems_of(write(tmp_path, text)) == problems


def test_same_key_in_different_mappings_is_fine(tmp_path: Path):
    text = HEADER + (
        "sources:\n"
        "  - {id: cam1, uri: 'synthetic://shapes?seed=1', fps: 5}\n"
        "  - {id: cam2, uri: 'synthetic://shapes?seed=2', fps: 5}\n"
    )
    assert [s.fps for s in load_run(write(tmp_path, text), env={}).sources] == [5, 5]


# --- 1c. echoed values are short -----------------------------------------------------------

HUGE = "a" * (50 << 20)

SHORT_CASES = [
    ("aaa", "'aaa'"),
    ("a" * 60, repr("a" * 60)),
    ("a" * 61, "'" + "a" * 60 + "…' (61 chars)"),
    (HUGE, "'" + "a" * 60 + "…' (52428800 chars)"),
    ("x\n" * 40, repr("x\n" * 30)[:61] + "…' (80 chars)"),
    (["x"] * 1000, "['x', 'x', 'x', 'x', 'x', 'x', ...] (1000 items)"),
    (["x"] * 3, "['x', 'x', 'x']"),
    ([HUGE] * 100, f"['{'a' * 17}...{'a' * 18}', '{'a' * 16}… (100 items)"),
    ({"type": "y" * 100}, "{'type': 'yyyyyyyyyyyyyyyyy...yyyyyyyyyyyyyyyyyy'} (1 item)"),
    ([[[["deep"]]]], "[[[...]]] (1 item)"),
    (12, "12"),
    (10**5000, "<int of about 5000 digits>"),
    (None, "None"),
]


@pytest.mark.parametrize(("value", "expected"), SHORT_CASES, ids=range(len(SHORT_CASES)))
def test_short(value: object, expected: str):
    assert _short(value) == expected


ECHO_CASES = [
    pytest.param(data(name=HUGE), [f"name: {_short(HUGE, 72)} is not a valid id (letters, digits, '_', '.', '-'; at most 64)"], id="huge-name"),
    pytest.param(data(output_dir=HUGE), ["output_dir: is 52428800 characters long, more than 4096; shorten it"], id="huge-output-dir"),
    pytest.param(data(sources=[{"id": "cam1", "uri": HUGE}]), ["sources[0].uri: is 52428800 characters long, more than 4096; shorten it"], id="huge-uri"),
    pytest.param(data(sources=[{"id": "cam1", "uri": "x" * 3000 + "://y"}]), [f"sources[0].uri: unsupported scheme {_short('x' * 3000)} (use one of: synthetic, file, rtsp, rtsps, rtmp, http, https)"], id="long-scheme"),
    pytest.param(data(sources=[{"id": "cam1", "uri": "synthetic://shapes?fps=" + "f" * 3000}]), [f"sources[0].uri: synthetic parameter 'fps' must be a number, got {_short('f' * 3000)}"], id="long-synthetic-value"),
    pytest.param(data(sources=[{"id": "cam1", "uri": "synthetic://" + "s" * 3000}]), [f"sources[0].uri: unknown synthetic generator {_short('s' * 3000)} (only 'shapes' exists)"], id="long-synthetic-generator"),
    pytest.param(data(**{"k" * 1000: 1}), [f"{'k' * 60}…: unknown key"], id="long-unknown-key"),
    pytest.param(data(**{"bad\nkey": 1}), ["'bad\\nkey': unknown key"], id="newline-in-key"),
    pytest.param(data(sinks=[{"type": HUGE}]), ["sinks[0]: unknown sink type 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa…' (52428800 chars) (use 'video', 'jsonl', 'snapshot' or 'mqtt')"], id="huge-sink-type"),
    pytest.param(data(sinks=[{"type": ["v"] * 10_000}]), [f"sinks[0]: unknown sink type {_short(['v'] * 10_000)} (use 'video', 'jsonl', 'snapshot' or 'mqtt')"], id="list-sink-type"),
    pytest.param(data(sources=[{"id": "cam1", "uri": "rtsp://${" + "V" * 3000 + "}"}]), [f"sources[0].uri: environment variable {_short('V' * 3000)} is not set (export it, or write ${{{'V' * 60}…:-default}})"], id="long-env-name"),
    pytest.param(data(model={"classes": ["cat", "d" * 257]}), ["model.classes[1]: is 257 characters long, more than 256; shorten it"], id="class-name-too-long"),
    pytest.param(data(model={"classes": ["c"] * 10_001}), ["model.classes: has 10001 entries, more than 10000"], id="too-many-classes"),
    pytest.param(data(model={"classes": "n" * 4097}), ["model.classes: is 4097 characters long, more than 4096; shorten it"], id="classes-path-too-long"),
    pytest.param(data(model={"classes": 5}), ["model.classes: expected a list of class names or the path of a names file"], id="classes-not-list-or-path"),
    pytest.param(data(model={"classes": ["cat", 5]}), ["model.classes[1]: Input should be a valid string"], id="class-name-not-a-string"),
    pytest.param(data(model={"class_filter": ["c"] * 10_001}), ["model.class_filter: has 10001 entries, more than 10000"], id="too-many-filter-names"),
    pytest.param(data(model={"class_filter": ["f" * 300]}), ["model.class_filter[0]: is 300 characters long, more than 256; shorten it"], id="filter-name-too-long"),
    pytest.param(data(model={"name": "torchscript", "path": "p" * 5000}), ["model.path: is 5000 characters long, more than 4096; shorten it"], id="model-path-too-long"),
    pytest.param(data(model={"name": "torchvision", "path": "w.pt", "classes": ["a"], "arch": "x" * 200}), ["model.arch: is 200 characters long, more than 128; shorten it"], id="arch-too-long"),
]  # fmt: skip


@pytest.mark.parametrize(("value", "problems"), ECHO_CASES)
def test_echoed_values_are_clipped(value: dict, problems: list[str]):
    got = parse_problems(value)
    assert got == problems
    assert all(len(p) < 400 and "\n" not in p for p in got)


def test_good_classes_and_filter():
    spec = parse_run(data(model={"classes": ["c"] * 10_000, "class_filter": ["c" * 256]}))
    assert len(spec.model.classes) == 10_000
    assert parse_run(data(model={"classes": "names.txt"})).model.classes == "names.txt"
    assert parse_run(data(model={"classes": None})).model.classes is None


def test_spec_with_classes_survives_a_json_round_trip():
    spec = parse_run(data(model={"classes": ["cat", "dog"], "class_filter": ["dog"]}))
    assert RunSpec.model_validate_json(spec.model_dump_json()) == spec
    assert "classes" in str(RunSpec.model_json_schema())


def test_huge_string_in_a_file_is_clipped(tmp_path: Path):
    text = HEADER + f"sources:\n  - {{id: '{'i' * 900_000}', uri: 'synthetic://shapes'}}\n"
    (problem,) = problems_of(write(tmp_path, text))
    assert problem == (
        f"sources[0].id: {_short('i' * 900_000, 72)} is not a valid id "
        "(letters, digits, '_', '.', '-'; at most 64)"
    )


# --- 3. symlink loops and other unresolvable paths -----------------------------------------


@pytest.fixture
def loop(tmp_path: Path) -> Path:
    """``tmp_path/loop.mp4`` -> ``loop2.mp4`` -> ``loop.mp4``."""
    os.symlink(tmp_path / "loop2.mp4", tmp_path / "loop.mp4")
    os.symlink(tmp_path / "loop.mp4", tmp_path / "loop2.mp4")
    return tmp_path / "loop.mp4"


def spec_of(**overrides: object) -> RunSpec:
    return parse_run(data(**overrides), env={})


def resolve_problems(spec: RunSpec, base: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        resolve_paths(spec, base)
    return info.value.problems


def test_symlink_loop_source(tmp_path: Path, loop: Path):
    spec = spec_of(
        sources=[{"id": "a", "uri": "synthetic://shapes"}, {"id": "b", "uri": "loop.mp4"}]
    )
    assert resolve_problems(spec, tmp_path) == [
        f"sources[1].uri: cannot resolve {tmp_path / 'loop.mp4'}: symbolic link loop"
    ]


def test_symlink_loop_file_uri_and_directory_loop(tmp_path: Path, loop: Path):
    os.symlink(tmp_path / "d2", tmp_path / "d1")
    os.symlink(tmp_path / "d1", tmp_path / "d2")
    spec = spec_of(
        sources=[
            {"id": "a", "uri": f"file://{loop}"},
            {"id": "b", "uri": "d1/clip.mp4"},
        ]
    )
    assert resolve_problems(spec, tmp_path) == [
        f"sources[0].uri: cannot resolve {loop}: symbolic link loop",
        f"sources[1].uri: cannot resolve {tmp_path / 'd1' / 'clip.mp4'}: symbolic link loop",
    ]


def test_symlink_loop_model_files_and_output_dir(tmp_path: Path, loop: Path):
    spec = spec_of(
        output_dir="loop.mp4/out",
        model={"name": "torchscript", "path": str(loop), "classes": "loop.mp4"},
    )
    assert resolve_problems(spec, tmp_path) == [
        f"model.path: cannot resolve {loop}: symbolic link loop",
        f"model.classes: cannot resolve {loop}: symbolic link loop",
        f"output_dir: cannot resolve {tmp_path / 'loop.mp4' / 'out'}: symbolic link loop",
    ]


def test_output_dir_loop_alone(tmp_path: Path, loop: Path):
    assert resolve_problems(spec_of(output_dir=str(loop)), tmp_path) == [
        f"output_dir: cannot resolve {loop}: symbolic link loop"
    ]


def test_nul_byte_in_a_path(tmp_path: Path):
    spec = spec_of(sources=[{"id": "a", "uri": "clip\x00.mp4"}])
    shown = repr(str(tmp_path / "clip\x00.mp4"))
    assert resolve_problems(spec, tmp_path) == [
        f"sources[0].uri: cannot resolve {shown}: embedded null byte"
    ]


def test_long_missing_path_is_clipped(tmp_path: Path):
    spec = spec_of(sources=[{"id": "a", "uri": "/" + "d" * 4000}])
    assert resolve_problems(spec, tmp_path) == [
        f"sources[0].uri: cannot read /{'d' * 299}… (4001 chars): File name too long"
    ]


def test_good_symlink_is_followed(tmp_path: Path):
    (tmp_path / "real.mp4").write_bytes(b"x")
    os.symlink(tmp_path / "real.mp4", tmp_path / "link.mp4")
    resolved = resolve_paths(spec_of(sources=[{"id": "a", "uri": "link.mp4"}]), tmp_path)
    assert resolved.sources[0].uri == f"file://{(tmp_path / 'real.mp4').resolve()}"


# --- 4. names that collide -----------------------------------------------------------------

RESERVED = "ends with '{suffix}', which vsa reserves for video segments; choose another id"

ID_CASES = [
    pytest.param(["cam1", "cam1.part2"], ["sources[1].id: 'cam1.part2' " + RESERVED.format(suffix=".part2")], id="part2"),
    pytest.param(["cam1.PART12"], ["sources[0].id: 'cam1.PART12' " + RESERVED.format(suffix=".PART12")], id="any-case"),
    pytest.param(["a.Part1"], ["sources[0].id: 'a.Part1' " + RESERVED.format(suffix=".Part1")], id="part1"),
    pytest.param(["cam1", "Cam1"], ["sources[1].id: duplicate id 'Cam1' (also sources[0] 'cam1': ids that differ only by case name the same files on case-insensitive filesystems)"], id="case-only"),
    pytest.param(["a", "b", "B.x", "b.X"], ["sources[3].id: duplicate id 'b.X' (also sources[2] 'B.x': ids that differ only by case name the same files on case-insensitive filesystems)"], id="case-only-later"),
    pytest.param(["cam1", "cam1"], ["sources[1].id: duplicate id 'cam1' (also sources[0])"], id="exact-duplicate"),
    pytest.param(["cam1", "cam1.part", "cam1.part2x", "cam1.parts2", "part2", "cam1part2", "x.part2.y"], [], id="near-misses-are-fine"),
    pytest.param(["report", "a", "a.mp4", "a.jsonl", "x.part"], [], id="tricky-but-fine"),
]  # fmt: skip


@pytest.mark.parametrize(("ids", "problems"), ID_CASES)
def test_ids_that_collide(ids: list[str], problems: list[str]):
    value = data(
        sources=[{"id": i, "uri": f"synthetic://shapes?seed={n}"} for n, i in enumerate(ids)]
    )
    if problems:
        assert parse_problems(value) == problems
    else:
        assert [s.id for s in parse_run(value, env={}).sources] == ids


def test_output_names_of_tricky_ids_are_distinct():
    ids = ["a", "a.mp4", "a.jsonl", "report", "x.part", "cam1", "cam1.part", "part2"]
    spec = spec_of(sources=[{"id": i, "uri": "synthetic://shapes"} for i in ids])
    names = output_names(spec)
    assert names[:4] == ["a.mp4", "a.part2.mp4", "a.part3.mp4", "a.jsonl"]
    assert names[-2:] == ["report.json", "report.png"]
    assert len(names) == len(ids) * 4 + 2
    assert len({n.lower() for n in names}) == len(names)  # distinct even ignoring case


@pytest.mark.parametrize(
    ("sinks", "segments", "expected"),
    [
        ([{"type": "video"}], 1, ["c.mp4", "report.json", "report.png"]),
        ([{"type": "jsonl"}], 5, ["c.jsonl", "report.json", "report.png"]),
        (
            [{"type": "jsonl"}, {"type": "video"}],
            2,
            ["c.mp4", "c.part2.mp4", "c.jsonl", "report.json", "report.png"],
        ),
    ],
)
def test_output_names_follow_the_sinks(sinks: list, segments: int, expected: list[str]):
    spec = spec_of(sources=[{"id": "c", "uri": "synthetic://shapes"}], sinks=sinks)
    assert output_names(spec, segments=segments) == expected


# --- 5. synthetic frames and max_frame_pixels ----------------------------------------------

PIXEL_CASES = [
    pytest.param("synthetic://shapes?width=7680&height=4320", {}, ["sources[0].uri: synthetic frames 7680x4320 (33177600 pixels) are larger than max_frame_pixels 8294400; raise max_frame_pixels or lower width/height"], id="8k-default-limit"),
    pytest.param("synthetic://shapes?width=3842&height=2160", {}, ["sources[0].uri: synthetic frames 3842x2160 (8298720 pixels) are larger than max_frame_pixels 8294400; raise max_frame_pixels or lower width/height"], id="just-over"),
    pytest.param("synthetic://shapes?width=640&height=360", {"max_frame_pixels": 640 * 358}, ["sources[0].uri: synthetic frames 640x360 (230400 pixels) are larger than max_frame_pixels 229120; raise max_frame_pixels or lower width/height"], id="lowered-limit"),
    pytest.param("synthetic://shapes?width=3840&height=2160", {}, [], id="4k-exactly"),
    pytest.param("synthetic://shapes?width=7680&height=4320", {"max_frame_pixels": 7680 * 4320}, [], id="8k-raised-limit"),
    pytest.param("synthetic://shapes", {"max_frame_pixels": 640 * 360}, [], id="defaults"),
]  # fmt: skip


@pytest.mark.parametrize(("uri", "extra", "problems"), PIXEL_CASES)
def test_synthetic_frames_respect_max_frame_pixels(uri: str, extra: dict, problems: list[str]):
    value = data(sources=[{"id": "cam1", "uri": uri, **extra}])
    if problems:
        assert parse_problems(value) == problems
    else:
        assert parse_run(value, env={}).sources[0].uri == uri
