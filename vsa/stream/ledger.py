"""A stream's frame accounting in one object: every decoded frame is emitted, dropped with a
cause, or still in flight; once the stream ended, ``decoded == emitted + dropped``.

No threads of its own: the stream worker calls it with its lock held. ``merge`` adds the
counts of an earlier incarnation of the same stream (a source actor restarted by Ray).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from vsa.schema import DropCause, SourceStatus


def cause_name(cause: DropCause | str) -> str:
    """The plain string a drop is counted under (status, JSONL, reports and metrics)."""
    return cause.value if isinstance(cause, DropCause) else DropCause(cause).value


@dataclass
class FrameLedger:
    decoded: int = 0
    inferred: int = 0
    emitted: int = 0
    drops: Counter[str] = field(default_factory=Counter)

    def decode(self, count: int = 1) -> int:
        """``count`` frames were decoded; returns the number of the first (0-based)."""
        first = self.decoded
        self.decoded += count
        return first

    def drop(self, cause: DropCause | str, count: int = 1) -> None:
        """``count`` decoded frames were dropped for ``cause``."""
        if count:
            self.drops[cause_name(cause)] += count

    def skip(self, cause: DropCause | str, count: int = 1) -> None:
        """``count`` frames the source lost before handing them over: decoded and dropped."""
        self.decoded += count
        self.drop(cause, count)

    def infer(self) -> None:
        self.inferred += 1

    def emit(self) -> None:
        self.emitted += 1

    def lose_output(self, count: int) -> int:
        """Frames written into an output that vanished move from emitted to ``output_lost``;
        returns how many moved (never more than were emitted)."""
        lost = max(0, min(count, self.emitted))
        self.emitted -= lost
        self.drop(DropCause.OUTPUT_LOST, lost)
        return lost

    @property
    def dropped(self) -> int:
        return sum(self.drops.values())

    @property
    def in_flight(self) -> int:
        return self.decoded - self.emitted - self.dropped

    @property
    def balanced(self) -> bool:
        """The invariant of an ended stream: every decoded frame emitted or dropped."""
        return self.in_flight == 0

    def merge(self, earlier: FrameLedger) -> FrameLedger:
        """This ledger plus an earlier incarnation's counts (a new object): the one merge of
        the engine (the controller carries a restarted source's counts over with it). The
        drops list the earlier incarnation's causes first and keep every cause either counted,
        as the controller's records always have."""
        drops = Counter(earlier.drops)
        drops.update(self.drops)
        return FrameLedger(
            self.decoded + earlier.decoded,
            self.inferred + earlier.inferred,
            self.emitted + earlier.emitted,
            drops,
        )

    def fields(self) -> dict[str, Any]:
        """The status fields of the counts."""
        return {
            "frames_decoded": self.decoded,
            "frames_inferred": self.inferred,
            "frames_emitted": self.emitted,
            "frames_dropped": self.dropped,
            "drops": dict(self.drops),
            "in_flight": self.in_flight,
        }

    @classmethod
    def of(cls, status: SourceStatus) -> FrameLedger:
        """The counts of a source's typed status."""
        return cls(
            status.frames_decoded,
            status.frames_inferred,
            status.frames_emitted,
            Counter(status.drops),
        )

    @classmethod
    def from_fields(cls, status: Mapping[str, Any]) -> FrameLedger:
        """The counts of a dict of ``fields()``'s keys, such as the counts the controller
        carries over from a source's earlier incarnations (its durable ``base``, which is not
        a whole status)."""
        return cls(
            int(status.get("frames_decoded", 0)),
            int(status.get("frames_inferred", 0)),
            int(status.get("frames_emitted", 0)),
            Counter({k: int(v) for k, v in status.get("drops", {}).items()}),
        )
