"""Talking to the engine: connect to Ray, get or create the controller, submit/status/stop,
and change a run while it runs (add/remove a source, pause/resume).

The public surface for scripts is ``Client`` (also ``vsa.Client``); the CLI is a thin layer
over it. Status comes back typed (``vsa.schema.RunStatus``)::

    from vsa import Client

    client = Client()                       # RAY_ADDRESS, else the cluster on this host
    run_id = client.submit("run.yaml")["run_id"]
    run = client.wait(run_id, timeout_s=600)
    print(run.state, run.frames_emitted, run.source("cam1").drops)
    client.status()                         # every run, as RunStatus objects
    client.stop(run_id)                     # the final RunStatus
"""

from __future__ import annotations

import logging
import math
import os
import socket
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from vsa import CODE_FINGERPRINT, __version__
from vsa.config import RunSpec, SourceSpec
from vsa.errors import (
    AuthenticationFailed,
    ClusterNotFound,
    InvalidArgument,
    RunNotFound,
    StatusFormatError,  # noqa: F401 - raised by Client.status, importable from here as before
    VersionMismatch,
    VsaError,
)
from vsa.schema import RunStatus, runs_from_dict
from vsa.schema import typed as _typed

NO_CLUSTER_HINT = (
    "start one with `ray start --head` (or point --address / RAY_ADDRESS at a running cluster)"
)
TOKEN_HINT = (
    "make ~/.ray/auth_token (or RAY_AUTH_TOKEN) hold the token the cluster was started with"
)
MAX_STOP_TIMEOUT_S = 3600.0
"""The longest drain ``vsa stop --timeout`` / ``Client.stop`` accept (an hour)."""
STOP_RPC_MARGIN_S = 60.0
"""``Client.stop`` waits ``timeout_s`` plus this: the controller may take ``timeout_s + 15`` s
(a source inside an open/read has a fixed 15 s grace after the drain to reach a terminal
state), and the answer still has to come back."""
CHANGE_RPC_TIMEOUT_S = 300.0
"""How long ``Client.submit``, ``add_source`` and ``resume`` wait for the engine's answer: a
change to an active run may first drain the sources it restarts (up to 75 s) and load another
model, and a resumed run loads its model again."""


def check_stop_timeout(timeout_s: Any) -> float:
    """``timeout_s`` as a float when it is a finite number of seconds in (0, 3600], else raise
    ``InvalidArgument``. A zero, negative or NaN drain would mark a run STOPPED while its
    sources still stream."""
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float)):
        raise InvalidArgument(
            f"the stop timeout must be a number of seconds, not {type(timeout_s).__name__}"
        )
    value = float(timeout_s)
    if not math.isfinite(value) or not 0 < value <= MAX_STOP_TIMEOUT_S:
        raise InvalidArgument(
            f"the stop timeout must be a finite number of seconds in (0, "
            f"{MAX_STOP_TIMEOUT_S:.0f}], not {timeout_s!r}"
        )
    return value


