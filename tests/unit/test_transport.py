"""The frame rings of the same-host path: real files in /dev/shm, mapped twice as the source and
the inference actor do (the channel is in tests/component/test_transport_channel.py)."""

from __future__ import annotations

import errno
import os
from typing import Any

import numpy as np
import pytest

from vsa.transport import (
    FrameRing,
    RingReader,
    RingWriter,
)
from vsa.transport.ring import sweep


def image(value: int, shape: tuple[int, ...] = (36, 64, 3)) -> np.ndarray:
    return np.full(shape, value, np.uint8)


# --- rings --------------------------------------------------------------------------------------
def test_a_frame_put_in_a_ring_is_read_back_by_another_mapping_without_copying() -> None:
    ring = FrameRing(2, image(0).nbytes)
    try:
        slot = ring.put(image(7))
        view = RingReader().view("run/cam", slot.as_tuple())
        assert view.shape == (36, 64, 3) and view.dtype == np.uint8
        assert (view == 7).all()
        assert not view.flags.writeable  # the engine reads frames, never writes them
        assert oct(os.stat(ring.path).st_mode & 0o777) == "0o600"  # only the engine's user
    finally:
        ring.retire(force=True)
    assert not os.path.exists(ring.path)


def test_a_slot_is_written_again_only_after_its_result_came() -> None:
    ring = FrameRing(2, image(0).nbytes)
    try:
        first, second = ring.put(image(1)), ring.put(image(2))
        assert first.offset != second.offset
        with pytest.raises(RuntimeError, match="in flight"):
            ring.put(image(3))
        ring.settle([first], ok=True)
        third = ring.put(image(3))
        assert third.offset == first.offset
        reader = RingReader()
        assert (reader.view("s", second.as_tuple()) == 2).all()  # untouched
        assert (reader.view("s", third.as_tuple()) == 3).all()
    finally:
        ring.retire(force=True)


def test_a_frame_whose_result_never_came_retires_the_ring_and_its_pages_stay_valid() -> None:
    writer = RingWriter(max_in_flight=2)
    try:
        ring, [lost] = writer.put([image(5)])
        view = RingReader().view("s", lost.as_tuple())  # the engine may still hold it
        ring.settle([lost], ok=False)
        assert ring.retired and not os.path.exists(lost.path)  # nothing else was in flight
        _, [next_slot] = writer.put([image(6)])
        assert next_slot.path != lost.path  # never written under a reader
        assert (view == 5).all()
    finally:
        writer.close()


def test_a_retired_ring_keeps_its_file_until_the_frames_sent_from_it_were_read() -> None:
    writer, reader = RingWriter(max_in_flight=2), RingReader()
    try:
        old, [sent] = writer.put([image(1)])  # on its way, not read yet
        new, [bigger] = writer.put([image(2, (72, 128, 3))])  # a new ring for a larger frame
        assert new is not old and old.retired
        assert (reader.view("s", sent.as_tuple()) == 1).all()  # still there to be read
        old.settle([sent], ok=True)
        assert not os.path.exists(sent.path)
        assert (reader.view("s", bigger.as_tuple()) == 2).all()
    finally:
        writer.close()
    assert not os.path.exists(bigger.path)  # a stream that ended leaves no file


def test_more_frames_in_flight_than_promised_go_to_a_new_ring_instead_of_overwriting() -> None:
    writer, reader = RingWriter(max_in_flight=1), RingReader()  # 2 slots
    try:
        _, first = writer.put([image(1), image(2)])
        _, more = writer.put([image(3)])
        views = [reader.view(i, s.as_tuple()) for i, s in enumerate(first + more)]
        assert [int(v[0, 0, 0]) for v in views] == [1, 2, 3]
    finally:
        writer.close()


def test_the_rings_of_a_writer_that_died_are_swept_and_a_live_ones_are_kept(tmp_path: Any) -> None:
    mine = FrameRing(1, 16, str(tmp_path))
    dead = tmp_path / "vsa-ring-999999999-abcd"  # no such process
    dead.write_bytes(b"x" * 16)
    (tmp_path / "unrelated").write_bytes(b"y")
    assert sweep(str(tmp_path)) == 1
    assert sorted(os.listdir(tmp_path)) == sorted([os.path.basename(mine.path), "unrelated"])
    mine.retire()


def test_the_engine_removes_the_ring_of_a_writer_whose_connection_closed() -> None:
    ring, reader = FrameRing(1, 16), RingReader()
    slot = ring.put(np.zeros(16, np.uint8))
    reader.view(7, slot.as_tuple())
    reader.forget(7)  # the source actor was killed: it could not remove its file
    assert not os.path.exists(ring.path) and len(reader) == 0


def test_a_full_shm_is_an_error_when_the_ring_is_made_not_a_crash_on_a_later_write(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    # mocked: filling the host's /dev/shm for real would disturb everything else on it
    def full(fd: int, offset: int, size: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", full)
    with pytest.raises(OSError) as caught:
        FrameRing(4, 1 << 20, str(tmp_path))
    assert caught.value.errno == errno.ENOSPC
    assert os.listdir(tmp_path) == []  # nothing left behind


def test_the_reader_maps_only_frame_rings(tmp_path: Any) -> None:
    other = tmp_path / "secrets.db"
    other.write_bytes(b"x" * 64)
    with pytest.raises(ValueError, match="not a frame ring"):
        RingReader().view("s", (str(other), 0, (4, 4, 3), "|u1"))
