"""Runtime control from the command line and ``Client`` (issue 27), no Ray: ``vsa submit
--dry-run`` and an update of an active run, ``vsa source add|remove``, ``vsa pause|resume``,
the plan's rendering, what ``Client`` sends the controller, and that a URI typed in (it may hold
a password) is never printed."""

from __future__ import annotations

import ast
import io
import json
from pathlib import Path
from typing import Any

import pytest

from vsa import cli
from vsa.cli import build_parser, main, plan_summary, plan_text
from vsa.client import CHANGE_RPC_TIMEOUT_S
from vsa.errors import ConfigError, InvalidArgument, RunNotFound, VsaError
from vsa.schema import RunState, RunStatus

REPO = Path(__file__).resolve().parents[2]
SECRET = "hunter2"
CAMERA = f"rtsp://admin:{SECRET}@cam.example/stream?token=abc123"

RUN_FILE = (
    "name: r1\n"
    "output_dir: out\n"
    "sources:\n"
    "  - {id: cam1, uri: 'synthetic://shapes?seed=1'}\n"
    "  - {id: cam2, uri: 'synthetic://shapes?seed=2'}\n"
)


def _state(name: str) -> str:
    """``name`` when this schema has that run state (PAUSED, PENDING come with the controller
    core's change), else UP: the rendering under test is the same."""
    return name if hasattr(RunState, name) else "UP"


def run_dict(state: str = "UP", **extra: Any) -> dict[str, Any]:
    return {
        "id": "r1-1",
        "name": "r1",
        "state": state,
        "created_at": 1_700_000_000.0,
        "output_dir": "/out",
        "sources": [{"id": "cam1", "state": "STREAMING"}],
        **extra,
    }


def plan(*sources: tuple[str, str, list[str]], **extra: Any) -> dict[str, Any]:
    return {
        "run": "r1-1",
        "name": "r1",
        "sources": [{"id": i, "action": a, "changed": c} for i, a, c in sources],
        "engine_swap": False,
        "engine": None,
        "run_changes": [],
        "noop": False,
        **extra,
    }


@pytest.fixture
def run_file(tmp_path: Path) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(RUN_FILE)
    return path


def parse(*argv: str) -> Any:
    return build_parser().parse_args(list(argv))


