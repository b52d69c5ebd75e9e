"""Host configuration: environment > host file > defaults for the engine's settings, run file >
host file > defaults for a run's reconnect policy; ``vsa config`` says where each value came
from and hides secrets; ``vsa schema`` prints the run file's JSON Schema; ``password_file``
and ``VSA_INPUT_ROOTS``."""

from __future__ import annotations

import contextlib
import io
import json
import signal
from pathlib import Path

import pytest

from vsa import hostconfig, settings
from vsa.cli import main
from vsa.config import ConfigError, load_run, resolve_paths
from vsa.errors import VsaError
from vsa.outputs import check_input_files


@pytest.fixture
def host_file(tmp_path, monkeypatch):
    path = tmp_path / "vsa.yaml"
    monkeypatch.setenv("VSA_CONFIG", str(path))
    for s in hostconfig.SETTINGS:
        monkeypatch.delenv(s.env, raising=False)
    return path


# (environment, host file, expected value, expected origin)
PRECEDENCE = [
    ({}, {}, 19, "default"),
    ({}, {"data_plane_nice": 12}, 12, "file"),
    ({"VSA_DATA_PLANE_NICE": "5"}, {"data_plane_nice": 12}, 5, "env VSA_DATA_PLANE_NICE"),
    ({"VSA_DATA_PLANE_NICE": "5"}, {}, 5, "env VSA_DATA_PLANE_NICE"),
]


@pytest.mark.parametrize(("env", "file", "value", "origin"), PRECEDENCE)
def test_environment_over_host_file_over_default(host_file, monkeypatch, env, file, value, origin):
    host_file.write_text(json.dumps(file))
    for name, v in env.items():
        monkeypatch.setenv(name, v)
    assert settings.data_plane_nice() == value
    row = next(r for r in hostconfig.effective() if r["setting"] == "data_plane_nice")
    assert row["value"] == str(value)
    assert row["from"] == (str(host_file) if origin == "file" else origin)


def test_lists_in_the_host_file_become_path_lists(host_file):
    host_file.write_text("output_roots: [/data/out, /mnt/more]\ninput_roots: [/data/in]\n")
    assert settings.output_roots() == ["/data/out", "/mnt/more"]
    assert settings.input_roots() == ["/data/in"]
    assert settings.state_dir() == Path.home() / ".vsa"


def test_a_changed_host_file_is_read_again(host_file):
    host_file.write_text("max_sources: 10\n")
    assert settings.max_sources() == 10
    host_file.write_text("max_sources: 200\n")
    assert settings.max_sources() == 200


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("max_source: 3\n", "max_source: unknown setting"),
        ("auth_token: abc\n", "auth_token: unknown setting"),  # secrets stay in the environment
        ("output_roots: /data\n", "output_roots: must be a list of absolute paths"),
        ("- a\n- b\n", "must be a mapping of settings"),
        ("state_dir: {a: 1}\n", "state_dir: must be a string or a number"),
        ("reconnect: 5\n", "reconnect: must be a mapping"),
        ("a: [\n", "invalid YAML"),
    ],
)
def test_a_bad_host_file_is_one_clear_error_naming_it(host_file, text, problem):
    host_file.write_text(text)
    with pytest.raises(VsaError) as info:
        settings.max_sources()
    assert str(info.value).startswith(f"{host_file}: ") and problem in str(info.value)


# --- the host file is read like the run file (issue 23, item 10) ----------------------------


def bomb(levels: int) -> str:
    """The "billion laughs" under ``reconnect:``: 425 bytes at 9 levels, 9**9 strings once
    expanded (the issue's 553 bytes took ``vsa config`` to 1.4 GB)."""
    return "reconnect:\n" + "".join(
        f"  {name}: &{name} [{', '.join([f'*{prev}'] * 9 if prev else ['lol'] * 9)}]\n"
        for prev, name in zip([None, *"abcdefgh"], "abcdefghi"[:levels], strict=False)
    )