def connect(address: str | None = None, local: bool = False) -> None:
    """Connect this process to Ray in the ``vsa`` namespace (no-op when already connected).

    ``address`` defaults to ``RAY_ADDRESS`` and then to the cluster started on this host,
    like Ray's own tools. Token authentication works as for any Ray driver: the token
    in ``~/.ray/auth_token`` (or ``RAY_AUTH_TOKEN``) is picked up by ``ray.init``.

    Raises ``ClusterNotFound`` when no cluster answers and ``AuthenticationFailed`` when the
    cluster refuses this client's token (or its lack of one); neither message holds a token.
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
    from vsa.hostconfig import environ

    target = address or environ().get("RAY_ADDRESS") or "auto"
    _probe(target)
    _enable_token_auth_if_available()
    _check_token(target)
    try:
        ray.init(address=target, **kwargs)
    except Exception as exc:
        if type(exc).__name__ == "AuthenticationError" and not _has_token():
            # RAY_AUTH_MODE=token and no token: ray.init refuses before it connects
            raise AuthenticationFailed(
                f"token authentication is on (RAY_AUTH_MODE=token) and this client has no "
                f"token: {TOKEN_HINT}"
            ) from exc
        if _refused_by_auth(exc):
            raise _auth_failure(_resolve(target), _has_token()) from exc
        if isinstance(exc, ConnectionError):
            where = "" if target == "auto" else f" at {target}"
            raise ClusterNotFound(f"no Ray cluster is running{where}: {NO_CLUSTER_HINT}") from exc
        raise


def _auth_failure(address: str | None, has_token: bool) -> AuthenticationFailed:
    """The one-line error for a cluster that refuses this client; it never holds the token."""
    where = f" at {address}" if address else ""
    if has_token:
        return AuthenticationFailed(
            f"the Ray cluster{where} refused this client's token: {TOKEN_HINT}"
        )
    return AuthenticationFailed(
        f"the Ray cluster{where} refused this client, which has no token: {TOKEN_HINT}"
    )


# What Ray 2.60 raises when the cluster refuses the token: ray.init retries ~20 s, then raises
# ConnectionError("Failed to connect to Ray cluster at <gcs>") from RuntimeError("Failed to
# connect to GCS. Last connection error: <traceback text>") whose text ends in
# "ray.exceptions.AuthenticationError: RPC error: InvalidAuthToken: Authentication token is
# missing or incorrect. ...". With RAY_AUTH_MODE=token and no token at all, ray.init raises
# ray.exceptions.AuthenticationError itself before connecting.
_AUTH_MARKERS = ("AuthenticationError", "InvalidAuthToken", "UNAUTHENTICATED", "Unauthenticated")


def _refused_by_auth(exc: BaseException) -> bool:
    """Whether ``exc`` (or an exception it wraps) is an authentication failure."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if type(current).__name__ == "AuthenticationError":
            return True
        if isinstance(current, (ConnectionError, RuntimeError)) and any(
            marker in str(current) for marker in _AUTH_MARKERS
        ):
            return True
        current = current.__cause__ or current.__context__
    return False


def _has_token() -> bool:
    """Whether this process has a token (env var or file); the token itself is not read here."""
    try:
        from ray._raylet import AuthenticationTokenLoader

        return bool(AuthenticationTokenLoader.instance().has_token(ignore_auth_mode=True))
    except Exception:  # best effort: only picks the wording of the error
        return bool(os.environ.get("RAY_AUTH_TOKEN"))


def _resolve(target: str) -> str | None:
    """``host:port`` of the GCS that ``ray.init(address=target)`` would join, or None."""
    if "://" in target:
        return None
    if target != "auto":
        return target
    try:
        from ray._private import services

        return services.canonicalize_bootstrap_address(target)
    except Exception:  # no cluster found, several found, ...: ray.init says it
        return None


def _check_token(target: str, timeout_s: float = 5.0) -> None:
    """Ask the GCS for its cluster id once, with this client's token, and raise
    ``AuthenticationFailed`` when it answers UNAUTHENTICATED.

    ray.init would retry a refused token for about 20 s, logging a warning a second, and then
    report a generic connection failure. Anything other than UNAUTHENTICATED is left to
    ray.init (best effort: Ray internals may move).
    """
    address = _resolve(target)
    if not address:
        return
    try:
        import grpc
        from ray._private.grpc_utils import init_grpc_channel
        from ray.core.generated import gcs_service_pb2, gcs_service_pb2_grpc
    except ImportError:
        return
    try:
        channel = init_grpc_channel(address)
    except Exception:
        return
    try:
        stub = gcs_service_pb2_grpc.NodeInfoGcsServiceStub(channel)
        stub.GetClusterId(gcs_service_pb2.GetClusterIdRequest(), timeout=timeout_s)
    except grpc.RpcError as exc:
        code = exc.code() if callable(getattr(exc, "code", None)) else None
        if code == grpc.StatusCode.UNAUTHENTICATED:
            raise _auth_failure(address, _has_token()) from None
    except Exception:
        return
    finally:
        channel.close()


