"""The controller's durable run store: one file per run in the state directory, replaced
atomically, mirrored into Ray's GCS (a fake here). What a controller writes before ``ray stop``
or a reboot, the next one reads back."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from tests.unit.fakes import FakeClock
from tests.unit.test_supervision_store import new_record
from vsa.errors import VsaError
from vsa.fsutil import UnsafeDirectory
from vsa.runstate import RunState
from vsa.supervision.runbook import RunBook
from vsa.supervision.store import DiskRunStore, MemoryRunStore, MirroredRunStore, RunStore


def test_disk_store_is_a_run_store(tmp_path: Path):
    store = DiskRunStore(tmp_path / "runs")
    assert isinstance(store, RunStore)
    assert store.list() == [] and store.get("a") is None  # nothing written yet: no directory
    store.put("cam-20261201-101010-ab12", "one")
    store.put("cam-20261201-101010-ab12", "two")
    assert store.get("cam-20261201-101010-ab12") == "two"
    store.put("b", "three")
    assert store.list() == ["b", "cam-20261201-101010-ab12"]
    store.delete("b")
    store.delete("b")  # nothing to delete: no error
    assert store.list() == ["cam-20261201-101010-ab12"]


def test_records_are_private_and_no_temporary_file_is_left(tmp_path: Path):
    store = DiskRunStore(tmp_path / "state" / "runs")
    store.put("r1", "{}")
    assert stat.S_IMODE(os.stat(store.directory).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(store.directory / "r1.json").st_mode) == 0o600
    assert sorted(os.listdir(store.directory)) == ["r1.json"]


@pytest.mark.parametrize("run_id", ["../escape", "a/b", ".hidden", "x-y", "ünï", "a b"])
def test_any_run_id_maps_to_one_file_inside_the_directory(tmp_path: Path, run_id: str):
    store = DiskRunStore(tmp_path / "runs")
    store.put(run_id, "text")
    assert store.list() == [run_id]
    assert store.get(run_id) == "text"
    files = os.listdir(store.directory)
    assert len(files) == 1 and "/" not in files[0] and not files[0].startswith(".")
    assert not (tmp_path / "escape.json").exists()


def test_a_failed_write_keeps_the_previous_record(tmp_path: Path, monkeypatch):
    store = DiskRunStore(tmp_path / "runs")
    store.put("r1", "old")

    def no_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", no_replace)
    with pytest.raises(OSError, match="No space left"):
        store.put("r1", "new")
    monkeypatch.undo()
    assert store.get("r1") == "old"
    assert sorted(os.listdir(store.directory)) == ["r1.json"]  # the temporary file is gone


def test_files_it_did_not_write_are_ignored(tmp_path: Path):
    store = DiskRunStore(tmp_path / "runs")
    store.put("r1", "x")
    (store.directory / "notes.txt").write_text("hello")
    (store.directory / "x-zz.json").write_text("not hex")
    store.beat()
    assert store.list() == ["r1"]


def test_the_heartbeat_says_when_a_controller_was_last_alive(tmp_path: Path):
    store = DiskRunStore(tmp_path / "runs")
    assert store.last_beat() is None
    store.beat()
    first = store.last_beat()
    assert first is not None
    os.utime(store.directory / "alive", (first - 30, first - 30))
    assert store.last_beat() == pytest.approx(first - 30)


def test_the_disk_is_read_first_and_the_gcs_copy_fills_in(tmp_path: Path):
    disk, gcs = DiskRunStore(tmp_path / "runs"), MemoryRunStore()
    store = MirroredRunStore(disk, gcs)
    store.put("r1", "v1")
    assert disk.get("r1") == gcs.texts["r1"] == "v1"
    gcs.texts["r1"] = "stale"
    gcs.texts["r2"] = "only in the GCS"  # a controller restarted on a node without this disk
    assert store.get("r1") == "v1"
    assert store.get("r2") == "only in the GCS"
    assert store.list() == ["r1", "r2"]
    store.delete("r1")
    assert disk.get("r1") is None and "r1" not in gcs.texts


def test_after_ray_stops_only_the_disk_is_left(tmp_path: Path):
    store = MirroredRunStore(DiskRunStore(tmp_path / "runs"), MemoryRunStore())
    store.put("r1", "v1")
    fresh = MirroredRunStore(DiskRunStore(tmp_path / "runs"), MemoryRunStore())  # GCS empty
    assert fresh.list() == ["r1"] and fresh.get("r1") == "v1"


def test_a_write_that_fails_on_one_side_is_raised_after_trying_both(tmp_path: Path):
    gcs = MemoryRunStore()
    gcs.error = ConnectionError("GCS unreachable")
    disk = DiskRunStore(tmp_path / "runs")
    store = MirroredRunStore(disk, gcs)
    with pytest.raises(ConnectionError):
        store.put("r1", "v1")
    assert disk.get("r1") == "v1"  # the truth was still written
    assert store.list() == ["r1"]  # one side readable is enough
    gcs.error = None
    (tmp_path / "runs").chmod(0o500)
    try:
        if os.geteuid() != 0:  # root writes anyway
            with pytest.raises(PermissionError):
                store.put("r2", "v2")
            assert gcs.texts["r2"] == "v2"
    finally:
        (tmp_path / "runs").chmod(0o700)


def test_a_run_book_on_disk_survives_the_whole_engine(tmp_path: Path, key_file: Path):
    clock = FakeClock(1_780_000_000.0)
    book = RunBook(MirroredRunStore(DiskRunStore(tmp_path), MemoryRunStore()), clock=clock)
    record = new_record("r-1", clock, uris={"door": "rtsp://viewer:s3cret@10.0.0.7/stream1"})
    record.enter(RunState.UP)
    book.add(record)
    assert book.save(record)
    assert "s3cret" not in (tmp_path / "r-1.json").read_text()  # sealed on disk
    again = RunBook(MirroredRunStore(DiskRunStore(tmp_path), MemoryRunStore()), clock=clock)
    (loaded,) = again.load()
    assert loaded.id == "r-1" and loaded.state is RunState.UP
    assert [r.id for r in again.active()] == ["r-1"]


def test_one_engine_owns_a_state_directory_at_a_time(tmp_path: Path):
    """A second controller (another cluster on this host) must not resume or overwrite the
    first one's runs: it cannot take the directory until the first lets go (or dies)."""
    first, second = DiskRunStore(tmp_path / "runs"), DiskRunStore(tmp_path / "runs")
    assert first.lock() and first.lock()  # again: still its own
    assert not second.lock()
    first.unlock()
    assert second.lock()
    assert not first.lock()
    second.unlock()


