"""What the controller decides, without Ray: run records (``runbook``), the inference
watchdog (``watchdog``), where records are kept (``store``), the engine's actors as protocols
(``handles``) and the controller's brain that carries the decisions out (``core``). The
controller actor (``actors/controller.py``) is a shell around ``core``; ``actors/handles.py``
makes its Ray calls."""

from vsa.supervision.runbook import KV_VERSION, RunBook, RunRecord
from vsa.supervision.store import MemoryRunStore, RunStore
from vsa.supervision.watchdog import Decision, check_inference

__all__ = [
    "KV_VERSION",
    "Decision",
    "MemoryRunStore",
    "RunBook",
    "RunRecord",
    "RunStore",
    "check_inference",
]
