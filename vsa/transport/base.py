"""What a way of sending a source's frames to its inference actor is: :class:`FrameTransport`.

Two implement it: the same-host channel (``vsa.transport.sender.ChannelSender``: frames in a
shared-memory ring, the call on a Unix socket) and Ray's object store (``actors.frames
.RayTransport``: ``ray.put`` and an ``infer`` call). ``vsa.transport.path.FramePath`` picks one
per send; whichever sends, the source gets a :class:`Pending` back.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np

from vsa.core.frames import FrameResult

# What a send asks of the inference actor besides the images, the same for every transport:
# "key" (the engine), "stream", "indices" (the frames' numbers), "deadlines" (or None),
# "priority", "credit", "behind" (or None): the arguments of ``InferenceActor.infer``.
Request = dict[str, Any]


class Pending(Protocol):
    """The results of one send (``vsa.stream.Pending``), in the order of its images."""

    def result(self, timeout: float) -> Sequence[FrameResult | None]:
        """The results (``TimeoutError`` after ``timeout`` s); a result's error when the
        inference actor is gone calls the send's ``on_gone`` first."""
        ...

    def cancel(self) -> None:
        """Withdraw the frames from the inference actor (they were counted as dropped)."""
        ...


class FrameTransport(Protocol):
    """One way for a source's frames to reach its inference actor."""

    name: str  # "channel" or "ray": the source's status shows the last one used (`transport`)

    def send(
        self,
        inference: Any,
        images: list[np.ndarray],
        request: Request,
        on_gone: Callable[[], None],
    ) -> Pending:
        """Send ``images`` to ``inference`` (an opaque actor handle). ``on_gone`` is called when
        the inference actor turns out to be gone, so the source waits for the controller's new
        one. Raises ``OSError`` when this transport cannot take the frames (``/dev/shm`` full)."""
        ...

    def close(self) -> None:
        """Release what the transport holds; its open sends fail as closed by this side."""
        ...
