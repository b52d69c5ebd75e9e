"""Frames in shared memory between a source and the inference engine on the same host.

A :class:`FrameRing` is one file in ``/dev/shm`` (tmpfs: memory, not disk) cut into slots of
one frame each, written by one source only. ``put`` copies a frame into a free slot and returns
a :class:`Slot` (file, offset, shape): a few bytes that travel instead of the pixels. The
reader (:class:`RingReader`, in the inference process) maps the file once and sees the slot as
a zero-copy numpy view. A slot is written again only after the reader is done with it: the
writer frees it when the frame's result came back (``settle``). When a result never came (a
timeout, a cancel, the reader died), the reader may still hold the slot, so the whole ring is
retired instead: its slots are never written again and its file is unlinked once no frame sent
from it is still on its way (a reader that maps it keeps valid pages until it lets go). The
rings of a writer that died are removed by ``sweep`` (the inference actor runs it).

Why not Ray's object store: one ``ray.put`` of a 640x360 frame plus the reference counting
around it cost about 5 ms of CPU over three processes on the 2-core host (``docs/performance.md``);
the copy into a ring slot costs ~0.1 ms.

The space is reserved when a ring is made (``posix_fallocate``): a full ``/dev/shm`` (a
container's default is 64 MiB) is an ``OSError`` here, never a SIGBUS on a later write.
"""

from __future__ import annotations

import mmap
import os
import tempfile
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

SHM_DIR = "/dev/shm"
PREFIX = "vsa-ring-"


@dataclass(frozen=True)
class Slot:
    """Where one frame lies: the ring's file, the byte offset, the array's shape and dtype."""

    path: str
    offset: int
    shape: tuple[int, ...]
    dtype: str = "|u1"

    def as_tuple(self) -> tuple[str, int, tuple[int, ...], str]:
        return (self.path, self.offset, self.shape, self.dtype)


class RingFull(RuntimeError):
    """Every slot of the ring holds a frame still in flight."""


