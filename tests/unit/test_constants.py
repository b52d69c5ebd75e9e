"""The engine's fixed periods, timeouts and limits: pinned, so that a change is deliberate."""

from __future__ import annotations

import importlib

import pytest

from vsa import constants

PINNED = {
    "POLL_S": 0.5,
    "SUPERVISE_S": 1.0,
    "SAVE_EVERY_S": 5.0,
    "ENGINE_TIMEOUT_S": 120.0,
    "STORE_CHECK_S": 5.0,
    "WARNING_HOLD_S": 60.0,
    "METRICS_FLUSH_S": 12.0,
    "REAP_LEFT_S": 600.0,
    "KEEP_FINISHED": 50,
    "SNAPSHOT_S": 1.0,
    "HEARTBEAT_S": 1.0,
    "FAIR_WAIT": 0.5,
    "FAIR_WAIT_MAX_S": 0.25,
    "ALIGN_WAIT": 0.2,
    "FRESH_S": 0.3,
    "ENDPOINT_TIMEOUT_S": 5.0,
    "ENDPOINT_READ_TIMEOUT_S": 5.0,
    "ENDPOINT_MAX_CONNECTIONS": 32,
    "STATUS_TIMEOUT_S": 10.0,
    "INFERENCE_WAIT_S": 120.0,
    "DROPS_SUMMARY_S": 30.0,
    "STOP_GRACE_S": 15.0,
    "TRANSITIONS_KEPT": 100,
    "CHECK_INTERVAL_S": 0.5,
    "MEMORY_RESERVE_BYTES": 1 << 30,
}

# where each one was defined before vsa.constants (and is still importable from)
OLD_HOMES = {
    "STATUS_TIMEOUT_S": ["vsa.supervision.watchdog"],
    "KEEP_FINISHED": ["vsa.supervision.runbook"],
    "STOP_GRACE_S": ["vsa.stream"],
    "TRANSITIONS_KEPT": ["vsa.stream"],
    "CHECK_INTERVAL_S": ["vsa.sinks"],
    "MEMORY_RESERVE_BYTES": ["vsa.outputs"],
}


@pytest.mark.parametrize(("name", "value"), sorted(PINNED.items()))
def test_pinned(name: str, value: float):
    got = getattr(constants, name)
    assert got == value and type(got) is type(value), (name, got)


def test_every_constant_is_pinned():
    public = {n for n in vars(constants) if n.isupper() and not n.startswith("_")}
    assert public == set(PINNED)


@pytest.mark.parametrize(
    ("name", "module"), [(n, m) for n, ms in sorted(OLD_HOMES.items()) for m in ms]
)
def test_old_names_are_the_same_values(name: str, module: str):
    assert getattr(importlib.import_module(module), name) == getattr(constants, name)


def test_none_is_read_from_the_environment():
    source = importlib.util.find_spec("vsa.constants").origin
    text = open(source).read()
    assert "environ" not in text and "getenv" not in text
