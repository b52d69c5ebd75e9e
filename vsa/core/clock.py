"""The clock every stage reads, injected so that tests can move time instead of sleeping."""

from __future__ import annotations

import time as _time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Clock:
    """``time``: wall-clock seconds (frame capture times, transitions); ``monotonic``: for
    intervals and deadlines."""

    time: Callable[[], float] = _time.time
    monotonic: Callable[[], float] = _time.monotonic


SYSTEM_CLOCK = Clock()
