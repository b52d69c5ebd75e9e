"""Host configuration: environment > host file > defaults for the engine's settings, run file >
host file > defaults for a run's reconnect policy; ``vsa config`` says where each value came
from and hides secrets; ``vsa schema`` prints the run file's JSON Schema; ``password_file``
and ``VSA_INPUT_ROOTS``."""

from __future__ import annotations

import io
import json
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
        ("a: [\n", "cannot read the host configuration"),
    ],
)
def test_a_bad_host_file_is_one_clear_error_naming_it(host_file, text, problem):
    host_file.write_text(text)
    with pytest.raises(VsaError) as info:
        settings.max_sources()
    assert str(info.value).startswith(f"{host_file}: ") and problem in str(info.value)


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


def test_a_password_file_goes_into_the_uri_and_nowhere_else(tmp_path):
    (tmp_path / "door.pw").write_text("s3cr:t@/x\n")
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
        (tmp_path / "pw").write_text(content)
    run = _run_with(tmp_path, {"id": "door", "uri": uri, "password_file": "pw"})
    with pytest.raises(ConfigError) as info:
        resolve_paths(load_run(run), tmp_path)
    assert "sources[0].password_file" in str(info.value) and problem in str(info.value)


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
