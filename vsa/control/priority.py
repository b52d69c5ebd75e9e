"""Data-plane processes run at a lower scheduling priority than the control plane.

A source or inference actor that saturates the CPU then slows its own frames, not the
controller, Ray's raylet and GCS, or a ``vsa status`` process: the kernel's scheduler gives a
thread at nice 10 about a tenth of the CPU time of one at nice 0 when both want it, and all
of it when nothing else does (throughput on an otherwise idle host is unchanged).

On Linux the nice value belongs to each thread, not to the process, and a new thread takes
its creator's: :func:`lower_priority` renices every thread the process has now, and actors
call it again from a periodic method so that threads started later (by Ray or by torch) follow.
A process may raise its own nice value but not lower it again without privileges, so this
only ever raises it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

log = logging.getLogger("vsa.priority")


def thread_ids() -> list[int]:
    """This process's threads (Linux); ``[0]`` (the calling thread) elsewhere."""
    try:
        return [int(t) for t in os.listdir("/proc/self/task")]
    except (OSError, ValueError):
        return [0]


def lower_priority(nice: int) -> int:
    """Raise every thread of this process to at least ``nice`` (0 leaves them alone); the
    number of threads changed. A thread that ended meanwhile, or a platform without
    per-thread priorities, is skipped."""
    if nice <= 0 or not hasattr(os, "setpriority"):
        return 0
    changed = 0
    for tid in thread_ids():
        try:
            if os.getpriority(os.PRIO_PROCESS, tid) < nice:
                os.setpriority(os.PRIO_PROCESS, tid, nice)
                changed += 1
        except OSError:  # the thread ended, or not allowed
            continue
    return changed


_warned: set[str] = set()


def lower_data_plane(env: Mapping[str, str] | None = None) -> int:
    """Apply ``VSA_DATA_PLANE_NICE`` to every thread of this process (a data-plane actor's);
    the number of threads changed. A bad value is logged once and leaves the priority alone:
    an actor's constructor must not fail over it (Ray would retry it for ever)."""
    from vsa import settings
    from vsa.errors import VsaError

    try:
        nice = settings.data_plane_nice(env)
    except VsaError as exc:
        if str(exc) not in _warned:
            _warned.add(str(exc))
            log.error("%s; the data plane keeps its priority", exc)
        return 0
    return lower_priority(nice)
