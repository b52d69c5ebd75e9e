"""A controller running other code never silently serves a newer client.

Named ``zz`` so it runs last: it replaces the session's controller.
"""

from __future__ import annotations

import pytest
import ray

from actors import CONTROLLER_NAME, NAMESPACE
from actors.controller import Controller
from tests.integration.conftest import wait_for
from vsa import CODE_FINGERPRINT
from vsa.client import Client, _wait_name_free
from vsa.config import parse_run
from vsa.errors import VersionMismatch

pytestmark = pytest.mark.integration


def test_old_controller_is_refused_while_busy_and_replaced_when_idle(client, tmp_path):
    ray.kill(ray.get_actor(CONTROLLER_NAME, namespace=NAMESPACE), no_restart=True)
    _wait_name_free(CONTROLLER_NAME, NAMESPACE)
    old = Controller.options(
        name=CONTROLLER_NAME, namespace=NAMESPACE, lifetime="detached", max_concurrency=100
    ).remote("0ld0ld0ld0ld")
    assert ray.get(old.version.remote())["fingerprint"] == "0ld0ld0ld0ld"
    spec = parse_run(
        {
            "name": "busy",
            "output_dir": str(tmp_path / "out"),
            "sources": [
                {"id": "cam", "uri": "synthetic://shapes?seed=1&fps=10&width=128&height=96"}
            ],
        }
    )
    run_id = ray.get(old.submit.remote(spec.model_dump()))["run_id"]

    with pytest.raises(VersionMismatch) as info:
        Client()
    message = str(info.value)
    assert "code 0ld0ld0ld0ld" in message and CODE_FINGERPRINT in message
    assert run_id in message and "vsa stop" in message

    ray.get(old.stop.remote(run_id))
    fresh = Client().controller
    assert ray.get(fresh.version.remote())["fingerprint"] == CODE_FINGERPRINT
    wait_for(lambda: not _alive(old), 60, "the old controller to be gone")


def _alive(handle) -> bool:
    try:
        ray.get(handle.version.remote(), timeout=5)
    except Exception:  # noqa: BLE001
        return False
    return True