def usage_error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """The last stderr line of a usage error (exit 2, no traceback)."""
    with pytest.raises(SystemExit) as exc:
        parse(*argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err.strip().splitlines()[-1]


# --- arguments ------------------------------------------------------------------------------


def test_submit_dry_run_flag():
    assert parse("submit", "run.yaml", "--dry-run").dry_run is True
    assert parse("submit", "run.yaml").dry_run is False


def test_source_add_takes_id_uri_fps_set_dry_run_json_and_address():
    args = parse(
        "source",
        "add",
        "r1",
        "--id",
        "cam3",
        "--uri",
        "synthetic://shapes",
        "--fps",
        "5",
        "--set",
        "mode=realtime",
        "--set",
        "reconnect.max_attempts=3",
        "--set",
        "reconnect.initial_delay_s=0.5",
        "--set",
        "lines=[{id: l1, points: [[0, 0], [1, 1]]}]",
        "--set",
        "tracking={}",
        "--set",
        "password_file=",
        "--dry-run",
        "--json",
        "--address",
        "10.0.0.1:6379",
    )
    assert (args.command, args.source_command, args.run) == ("source", "add", "r1")
    assert (args.id, args.uri, args.fps) == ("cam3", "synthetic://shapes", 5.0)
    assert args.set == {
        "mode": "realtime",
        "reconnect": {"max_attempts": 3, "initial_delay_s": 0.5},
        "lines": [{"id": "l1", "points": [[0, 0], [1, 1]]}],
        "tracking": {},
        "password_file": None,
    }
    assert args.dry_run and args.json and args.address == "10.0.0.1:6379"
    assert cli.source_dict(args) == {
        **args.set,
        "id": "cam3",
        "uri": "synthetic://shapes",
        "fps": 5.0,
    }


def test_source_add_defaults():
    args = parse("source", "add", "r1", "--id", "cam3", "--uri", "x.mp4")
    assert args.set is None and args.fps is None and not args.dry_run and not args.json
    assert args.address is None
    assert cli.source_dict(args) == {"id": "cam3", "uri": "x.mp4"}


def test_a_set_value_is_yaml_text_when_quoted():
    args = parse("source", "add", "r1", "--id", "c", "--uri", "u", "--set", "on_end='3'")
    assert args.set == {"on_end": "3"}
    args = parse("source", "add", "r1", "--id", "c", "--uri", "u", "--set", "a=b=c")
    assert args.set == {"a": "b=c"}  # the first '=' splits


@pytest.mark.parametrize(
    "item, message",
    [
        ("mode", "expected KEY=VALUE"),
        ("=3", "expected KEY=VALUE"),
        ("reconnect..max=3", "is not a key"),
        ("reconnect.=3", "is not a key"),
        ("lines=[1", "the value of lines is not valid YAML"),
        ("mode={a: 1", "the value of mode is not valid YAML"),
        ("id=cam9", "set id with --id, not --set"),
        ("uri=x.mp4", "set uri with --uri, not --set"),
        ("fps=3", "set fps with --fps, not --set"),
    ],
)
def test_bad_set_is_a_usage_error_saying_why(item, message, capsys):
    last = usage_error(capsys, "source", "add", "r1", "--id", "c", "--uri", "u", "--set", item)
    assert last.startswith("vsa source add: error: argument --set: "), last
    assert message in last


def test_a_bad_set_value_is_not_quoted_back(capsys):
    last = usage_error(
        capsys, "source", "add", "r1", "--id", "c", "--uri", "u", "--set", f"x=[{SECRET}"
    )
    assert "not valid YAML" in last and SECRET not in last


@pytest.mark.parametrize(
    "items, message",
    [
        (["mode=realtime", "mode=lossless"], "mode is set twice"),
        (["reconnect.max_attempts=1", "reconnect.max_attempts=2"], "reconnect.max_attempts is"),
        (["reconnect=3", "reconnect.max_attempts=2"], "reconnect is set to a value already"),
        (["reconnect.max_attempts=2", "reconnect={}"], "reconnect is set twice"),
    ],
)
def test_a_key_set_twice_is_a_usage_error(items, message, capsys):
    argv = ["source", "add", "r1", "--id", "c", "--uri", "u"]
    for item in items:
        argv += ["--set", item]
    last = usage_error(capsys, *argv)
    assert last.startswith("vsa source add: error: argument --set: ") and message in last


@pytest.mark.parametrize(
    "argv, missing",
    [
        (["source", "add", "r1", "--uri", "u"], "--id"),
        (["source", "add", "r1", "--id", "c"], "--uri"),
        (["source", "add", "--id", "c", "--uri", "u"], "run"),
        (["source", "remove", "r1"], "ID"),
        (["source"], "{add,remove}"),
        (["pause"], "run"),
        (["resume"], "run"),
    ],
)
def test_missing_arguments_are_usage_errors(argv, missing, capsys):
    last = usage_error(capsys, *argv)
    assert "the following arguments are required" in last and missing in last


def test_source_add_fps_must_be_a_number(capsys):
    last = usage_error(capsys, "source", "add", "r1", "--id", "c", "--uri", "u", "--fps", "x")
    assert "argument --fps: invalid float value" in last


def test_source_remove_arguments():
    args = parse("source", "remove", "r1", "cam4")
    assert (args.source_command, args.run, args.source_id) == ("remove", "r1", "cam4")
    assert args.timeout == 60.0 and not args.dry_run and not args.json and args.address is None
    args = parse(
        "source", "remove", "r1", "cam4", "--timeout", "5", "--dry-run", "--json", "--address", "a"
    )
    assert args.timeout == 5.0 and args.dry_run and args.json and args.address == "a"


def test_pause_and_resume_arguments():
    args = parse("pause", "r1")
    assert (args.command, args.run, args.timeout, args.json) == ("pause", "r1", 60.0, False)
    args = parse("pause", "r1", "--timeout", "2.5", "--json", "--address", "a")
    assert (args.timeout, args.json, args.address) == (2.5, True, "a")
    args = parse("resume", "r1", "--address", "a")
    assert (args.command, args.run, args.address, args.json) == ("resume", "r1", "a", False)


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "3601", "abc"])
@pytest.mark.parametrize(
    "argv", [["pause", "r1"], ["source", "remove", "r1", "cam4"]], ids=["pause", "remove"]
)
def test_a_bad_timeout_is_a_usage_error(argv, value, capsys):
    last = usage_error(capsys, *argv, "--timeout", value)
    assert "argument --timeout: " in last


