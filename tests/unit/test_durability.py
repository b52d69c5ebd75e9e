"""A run is durable or the user is told (issue 23: 3, 6, 14, 15), on the fake cluster of
``test_supervision_core``: a submit whose record cannot be saved is refused with nothing left
running; a later failed save is an event and a warning until a save succeeds; a drain names the
runs it could not save; a saved run is checked again like a submit before it resumes; a run that
ends has terminal sources and no live rates; saved records that cannot be loaded are reported
with why, in the controller's status and by ``vsa list`` / ``vsa status``."""

from __future__ import annotations

import asyncio
import errno
import io
import json
from pathlib import Path
from typing import Any

import pytest

from tests.unit.test_engine_restart import new_engine
from tests.unit.test_supervision_core import (
    World,
    core,
    play,
    saved,
    spec,
    status,
    until,
)
from vsa import cli
from vsa.errors import VsaError
from vsa.runstate import RunState
from vsa.supervision.core import ControllerCore
from vsa.supervision.runbook import RunBook
from vsa.supervision.store import DiskRunStore, MemoryRunStore, MirroredRunStore

FULL = OSError(errno.ENOSPC, "No space left on device")


class FailingFor(MemoryRunStore):
    """A store whose ``put`` fails for the run ids in ``fail`` (a disk that fills up)."""

    def __init__(self) -> None:
        super().__init__()
        self.fail: set[str] = set()

    def put(self, run_id: str, text: str) -> None:
        if run_id in self.fail:
            raise FULL
        super().put(run_id, text)


def events(record: Any, what: str) -> list[dict[str, Any]]:
    return [e for e in record.events if e["event"] == what]


# --- 3: durable or told ----------------------------------------------------------------------
def test_a_submit_whose_record_cannot_be_saved_is_refused_with_nothing_left_running(
    tmp_path: Path,
) -> None:
    async def test() -> None:
        w = World(tmp_path)
        w.core.state_dir = "/srv/vsa/runs"
        await w.core.ready()
        w.store.error = FULL
        with pytest.raises(VsaError) as refused:
            await w.core.submit(spec(tmp_path / "r"))
        assert str(refused.value).startswith(
            "cannot save the run to /srv/vsa/runs: [Errno 28] No space left on device: "
            "free space or set VSA_STATE_DIR"
        )
        # saved before anything of it started: no source actor, no run, its model unloaded
        assert w.cluster.started == [] and not w.cluster.sources
        assert not w.core.book.runs and not w.store.texts
        inference = w.cluster.inference
        assert inference is not None and inference.released == inference.loaded
        w.store.error = None
        out = await w.core.submit(spec(tmp_path / "r"))  # the same run once the disk has room
        assert out["run_id"] in w.store.texts
        await w.core.close()

    play(test)


def test_a_run_the_disk_refused_is_refused_even_when_the_gcs_copy_took_it(tmp_path: Path) -> None:
    async def test() -> None:
        disk, gcs = MemoryRunStore(), MemoryRunStore()
        w = World(tmp_path)
        c = core(w.cluster, MirroredRunStore(disk, gcs), w.t)
        await c.ready()
        disk.error = OSError(errno.EROFS, "Read-only file system")
        with pytest.raises(VsaError, match="Read-only file system: make it writable"):
            await c.submit(spec(tmp_path / "r"))
        # the copy that took it is deleted: a controller Ray restarts must not resume it
        assert gcs.texts == {} and w.cluster.started == []
        await c.close()

    play(test)


def test_a_failed_save_is_an_event_and_a_warning_until_a_save_succeeds(tmp_path: Path) -> None:
    async def test() -> None:
        w = World(tmp_path)
        record, sources = await w.submit()
        assert record.summary()["warnings"] == []
        w.store.error = FULL
        w.store.texts.clear()  # what a save puts there from now on
        w.stream(sources, decoded=10, emitted=10)
        await until(lambda: record.state is RunState.UP)  # a state change: saved, and failed
        await until(lambda: w.t.now > record.created_at + 30)  # failed again and again
        (failed,) = events(record, "save_failed")  # one event, not one per failed save
        assert failed["reason"] == "[Errno 28] No space left on device"
        (warning,) = (await w.core.status(record.id))["runs"][0]["warnings"]
        assert warning.startswith("not durable: the run could not be saved ([Errno 28] No space")
        assert "would not resume" in warning
        w.store.error = None
        await until(lambda: record.id in w.store.texts)  # the next periodic save
        assert record.summary()["warnings"] == [] and events(record, "saved")
        await w.core.close()

    play(test)


