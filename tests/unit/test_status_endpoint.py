"""What the controller's status endpoint answers (``vsa.control.endpoint.StatusAnswers``), the
endpoint file, and when the CLI may use the endpoint; no server here (tests/component has it)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from vsa import settings
from vsa.cli import _endpoint_allowed
from vsa.control.endpoint import (
    NoEndpoint,
    StatusAnswers,
    Unavailable,
    endpoint_path,
    find_run,
    read_endpoint,
    write_endpoint,
)
from vsa.errors import RunNotFound, VsaError

RUNS = {
    "runs": [
        {"id": "a-1", "name": "a", "created_at": 1.0, "state": "STOPPED"},
        {"id": "a-2", "name": "a", "created_at": 2.0, "state": "UP"},
        {"id": "b-1", "name": "b", "created_at": 3.0, "state": "UP"},
    ]
}


class Controller:
    """A fake controller: answers from RUNS, or is busy (TimeoutError), or breaks."""

    def __init__(self) -> None:
        self.busy = False
        self.broken: Exception | None = None
        self.calls: list[str | None] = []

    def status(self, run: str | None) -> dict:
        self.calls.append(run)
        if self.busy:
            raise TimeoutError
        if self.broken is not None:
            raise self.broken
        if run is None:
            return RUNS
        found = find_run(RUNS["runs"], run)
        if found is None:
            raise RunNotFound(f"no run with id or name '{run}' (see `vsa list`)")
        return {"runs": [found]}


@pytest.fixture
def world():
    now = [100.0]
    controller = Controller()
    answers = StatusAnswers(controller.status, clock=lambda: now[0])
    return controller, answers, now


def test_the_controller_answers_fresh_and_a_full_answer_becomes_the_snapshot(world):
    controller, answers, now = world
    assert answers.answer(None) == (200, RUNS, 0.0)
    assert answers.answer("a") == (200, {"runs": [RUNS["runs"][1]]}, 0.0)  # the latest "a"
    code, body, _ = answers.answer("nope")
    assert code == 404 and body == {"error": "no run with id or name 'nope' (see `vsa list`)"}
    controller.busy = True
    now[0] = 102.5
    assert answers.answer(None) == (200, RUNS, 2.5)  # the snapshot, 2.5 s old


def test_a_busy_controller_gets_its_snapshot_served_filtered_by_id_or_name(world):
    controller, answers, now = world
    answers.remember(RUNS)
    controller.busy = True
    now[0] = 101.0
    assert answers.answer("b-1") == (200, {"runs": [RUNS["runs"][2]]}, 1.0)
    assert answers.answer("a") == (200, {"runs": [RUNS["runs"][1]]}, 1.0)
    code, body, age = answers.answer("zzz")
    assert (code, age) == (404, 1.0) and "'zzz'" in body["error"]
    assert controller.calls == ["b-1", "a", "zzz"]  # the controller was asked first each time


def test_nothing_to_serve_yet_is_503_not_an_empty_list(world):
    controller, answers, _ = world
    controller.busy = True  # still recovering its runs: no snapshot yet
    code, body, _ = answers.answer(None)
    assert code == 503 and body == {"error": "the controller is starting"}


def test_an_error_in_the_controller_is_503_with_its_name(world):
    controller, answers, _ = world
    answers.remember(RUNS)
    controller.broken = RuntimeError("loop closed")
    code, body, _ = answers.answer(None)
    assert code == 503 and body == {"error": "RuntimeError: loop closed"}


def test_find_run_prefers_the_id_then_the_latest_of_a_name():
    runs = [*RUNS["runs"], {"id": "a", "name": "c", "created_at": 0.5}]
    assert find_run(runs, "a")["id"] == "a"  # an id wins over a name
    assert find_run(runs, "b")["id"] == "b-1"
    assert find_run(runs, "x") is None


def test_the_endpoint_file_is_private_and_replaced_whole(tmp_path: Path):
    path = endpoint_path(tmp_path / "session")
    write_endpoint(path, {"url": "http://127.0.0.1:1", "token": "t1"})
    write_endpoint(path, {"url": "http://127.0.0.1:2", "token": "t2"})
    assert read_endpoint(path) == {"url": "http://127.0.0.1:2", "token": "t2"}
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    assert [p.name for p in path.parent.iterdir()] == ["controller.json"]  # no temp file left


@pytest.mark.parametrize(
    ("content", "match"),
    [(None, "no controller endpoint"), ("{", "cannot read"), ('{"url": "x"}', "missing")],
)
def test_a_missing_or_broken_endpoint_file_is_unavailable(tmp_path: Path, content, match):
    path = endpoint_path(tmp_path)
    if content is not None:
        path.parent.mkdir(parents=True)
        path.write_text(content)
    with pytest.raises(Unavailable, match=match):
        read_endpoint(path)


def _endpoint_for(monkeypatch, tmp_path: Path, gcs: str, current: str | None = None) -> None:
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path))
    session = tmp_path / "ray" / "session_latest"
    write_endpoint(endpoint_path(session), {"url": "u", "token": "t", "gcs_address": gcs})
    if current is not None:
        (tmp_path / "ray" / "ray_current_cluster").write_text(current + "\n")


@pytest.mark.parametrize(
    ("address", "current", "allowed"),
    [
        (None, None, True),  # auto, no cluster recorded: the newest session's
        (None, "10.0.0.5:6379", True),  # auto: the cluster ray start recorded is this one
        (None, "10.0.0.5:7000", False),  # auto joins another cluster: through Ray
        ("10.0.0.5:6379", None, True),
        ("127.0.0.1:6379", None, True),
        ("localhost:6379", None, True),
        ("10.0.0.9:6379", None, False),  # another host
        ("127.0.0.1:7000", None, False),  # another cluster on this host
    ],
)
def test_the_cli_reads_the_endpoint_only_for_the_cluster_it_serves(
    monkeypatch, tmp_path: Path, address, current, allowed
):
    _endpoint_for(monkeypatch, tmp_path, "10.0.0.5:6379", current)
    assert _endpoint_allowed(address) is allowed


def test_ray_address_in_the_environment_counts_like_address(monkeypatch, tmp_path: Path):
    _endpoint_for(monkeypatch, tmp_path, "10.0.0.5:6379")
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.9:6379")
    assert _endpoint_allowed(None) is False


@pytest.mark.parametrize(("value", "expected"), [(None, 19), ("0", 0), ("19", 19), (" 5 ", 5)])
def test_data_plane_nice(value, expected):
    env = {} if value is None else {"VSA_DATA_PLANE_NICE": value}
    assert settings.data_plane_nice(env) == expected


@pytest.mark.parametrize("value", ["20", "-1", "ten", ""])
def test_a_bad_data_plane_nice_is_one_clear_error(value):
    with pytest.raises(VsaError, match="VSA_DATA_PLANE_NICE must be an integer from 0 to 19"):
        settings.data_plane_nice({"VSA_DATA_PLANE_NICE": value})


def test_a_bad_data_plane_nice_in_an_actor_is_logged_once_and_changes_nothing(caplog):
    """An actor's constructor must not fail over a bad setting (Ray would retry it for ever):
    the value is logged once, as the one clear error, and no thread is reniced."""
    from vsa.control import priority

    priority._warned.clear()
    before = os.getpriority(os.PRIO_PROCESS, 0)
    env = {"VSA_DATA_PLANE_NICE": "ten"}
    with caplog.at_level("ERROR", logger=priority.log.name):
        assert priority.lower_data_plane(env) == 0
        assert priority.lower_data_plane(env) == 0
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1, errors
    assert "VSA_DATA_PLANE_NICE" in errors[0] and "keeps its priority" in errors[0]
    assert os.getpriority(os.PRIO_PROCESS, 0) == before


class _RayClient:
    def __init__(self) -> None:
        self.calls = 0

    def status_dicts(self, run=None):
        self.calls += 1
        return {"runs": []}


def _reader(monkeypatch, failure: Exception | None):
    import argparse

    from vsa import cli
    from vsa.control import endpoint

    def read_status(run=None):
        raise failure

    monkeypatch.setattr(endpoint, "read_status", read_status)
    monkeypatch.setattr(cli, "_endpoint_allowed", lambda address: True)
    ray_client = _RayClient()
    return cli.StatusReader(argparse.Namespace(address=None), client=ray_client), ray_client


@pytest.mark.parametrize(
    "failure",
    [
        NoEndpoint("no controller endpoint at /tmp/ray/session_latest/vsa/controller.json"),
        NoEndpoint("cannot read /tmp/ray/session_latest/vsa/controller.json: Permission denied"),
    ],
)
def test_without_an_endpoint_this_user_can_read_status_goes_through_ray(monkeypatch, failure):
    """Another user's endpoint file (0600) is no reason to report the controller as down,
    even under --follow: status is read through Ray instead."""
    reader, ray_client = _reader(monkeypatch, failure)
    assert reader.status_dicts(strict=True) == {"runs": []}
    assert ray_client.calls == 1


def test_an_endpoint_that_does_not_answer_is_a_restarting_controller_under_follow(monkeypatch):
    from vsa.cli import ControllerUnavailable

    reader, ray_client = _reader(monkeypatch, Unavailable("did not answer: refused"))
    with pytest.raises(ControllerUnavailable, match="did not answer"):
        reader.status_dicts(strict=True)
    assert ray_client.calls == 0  # a Ray call would hang until the controller is back
    assert reader.status_dicts() == {"runs": []}  # a single status falls back to Ray
    assert ray_client.calls == 1