def test_help_lists_the_new_verbs(capsys):
    with pytest.raises(SystemExit):
        parse("--help")
    text = capsys.readouterr().out
    for verb in ("source", "pause", "resume"):
        assert f"    {verb} " in text
    with pytest.raises(SystemExit):
        parse("source", "--help")
    text = capsys.readouterr().out
    assert "    add " in text and "    remove " in text
    assert set(cli.COMMANDS) >= {"source", "pause", "resume"}


# --- the plan -------------------------------------------------------------------------------


def test_plan_text_one_line_per_source_then_the_engine():
    p = plan(
        ("cam1", "keep", []),
        ("cam2", "restart", ["fps", "sinks"]),
        ("cam3", "add", []),
        ("cam4", "remove", []),
    )
    assert plan_text(p) == (
        "plan for run r1-1:\n"
        "  = cam1 keep\n"
        "  ~ cam2 restart (fps, sinks)\n"
        "  + cam3 add\n"
        "  - cam4 remove\n"
        "  engine: keep"
    )


def test_plan_text_engine_swap_and_run_changes():
    p = plan(
        ("cam1", "restart", ["model"]),
        engine_swap=True,
        engine={"from": "yolo11n", "to": "yolo11s"},
        run_changes=["degradation", "batching"],
    )
    assert plan_text(p).splitlines()[-2:] == [
        "  engine: swap yolo11n -> yolo11s",
        "  run: degradation, batching (applied in place)",
    ]


def test_plan_text_of_a_new_run_and_of_no_change():
    new = plan(("cam1", "add", []), ("cam2", "add", []), run=None)
    assert plan_text(new) == "plan for new run r1:\n  + cam1 add\n  + cam2 add\n  engine: keep"
    same = plan(("cam1", "keep", []), noop=True)
    assert plan_text(same) == "plan for run r1-1:\n  = cam1 keep\n  engine: keep\n  no changes"


def test_plan_text_shows_an_action_it_does_not_know():
    assert "  ? cam1 replace" in plan_text(plan(("cam1", "replace", [])))


def test_plan_summary_each_action():
    p = plan(
        ("cam1", "keep", []),
        ("cam2", "restart", ["fps", "sinks"]),
        ("cam3", "add", []),
        ("cam4", "remove", []),
        engine_swap=True,
        engine={"from": "a", "to": "b"},
    )
    assert plan_summary(p, "r1-1") == (
        "updated run r1-1: added cam3; removed cam4; restarted cam2 (fps, sinks); kept cam1; "
        "engine swapped (a -> b)"
    )


def test_plan_summary_leaves_out_empty_parts_and_groups_ids():
    p = plan(("cam1", "add", []), ("cam2", "add", []), ("cam3", "restart", ["uri"]))
    p["sources"].append({"id": "cam4", "action": "restart", "changed": ["fps"]})
    assert plan_summary(p, "r1-1") == (
        "updated run r1-1: added cam1, cam2; restarted cam3 (uri), cam4 (fps)"
    )
    assert plan_summary(plan(("cam1", "remove", [])), None) == "updated run r1-1: removed cam1"
    in_place = plan(("cam1", "keep", []), run_changes=["degradation"])
    assert plan_summary(in_place, "r1-1") == (
        "updated run r1-1: kept cam1; changed in place: degradation"
    )


def test_plan_summary_of_no_change():
    assert plan_summary(plan(("cam1", "keep", []), noop=True), "r1-1") == (
        "updated run r1-1: no changes"
    )


# --- the commands, with a stand-in client -----------------------------------------------------


class FakeClient:
    """What the commands call; records the calls, answers what it is given."""

    def __init__(self, answer: Any = None, error: Exception | None = None) -> None:
        self.answer, self.error = answer, error
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    def _do(self, name: str, *args: Any, **kwargs: Any) -> Any:
        self.calls.append((name, args, kwargs))
        if self.error is not None:
            raise self.error
        return self.answer

    def submit(self, spec: Any, overwrite: bool = False, **kwargs: Any) -> Any:
        return self._do("submit", spec, overwrite=overwrite, **kwargs)

    def add_source(self, run: str, source: Any, dry_run: bool = False) -> Any:
        return self._do("add_source", run, source, dry_run=dry_run)

    def remove_source(self, run: str, source_id: str, timeout_s=60.0, dry_run=False) -> Any:
        return self._do("remove_source", run, source_id, timeout_s=timeout_s, dry_run=dry_run)

    def pause(self, run: str, timeout_s: float = 60.0) -> RunStatus:
        return RunStatus.from_dict(self._do("pause", run, timeout_s=timeout_s))

    def resume(self, run: str) -> RunStatus:
        return RunStatus.from_dict(self._do("resume", run))


