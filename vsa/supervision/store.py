"""Where the controller keeps its run records: a tiny key-value interface and a fake.

The controller's own store is Ray's GCS key-value store (``actors/store.py``); everything in
``vsa.supervision`` sees only :class:`RunStore`, so it is tested with :class:`MemoryRunStore`.
A record is the text :meth:`vsa.supervision.runbook.RunRecord.to_json` writes.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable


@runtime_checkable
class RunStore(Protocol):
    """Run records by run id. Any method may raise: the callers log and go on."""

    def put(self, run_id: str, text: str) -> None:
        """Save (or replace) the record of ``run_id``."""
        ...

    def get(self, run_id: str) -> str | None:
        """The record of ``run_id``; None when there is none."""
        ...

    def list(self) -> list[str]:
        """The ids of every saved record."""
        ...

    def delete(self, run_id: str) -> None:
        """Forget the record of ``run_id`` (nothing happens when there is none)."""
        ...


class MemoryRunStore:
    """A :class:`RunStore` in a dict, for tests. Set ``error`` to make every call raise it."""

    def __init__(self) -> None:
        self.texts: dict[str, str] = {}
        self.error: Exception | None = None

    def _check(self) -> None:
        if self.error is not None:
            raise self.error

    def put(self, run_id: str, text: str) -> None:
        self._check()
        self.texts[run_id] = text

    def get(self, run_id: str) -> str | None:
        self._check()
        return self.texts.get(run_id)

    def list(self) -> list[str]:
        self._check()
        return list(self.texts)

    def delete(self, run_id: str) -> None:
        self._check()
        self.texts.pop(run_id, None)
