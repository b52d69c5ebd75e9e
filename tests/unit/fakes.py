"""Fakes shared by the unit tests."""

from __future__ import annotations


class FakeClock:
    """A clock for injection: returns ``now``; tests move it with ``advance``."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