def run_cli(monkeypatch, client: Any, *argv: str) -> tuple[int, str]:
    seen: list[Any] = []

    def make(args, local=False):
        seen.append(args)
        return client

    monkeypatch.setattr(cli, "_client", make)
    out = io.StringIO()
    code = main(list(argv), out=out)
    return code, out.getvalue()


def test_submit_dry_run_prints_the_plan_and_asks_for_a_dry_run(monkeypatch, run_file):
    answer = {
        "run_id": "r1-1",
        "plan": plan(("cam1", "keep", []), ("cam2", "add", [])),
        "applied": False,
    }
    client = FakeClient(answer)
    code, out = run_cli(monkeypatch, client, "submit", str(run_file), "--dry-run")
    assert code == 0
    assert out == (
        "plan for run r1-1:\n  = cam1 keep\n  + cam2 add\n  engine: keep\n"
        "dry run: nothing was changed\n"
    )
    ((name, (spec,), kwargs),) = client.calls
    assert name == "submit" and kwargs == {"overwrite": False, "dry_run": True}
    assert [s.id for s in spec.sources] == ["cam1", "cam2"]


def test_submit_dry_run_of_a_new_run_and_its_json(monkeypatch, run_file):
    answer = {"run_id": None, "plan": plan(("cam1", "add", []), run=None), "applied": False}
    code, out = run_cli(monkeypatch, FakeClient(answer), "submit", str(run_file), "--dry-run")
    assert code == 0 and out.startswith("plan for new run r1:\n  + cam1 add\n")
    code, out = run_cli(
        monkeypatch, FakeClient(answer), "submit", str(run_file), "--dry-run", "--json"
    )
    assert code == 0 and json.loads(out) == answer


def test_submit_dry_run_does_not_follow(monkeypatch, run_file):
    answer = {"run_id": "r1-1", "plan": plan(("cam1", "keep", []), noop=True), "applied": False}
    monkeypatch.setattr(cli, "follow", lambda *a, **k: pytest.fail("followed a dry run"))
    code, out = run_cli(monkeypatch, FakeClient(answer), "submit", str(run_file), "--dry-run", "-f")
    assert code == 0 and out.endswith("  no changes\ndry run: nothing was changed\n")


def test_submit_to_an_active_run_prints_what_was_updated(monkeypatch, run_file):
    p = plan(("cam1", "keep", []), ("cam2", "restart", ["fps"]), ("cam9", "remove", []))
    answer = {
        "run_id": "r1-1",
        "model": {"model": "m", "device": "cpu"},
        "plan": p,
        "applied": True,
    }
    client = FakeClient(answer)
    code, out = run_cli(monkeypatch, client, "submit", str(run_file), "--overwrite")
    assert code == 0
    assert out == "updated run r1-1: removed cam9; restarted cam2 (fps); kept cam1\n"
    assert client.calls[0][2] == {"overwrite": True}  # no dry_run sent for a plain submit
    noop = {**answer, "plan": plan(("cam1", "keep", []), noop=True)}
    code, out = run_cli(monkeypatch, FakeClient(noop), "submit", str(run_file))
    assert out == "updated run r1-1: no changes\n"


def test_submit_of_a_new_run_prints_as_before_and_pending_says_why(monkeypatch, run_file):
    model = {"model": "m", "device": "cuda:0"}
    waiting = {"run_id": "r1-1", "model": model, "state": "WAITING", "reason": None}
    code, out = run_cli(monkeypatch, FakeClient(waiting), "submit", str(run_file))
    assert code == 0 and out.startswith("submitted run r1-1: 2 sources, model m on cuda:0, ")
    why = "model m needs 9.0 GiB, 2.1 GiB free on cuda:0 beside yolo11x"
    pending = {**waiting, "state": "PENDING", "reason": why}
    code, out = run_cli(monkeypatch, FakeClient(pending), "submit", str(run_file))
    assert code == 0
    assert out.startswith(f"submitted run r1-1: PENDING ({why}), it starts by itself")
    assert "2 sources, model m on cuda:0" in out
    code, out = run_cli(monkeypatch, FakeClient(pending), "submit", str(run_file), "--json")
    assert json.loads(out) == pending