def test_a_drain_names_the_runs_it_could_not_save_and_a_drain_again_retries(
    tmp_path: Path,
) -> None:
    async def test() -> None:
        w = World(tmp_path)
        w.store = FailingFor()
        w.core = core(w.cluster, w.store, w.t)
        ok, _ = await w.submit("ok")
        lost, _ = await w.submit("lost")
        w.store.fail.add(lost.id)
        answer = await w.core.drain()
        assert sorted(answer["drained"]) == sorted([ok.id, lost.id])
        assert answer["not_saved"] == [lost.id]
        text = cli.drain_text(answer)
        assert f"NOT SAVED: {lost.id}" in text and "would NOT resume" in text
        assert text.splitlines()[-1].endswith(f": {ok.id} resume")
        assert "the runs resume" not in text
        # saved state: the run that could not be saved is not recorded as drained
        assert saved(w.store, ok.id)["sources"]["cam1"]["state"] == "CONNECTING"
        w.store.fail.clear()
        again = await w.core.drain()
        assert again["drained"] == [] and again["not_saved"] == []
        assert events(lost, "drained") and saved(w.store, lost.id)["events"][-1]["event"] in (
            "drained",
            "save_failed",
        )
        assert cli.drain_text(again).endswith("the runs resume")
        await w.core.close()

    play(test)


def test_runs_of_an_engine_without_a_state_directory_are_accepted_as_not_durable(
    tmp_path: Path,
) -> None:
    async def test() -> None:
        w = World(tmp_path)
        w.core = ControllerCore(
            w.cluster,
            w.store,
            clock=w.t,
            monotonic=w.t,
            sleep=w.t.sleep,
            to_thread=w.core._to_thread,
            memory=lambda: 64 << 30,
            volatile="no state directory: kept in this cluster's GCS only",
        )
        record, _ = await w.submit()
        (warning,) = record.summary()["warnings"]
        assert warning.startswith("not durable: no state directory")
        assert events(record, "not_durable")
        assert (await w.core.drain())["not_saved"] == [record.id]
        await w.core.close()

    play(test)