# --- nobody else's links, nobody else's directory (issue 23, item 2) -------------------------


def test_a_link_planted_at_the_old_temp_name_never_makes_a_record_overwrite_a_file(
    tmp_path: Path,
):
    """The temporary name was ``.<run id>.json.<pid>.tmp``, opened O_CREAT|O_TRUNC: a link
    planted there made the engine (often root) write a run record over the link's target."""
    victim = tmp_path / "victim"
    victim.write_text("precious")
    store = DiskRunStore(tmp_path / "state" / "runs")
    store.lock()
    (store.directory / f".r1.json.{os.getpid()}.tmp").symlink_to(victim)
    store.put("r1", "record")
    assert victim.read_text() == "precious"
    assert store.get("r1") == "record"
    store.unlock()


def test_record_temp_names_are_random(tmp_path: Path, monkeypatch):
    store = DiskRunStore(tmp_path / "runs")
    names = []
    real_replace = os.replace
    monkeypatch.setattr(
        os, "replace", lambda s, d: (names.append(Path(s).name), real_replace(s, d))
    )
    store.put("r1", "a")
    store.put("r1", "b")
    assert len(set(names)) == 2 and all(n.startswith(".r1.json.") for n in names)
    assert all(str(os.getpid()) not in n.split(".") for n in names)


def test_the_heartbeat_and_the_lock_never_follow_a_planted_link(tmp_path: Path):
    victim = tmp_path / "victim"
    victim.write_text("precious")
    os.utime(victim, (1_000_000, 1_000_000))
    store = DiskRunStore(tmp_path / "runs")
    store.put("r1", "x")
    (store.directory / "alive").symlink_to(victim)
    with pytest.raises(OSError):
        store.beat()
    assert victim.stat().st_mtime == 1_000_000 and victim.read_text() == "precious"
    assert store.last_beat() != victim.stat().st_mtime  # the link's own time, not the target's
    (store.directory / ".lock").symlink_to(tmp_path / "created-through-the-link")
    with pytest.raises(OSError):
        store.lock()
    assert not (tmp_path / "created-through-the-link").exists()


@pytest.mark.parametrize("which, mode", [("state", 0o777), ("runs", 0o757), ("runs", 0o770)])
def test_a_state_directory_others_can_write_is_refused_naming_the_chmod(
    tmp_path: Path, which: str, mode: int
):
    state = tmp_path / "state"
    (state / "runs").mkdir(parents=True)
    state.chmod(0o700)
    (state / "runs").chmod(0o700)
    unsafe = state if which == "state" else state / "runs"
    unsafe.chmod(mode)
    store = DiskRunStore(state / "runs")
    with pytest.raises(UnsafeDirectory) as err:
        store.lock()
    message = str(err.value)
    assert str(unsafe) in message and f"chmod go-w {unsafe}" in message
    assert isinstance(err.value, VsaError)
    with pytest.raises(UnsafeDirectory):
        store.put("r1", "x")
    with pytest.raises(UnsafeDirectory):
        store.beat()
    assert os.listdir(state / "runs") == []  # nothing written: no lock, no record, no heartbeat
    unsafe.chmod(0o700)  # fixed as the message says: accepted
    assert store.lock()
    store.put("r1", "x")
    store.unlock()


def test_a_private_state_directory_is_accepted_and_new_ones_are_made_private(tmp_path: Path):
    store = DiskRunStore(tmp_path / "new-state" / "runs")
    assert store.lock()
    for path in (tmp_path / "new-state", tmp_path / "new-state" / "runs"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o700
    store.unlock()


def test_a_record_planted_as_a_link_is_not_followed_and_is_reported(tmp_path: Path):
    """A record file is one the store wrote: a link in runs/ (to a record with another
    output_dir, to any file) is not read through, and the run is a problem with the reason."""
    store = DiskRunStore(tmp_path / "runs")
    store.put("real", "{}")
    elsewhere = tmp_path / "elsewhere.json"
    elsewhere.write_text('{"v": 1}')
    os.symlink(elsewhere, store.directory / "planted.json")
    fifo = store.directory / "fifo.json"
    os.mkfifo(fifo)
    with pytest.raises(OSError, match="symbolic link: not followed"):
        store.get("planted")
    with pytest.raises(OSError, match="not a regular file"):
        store.get("fifo")  # opened without blocking, then refused
    book = RunBook(store)
    book.load()
    reasons = {p["record"]: p["reason"] for p in book.problems}
    assert "symbolic link" in reasons["planted"] and "regular file" in reasons["fifo"]