# (host file, the problems after "<host file>: "): the run file's cases, in a host file
HOSTILE_HOST_FILES = [
    pytest.param(bomb(3), "line 2, column 6: YAML anchors (&a) are not allowed in a host file; write the value out", id="alias-bomb-in-reconnect"),
    pytest.param("reconnect: *r\n", "line 1, column 12: YAML aliases (*r) are not allowed in a host file; write the value out", id="alias-alone"),
    pytest.param("max_sources: 10\nstate_dir: /srv\nmax_sources: 20\n", "line 3: duplicate key 'max_sources' (also on line 1)", id="duplicate-key"),
    pytest.param("reconnect: {max_s: 1, max_s: 2}\n", "line 1: duplicate key 'max_s' (also on line 1)", id="duplicate-key-in-reconnect"),
    pytest.param(b"state_dir: /srv/caf\xe9\n", "line 1: not UTF-8 text; save the host file as UTF-8", id="latin-1"),
    pytest.param("state_dir: " + "[" * 200 + "]" * 200 + "\n", "line 1, column 111: nested deeper than 100 levels; a host file needs a few", id="deep-nesting"),
    pytest.param("state_dir: !!python/object:os.system {}\n", "line 1, column 12: invalid YAML: could not determine a constructor for the tag 'tag:yaml.org,2002:python/object:os.system'", id="python-tag"),
    pytest.param(b"#" + b"x" * (64 * 1024) + b"\n", f"the host file is {64 * 1024 + 2} bytes, more than the limit of 65536 bytes (64 KiB); a host file holds a few settings: check that this is the right file", id="too-big"),
    pytest.param("output_roots: [data/out, /ok, 'x']\n", "output_roots[0]: 'data/out' is relative; give an absolute path; output_roots[2]: 'x' is relative; give an absolute path", id="relative-output-roots"),
    pytest.param("input_roots: [./in]\n", "input_roots[0]: './in' is relative; give an absolute path", id="relative-input-roots"),
    pytest.param("input_roots: ['/a:/b']\n", "input_roots[0]: '/a:/b' holds ':', which separates the roots", id="colon-in-a-root"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "problem"), HOSTILE_HOST_FILES)
def test_the_host_file_has_the_run_files_limits(host_file, text, problem):
    if isinstance(text, bytes):
        host_file.write_bytes(text)
    else:
        host_file.write_text(text)
    for read in (settings.max_sources, hostconfig.effective, hostconfig.run_defaults):
        with pytest.raises(VsaError) as info:
            read()
        assert str(info.value) == f"{host_file}: {problem}"


def test_the_host_file_is_refused_in_bounded_memory(host_file):
    import tracemalloc

    host_file.write_text(bomb(9))
    assert host_file.stat().st_size < 600  # the bomb had 553 bytes
    with pytest.raises(VsaError):  # refused when read, before anything walks its values
        hostconfig.read_host_file(str(host_file))
    tracemalloc.start()
    try:
        with pytest.raises(VsaError, match="YAML anchors"):
            hostconfig.effective()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 5_000_000


def test_the_host_file_at_its_size_limit_is_read(host_file):
    body = b"max_sources: 7\n"
    host_file.write_bytes(
        body + b"#" + b"x" * (hostconfig.MAX_HOST_FILE_BYTES - len(body) - 2) + b"\n"
    )
    assert host_file.stat().st_size == hostconfig.MAX_HOST_FILE_BYTES
    assert settings.max_sources() == 7


def test_the_host_files_limit_is_the_loaders():
    from vsa import yamlsafe

    assert hostconfig.MAX_HOST_FILE_BYTES == yamlsafe.HOST_FILE.max_bytes


@contextlib.contextmanager
def _fails_after(seconds: int, message: str):
    """A blocked system call is a failure after ``seconds`` (SIGALRM), not a hung test."""

    def expired(signum, frame):
        raise AssertionError(message)

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def test_a_host_file_that_is_a_fifo_is_refused_without_opening_it(host_file):
    import os

    os.mkfifo(host_file)  # open() would wait for a writer: every vsa command would hang
    with pytest.raises(VsaError) as info, _fails_after(5, "reading a FIFO host file hung"):
        settings.max_sources()
    assert str(info.value) == f"{host_file}: not a regular file; the host configuration must be one"


