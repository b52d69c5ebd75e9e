"""Command-line arguments and client checks that need no cluster: `vsa stop --timeout`,
`vsa submit --overwrite`, a closed stdout pipe, and how a refused token is recognised."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest

from vsa import cli
from vsa.cli import build_parser, main
from vsa.errors import VsaError

REPO = Path(__file__).resolve().parents[2]

RUN_FILE = (
    "name: r1\n"
    "output_dir: out\n"
    "sources:\n"
    "  - {id: cam1, uri: 'synthetic://shapes?seed=1'}\n"
    "  - {id: cam2, uri: 'synthetic://shapes?seed=2'}\n"
)


@pytest.fixture
def run_file(tmp_path: Path) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(RUN_FILE)
    return path


# --- vsa stop --timeout ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "value", ["0", "-1", "-0.5", "nan", "NaN", "inf", "-inf", "3601", "abc", ""]
)
def test_stop_timeout_out_of_range_or_not_a_number_is_a_usage_error(value, capsys):
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["stop", "r1", "--timeout", value])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert last.startswith("vsa stop: error: argument --timeout: "), err
    assert "Traceback" not in err


@pytest.mark.parametrize("value, seconds", [("0.5", 0.5), ("60", 60.0), ("3600", 3600.0)])
def test_stop_timeout_in_range_is_accepted(value, seconds):
    args = build_parser().parse_args(["stop", "r1", "--timeout", value])
    assert args.timeout == seconds


def test_stop_timeout_defaults_to_a_minute():
    assert build_parser().parse_args(["stop", "r1"]).timeout == 60.0


class FakeRemote:
    def __init__(self, method: str) -> None:
        self.method = method
        self.calls: list[tuple[Any, ...]] = []

    def remote(self, *args: Any) -> tuple[Any, ...]:
        self.calls.append(args)
        return (self.method, *args)


class FakeController:
    def __init__(self) -> None:
        self.stop = FakeRemote("stop")
        self.submit = FakeRemote("submit")
        self.status = FakeRemote("status")


STOPPED_RUN = {
    "id": "r1-1",
    "name": "r1",
    "state": "STOPPED",
    "created_at": 1_700_000_000.0,
    "sources": [{"id": "cam1", "state": "STOPPED"}],
}


def fake_client(monkeypatch: pytest.MonkeyPatch) -> tuple[Any, list[tuple[Any, float]]]:
    """A Client whose controller and ray.get are stand-ins (no Ray)."""
    from vsa import client as client_mod

    calls: list[tuple[Any, float]] = []

    def fake_call(ref: Any, timeout: float = 120.0) -> dict[str, Any]:
        calls.append((ref, timeout))
        if ref[0] == "stop":
            return dict(STOPPED_RUN)
        if ref[0] == "status":
            return {"runs": [dict(STOPPED_RUN)]}
        return {"run_id": "r1-1", "model": {"model": "m", "device": "cpu"}}

    monkeypatch.setattr(client_mod, "_call", fake_call)
    c = object.__new__(client_mod.Client)
    c.controller = FakeController()
    return c, calls


@pytest.mark.parametrize("value", [0, 0.0, -1, float("nan"), float("inf"), -float("inf"), 3601])
def test_client_stop_refuses_a_bad_timeout_before_asking_the_engine(value, monkeypatch):
    c, calls = fake_client(monkeypatch)
    with pytest.raises(VsaError) as exc:
        c.stop("r1", timeout_s=value)
    assert isinstance(exc.value, ValueError)
    assert "timeout" in str(exc.value)
    assert not calls and not c.controller.stop.calls


@pytest.mark.parametrize("value", ["60", None, True])
def test_client_stop_refuses_a_timeout_that_is_not_a_number(value, monkeypatch):
    c, calls = fake_client(monkeypatch)
    with pytest.raises(VsaError):
        c.stop("r1", timeout_s=value)
    assert not calls


def test_client_stop_waits_for_the_engines_worst_case(monkeypatch):
    """The controller may take timeout_s + 15 s (sources inside an open/read): ray.get waits
    timeout_s + 60 s so the client does not give up first."""
    c, calls = fake_client(monkeypatch)
    c.stop("r1", timeout_s=5)
    assert c.controller.stop.calls == [("r1", 5.0)]
    assert calls[0][1] == 65.0
    c.stop("r1")
    assert calls[1][1] == 120.0


# --- typed status: Client.status/run/wait/stop ----------------------------------------------


def test_client_status_run_wait_and_stop_are_typed(monkeypatch):
    from vsa.schema import RunState, RunStatus, SourceState

    c, _ = fake_client(monkeypatch)
    (run,) = c.status()
    assert isinstance(run, RunStatus) and run.state is RunState.STOPPED
    assert run.source("cam1").state is SourceState.STOPPED
    assert c.controller.status.calls == [(None,)]
    assert c.run("r1") == run and c.controller.status.calls[-1] == ("r1",)
    assert c.wait("r1", timeout_s=5) == run  # terminal at once: no polling
    assert c.stop("r1") == run
    assert c.status_dicts("r1") == {"runs": [STOPPED_RUN]}  # the raw answer, no "v"
    assert run.to_dict() == {**STOPPED_RUN, "v": 1}


def test_client_wait_times_out_on_a_run_that_does_not_end(monkeypatch):
    from vsa import client as client_mod

    c, _ = fake_client(monkeypatch)
    live = {**STOPPED_RUN, "state": "UP"}
    monkeypatch.setattr(client_mod, "_call", lambda ref, timeout=120.0: {"runs": [live]})
    with pytest.raises(TimeoutError, match="run r1-1 still UP after"):
        c.wait("r1-1", timeout_s=-1)


def test_client_run_of_an_unknown_run_is_run_not_found(monkeypatch):
    from vsa import client as client_mod
    from vsa.errors import RunNotFound

    c, _ = fake_client(monkeypatch)
    monkeypatch.setattr(client_mod, "_call", lambda ref, timeout=120.0: {"runs": []})
    with pytest.raises(RunNotFound):
        c.run("nope")


def test_a_status_this_client_cannot_read_is_a_vsa_error_naming_why(monkeypatch):
    from vsa import client as client_mod
    from vsa.client import StatusFormatError

    c, _ = fake_client(monkeypatch)
    newer = {**STOPPED_RUN, "v": 2}
    monkeypatch.setattr(client_mod, "_call", lambda ref, timeout=120.0: {"runs": [newer]})
    with pytest.raises(StatusFormatError) as exc:
        c.status()
    assert isinstance(exc.value, VsaError) and isinstance(exc.value, ValueError)
    assert "run 'r1-1': status version 2 is newer" in str(exc.value)

    monkeypatch.setattr(cli, "_client", lambda args, local=False: c)
    assert main(["status"], out=io.StringIO()) == 1  # one line on stderr, no traceback


def test_client_submit_takes_a_run_file_path(monkeypatch, run_file, tmp_path):
    c, _ = fake_client(monkeypatch)
    monkeypatch.chdir(tmp_path)
    assert c.submit(str(run_file))["run_id"] == "r1-1"
    c.submit(run_file, overwrite=True)  # a Path
    (dump1, flag1), (dump2, flag2) = c.controller.submit.calls
    assert dump1 == dump2 and (flag1, flag2) == (False, True)
    assert dump1["output_dir"] == str(tmp_path / "out")  # relative: from the current directory
    assert [s["id"] for s in dump1["sources"]] == ["cam1", "cam2"]


def test_client_submit_refuses_what_is_neither_a_spec_nor_a_path(monkeypatch):
    from vsa.client import InvalidArgument

    c, _ = fake_client(monkeypatch)
    with pytest.raises(InvalidArgument, match="RunSpec or the path of a run file, not dict"):
        c.submit({"name": "r1"})  # type: ignore[arg-type]
    assert not c.controller.submit.calls


def test_client_submit_of_a_bad_run_file_is_a_config_error(monkeypatch, tmp_path):
    from vsa.errors import ConfigError

    c, _ = fake_client(monkeypatch)
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\noutput_dir: o\nsources: []\nextra: 1\n")
    with pytest.raises(ConfigError, match="extra: unknown key"):
        c.submit(bad)
    assert not c.controller.submit.calls


# --- what the CLI prints from typed status ---------------------------------------------------


@pytest.fixture
def cli_with_fake_client(monkeypatch):
    c, _ = fake_client(monkeypatch)
    monkeypatch.setattr(cli, "_client", lambda args, local=False: c)
    return c


def test_status_json_is_the_versioned_wire_form(cli_with_fake_client):
    import json

    out = io.StringIO()
    assert main(["status", "--json"], out=out) == 0
    assert json.loads(out.getvalue()) == {"runs": [{**STOPPED_RUN, "v": 1}]}


def test_stop_json_and_list_json(cli_with_fake_client):
    import json

    out = io.StringIO()
    assert main(["stop", "r1", "--json"], out=out) == 0
    assert json.loads(out.getvalue()) == {**STOPPED_RUN, "v": 1}
    out = io.StringIO()
    assert main(["list", "--json"], out=out) == 0
    assert json.loads(out.getvalue()) == [
        {
            "id": "r1-1",
            "name": "r1",
            "state": "STOPPED",
            "created_at": 1_700_000_000.0,
            "finished_at": None,
        }
    ]


def test_status_list_and_follow_print_tables(cli_with_fake_client):
    out = io.StringIO()
    assert main(["status"], out=out) == 0
    assert out.getvalue().startswith("run r1-1  STOPPED  output ")
    assert out.getvalue().splitlines()[2].split()[:2] == ["cam1", "STOPPED"]
    out = io.StringIO()
    assert main(["list"], out=out) == 0
    assert out.getvalue().startswith("r1-1  STOPPED ") and "1 sources" in out.getvalue()
    out = io.StringIO()
    assert main(["status", "r1", "--follow"], out=out) == 0  # already ended: the final table
    assert out.getvalue().startswith("run r1-1  STOPPED")


# --- vsa submit --overwrite -----------------------------------------------------------------


def test_submit_accepts_overwrite():
    assert build_parser().parse_args(["submit", "run.yaml", "--overwrite"]).overwrite is True
    assert build_parser().parse_args(["submit", "run.yaml"]).overwrite is False


def test_submit_help_explains_overwrite(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["submit", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "--overwrite" in help_text
    assert "replace the outputs of an earlier, finished run in output_dir" in help_text


def test_client_submit_passes_overwrite_to_the_controller(monkeypatch, run_file):
    from vsa.config import load_run

    c, _ = fake_client(monkeypatch)
    spec = load_run(str(run_file))
    c.submit(spec)
    c.submit(spec, overwrite=True)
    (dump1, flag1), (dump2, flag2) = c.controller.submit.calls
    assert dump1 == spec.model_dump() and flag1 is False
    assert dump2 == spec.model_dump() and flag2 is True


@pytest.mark.parametrize("flag, expected", [([], False), (["--overwrite"], True)])
def test_cli_submit_passes_overwrite_through(flag, expected, monkeypatch, run_file):
    seen: list[bool] = []

    class Client:
        def submit(self, spec: Any, overwrite: bool = False) -> dict[str, Any]:
            seen.append(overwrite)
            return {"run_id": "r1-1", "model": {"model": "m", "device": "cpu"}}

    monkeypatch.setattr(cli, "_client", lambda args, local=False: Client())
    out = io.StringIO()
    assert main(["submit", str(run_file), *flag], out=out) == 0
    assert seen == [expected]
    assert out.getvalue().startswith("submitted run r1-1")


# --- a closed stdout pipe -------------------------------------------------------------------


class ClosedPipe(io.StringIO):
    def write(self, s: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")

    def flush(self) -> None:
        raise BrokenPipeError(32, "Broken pipe")


def test_main_exits_141_quietly_when_stdout_is_a_closed_pipe(run_file, capsys):
    assert main(["submit", "--check", str(run_file)], out=ClosedPipe()) == 141
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    assert captured.err == ""


def test_a_closed_pipe_found_only_on_the_final_flush_is_handled_too(run_file, capsys):
    """Writes into a pipe are buffered: the error may come only when the buffer is flushed."""

    class FailsOnFlush(io.StringIO):
        def flush(self) -> None:
            raise BrokenPipeError(32, "Broken pipe")

    assert main(["submit", "--check", str(run_file)], out=FailsOnFlush()) == 141
    assert capsys.readouterr().err == ""


# --- a cluster that refuses the client's token ----------------------------------------------


def _wrapped_like_ray_init(inner: str) -> ConnectionError:
    """What ray.init raises when the GCS answers UNAUTHENTICATED (Ray 2.60): a
    ConnectionError caused by a RuntimeError whose text holds the last traceback."""
    try:
        try:
            raise RuntimeError(
                "Failed to connect to GCS. Last connection error: Traceback (most recent call "
                f'last):\n  File "python/ray/includes/common.pxi", line 119\n{inner}\n'
            )
        except RuntimeError as e:
            raise ConnectionError("Failed to connect to Ray cluster at 10.0.0.1:6379") from e
    except ConnectionError as exc:
        return exc


def test_refused_token_is_recognised_in_what_ray_init_raises():
    from vsa.client import _refused_by_auth

    refused = _wrapped_like_ray_init(
        "ray.exceptions.AuthenticationError: RPC error: InvalidAuthToken: Authentication "
        "token is missing or incorrect."
    )
    assert _refused_by_auth(refused)
    unreachable = _wrapped_like_ray_init("ray.exceptions.RpcError: failed to connect to all")
    assert not _refused_by_auth(unreachable)
    assert not _refused_by_auth(ConnectionError("Could not find any running Ray instance."))


def test_refused_token_message_names_the_address_and_never_the_token(monkeypatch):
    from vsa.client import AuthenticationFailed, _auth_failure

    monkeypatch.setenv("RAY_AUTH_TOKEN", "s3cr3t-token-value")
    exc = _auth_failure("10.0.0.1:6379", has_token=True)
    assert isinstance(exc, AuthenticationFailed) and isinstance(exc, VsaError)
    assert isinstance(exc, PermissionError)
    assert str(exc) == (
        "the Ray cluster at 10.0.0.1:6379 refused this client's token: make ~/.ray/auth_token "
        "(or RAY_AUTH_TOKEN) hold the token the cluster was started with"
    )
    missing = str(_auth_failure("10.0.0.1:6379", has_token=False))
    assert "10.0.0.1:6379" in missing and "has no token" in missing
    assert "s3cr3t" not in str(exc) + missing
