"""Fixtures shared by the unit and component tiers (imported by their conftest files)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def strict_transitions(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Make every illegal source transition fail the test.

    In production ``SourceMachine.enter`` logs an illegal transition and records it anyway
    (it must never crash a stream). This patches the check it calls: the check still raises,
    and each illegal transition is also kept, so that the test fails at teardown even when it
    happened in one of the worker's threads. Yields the list of the illegal ones seen.
    """
    import vsa.stream.machine
    from vsa.schema import check_source_transition

    illegal: list[str] = []

    def check(old, new) -> None:
        try:
            check_source_transition(old, new)
        except ValueError as exc:
            illegal.append(str(exc))
            raise

    monkeypatch.setattr(vsa.stream.machine, "check_source_transition", check)
    yield illegal
    assert illegal == [], illegal


@pytest.fixture
def key_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The engine's sealing key in a temporary place (``vsa.secrets``)."""
    path = tmp_path / "state" / "secret.key"
    monkeypatch.setenv("VSA_SECRET_KEY_FILE", str(path))
    return path
