"""One stream's pipeline without Ray (``worker.StreamWorker``) and the parts it wires.

The source state machine (docs/states.md)::

    CONNECTING -> STREAMING -> FINISHED            (a file or finite source reached its end)
        |  ^          |
        v  |          v
    RECONNECTING <----+  (network sources: error, stall or end; waits by the reconnect policy)
        |
        v
      FAILED  (a file/synthetic source failed, or max_attempts ran out)
    any non-terminal state -> STOPPED (stop requested)

- ``machine``: the state machine, checked against ``vsa.schema.SOURCE_TRANSITIONS``;
- ``ledger``: the frame accounting (decoded == emitted + dropped once ended);
- ``delivery``: lossless (back-pressure) or realtime (the newest released frame) delivery;
- ``pacing``: a live stream's frames released at the pace of their timestamps, its arrivals;
- ``connection``: retry or give up after a connection ended;
- ``outputs``: the stream's sinks;
- ``processors``: the chain run on each result in frame order before the sinks;
- ``worker``: the threads that wire them.
"""

from vsa.constants import STOP_GRACE_S, TRANSITIONS_KEPT
from vsa.schema import SourceState
from vsa.stream.connection import stop_grace_s
from vsa.stream.settings import Pending, StreamSettings, Submit
from vsa.stream.worker import StreamWorker

__all__ = [
    "STOP_GRACE_S",
    "TRANSITIONS_KEPT",
    "Pending",
    "SourceState",
    "StreamSettings",
    "StreamWorker",
    "Submit",
    "stop_grace_s",
]
