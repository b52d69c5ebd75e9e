"""What the controller's managers share: the engine's actors, the run book, the clocks.

:class:`vsa.supervision.core.ControllerCore` builds one :class:`Context` and hands it to each
manager (:mod:`~vsa.supervision.engines`, :mod:`~vsa.supervision.sources`,
:mod:`~vsa.supervision.recovery`); the unit tests inject fake clocks, ``sleep`` and
``to_thread`` through it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from vsa.supervision.handles import Handles
from vsa.supervision.runbook import RunBook

Sleep = Callable[[float], Awaitable[Any]]
ToThread = Callable[..., Awaitable[Any]]


@dataclass
class Context:
    handles: Handles
    book: RunBook
    clock: Callable[[], float]
    monotonic: Callable[[], float]
    sleep: Sleep
    to_thread: ToThread
    tasks: set[asyncio.Task] = field(default_factory=set)  # reaps, resumed stops, admissions

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task:
        """Run ``coro`` in the background; :meth:`ControllerCore.close` cancels it."""
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    async def until_gone(self, lookup: Callable[[], Any]) -> None:
        """Wait (10 s at most) until ``lookup`` finds no actor: a killed actor's name is free
        once Ray has it dead."""
        for _ in range(100):
            await self.sleep(0.1)
            if lookup() is None:
                return