def test_absolute_roots_in_the_host_file_are_read(host_file):
    host_file.write_text("output_roots: [/data/out]\ninput_roots: []\n")
    assert settings.output_roots() == ["/data/out"] and settings.input_roots() == []


RUN = {"name": "r", "output_dir": "out", "sources": [{"id": "a", "uri": "rtsp://h/x"}]}


@pytest.mark.parametrize(
    ("block", "problems"),
    [
        ("{max_ss: 60}", ["reconnect.max_ss: unknown key"]),
        ("{policy: sometimes}", ["reconnect.policy: Input should be 'exponential' or 'fixed'"]),
        ("{max_s: 0.5, initial_s: 2}", ["reconnect.max_s: 0.5 is smaller than initial_s 2.0"]),
    ],
)
def test_a_bad_reconnect_block_of_the_host_file_names_the_host_file(
    host_file, tmp_path, block, problems
):
    host_file.write_text(f"reconnect: {block}\n")
    run = tmp_path / "run.yaml"
    run.write_text(json.dumps(RUN))
    with pytest.raises(ConfigError) as info:
        load_run(run, env={})
    assert info.value.source == str(host_file)
    assert info.value.problems == problems
    assert str(run) not in str(info.value)


def test_a_bad_host_file_is_not_reported_as_the_run_files(host_file, tmp_path):
    host_file.write_text("max_sources: 1\nmax_sources: 2\n")
    run = tmp_path / "run.yaml"
    run.write_text(json.dumps(RUN))
    with pytest.raises(ConfigError) as info:
        load_run(run, env={})
    assert str(info.value) == f"{host_file}: line 2: duplicate key 'max_sources' (also on line 1)"


def test_a_named_host_file_must_exist_the_default_one_need_not(tmp_path, monkeypatch):
    monkeypatch.setenv("VSA_CONFIG", str(tmp_path / "missing.yaml"))
    with pytest.raises(VsaError, match="host configuration file not found"):
        settings.max_sources()
    assert hostconfig.read_host_file(str(tmp_path / "missing.yaml")) == {}  # the default path
    monkeypatch.setenv("VSA_CONFIG", "")
    assert hostconfig.host_file_path() is None
    assert settings.max_sources() == 128


def test_the_run_file_over_the_host_file_over_defaults_for_reconnect(host_file, tmp_path):
    host_file.write_text("reconnect: {max_s: 60, initial_s: 2}\n")
    run = tmp_path / "run.yaml"
    base = {"name": "r", "output_dir": str(tmp_path), "sources": [{"id": "a", "uri": "rtsp://h/x"}]}
    run.write_text(json.dumps(base))
    spec = load_run(run)
    assert (spec.reconnect.max_s, spec.reconnect.initial_s) == (60, 2)  # the host's
    run.write_text(json.dumps({**base, "reconnect": {"max_s": 10}}))
    spec = load_run(run)
    assert (spec.reconnect.max_s, spec.reconnect.initial_s) == (10, 2)  # the run's wins
    host_file.write_text("")
    spec = load_run(run)
    assert (spec.reconnect.max_s, spec.reconnect.initial_s) == (10, 1)  # built-in default