def test_source_add_sends_the_source_and_prints_one_line(monkeypatch):
    p = plan(("cam1", "keep", []), ("cam3", "add", []))
    client = FakeClient({"run_id": "r1-1", "plan": p, "applied": True})
    code, out = run_cli(
        monkeypatch,
        client,
        "source",
        "add",
        "r1",
        "--id",
        "cam3",
        "--uri",
        "synthetic://shapes",
        "--fps",
        "5",
        "--set",
        "mode=realtime",
    )
    assert code == 0 and out == "added cam3 to run r1-1\n"
    ((name, (run, source), kwargs),) = client.calls
    assert (name, run, kwargs) == ("add_source", "r1", {"dry_run": False})
    assert source == {"mode": "realtime", "id": "cam3", "uri": "synthetic://shapes", "fps": 5.0}


def test_source_add_dry_run_prints_the_plan(monkeypatch):
    p = plan(("cam1", "keep", []), ("cam3", "add", []))
    client = FakeClient({"run_id": "r1-1", "plan": p, "applied": False})
    argv = ["source", "add", "r1", "--id", "cam3", "--uri", "synthetic://s", "--dry-run"]
    code, out = run_cli(monkeypatch, client, *argv)
    assert code == 0
    assert out == (
        "plan for run r1-1:\n  = cam1 keep\n  + cam3 add\n  engine: keep\n"
        "dry run: nothing was changed\n"
    )
    assert client.calls[0][2] == {"dry_run": True}
    code, out = run_cli(monkeypatch, client, *argv, "--json")
    assert json.loads(out) == client.answer


def test_source_add_that_changed_more_prints_the_summary(monkeypatch):
    p = plan(("cam1", "restart", ["batching"]), ("cam3", "add", []))
    client = FakeClient({"run_id": "r1-1", "plan": p, "applied": True})
    code, out = run_cli(monkeypatch, client, "source", "add", "r1", "--id", "cam3", "--uri", "u")
    assert out == "updated run r1-1: added cam3; restarted cam1 (batching)\n"


def test_source_remove(monkeypatch):
    p = plan(("cam1", "keep", []), ("cam4", "remove", []))
    client = FakeClient({"run_id": "r1-1", "plan": p, "applied": True})
    code, out = run_cli(monkeypatch, client, "source", "remove", "r1", "cam4", "--timeout", "5")
    assert code == 0 and out == "removed cam4 from run r1-1\n"
    assert client.calls == [("remove_source", ("r1", "cam4"), {"timeout_s": 5.0, "dry_run": False})]
    client.answer = {**client.answer, "applied": False}
    code, out = run_cli(monkeypatch, client, "source", "remove", "r1", "cam4", "--dry-run")
    assert out.startswith("plan for run r1-1:\n  = cam1 keep\n  - cam4 remove\n")
    assert client.calls[-1] == (
        "remove_source",
        ("r1", "cam4"),
        {"timeout_s": 60.0, "dry_run": True},
    )
    code, out = run_cli(monkeypatch, client, "source", "remove", "r1", "cam4", "--json")
    assert json.loads(out) == client.answer


def test_pause_and_resume_print_the_runs_table(monkeypatch):
    paused = run_dict(_state("PAUSED"), reason="paused by the user")
    client = FakeClient(paused)
    code, out = run_cli(monkeypatch, client, "pause", "r1", "--timeout", "7")
    assert code == 0 and client.calls == [("pause", ("r1",), {"timeout_s": 7.0})]
    assert out.startswith(f"run r1-1  {_state('PAUSED')}  output /out")
    assert "  why: paused by the user" in out
    code, out = run_cli(monkeypatch, client, "pause", "r1", "--json")
    assert json.loads(out) == {**paused, "v": 1}
    client = FakeClient(run_dict("UP"))
    code, out = run_cli(monkeypatch, client, "resume", "r1")
    assert code == 0 and client.calls == [("resume", ("r1",), {})]
    assert out.startswith("run r1-1  UP  output /out")
    code, out = run_cli(monkeypatch, client, "resume", "r1", "--json")
    assert json.loads(out)["state"] == "UP"


def test_the_address_reaches_the_client(monkeypatch):
    seen: list[Any] = []
    client = FakeClient(run_dict("UP"))
    monkeypatch.setattr(cli, "_client", lambda args, local=False: seen.append(args) or client)
    assert main(["resume", "r1", "--address", "10.0.0.1:6379"], out=io.StringIO()) == 0
    assert seen[0].address == "10.0.0.1:6379"


