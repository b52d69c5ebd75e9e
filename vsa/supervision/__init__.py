"""What the controller decides, without Ray: run records (``runbook``), the inference
watchdog (``watchdog``) and where records are kept (``store``). The controller
(``actors/controller.py``) makes the Ray calls and carries the decisions out."""

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