def _probe(address: str) -> None:
    """Fail fast when an explicit ``host:port`` does not answer (ray.init would retry for
    minutes)."""
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

    def submit(
        self,
        spec: RunSpec | str | os.PathLike[str],
        overwrite: bool = False,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        """Start a run: a ``RunSpec`` as it is, or the path of a run file (read, validated and
        its relative paths taken from the current directory, as ``vsa submit`` does; a bad
        file raises ``ConfigError`` naming every problem). ``overwrite`` replaces the outputs
        of an earlier, finished run in ``output_dir``; without it a run whose output files
        already exist is refused.

        Returns the controller's answer. A new run: ``run_id``, ``model`` (name, device, ...),
        ``state`` (``WAITING``, or ``PENDING`` when its model does not fit beside the loaded
        ones: it starts by itself later, ``reason`` says why). When a run of that name is
        active (running, paused or pending) the difference is applied to it instead:
        ``run_id``, ``model``, ``plan`` (what changed, see ``vsa.cli.plan_text``) and
        ``applied``. ``dry_run`` changes nothing and returns only ``run_id`` (None when no run
        of that name is active), the ``plan`` and ``applied: False``.
        """
        if not isinstance(spec, RunSpec):
            spec = load_spec(spec)
        args: tuple[Any, ...] = (spec.model_dump(), bool(overwrite))
        if dry_run:  # only then: the call stays what it was for a plain submit
            args += (True,)
        return _call(self.controller.submit.remote(*args), timeout=CHANGE_RPC_TIMEOUT_S)

    def add_source(
        self, run: str, source: SourceSpec | Mapping[str, Any], dry_run: bool = False
    ) -> dict[str, Any]:
        """Add a source to the active run ``run`` (id or name) without restarting its other
        sources; ``dry_run`` only returns the plan.

        ``source`` is a ``SourceSpec`` as it is, or a mapping written like one of a run file's
        ``sources`` (``${ENV}`` expanded, validated here: a bad field raises ``ConfigError``
        before the engine is asked); a relative file path and a ``password_file`` are taken
        from the current directory, as ``vsa submit`` does for a run file. Returns
        ``{"run_id", "plan", "applied"}``.
        """
        spec = resolve_source(source, os.getcwd())
        return _call(
            self.controller.add_source.remote(run, spec.model_dump(), bool(dry_run)),
            timeout=CHANGE_RPC_TIMEOUT_S,
        )

    def remove_source(
        self, run: str, source_id: str, timeout_s: float = 60.0, dry_run: bool = False
    ) -> dict[str, Any]:
        """Remove source ``source_id`` from the active run ``run`` (id or name), waiting up to
        ``timeout_s`` (0 < timeout_s <= 3600) for its frames in flight; its files are closed
        and playable, the other sources go on. ``dry_run`` only returns the plan. Returns
        ``{"run_id", "plan", "applied"}``; ``InvalidArgument`` for a bad ``timeout_s`` without
        asking the engine.
        """
        timeout_s = check_stop_timeout(timeout_s)
        return _call(
            self.controller.remove_source.remote(run, source_id, timeout_s, bool(dry_run)),
            timeout=timeout_s + STOP_RPC_MARGIN_S,
        )

    def pause(self, run: str, timeout_s: float = 60.0) -> RunStatus:
        """Pause an active run: its sources stop, waiting up to ``timeout_s`` (0 < timeout_s
        <= 3600) for their frames in flight, until ``resume``; the run's status (``PAUSED``).
        ``InvalidArgument`` for a bad ``timeout_s`` without asking the engine."""
        timeout_s = check_stop_timeout(timeout_s)
        answer = _call(
            self.controller.pause.remote(run, timeout_s), timeout=timeout_s + STOP_RPC_MARGIN_S
        )
        return _typed(RunStatus.from_dict, answer)

    def resume(self, run: str) -> RunStatus:
        """Resume a paused run (same id, its files continued); the run's status."""
        answer = _call(self.controller.resume.remote(run), timeout=CHANGE_RPC_TIMEOUT_S)
        return _typed(RunStatus.from_dict, answer)

    def status(self, run: str | None = None) -> list[RunStatus]:
        """Every run the controller knows, oldest first; or only ``run`` (id or name)."""
        return _typed(runs_from_dict, self.status_dicts(run))

    def status_dicts(self, run: str | None = None) -> dict[str, Any]:
        """The controller's answer as it comes: ``{"runs": [run dict, ...]}`` (no ``"v"``);
        ``[r.to_dict() for r in status()]`` is the versioned form."""
        return _call(self.controller.status.remote(run))

    def run(self, run: str) -> RunStatus:
        """One run by id or name (the latest of that name); ``RunNotFound`` when none."""
        runs = self.status(run)
        if not runs:
            raise RunNotFound(f"no run with id or name '{run}' (see `vsa list`)")
        return runs[0]

    def stop(self, run: str, timeout_s: float = 60.0) -> RunStatus:
        """Stop a run, waiting up to ``timeout_s`` (0 < timeout_s <= 3600) for sources to drain;
        the run's final status.

        Raises ``InvalidArgument`` (a ``VsaError`` and ``ValueError``) for a non-finite or
        out-of-range ``timeout_s`` without asking the engine.
        """
        timeout_s = check_stop_timeout(timeout_s)
        answer = _call(
            self.controller.stop.remote(run, timeout_s), timeout=timeout_s + STOP_RPC_MARGIN_S
        )
        return _typed(RunStatus.from_dict, answer)

    def drain(self, timeout_s: float = 60.0) -> dict[str, Any]:
        """Get the engine ready for a restart (``vsa drain``): new runs are refused and every
        active run's sources stop and close their files; the runs stay active and resume, same
        ids, files continued, when the engine starts again. ``{"drained": [run ids],
        "took_s": seconds}``."""
        timeout_s = check_stop_timeout(timeout_s)
        return _call(
            self.controller.drain.remote(timeout_s), timeout=timeout_s * 2 + STOP_RPC_MARGIN_S
        )

    def resume_drained(self) -> dict[str, Any]:
        """End a drain without restarting Ray (``vsa serve`` does it at start): new runs are
        accepted again and every drained run resumes, same ids, files continued.
        ``{"draining": whether the engine was, "resumed": [run ids]}``."""
        return _call(self.controller.resume_drained.remote(), timeout=300)

    def wait(self, run_id: str, timeout_s: float | None = None, poll_s: float = 0.5) -> RunStatus:
        """Poll until the run reaches a terminal state and return its status; ``TimeoutError``
        after ``timeout_s`` (None: no limit)."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            run = self.run(run_id)
            if run.terminal:
                return run
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"run {run_id} still {run.state.value} after {timeout_s:.0f}s")
            time.sleep(poll_s)


def load_spec(path: str | os.PathLike[str]) -> RunSpec:
    """A run file read and validated, its relative paths taken from the current directory
    (what ``vsa submit FILE`` sends). Raises ``ConfigError`` naming every problem."""
    from vsa.config import load_run, resolve_paths

    if not isinstance(path, (str, os.PathLike)):
        raise InvalidArgument(
            f"submit takes a RunSpec or the path of a run file, not {type(path).__name__}"
        )
    return resolve_paths(load_run(Path(path)), os.getcwd())


def resolve_source(
    source: SourceSpec | Mapping[str, Any], base_dir: str | os.PathLike[str]
) -> SourceSpec:
    """One source as ``Client.add_source`` sends it: a mapping validated as a ``SourceSpec``
    (``${ENV}`` expanded first, as in a run file), a file path made absolute against
    ``base_dir`` (it must exist), the password of a ``password_file`` (relative to
    ``base_dir``) put into the URI, as ``vsa.config.resolve_paths`` does for a run's sources.
    Raises ``ConfigError`` naming every problem; no problem quotes a credential."""
    from pydantic import ValidationError

    from vsa import uri as uri_mod
    from vsa.config import _config_error, _format_error, _resolve, _with_password, interpolate_env

    if isinstance(source, SourceSpec):
        spec = source
    elif isinstance(source, Mapping):
        try:
            spec = SourceSpec.model_validate(interpolate_env(dict(source)))
        except ValidationError as exc:
            errors = exc.errors(include_url=False, include_context=True, include_input=True)
            raise _config_error(uri_mod.mask_uri(_format_error(e)) for e in errors) from None
    else:
        raise InvalidArgument(
            f"a source is a SourceSpec or a mapping of its fields, not {type(source).__name__}"
        )
    base = Path(base_dir)
    problems: list[str] = []
    if uri_mod.scheme_of(spec.uri) == "file":
        path = _resolve(uri_mod.file_path(spec.uri), base, "uri", problems, file=True)
        if path is not None:
            spec = spec.model_copy(update={"uri": f"file://{path}"})
    elif spec.password_file is not None:
        spec = _with_password(spec, base, "password_file", problems)
    if problems:
        raise _config_error(uri_mod.mask_uri(p) for p in problems)
    return spec


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
            f"the engine did not answer within {timeout:.0f} s; see `ray status` and the "
            "controller log"
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
            f"active run(s): {', '.join(active)}. Pass --replace-controller to restart the "
            f"engine on this code (its runs are drained and resume), or stop them (`vsa stop "
            f"RUN`) and retry."
        )
    if active:  # --replace-controller: drain (files closed), the new controller resumes them
        try:
            _call(controller.drain.remote(60.0), timeout=180)
        except AttributeError:  # a controller from before drain existed: stop them instead
            for run_id in active:
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