def test_vsa_config_shows_origins_and_hides_secrets(host_file, monkeypatch):
    host_file.write_text("state_dir: /var/lib/vsa\nreconnect: {max_s: 60}\n")
    monkeypatch.setenv("RAY_AUTH_TOKEN", "tok-very-secret")
    monkeypatch.setenv("RAY_ADDRESS", "ray://admin:hunter2@10.0.0.5:10001")
    out = io.StringIO()
    assert main(["config"], out) == 0
    text = out.getvalue()
    assert "tok-very-secret" not in text and "hunter2" not in text
    assert "(set, hidden)" in text and "admin:***@" in text
    line = next(x for x in text.splitlines() if x.startswith("state_dir "))
    assert line.split() == ["state_dir", "/var/lib/vsa", str(host_file)]
    out = io.StringIO()
    assert main(["config", "--json"], out) == 0
    rows = {r["setting"]: r for r in json.loads(out.getvalue())["settings"]}
    assert rows["state_dir"]["value"] == "/var/lib/vsa" and rows["state_dir"]["from"] == str(
        host_file
    )
    assert rows["max_sources"]["from"] == "default"
    assert rows["ray_address"]["from"] == "env RAY_ADDRESS"
    assert rows["reconnect"]["value"] == "{'max_s': 60}"


def test_vsa_config_with_a_bad_host_file_exits_1(host_file, capsys):
    host_file.write_text("nope: 1\n")
    assert main(["config"], io.StringIO()) == 1
    assert "nope: unknown setting" in capsys.readouterr().err


def test_vsa_schema_is_the_run_files_json_schema():
    out = io.StringIO()
    assert main(["schema"], out) == 0
    schema = json.loads(out.getvalue())
    assert schema["$schema"].startswith("https://json-schema.org/")
    assert {"name", "output_dir", "sources"} <= set(schema["properties"])
    assert "password_file" in schema["$defs"]["SourceSpec"]["properties"]


# --- password_file -------------------------------------------------------------------------
def _run_with(tmp_path: Path, source: dict) -> Path:
    run = tmp_path / "run.yaml"
    run.write_text(
        json.dumps({"name": "r", "output_dir": str(tmp_path / "o"), "sources": [source]})
    )
    return run


def _secret(path: Path, text: str, mode: int = 0o600) -> Path:
    """A password file as vsa takes it: readable by its owner alone."""
    path.write_text(text)
    path.chmod(mode)
    return path


def test_a_password_file_goes_into_the_uri_and_nowhere_else(tmp_path):
    _secret(tmp_path / "door.pw", "s3cr:t@/x\n")
    run = _run_with(
        tmp_path, {"id": "door", "uri": "rtsp://viewer@10.0.0.7/s1", "password_file": "door.pw"}
    )
    spec = resolve_paths(load_run(run), tmp_path)
    source = spec.sources[0]
    assert source.uri == "rtsp://viewer:s3cr%3At%40%2Fx@10.0.0.7/s1"
    assert source.password_file == str(tmp_path / "door.pw")


@pytest.mark.parametrize(
    ("uri", "content", "problem"),
    [
        ("rtsp://10.0.0.7/s1", "pw\n", "the URI needs a user name"),
        ("rtsp://viewer@10.0.0.7/s1", "\n", "must hold the password on its first line"),
        ("rtsp://viewer@10.0.0.7/s1", None, "No such file"),
    ],
)
def test_a_bad_password_file_is_one_clear_error_without_the_password(
    tmp_path, uri, content, problem
):
    if content is not None:
        _secret(tmp_path / "pw", content)
    run = _run_with(tmp_path, {"id": "door", "uri": uri, "password_file": "pw"})
    with pytest.raises(ConfigError) as info:
        resolve_paths(load_run(run), tmp_path)
    assert "sources[0].password_file" in str(info.value) and problem in str(info.value)


PASSWORD = "s3cret-Pw"


@pytest.mark.parametrize(
    "mode", [0o644, 0o640, 0o604, 0o620, 0o602, 0o666, 0o700 | 0o044], ids=lambda m: f"{m:04o}"
)
def test_a_password_file_other_users_can_read_or_write_is_refused(tmp_path, mode):
    """Like the key file that seals it (vsa.secrets): refused, with the chmod to run."""
    pw = _secret(tmp_path / "door.pw", PASSWORD + "\n", mode)
    run = _run_with(
        tmp_path, {"id": "door", "uri": "rtsp://viewer@10.0.0.7/s1", "password_file": "door.pw"}
    )
    with pytest.raises(ConfigError) as info:
        resolve_paths(load_run(run), tmp_path)
    assert info.value.problems == [
        f"sources[0].password_file: {pw} can be read or written by other users (mode "
        f"{mode:04o}); it holds a camera password, so vsa refuses it: run `chmod 600 {pw}`"
    ]
    assert PASSWORD not in str(info.value)