class FrameRing:
    """``slots`` frames of at most ``slot_bytes`` each, in one shared-memory file."""

    def __init__(self, slots: int, slot_bytes: int, directory: str = SHM_DIR) -> None:
        if slots < 1 or slot_bytes < 1:
            raise ValueError(f"a ring needs slots and bytes, got {slots} x {slot_bytes}")
        self.slots, self.slot_bytes = slots, slot_bytes
        # mode 0600; the writer's pid in the name lets a sweep remove the rings of dead writers
        fd, self.path = tempfile.mkstemp(prefix=f"{PREFIX}{os.getpid()}-", dir=directory)
        try:
            os.posix_fallocate(fd, 0, slots * slot_bytes)  # ENOSPC now, not SIGBUS later
            self._map = mmap.mmap(fd, slots * slot_bytes)
        except BaseException:
            os.unlink(self.path)
            raise
        finally:
            os.close(fd)
        self._free = list(range(slots - 1, -1, -1))
        self._lock = threading.Lock()
        self.retired = False  # written no more
        self.removed = False  # its file is gone

    def fits(self, image: np.ndarray) -> bool:
        return image.nbytes <= self.slot_bytes

    @property
    def in_flight(self) -> int:
        return self.slots - len(self._free)

    def put(self, image: np.ndarray) -> Slot:
        """Copy ``image`` into a free slot (``RingFull`` when none is free)."""
        if not self.fits(image):
            raise ValueError(
                f"a {image.nbytes}-byte frame does not fit a {self.slot_bytes}-byte slot"
            )
        with self._lock:
            if self.retired:
                raise RuntimeError("this ring is retired")
            if not self._free:
                raise RingFull(f"all {self.slots} slots are in flight")
            index = self._free.pop()
        offset = index * self.slot_bytes
        view = np.ndarray(image.shape, image.dtype, self._map, offset)
        np.copyto(view, image, casting="no")
        return Slot(self.path, offset, tuple(image.shape), image.dtype.str)

    def settle(self, slots: list[Slot], ok: bool) -> None:
        """The results of ``slots`` came (``ok``: the slots are free again) or never will (the
        reader may still hold them: the ring is retired). A retired ring's file is removed once
        none of its frames is in flight: a frame sent before is still read from it."""
        with self._lock:
            for slot in slots:
                self._free.append(slot.offset // self.slot_bytes)
            if not ok:
                self.retired = True
            remove = self.retired and not self.in_flight and not self.removed
            self.removed = self.removed or remove
        if remove:
            _unlink(self.path)

    def retire(self, force: bool = False) -> None:
        """Write this ring no more; remove its file now (``force``: the stream has ended) or
        once the frames in flight are settled. A reader's mapping stays valid either way."""
        with self._lock:
            self.retired = True
            remove = (force or not self.in_flight) and not self.removed
            self.removed = self.removed or remove
        if remove:
            _unlink(self.path)
        # the mapping is closed by the garbage collector once no frame view uses it


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


class RingWriter:
    """One source's rings: a new ring when a frame is larger than a slot, the ring is full or
    was retired. ``max_in_flight``: the most frames the source has in flight (one more slot is
    kept spare)."""

    def __init__(self, max_in_flight: int, directory: str = SHM_DIR) -> None:
        self.slots, self.directory = max_in_flight + 1, directory
        self.ring: FrameRing | None = None
        self._lock = threading.Lock()

    def put(self, images: list[np.ndarray]) -> tuple[FrameRing, list[Slot]]:
        """Copy ``images`` into one ring; settle the slots on that ring (``FrameRing.settle``)."""
        with self._lock:
            ring, need = self.ring, max(image.nbytes for image in images)
            if (
                ring is None
                or ring.retired
                or need > ring.slot_bytes
                or ring.slots - ring.in_flight < len(images)  # more in flight than promised
            ):
                if ring is not None:
                    ring.retire()
                ring = self.ring = FrameRing(max(self.slots, len(images)), need, self.directory)
            return ring, [ring.put(image) for image in images]

    def close(self) -> None:
        with self._lock:
            if self.ring is not None:
                self.ring.retire(force=True)
            self.ring = None


def sweep(directory: str = SHM_DIR) -> int:
    """Remove the rings of writers that are no longer alive (a source actor killed with its
    frames in flight); returns how many were removed."""
    removed = 0
    try:
        names = os.listdir(directory)
    except OSError:
        return 0
    for name in names:
        if not name.startswith(PREFIX):
            continue
        pid = name[len(PREFIX) :].split("-", 1)[0]
        if not pid.isdigit() or _alive(int(pid)):
            continue
        try:
            os.unlink(os.path.join(directory, name))
            removed += 1
        except OSError:
            pass
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RingReader:
    """The inference side: maps each writer's current ring once, views its slots. ``owner``
    names the writer (its channel connection)."""

    def __init__(self) -> None:
        self._maps: dict[Any, tuple[str, mmap.mmap]] = {}  # owner -> (path, mapping)

    def view(self, owner: Any, slot: tuple[str, int, tuple[int, ...], str]) -> np.ndarray:
        path, offset, shape, dtype = slot
        if not os.path.basename(path).startswith(PREFIX):  # only rings are mapped
            raise ValueError(f"not a frame ring: {path!r}")
        held = self._maps.get(owner)
        if held is None or held[0] != path:
            with open(path, "r+b") as f:
                held = self._maps[owner] = (path, mmap.mmap(f.fileno(), 0))
        view = np.ndarray(tuple(shape), np.dtype(dtype), held[1], offset)
        view.flags.writeable = False
        return view

    def forget(self, owner: Any) -> None:
        """The writer is gone (its connection closed): let go of its ring and remove the file,
        which a writer that died could not (frame views still in use keep the pages)."""
        held = self._maps.pop(owner, None)
        if held is not None:
            _unlink(held[0])

    def __len__(self) -> int:
        return len(self._maps)