@pytest.mark.parametrize("state", ["PAUSED", "PENDING"])
def test_status_and_list_show_the_new_states_and_why(state, monkeypatch):
    if not hasattr(RunState, state):
        pytest.skip(f"RunState has no {state} yet (the controller core's change adds it)")
    run = run_dict(state, reason="model m does not fit beside yolo11x")
    monkeypatch.setattr(
        cli.StatusReader, "__init__", lambda self, args, client=None, local=False: None
    )
    monkeypatch.setattr(
        cli.StatusReader, "status_dicts", lambda self, run_=None, strict=False: {"runs": [run]}
    )
    out = io.StringIO()
    assert main(["status"], out=out) == 0
    assert out.getvalue().startswith(f"run r1-1  {state}  ")
    assert "  why: model m does not fit beside yolo11x" in out.getvalue()
    out = io.StringIO()
    assert main(["list"], out=out) == 0
    assert out.getvalue().startswith(f"r1-1  {state:<8}  ")


# --- errors go through main's one path ------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["source", "add", "r1", "--id", "cam3", "--uri", "u"],
        ["source", "remove", "r1", "cam3"],
        ["pause", "r1"],
        ["resume", "r1"],
    ],
)
def test_engine_errors_are_one_line_and_exit_1(argv, monkeypatch, capsys):
    client = FakeClient(error=RunNotFound("no run with id or name 'r1' (see `vsa list`)"))
    code, out = run_cli(monkeypatch, client, *argv)
    err = capsys.readouterr().err
    assert code == 1 and out == ""
    assert err == "vsa: error: no run with id or name 'r1' (see `vsa list`)\n"


def test_a_source_the_client_refuses_exits_2_naming_the_field(monkeypatch, capsys):
    c, calls = real_client(monkeypatch)
    code, out = run_cli(
        monkeypatch, c, "source", "add", "r1", "--id", "cam3", "--uri", "u.mp4", "--set", "nope=1"
    )
    err = capsys.readouterr().err
    assert code == 2 and out == "" and not calls
    assert err.startswith("vsa: invalid source\n")
    assert "nope: unknown key" in err


# --- Client: what it sends ------------------------------------------------------------------


class FakeRemote:
    def __init__(self, method: str) -> None:
        self.method = method
        self.calls: list[tuple[Any, ...]] = []

    def remote(self, *args: Any) -> tuple[Any, ...]:
        self.calls.append(args)
        return (self.method, *args)


class FakeController:
    def __init__(self) -> None:
        for name in ("submit", "add_source", "remove_source", "pause", "resume"):
            setattr(self, name, FakeRemote(name))


def real_client(monkeypatch, answer: Any = None) -> tuple[Any, list[tuple[Any, float]]]:
    """A real ``Client`` whose controller and ray.get are stand-ins (no Ray)."""
    from vsa import client as client_mod

    calls: list[tuple[Any, float]] = []

    def fake_call(ref: Any, timeout: float = 120.0) -> Any:
        calls.append((ref, timeout))
        if answer is not None:
            return answer
        if ref[0] in ("pause", "resume"):
            return run_dict(_state("PAUSED") if ref[0] == "pause" else "UP")
        return {"run_id": "r1-1", "plan": plan(("cam3", "add", [])), "applied": True}

    monkeypatch.setattr(client_mod, "_call", fake_call)
    c = object.__new__(client_mod.Client)
    c.controller = FakeController()
    return c, calls


def test_client_submit_sends_dry_run_only_when_asked(monkeypatch, run_file, tmp_path):
    c, calls = real_client(monkeypatch)
    monkeypatch.chdir(tmp_path)
    c.submit(run_file)
    c.submit(run_file, overwrite=True, dry_run=True)
    first, second = c.controller.submit.calls
    assert [t for _, t in calls] == [CHANGE_RPC_TIMEOUT_S] * 2
    assert first[1:] == (False,)
    assert second[1:] == (True, True) and second[0] == first[0]