# --- 6: a saved run is checked again before it resumes ----------------------------------------
def test_a_saved_run_outside_the_output_roots_now_fails_instead_of_resuming(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def test() -> None:
        w = World(tmp_path)
        record, _ = await w.submit()
        await w.core.drain()
        await w.core.close()

        allowed = tmp_path / "allowed"
        allowed.mkdir()
        monkeypatch.setenv("VSA_OUTPUT_ROOTS", str(allowed))  # tightened before the restart
        again = new_engine(w)
        await again.recover()
        run = again.book.runs[record.id]
        assert run.state is RunState.FAILED
        assert run.error is not None and run.error.startswith("not resumed: output_dir ")
        assert "VSA_OUTPUT_ROOTS" in run.error
        (event,) = events(run, "not_resumed")
        assert "outside" in event["reason"]
        assert w.cluster.started == []  # no source started, nothing written there
        assert not (tmp_path / "r" / "report.json").exists()
        assert {s["state"] for s in run.summary()["sources"]} == {"FAILED"}
        assert saved(w.store, record.id)["state"] == "FAILED"
        await again.close()

    play(test)


def test_a_saved_run_reading_a_file_outside_the_input_roots_now_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def test() -> None:
        w = World(tmp_path)
        video = tmp_path / "in" / "a.mp4"
        video.parent.mkdir()
        video.write_bytes(b"")
        run = spec(tmp_path / "r", ids=("cam1",))
        run["sources"][0]["uri"] = video.as_uri()
        record = w.core.book.runs[(await w.core.submit(run))["run_id"]]
        await w.core.close()  # Ray killed: no drain

        monkeypatch.setenv("VSA_INPUT_ROOTS", str(tmp_path / "elsewhere"))
        again = new_engine(w)
        await again.recover()
        failed = again.book.runs[record.id]
        assert failed.state is RunState.FAILED and "VSA_INPUT_ROOTS" in (failed.error or "")
        assert failed.error.startswith("not resumed: file sources outside")
        assert w.cluster.started == []
        await again.close()

    play(test)


# --- 14: terminal runs have terminal sources, no live rates ---------------------------------
def test_a_drained_run_stopped_has_stopped_sources_in_its_status_and_report(
    tmp_path: Path,
) -> None:
    async def test() -> None:
        w = World(tmp_path)
        record, sources = await w.submit()
        w.stream(sources, decoded=10, emitted=10)
        await until(lambda: record.state is RunState.UP)
        await w.core.drain()
        assert {s["fps"] for s in record.summary()["sources"]} == {0.0}
        summary = await w.core.stop(record.id)
        assert summary["state"] == "STOPPED"
        assert [(s["state"], s["fps"]) for s in summary["sources"]] == [("STOPPED", 0.0)] * 2
        assert all(s["transitions"][-1]["state"] == "STOPPED" for s in summary["sources"])
        report = json.loads((tmp_path / "r" / "report.json").read_text())
        assert {s["state"] for s in report["streams"]} == {"STOPPED"}
        assert {s["state"] for s in saved(w.store, record.id)["sources"].values()} == {"STOPPED"}
        await w.core.close()

    play(test)


def test_a_stop_during_a_drain_leaves_the_run_stopped_not_drained(tmp_path: Path) -> None:
    async def test() -> None:
        w = World(tmp_path)
        record, sources = await w.submit()
        w.stream(sources, decoded=10, emitted=10)
        await until(lambda: record.state is RunState.UP)
        gate = asyncio.Event()
        first = sources[0]
        plain_stop = first.stop
        calls: list[float] = []

        async def held() -> dict[str, Any]:
            await gate.wait()
            return status(first.id, "STOPPED", decoded=10, emitted=10)

        def stop(timeout_s: float, wait_s: float) -> Any:
            calls.append(timeout_s)
            return held() if len(calls) == 1 else plain_stop(timeout_s, wait_s)

        first.stop = stop  # the drain's stop of cam1 waits; the user's does not
        drain = asyncio.get_running_loop().create_task(w.core.drain())
        await until(lambda: calls)
        summary = await w.core.stop(record.id)
        assert summary["state"] == "STOPPED"
        gate.set()
        answer = await drain
        assert answer["drained"] == []
        assert record.state is RunState.STOPPED and not record.drained
        assert {s["state"] for s in record.summary()["sources"]} == {"STOPPED"}
        kept = saved(w.store, record.id)
        assert kept["state"] == "STOPPED"
        assert {s["state"] for s in kept["sources"].values()} == {"STOPPED"}
        await w.core.close()

    play(test)


def test_a_finished_run_shows_no_live_rate(tmp_path: Path) -> None:
    async def test() -> None:
        w = World(tmp_path)
        record, sources = await w.submit()
        w.stream(sources, state="FINISHED", decoded=3, emitted=3)  # fps 25 in the last poll
        await until(lambda: record.state is RunState.FINISHED)
        assert {s["fps"] for s in record.summary()["sources"]} == {0.0}
        await w.core.close()

    play(test)


# --- 15: unreadable records reported with why -------------------------------------------------
def test_unreadable_saved_records_are_problems_in_the_status_with_why(tmp_path: Path) -> None:
    async def test() -> None:
        w = World(tmp_path)
        good, _ = await w.submit()
        await w.core.drain()
        await w.core.close()
        text = w.store.texts[good.id]
        w.store.texts["garbage-1"] = "{not json"
        w.store.texts["future-1"] = json.dumps({**json.loads(text), "v": 99, "id": "future-1"})
        w.store.texts["keyless-1"] = json.dumps({"v": 1, "id": "keyless-1"})
        w.store.texts["list-1"] = "[1, 2]"
        w.store.texts["other-1"] = text  # a copy of another run's record
        again = new_engine(w)
        answer = await again.status()
        assert [r["id"] for r in answer["runs"]] == [good.id]
        reasons = {p["record"]: p["reason"] for p in answer["problems"]}
        assert reasons["garbage-1"].startswith("not valid JSON")
        assert reasons["future-1"].startswith("saved run format 99")
        assert reasons["keyless-1"] == "missing key 'spec'"
        assert reasons["list-1"].startswith("not a run record")
        assert reasons["other-1"] == f"it holds run {good.id!r}, not 'other-1'"
        await again.close()

    play(test)


def test_a_record_the_disk_cannot_read_is_reported_with_the_disks_error_not_as_vanished(
    tmp_path: Path,
) -> None:
    runs = tmp_path / "runs"
    runs.mkdir(mode=0o700)
    (runs / "latin-1.json").write_bytes(b'{"v": 1, "id": "caf\xe9"}')
    (runs / "folder-1.json").mkdir()
    book = RunBook(MirroredRunStore(DiskRunStore(runs), MemoryRunStore()))
    assert book.load() == []
    reasons = {p["record"]: p["reason"] for p in book.problems}
    assert reasons["latin-1"].startswith("not UTF-8 text")
    assert "not a regular file" in reasons["folder-1"]
    assert not any("vanished" in r or "gone" in r for r in reasons.values())


def test_an_unreadable_store_is_a_problem_too() -> None:
    store = MemoryRunStore()
    store.error = ConnectionError("GCS unreachable")
    book = RunBook(store)
    assert book.load() == []
    assert book.problems == [{"record": None, "reason": "cannot read saved runs: GCS unreachable"}]


# --- what vsa list and vsa status print -------------------------------------------------------
RUN = {
    "id": "r-1",
    "name": "r",
    "state": "FAILED",
    "error": "not resumed: output_dir /data/x is outside the directories ...",
    "created_at": 1_700_000_000.0,
    "output_dir": "/data/x",
    "sources": [{"id": "cam1", "state": "FAILED", "fps": 0.0}],
    "warnings": ["not durable: the run could not be saved ([Errno 28] No space left on device)"],
}
PROBLEMS = [
    {"record": "bad-1", "reason": "not valid JSON (Expecting value: line 1 column 1 (char 0))"}
]


@pytest.fixture
def answers(monkeypatch: pytest.MonkeyPatch) -> None:
    def status_dicts(self: Any, run: str | None = None, strict: bool = False) -> dict:
        return {"runs": [dict(RUN)], "problems": list(PROBLEMS)}

    monkeypatch.setattr(cli.StatusReader, "status_dicts", status_dicts)


def _cli(*argv: str) -> str:
    out = io.StringIO()
    assert cli.main(list(argv), out=out) == 0
    return out.getvalue()


def test_vsa_list_shows_why_a_run_failed_not_durable_runs_and_unreadable_records(
    answers: None,
) -> None:
    lines = _cli("list").splitlines()
    assert lines[0].startswith("r-1  FAILED ")
    assert "NOT DURABLE" in lines[0] and "not resumed: output_dir /data/x" in lines[0]
    assert lines[1] == (
        "saved record bad-1 could not be loaded: not valid JSON (Expecting value: line 1 column "
        "1 (char 0))"
    )


def test_vsa_status_prints_unreadable_records_and_its_json_keeps_them(answers: None) -> None:
    text = _cli("status")
    assert "warning: not durable" in text
    assert text.splitlines()[-1].startswith("saved record bad-1 could not be loaded: not valid")
    doc = json.loads(_cli("status", "--json"))
    assert doc["problems"] == PROBLEMS and doc["runs"][0]["id"] == "r-1"


def test_a_saved_run_whose_disk_is_not_back_yet_still_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Re-checking a resumed run is the host's policy (roots, system directories), not a write
    probe: an I/O error of a disk not mounted yet is left to the sinks, which say so."""

    async def test() -> None:
        w = World(tmp_path)
        record, _ = await w.submit()
        await w.core.drain()
        await w.core.close()

        def unwritable(*args: object, **kwargs: object) -> None:
            raise AssertionError("a resumed run is not probed for writing")

        monkeypatch.setattr("vsa.outputs.check_output_dir", unwritable)
        monkeypatch.setattr("vsa.supervision.core.check_output_dir", unwritable)
        again = new_engine(w)
        await again.recover()
        run = again.book.runs[record.id]
        assert not run.state.terminal and run.error is None
        assert w.cluster.started  # its sources started again
        await again.close()

    play(test)
