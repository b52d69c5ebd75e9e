"""Unit tests run without Ray: any attempt to start or join a cluster fails the test.

``ray`` is not imported here (importing it is slow). While a unit test runs,
``ray.init`` raises: if ``ray`` is already imported its ``init`` is patched for the
test; if the test imports it, an import hook guards ``init`` as soon as the module
has loaded. Nothing changes for tests outside tests/unit.
"""

from __future__ import annotations

import functools
import importlib.abc
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

_unit_test_running = False


def _forbidden_ray_init(*args: object, **kwargs: object) -> None:
    raise AssertionError(
        "ray.init() was called from a unit test; unit tests must not start or join a "
        "Ray cluster (put such tests under tests/integration)"
    )


def _guard(original):
    """``ray.init`` that refuses while a unit test runs and is the original otherwise."""

    @functools.wraps(original)
    def init(*args, **kwargs):
        if _unit_test_running:
            _forbidden_ray_init()
        return original(*args, **kwargs)

    return init


class _GuardRayOnImport(importlib.abc.MetaPathFinder):
    """Wraps the loader of the top-level ``ray`` module so that ``ray.init`` is guarded."""

    def find_spec(self, fullname, path, target=None):
        if fullname != "ray":
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is None or spec.loader is None:
                continue
            exec_module = spec.loader.exec_module

            def exec_and_guard(module, _exec=exec_module):
                _exec(module)
                module.init = _guard(module.init)

            spec.loader.exec_module = exec_and_guard
            return spec
        return None


@pytest.fixture(autouse=True)
def _no_ray_cluster(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    global _unit_test_running
    ray = sys.modules.get("ray")
    if ray is not None:
        monkeypatch.setattr(ray, "init", _forbidden_ray_init)
    else:
        monkeypatch.setattr(sys, "meta_path", [_GuardRayOnImport(), *sys.meta_path])
    _unit_test_running = True
    try:
        yield
    finally:
        _unit_test_running = False


@pytest.fixture
def strict_transitions(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Make every illegal source transition fail the test.

    In production ``StreamWorker._record`` logs an illegal transition and records it anyway
    (it must never crash a stream). This patches the check it calls: the check still raises,
    and each illegal transition is also kept, so that the test fails at teardown even when it
    happened in one of the worker's threads. Yields the list of the illegal ones seen.
    """
    import vsa.stream
    from vsa.schema import check_source_transition

    illegal: list[str] = []

    def check(old, new) -> None:
        try:
            check_source_transition(old, new)
        except ValueError as exc:
            illegal.append(str(exc))
            raise

    monkeypatch.setattr(vsa.stream, "check_source_transition", check)
    yield illegal
    assert illegal == [], illegal


@pytest.fixture
def key_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The engine's sealing key in a temporary place (``vsa.secrets``)."""
    path = tmp_path / "state" / "secret.key"
    monkeypatch.setenv("VSA_SECRET_KEY_FILE", str(path))
    return path