def test_client_add_source_validates_and_makes_a_relative_file_absolute(monkeypatch, tmp_path):
    c, calls = real_client(monkeypatch)
    (tmp_path / "clips").mkdir()
    (tmp_path / "clips" / "a.mp4").write_bytes(b"")
    monkeypatch.chdir(tmp_path)
    answer = c.add_source("r1", {"id": "cam3", "uri": "clips/a.mp4", "fps": 5})
    assert answer["applied"] is True
    ((run, source, dry_run),) = c.controller.add_source.calls
    assert (run, dry_run) == ("r1", False)
    assert source["uri"] == f"file://{tmp_path.resolve() / 'clips' / 'a.mp4'}"
    assert source["fps"] == 5.0 and source["id"] == "cam3"
    assert calls[-1][1] == CHANGE_RPC_TIMEOUT_S
    c.add_source("r1", {"id": "cam4", "uri": "file://clips/a.mp4"}, dry_run=True)
    run, source, dry_run = c.controller.add_source.calls[-1]
    assert source["uri"] == f"file://{tmp_path.resolve() / 'clips' / 'a.mp4'}" and dry_run is True


def test_cli_source_add_resolves_a_relative_file_from_the_current_directory(monkeypatch, tmp_path):
    c, _ = real_client(monkeypatch)
    (tmp_path / "a.mp4").write_bytes(b"")
    monkeypatch.chdir(tmp_path)
    code, out = run_cli(monkeypatch, c, "source", "add", "r1", "--id", "cam3", "--uri", "a.mp4")
    assert code == 0 and out == "added cam3 to run r1-1\n"
    ((_, source, _),) = c.controller.add_source.calls
    assert source["uri"] == f"file://{tmp_path.resolve() / 'a.mp4'}"


def test_client_add_source_takes_a_source_spec_and_expands_env(monkeypatch, tmp_path):
    from vsa.config import SourceSpec

    c, _ = real_client(monkeypatch)
    spec = SourceSpec(id="cam3", uri="synthetic://shapes?seed=3")
    c.add_source("r1", spec)
    assert c.controller.add_source.calls[-1][1] == spec.model_dump()
    monkeypatch.setenv("VSA_TEST_CAM", "synthetic://shapes?seed=4")
    c.add_source("r1", {"id": "cam4", "uri": "${VSA_TEST_CAM}"})
    assert c.controller.add_source.calls[-1][1]["uri"] == "synthetic://shapes?seed=4"


@pytest.mark.parametrize(
    "source, problem",
    [
        ({"id": "cam3", "uri": "synthetic://shapes", "fps": 0}, "fps: "),
        ({"id": "cam3", "uri": "synthetic://shapes", "bogus": 1}, "bogus: unknown key"),
        ({"id": "bad id!", "uri": "synthetic://shapes"}, "is not a valid id"),
        ({"uri": "synthetic://shapes"}, "id: required field is missing"),
        ({"id": "cam3", "uri": "missing.mp4"}, "uri: file not found: "),
        ({"id": "cam3", "uri": "${VSA_TEST_UNSET_VAR}"}, "'VSA_TEST_UNSET_VAR' is not set"),
    ],
)
def test_client_add_source_refuses_a_bad_source_before_asking_the_engine(
    source, problem, monkeypatch, tmp_path
):
    c, calls = real_client(monkeypatch)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("VSA_TEST_UNSET_VAR", raising=False)
    with pytest.raises(ConfigError) as exc:
        c.add_source("r1", source)
    assert problem in str(exc.value)
    assert not calls and not c.controller.add_source.calls


def test_client_add_source_refuses_what_is_not_a_source(monkeypatch):
    c, calls = real_client(monkeypatch)
    with pytest.raises(InvalidArgument, match="SourceSpec or a mapping"):
        c.add_source("r1", "rtsp://cam/stream")  # type: ignore[arg-type]
    assert not calls


def test_client_add_source_reads_a_password_file_from_the_current_directory(monkeypatch, tmp_path):
    c, _ = real_client(monkeypatch)
    secret = tmp_path / "cam.pass"
    secret.write_text(SECRET + "\n")
    secret.chmod(0o600)
    monkeypatch.chdir(tmp_path)
    c.add_source("r1", {"id": "cam3", "uri": "rtsp://viewer@cam/s", "password_file": "cam.pass"})
    source = c.controller.add_source.calls[-1][1]
    assert source["uri"] == f"rtsp://viewer:{SECRET}@cam/s"
    assert source["password_file"] == str(secret.resolve())


