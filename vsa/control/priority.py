"""The data plane runs at a lower scheduling priority than the control plane.

A source or inference actor that saturates the CPU then slows its own frames, not the
controller, Ray's raylet and GCS, or a ``vsa status`` process: the kernel's scheduler weighs a
thread at nice 19 at 15 against 36 at nice 15 (Ray's workers) and 1024 at nice 0 (Ray's
daemons, a shell's commands) when they all want the CPU, and gives it all of the CPU when
nothing else does (throughput on an otherwise idle host is unchanged).

Ray starts every worker process at nice 15 (``worker_niceness``), the controller included. So
data-plane actors go to ``VSA_DATA_PLANE_NICE`` (19 by default) with :func:`lower_priority`,
and the controller asks for nice 0 with :func:`raise_priority`, which needs the right to
(root or ``CAP_SYS_NICE``; otherwise it stays at 15 and is still above the data plane).

On Linux the nice value belongs to each thread, not to the process, and a new thread takes
its creator's: both functions set every thread the process has now, and actors call
:func:`lower_priority` again from a periodic method so that threads started later (by Ray or
by torch) follow.
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


def raise_priority(nice: int = 0) -> bool:
    """Set every thread of this process to ``nice`` where it is higher; False when the process
    may not (an unprivileged user cannot lower a nice value)."""
    if not hasattr(os, "setpriority"):
        return False
    for tid in thread_ids():
        try:
            if os.getpriority(os.PRIO_PROCESS, tid) > nice:
                os.setpriority(os.PRIO_PROCESS, tid, nice)
        except PermissionError:
            return False
        except OSError:  # the thread ended
            continue
    return True


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
