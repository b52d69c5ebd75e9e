"""Talking to the engine: connect to Ray, get or create the controller, submit/status/stop.

The public surface for scripts is ``Client``; the CLI is a thin layer over it.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from typing import Any

from vsa import CODE_FINGERPRINT, __version__
from vsa.config import RunSpec
from vsa.errors import ClusterNotFound, VersionMismatch, VsaError

NO_CLUSTER_HINT = (
    "start one with `ray start --head` (or point --address / RAY_ADDRESS at a running cluster)"
)


def connect(address: str | None = None, local: bool = False) -> None:
    """Connect this process to Ray in the ``vsa`` namespace (no-op when already connected).

    ``address`` defaults to ``RAY_ADDRESS`` and then to the cluster started on this host,
    like Ray's own tools. Token authentication works as for any Ray driver: the token
    in ``~/.ray/auth_token`` (or ``RAY_AUTH_TOKEN``) is picked up by ``ray.init``.
    """
    import ray

    if ray.is_initialized():
        return
    kwargs: dict[str, Any] = {
        "namespace": "vsa",
        "log_to_driver": False,
        "logging_level": logging.WARNING,
        "configure_logging": True,
    }
    if local:
        ray.init(address="local", include_dashboard=False, **kwargs)
        return
    target = address or os.environ.get("RAY_ADDRESS") or "auto"
    _probe(target)
    try:
        _enable_token_auth_if_available()
        ray.init(address=target, **kwargs)
    except ConnectionError as exc:
        where = "" if target == "auto" else f" at {target}"
        raise ClusterNotFound(f"no Ray cluster is running{where}: {NO_CLUSTER_HINT}") from exc
    except Exception as exc:
        if type(exc).__name__ == "AuthenticationError":
            raise ClusterNotFound(
                "the Ray cluster refused this client's token: make ~/.ray/auth_token (or RAY_AUTH_TOKEN) "
                "hold the token the cluster was started with"
            ) from exc
        raise


def _probe(address: str) -> None:
    """Fail fast when an explicit ``host:port`` does not answer (ray.init would retry for minutes)."""
    if address in ("auto", "local") or "://" in address:
        return
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=3).close()
    except OSError:
        raise ClusterNotFound(f"no Ray cluster answers at {address}: {NO_CLUSTER_HINT}") from None


def _enable_token_auth_if_available() -> None:
    """Use the cluster's token when one exists, as Ray's own drivers do (best effort)."""
    try:
        from ray._private.authentication.authentication_token_setup import (
            maybe_enable_token_auth_if_token_available,
        )
    except ImportError:  # older or newer Ray without this helper: ray.init handles it
        return
    quiet = logging.getLogger("ray._private.authentication.authentication_token_setup")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # Ray warns on every connect; `ray start` already told the user
    try:
        maybe_enable_token_auth_if_token_available(warn_if_disabled=False)
    finally:
        quiet.setLevel(level)


class Client:
    """Submit, inspect and stop runs on the engine of the connected Ray cluster."""

    def __init__(
        self, address: str | None = None, local: bool = False, replace_controller: bool = False
    ) -> None:
        connect(address, local)
        self.controller = get_or_create_controller(replace=replace_controller)

    def submit(self, spec: RunSpec) -> dict[str, Any]:
        return _call(self.controller.submit.remote(spec.model_dump()))

    def status(self, run: str | None = None) -> dict[str, Any]:
        return _call(self.controller.status.remote(run))

    def stop(self, run: str, timeout_s: float = 60.0) -> dict[str, Any]:
        return _call(self.controller.stop.remote(run, timeout_s), timeout=timeout_s + 30)

    def wait(self, run_id: str, timeout_s: float, poll_s: float = 0.5) -> dict[str, Any]:
        """Poll until the run reaches a terminal state (or raise TimeoutError)."""
        deadline = time.monotonic() + timeout_s
        while True:
            run = self.status(run_id)["runs"][0]
            if run["state"] in ("FINISHED", "FAILED", "STOPPED"):
                return run
            if time.monotonic() > deadline:
                raise TimeoutError(f"run {run_id} still {run['state']} after {timeout_s:.0f}s")
            time.sleep(poll_s)


def _call(ref: Any, timeout: float = 120.0) -> Any:
    """ray.get that re-raises our own errors as themselves, not wrapped in RayTaskError."""
    import ray

    try:
        return ray.get(ref, timeout=timeout)
    except ray.exceptions.RayTaskError as exc:
        cause = getattr(exc, "cause", None)
        if isinstance(cause, VsaError):
            raise cause from None
        raise
    except ray.exceptions.GetTimeoutError:
        raise VsaError(
            f"the engine did not answer within {timeout:.0f} s; see `ray status` and the controller log"
        ) from None
    except ray.exceptions.RayActorError as exc:
        raise VsaError(
            f"the engine's controller is unavailable ({type(exc).__name__}); retry in a few seconds"
        ) from None


def get_or_create_controller(replace: bool = False) -> Any:
    """The named detached controller, created when missing, checked for a matching version.

    A controller running other code is replaced when it is idle (or when ``replace``);
    with active runs the client refuses and says what to do.
    """
    import ray

    from actors import CONTROLLER_NAME, NAMESPACE

    try:
        controller = ray.get_actor(CONTROLLER_NAME, namespace=NAMESPACE)
    except ValueError:
        controller = _create_controller()
    info = _call(controller.version.remote(), timeout=120)
    if info["fingerprint"] == CODE_FINGERPRINT:
        return controller
    active = info["active_runs"]
    if active and not replace:
        raise VersionMismatch(
            f"the running controller executes vsa {info['version']} (code {info['fingerprint']}) "
            f"and this client is vsa {__version__} (code {CODE_FINGERPRINT}); it has {len(active)} "
            f"active run(s): {', '.join(active)}. Stop them (`vsa stop RUN`) and retry, or pass "
            f"--replace-controller to stop them now."
        )
    for run_id in active:  # --replace-controller: stop runs properly so their files are complete
        _call(controller.stop.remote(run_id), timeout=120)
    ray.kill(controller, no_restart=True)
    _wait_name_free(CONTROLLER_NAME, NAMESPACE)
    controller = _create_controller()
    _call(controller.version.remote(), timeout=120)
    return controller


def _create_controller() -> Any:
    from actors import CONTROLLER_NAME, NAMESPACE
    from actors.controller import Controller

    return Controller.options(
        name=CONTROLLER_NAME,
        namespace=NAMESPACE,
        lifetime="detached",
        get_if_exists=True,
        max_restarts=-1,
        max_concurrency=100,
    ).remote()


def _wait_name_free(name: str, namespace: str, timeout_s: float = 30.0) -> None:
    import ray

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            ray.get_actor(name, namespace=namespace)
        except ValueError:
            return
        time.sleep(0.2)
    raise TimeoutError(f"actor {namespace}/{name} did not go away within {timeout_s:.0f}s")