def test_client_remove_source_checks_the_timeout_and_waits_for_the_drain(monkeypatch):
    c, calls = real_client(monkeypatch)
    for bad in (0, -1, float("nan"), 3601, "5"):
        with pytest.raises(InvalidArgument):
            c.remove_source("r1", "cam4", timeout_s=bad)
    assert not calls
    c.remove_source("r1", "cam4", timeout_s=5)
    c.remove_source("r1", "cam4", dry_run=True)
    assert c.controller.remove_source.calls == [
        ("r1", "cam4", 5.0, False),
        ("r1", "cam4", 60.0, True),
    ]
    assert [t for _, t in calls] == [65.0, 120.0]


def test_client_pause_and_resume_are_typed(monkeypatch):
    c, calls = real_client(monkeypatch)
    for bad in (0, float("inf"), None):
        with pytest.raises(InvalidArgument):
            c.pause("r1", timeout_s=bad)
    assert not calls
    run = c.pause("r1", timeout_s=10)
    assert isinstance(run, RunStatus) and run.state.value == _state("PAUSED")
    assert c.controller.pause.calls == [("r1", 10.0)] and calls[-1][1] == 70.0
    run = c.resume("r1")
    assert isinstance(run, RunStatus) and run.state is RunState.UP
    assert c.controller.resume.calls == [("r1",)]
    assert calls[-1][1] == CHANGE_RPC_TIMEOUT_S  # a resumed run loads its model again


def test_a_status_the_client_cannot_read_after_pause_is_a_vsa_error(monkeypatch):
    c, _ = real_client(monkeypatch, answer={**run_dict("UP"), "v": 99})
    with pytest.raises(VsaError, match="cannot read the engine's status"):
        c.pause("r1")


# --- a URI typed in is never printed --------------------------------------------------------


@pytest.mark.parametrize("extra", [[], ["--dry-run"], ["--json"]])
def test_a_camera_password_is_never_printed(extra, monkeypatch, capsys):
    c, _ = real_client(monkeypatch)
    code, out = run_cli(
        monkeypatch, c, "source", "add", "r1", "--id", "cam3", "--uri", CAMERA, *extra
    )
    err = capsys.readouterr().err
    assert code == 0
    assert c.controller.add_source.calls[-1][1]["uri"] == CAMERA  # sent, not shown
    assert SECRET not in out + err and "abc123" not in out + err and "rtsp://" not in out


def test_a_camera_password_in_an_error_is_masked(monkeypatch, capsys):
    client = FakeClient(error=VsaError(f"source cam3 already exists with {CAMERA}"))
    code, out = run_cli(monkeypatch, client, "source", "add", "r1", "--id", "cam3", "--uri", CAMERA)
    err = capsys.readouterr().err
    assert code == 1 and SECRET not in out + err and "abc123" not in err
    assert "rtsp://admin:***@cam.example/stream?token=***" in err


def test_a_refused_camera_uri_is_not_quoted_back(monkeypatch, capsys):
    c, calls = real_client(monkeypatch)
    bad = f"rtspx://admin:{SECRET}@cam/stream"
    code, out = run_cli(monkeypatch, c, "source", "add", "r1", "--id", "cam3", "--uri", bad)
    err = capsys.readouterr().err
    assert code == 2 and not calls
    assert "unsupported scheme" in err and SECRET not in out + err


# --- the controller actor has what the client calls -------------------------------------------


def _methods(path: Path, cls: str) -> dict[str, ast.AsyncFunctionDef | ast.FunctionDef]:
    tree = ast.parse(path.read_text())
    (node,) = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == cls]
    return {f.name: f for f in node.body if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))}


@pytest.mark.parametrize("name", ["submit", "add_source", "remove_source", "pause", "resume"])
def test_the_controller_actor_delegates_each_control_call_to_its_core(name):
    """actors/controller.py cannot be imported in this tier (Ray): read it."""
    method = _methods(REPO / "actors" / "controller.py", "Controller")[name]
    assert isinstance(method, ast.AsyncFunctionDef) and ast.get_docstring(method)
    calls = [
        n.value.func
        for n in ast.walk(method)
        if isinstance(n, ast.Await) and isinstance(n.value, ast.Call)
    ]
    assert [ast.unparse(f) for f in calls] == [f"self._core.{name}"]
    client_params = [a.arg for a in _methods(REPO / "vsa" / "client.py", "Client")[name].args.args]
    actor_params = [a.arg for a in method.args.args]
    if name in ("submit", "add_source"):  # the client takes a spec; the actor a dict
        assert actor_params[-1] == "dry_run" and client_params[-1] == "dry_run"
    else:
        assert actor_params == client_params