@pytest.mark.parametrize("mode", [0o600, 0o400], ids=lambda m: f"{m:04o}")
def test_a_password_file_of_its_owner_alone_is_read(tmp_path, mode):
    _secret(tmp_path / "door.pw", PASSWORD + "\n", mode)
    run = _run_with(
        tmp_path, {"id": "door", "uri": "rtsp://viewer@10.0.0.7/s1", "password_file": "door.pw"}
    )
    assert resolve_paths(load_run(run), tmp_path).sources[0].uri == (
        f"rtsp://viewer:{PASSWORD}@10.0.0.7/s1"
    )


@pytest.mark.parametrize("kind", ["fifo", "directory"])
def test_a_password_file_that_is_no_regular_file_is_refused_without_hanging(tmp_path, kind):
    """A FIFO hung `vsa submit` in open() (no writer) or read() (a writer that never ends)."""
    import os

    pw = tmp_path / "door.pw"
    if kind == "fifo":
        os.mkfifo(pw, 0o600)
    else:
        pw.mkdir(mode=0o700)
    run = _run_with(
        tmp_path, {"id": "door", "uri": "rtsp://viewer@10.0.0.7/s1", "password_file": "door.pw"}
    )
    with pytest.raises(ConfigError) as info, _fails_after(5, "reading a FIFO password_file hung"):
        resolve_paths(load_run(run), tmp_path)
    assert info.value.problems == [
        f"sources[0].password_file: {pw} is not a regular file (a FIFO, a device or a "
        "directory); give a file that holds the password"
    ]


def test_a_fifo_password_file_with_a_writer_does_not_hang(tmp_path):
    import os

    pw = tmp_path / "door.pw"
    os.mkfifo(pw, 0o600)
    writer = os.open(pw, os.O_RDWR | os.O_NONBLOCK)  # a writer that never closes
    try:
        os.write(writer, PASSWORD.encode() + b"\n")
        run = _run_with(
            tmp_path,
            {"id": "door", "uri": "rtsp://viewer@10.0.0.7/s1", "password_file": "door.pw"},
        )
        with pytest.raises(ConfigError, match="is not a regular file"), _fails_after(5, "hung"):
            resolve_paths(load_run(run), tmp_path)
    finally:
        os.close(writer)


def test_a_password_file_only_fits_a_network_source(tmp_path):
    run = _run_with(tmp_path, {"id": "a", "uri": "synthetic://shapes", "password_file": "pw"})
    with pytest.raises(ConfigError, match="password_file: only applies to network sources"):
        load_run(run)


# --- input roots ---------------------------------------------------------------------------
def test_file_sources_must_lie_under_the_input_roots(tmp_path):
    inside, outside = tmp_path / "in" / "a.mp4", tmp_path / "elsewhere.mp4"
    check_input_files([("a", str(inside)), ("b", str(outside))], [])  # no roots: anything
    check_input_files([("a", str(inside))], [str(tmp_path / "in")])
    with pytest.raises(VsaError) as info:
        check_input_files(
            [("a", str(inside)), ("b", str(outside)), ("c", str(tmp_path / "in" / ".." / "x"))],
            [str(tmp_path / "in")],
        )
    message = str(info.value)
    assert "VSA_INPUT_ROOTS" in message and "b (" in message and "c (" in message
    assert "a (" not in message


def test_input_roots_must_be_absolute():
    with pytest.raises(VsaError, match="VSA_INPUT_ROOTS must hold absolute paths"):
        settings.input_roots({"VSA_INPUT_ROOTS": "data/in"})
