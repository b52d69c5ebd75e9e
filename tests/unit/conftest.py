"""The unit tier: no Ray, no torch, no PyAV (so no real model and no x264), no subprocess and no
sleeping (a fake clock, ``tests/unit/fakes.py``). Tests that need any of these live in
``tests/component`` (real PyAV, models, x264, threads on the real clock; no Ray) or
``tests/integration`` (a real Ray cluster).

Held here, not by convention: ``subprocess.Popen`` and ``time.sleep`` fail while a unit test
runs, and when the session runs only unit tests (``pytest tests/unit``, as ``scripts/test.sh``
does first) importing ``torch``, ``av`` or ``ray`` fails too. A session over several tiers
loads those for the other tiers; the separate unit run is the check.

``ray.init`` also raises while a unit test runs (kept for a run together with other tiers):
if ``ray`` is already imported its ``init`` is patched for the test; if the test imports it,
an import hook guards ``init`` as soon as the module has loaded.
"""

from __future__ import annotations

import functools
import importlib.abc
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

_unit_test_running = False

# Not importable in the unit tier (see the module docstring).
HEAVY = ("torch", "torchvision", "av", "ray")


class _RefuseHeavyImports(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        if fullname.split(".")[0] in HEAVY:
            raise ImportError(
                f"the unit tier does not import {fullname!r} (no torch, PyAV or Ray): put this "
                "test under tests/component (real PyAV/models, no Ray) or tests/integration"
            )
        return None


def _only_unit_tests(args: list[str]) -> bool:
    here = Path(__file__).resolve().parent
    paths = [Path(a.split("::")[0]).resolve() for a in args if not a.startswith("-")]
    return bool(paths) and all(p == here or here in p.parents for p in paths)


def pytest_configure(config: pytest.Config) -> None:
    """Refuse the heavy imports when this session runs the unit tier alone (then nothing else
    needs them; a session over several tiers imports them for the others)."""
    if _only_unit_tests(list(config.args)) and not any(name in sys.modules for name in HEAVY):
        sys.meta_path.insert(0, _RefuseHeavyImports())
    try:  # matplotlib (the report's chart) builds its font cache with a subprocess on first
        import matplotlib.font_manager  # noqa: F401 - use on a fresh host: do it before any test

    except ImportError:
        pass


def _no_sleep(seconds: float) -> None:
    raise AssertionError(
        f"time.sleep({seconds!r}) in a unit test: use the fake clock (tests/unit/fakes.py), "
        "or put the test under tests/component"
    )


def _no_subprocess(*args: object, **kwargs: object) -> None:
    raise AssertionError(
        "a unit test started a subprocess: put it under tests/component or tests/integration"
    )


@pytest.fixture(autouse=True)
def _no_sleep_or_subprocess(monkeypatch: pytest.MonkeyPatch) -> None:
    import subprocess
    import time

    monkeypatch.setattr(time, "sleep", _no_sleep)
    monkeypatch.setattr(subprocess.Popen, "__init__", _no_subprocess)


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


from tests.fixtures import key_file, strict_transitions  # noqa: E402,F401 - shared fixtures


@pytest.fixture(autouse=True)
def _no_status_endpoint(monkeypatch, tmp_path_factory):
    """No unit test reads the status endpoint of a real controller on this host: Ray's temp
    directory (where ``vsa.control.endpoint`` looks) is an empty one."""
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path_factory.getbasetemp() / "no-ray"))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    # nor the endpoint index (~/.vsa/endpoints) of the clusters running on this host
    from vsa.control import endpoint

    no_index = tmp_path_factory.getbasetemp() / "no-index"
    monkeypatch.setattr(endpoint, "index_dir", lambda: no_index)
