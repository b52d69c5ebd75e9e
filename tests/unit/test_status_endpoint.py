"""What the controller's status endpoint answers (``vsa.control.endpoint.StatusAnswers``), the
endpoint file, and when the CLI may use the endpoint; no server here (tests/component has it)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from vsa import settings
from vsa.cli import _find_endpoint
from vsa.control import endpoint as endpoint_module
from vsa.control.endpoint import (
    NoEndpoint,
    StatusAnswers,
    Unavailable,
    endpoint_path,
    find_run,
    index_path,
    locate,
    publish,
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


def _endpoint_for(monkeypatch, tmp_path: Path, gcs: str, current: str | None = None) -> Path:
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path))
    monkeypatch.setattr(endpoint_module, "index_dir", lambda: tmp_path / "index")  # its own
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    session = tmp_path / "ray" / "session_latest"
    path = endpoint_path(session)
    write_endpoint(path, {"url": "u", "token": "t", "gcs_address": gcs})
    if current is not None:
        (tmp_path / "ray" / "ray_current_cluster").write_text(current + "\n")
    return path


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
        ("ray://127.0.0.1:6379", None, False),  # Ray client: no endpoint here
    ],
)
def test_the_cli_reads_the_endpoint_only_for_the_cluster_it_serves(
    monkeypatch, tmp_path: Path, address, current, allowed
):
    path = _endpoint_for(monkeypatch, tmp_path, "10.0.0.5:6379", current)
    found, _why = _find_endpoint(address)
    assert found == (path if allowed else None)


def test_ray_address_in_the_environment_counts_like_address(monkeypatch, tmp_path: Path):
    _endpoint_for(monkeypatch, tmp_path, "10.0.0.5:6379")
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.9:6379")
    assert _find_endpoint(None)[0] is None


def test_an_endpoint_of_another_cluster_says_why_status_goes_through_ray(monkeypatch, tmp_path):
    _endpoint_for(monkeypatch, tmp_path, "10.0.0.5:6379", current="10.0.0.5:7000")
    found, why = _find_endpoint(None)
    assert found is None
    assert "serves the cluster at 10.0.0.5:6379, not 10.0.0.5:7000" in why


def _layout(monkeypatch, tmp_path: Path) -> tuple[Path, Path]:
    """Two clusters on this host as Ray lays them out: one of ``ray start --head`` in the
    default temp dir (recorded in its ray_current_cluster, session_latest its session), one
    of ``ray start --head --temp-dir=DIR`` (both files under DIR, which no client reads);
    each controller published its endpoint. Returns (the default one's, DIR's)."""
    default, other = tmp_path / "default", tmp_path / "elsewhere"
    monkeypatch.setattr(endpoint_module, "index_dir", lambda: tmp_path / "index")
    monkeypatch.setenv("RAY_TMPDIR", str(default))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    paths = []
    for temp, gcs in ((default / "ray", "10.0.0.5:6379"), (other, "10.0.0.5:41000")):
        session = temp / "session_2024-01-01_00-00-00_000000_1"
        info = {"url": f"http://127.0.0.1:{gcs[-4:]}", "token": "t", "gcs_address": gcs}
        info["pid"] = os.getpid()  # a controller that runs
        _path, problem = publish(info, session)
        assert problem is None
        (temp / "session_latest").symlink_to(session)
        (temp / "ray_current_cluster").write_text(gcs)
        paths.append(index_path(gcs))
    return paths[0], paths[1]


def test_a_cluster_started_with_its_own_temp_dir_is_found_by_its_gcs_address(
    monkeypatch, tmp_path: Path
):
    """ray start --temp-dir=DIR, a client without RAY_TMPDIR: the index has the endpoint."""
    default, elsewhere = _layout(monkeypatch, tmp_path)
    assert locate("127.0.0.1:41000") == (elsewhere, None)
    assert locate("10.0.0.5:41000") == (elsewhere, None)
    assert locate("localhost:6379") == (default, None)
    assert locate("auto") == (default, None)  # ray_current_cluster of the default temp dir
    stat_dir = os.stat(elsewhere.parent)
    assert stat.S_IMODE(stat_dir.st_mode) == 0o700
    assert stat.S_IMODE(os.stat(elsewhere).st_mode) == 0o600
    assert [p.name for p in elsewhere.parent.iterdir() if p.name.startswith(".")] == []


def test_auto_with_nothing_recorded_uses_the_only_live_endpoint_or_says_why_not(
    monkeypatch, tmp_path: Path
):
    default, elsewhere = _layout(monkeypatch, tmp_path)
    (tmp_path / "default" / "ray" / "ray_current_cluster").unlink()
    (tmp_path / "default" / "ray" / "session_latest").unlink()  # a fresh host: nothing there
    found, why = locate("auto")
    assert found is None and "several clusters" in why and "--address" in why
    default.unlink()
    assert locate("auto") == (elsewhere, None)


def test_an_endpoint_whose_controller_ended_is_not_used(monkeypatch, tmp_path: Path):
    monkeypatch.setattr(endpoint_module, "_alive", lambda info: info.get("pid") != os.getpid())
    _default, _elsewhere = _layout(monkeypatch, tmp_path)
    assert locate("127.0.0.1:41000") == (None, None)  # nothing live to tell about either


def test_an_index_entry_of_another_host_or_user_is_not_used(monkeypatch, tmp_path: Path):
    _default, elsewhere = _layout(monkeypatch, tmp_path)
    info = read_endpoint(elsewhere)
    write_endpoint(elsewhere, {**info, "host": "another-host"})  # a home shared between hosts
    assert locate("127.0.0.1:41000")[0] is None
    write_endpoint(elsewhere, info)
    real_fstat = os.fstat

    def foreign(fd):
        st = real_fstat(fd)
        return os.stat_result((st.st_mode, *st[1:4], 12345, *st[5:]))  # another user's file

    monkeypatch.setattr(os, "fstat", foreign)
    assert locate("127.0.0.1:41000")[0] is None


def test_publishing_removes_index_entries_of_controllers_that_ended(monkeypatch, tmp_path):
    _default, elsewhere = _layout(monkeypatch, tmp_path)
    monkeypatch.setattr(
        endpoint_module, "_alive", lambda info: info["gcs_address"] != "10.0.0.5:41000"
    )
    info = {"url": "u", "token": "t", "gcs_address": "10.0.0.5:50000", "pid": os.getpid()}
    publish(info, tmp_path / "third" / "session")
    names = sorted(p.name for p in elsewhere.parent.iterdir())
    assert names == sorted([index_path("x:6379").name, index_path("x:50000").name])


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

    def read_status(run=None, path=None):
        raise failure

    monkeypatch.setattr(endpoint, "read_status", read_status)
    monkeypatch.setattr(cli, "_find_endpoint", lambda address: (Path("endpoint.json"), None))
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
