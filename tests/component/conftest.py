"""The component tier: real PyAV, models, x264, threads on the real clock and subprocesses;
no Ray cluster (``tests/integration`` has that)."""

from __future__ import annotations

from tests.fixtures import key_file, strict_transitions  # noqa: F401 - shared fixtures
