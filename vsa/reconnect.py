"""Reconnect delays: the `fixed` and `exponential` (with jitter) policies of a `reconnect:` block."""

from __future__ import annotations

import random

from vsa.config import ReconnectSpec


class Backoff:
    """Delay before reconnect attempt ``n`` (1 = the first retry after a failure).

    ``permanent`` errors (bad credentials, not found, unsupported codec) are not hammered:
    they wait the policy's longest delay at once.
    """

    def __init__(self, spec: ReconnectSpec, rng: random.Random | None = None) -> None:
        self.spec = spec
        self._rng = rng or random.Random()

    def base_delay(self, attempt: int, permanent: bool = False) -> float:
        spec = self.spec
        if spec.policy == "fixed":
            return spec.interval_s
        if permanent:
            return spec.max_s
        exponent = max(0, attempt - 1)
        # cap the exponent so that huge attempt counts never overflow a float
        return min(spec.max_s, spec.initial_s * spec.multiplier ** min(exponent, 200))

    def delay(self, attempt: int, permanent: bool = False) -> float:
        base = self.base_delay(attempt, permanent)
        if self.spec.policy == "fixed" or self.spec.jitter == 0:
            return base
        return base * self._rng.uniform(1.0 - self.spec.jitter, 1.0)

    def exhausted(self, attempt: int) -> bool:
        """True when ``attempt`` would exceed ``max_attempts``."""
        limit = self.spec.max_attempts
        return limit is not None and attempt > limit
