"""Engine settings read from the environment of `ray start` (workers inherit it).

| variable | default | meaning |
|---|---|---|
| `VSA_INFERENCE_GPUS` | `auto` | GPUs each inference actor reserves: auto (1 on a node that has one), 0, 1 |
| `VSA_INFERENCE_ACTORS` | `1` | inference actors per node without GPUs (a node with GPUs gets one per GPU) |
| `VSA_TORCH_THREADS` | `auto` | torch intra-op threads per batch for a model on the CPU; `auto`: chosen with `VSA_MODEL_WORKERS` by measuring (below); a number pins it (with one worker unless `VSA_MODEL_WORKERS` is set). The threads wait passively (`OMP_WAIT_POLICY=PASSIVE`) so they yield to the source actors instead of spinning |
| `VSA_MODEL_WORKERS` | `auto` | batches a model on the CPU runs at once, each in its own thread; `auto`: the inference actor measures 2 x half the CPUs, 1 x all of them and 4 x a quarter (as many as fit) on the real work and keeps the split that gives the most frames per second, measuring again every minute and when the number of streams changes; never more batches at once than the realtime cameras have frames in flight (`vsa.inference.threads`); on a GPU: 1 |
| `VSA_TRANSPORT` | `auto` | how frames reach the inference actor: `auto`: shared-memory rings in `/dev/shm` and calls on a Unix socket when the source runs on the inference actor's host (always, as placed), Ray's object store and actor calls otherwise or when `/dev/shm` is full; `ray`: always Ray's (`vsa.transport`) |
| `VSA_DATA_PLANE_NICE` | `19` | nice value (0-19) of the source and inference actors' threads. Ray starts every worker at nice 15 (its `worker_niceness`), the controller too; at 19 the data plane yields to the controller (which also tries to return to nice 0, allowed where the user may, e.g. root or `CAP_SYS_NICE`), Ray's daemons and `vsa` commands, and frames wait instead of answers (`vsa.control.priority`); a value at or below Ray's leaves them as Ray starts them |
| `VSA_MAX_SOURCES_PER_RUN` | `64` | sources one run may have (admission) |
| `VSA_MAX_SOURCES` | `128` | sources of all active runs together (admission) |
| `VSA_MAX_ENGINES` | `0` | inference engines (a model + batching config) loaded at once; a run whose model would exceed it waits PENDING until one is freed; `0`: no limit (a GPU's memory still is: a model that does not fit when it loads waits PENDING too) |
| `VSA_SOURCE_MEMORY_MB` | `250` | host memory one source actor is counted for at admission |
| `VSA_STATE_DIR` | `~/.vsa` | the engine's state on this host: run records (`runs/`, the truth a new controller resumes runs from after `ray stop`, an upgrade or a reboot) and the key that seals credentials (`secret.key`) |
| `VSA_OUTPUT_ROOTS` | (unset) | `:`-separated directories runs may write into; unset: anywhere but system directories |
| `VSA_INPUT_ROOTS` | (unset) | `:`-separated directories file sources may read; unset: any file the engine's user can read |
| `VSA_STATUS_HOST` | `127.0.0.1` | address the controller's status endpoint binds (token-protected; only change it behind a firewall) |
| `VSA_LOG_LEVEL` | `INFO` | the controller's log level |

Each may also be set in the host file (``vsa.hostconfig``: /etc/vsa/vsa.yaml, keys in lower
case without ``VSA_``); the environment wins.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from vsa.errors import VsaError

if TYPE_CHECKING:
    from vsa.inference.threads import Split


def _env(env: Mapping[str, str] | None) -> Mapping[str, str]:
    """``env`` when given (tests), else the environment over the host file
    (``vsa.hostconfig``: environment > /etc/vsa/vsa.yaml > the defaults below)."""
    if env is not None:
        return env
    from vsa.hostconfig import environ

    return environ()


def inference_gpus(cluster_gpus: float, env: Mapping[str, str] | None = None) -> int:
    value = _env(env).get("VSA_INFERENCE_GPUS", "auto").strip()
    if value == "auto":
        return 1 if cluster_gpus >= 1 else 0
    if value not in ("0", "1"):
        raise VsaError(f"VSA_INFERENCE_GPUS must be auto, 0 or 1, not {_shown(value)}")
    return int(value)


def inference_actors(env: Mapping[str, str] | None = None) -> int:
    """Inference actors on a node without GPUs (``VSA_INFERENCE_ACTORS``, default 1)."""
    return _positive_int(_env(env), "VSA_INFERENCE_ACTORS", 1)


def available_cpus() -> int:
    """CPUs this process may run on (its affinity; the host's count where that is unknown)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


def torch_threads(env: Mapping[str, str] | None = None, cpus: int | None = None) -> int:
    value = _env(env).get("VSA_TORCH_THREADS", "auto").strip()
    if value == "auto":
        return available_cpus() if cpus is None else max(1, cpus)
    number = _digits(value)
    if number is None or number < 1:
        raise VsaError(f"VSA_TORCH_THREADS must be auto or a positive integer, not {_shown(value)}")
    return number


def transport(env: Mapping[str, str] | None = None) -> str:
    """``auto`` (the same-host channel where it can be used) or ``ray``."""
    value = _env(env).get("VSA_TRANSPORT", "auto").strip().lower()
    if value not in ("auto", "ray"):
        raise VsaError(f"VSA_TRANSPORT must be auto or ray, not {_shown(value)}")
    return value


def model_splits(env: Mapping[str, str] | None = None, cpus: int | None = None) -> list[Split]:
    """The splits (concurrent batches x torch threads) the inference actor measures on a CPU;
    one when ``VSA_TORCH_THREADS`` / ``VSA_MODEL_WORKERS`` pin them."""
    from vsa.inference.threads import splits

    env = _env(env)
    workers = env.get("VSA_MODEL_WORKERS", "auto").strip()
    threads = env.get("VSA_TORCH_THREADS", "auto").strip()
    return splits(
        available_cpus() if cpus is None else cpus,
        None if workers == "auto" else _positive_int(env, "VSA_MODEL_WORKERS", 1, auto=True),
        None if threads == "auto" else torch_threads(env, cpus),
    )


def _digits(value: str) -> int | None:
    """``value`` as a number when it is ASCII digits only, else None. ``str.isdigit`` also
    holds for '²' and '١٢', which ``int`` refuses or reads: a setting is written in ASCII."""
    if not (value.isascii() and value.isdigit()):
        return None
    try:
        return int(value)
    except ValueError:  # more digits than int() converts
        return None


def _shown(value: str, limit: int = 40) -> str:
    """``repr(value)``, cut, for an error message."""
    return repr(value) if len(value) <= limit else f"{value[:limit]!r}… ({len(value)} chars)"


def _positive_int(env: Mapping[str, str], name: str, default: int, auto: bool = False) -> int:
    value = env.get(name, str(default)).strip()
    number = _digits(value)
    if number is None or number < 1:
        what = "auto or a positive integer" if auto else "a positive integer"
        raise VsaError(f"{name} must be {what}, not {_shown(value)}")
    return number


def data_plane_nice(env: Mapping[str, str] | None = None) -> int:
    """The nice value of the data-plane actors (``VSA_DATA_PLANE_NICE``, 0-19, default 19)."""
    value = _env(env).get("VSA_DATA_PLANE_NICE", "19").strip()
    number = _digits(value)
    if number is None or number > 19:
        raise VsaError(f"VSA_DATA_PLANE_NICE must be an integer from 0 to 19, not {_shown(value)}")
    return number


def max_sources_per_run(env: Mapping[str, str] | None = None) -> int:
    return _positive_int(_env(env), "VSA_MAX_SOURCES_PER_RUN", 64)


def max_sources(env: Mapping[str, str] | None = None) -> int:
    return _positive_int(_env(env), "VSA_MAX_SOURCES", 128)


def max_engines(env: Mapping[str, str] | None = None) -> int:
    """Engines loaded at once (``VSA_MAX_ENGINES``); 0: no limit."""
    value = _env(env).get("VSA_MAX_ENGINES", "0").strip()
    number = _digits(value)
    if number is None:
        raise VsaError(
            f"VSA_MAX_ENGINES must be 0 (no limit) or a positive integer, not {_shown(value)}"
        )
    return number


def source_memory_mb(env: Mapping[str, str] | None = None) -> int:
    return _positive_int(_env(env), "VSA_SOURCE_MEMORY_MB", 250)


def output_roots(env: Mapping[str, str] | None = None) -> list[str]:
    """Directories runs may write into (``VSA_OUTPUT_ROOTS``, ``:``-separated); empty = anywhere
    but the system directories."""
    return _roots(_env(env), "VSA_OUTPUT_ROOTS")


def state_dir(env: Mapping[str, str] | None = None) -> Path:
    """The engine's state directory (``VSA_STATE_DIR``, default ``~/.vsa``): run records in
    ``runs/`` and the credentials key ``secret.key`` (``vsa.secrets``)."""
    value = _env(env).get("VSA_STATE_DIR", "").strip()
    return Path(value).expanduser() if value else Path.home() / ".vsa"


def runs_dir(env: Mapping[str, str] | None = None) -> Path:
    """Where the controller keeps one file per run (``vsa.supervision.store.DiskRunStore``)."""
    return state_dir(env) / "runs"


def input_roots(env: Mapping[str, str] | None = None) -> list[str]:
    """Directories file sources may read (``VSA_INPUT_ROOTS``, ``:``-separated); empty = any
    file the engine's user can read."""
    return _roots(_env(env), "VSA_INPUT_ROOTS")


def _roots(env: Mapping[str, str], name: str) -> list[str]:
    """The ``:``-separated absolute directories of ``name``; VsaError for a relative one."""
    roots = [p for p in env.get(name, "").strip().split(":") if p.strip()]
    for root in roots:
        if not os.path.isabs(root):
            raise VsaError(f"{name} must hold absolute paths, not {_shown(root)}")
    return roots


def status_host(env: Mapping[str, str] | None = None) -> str:
    """The address the controller's status endpoint binds (``VSA_STATUS_HOST``, 127.0.0.1)."""
    return _env(env).get("VSA_STATUS_HOST", "").strip() or "127.0.0.1"


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def log_level(env: Mapping[str, str] | None = None) -> str:
    """The controller's log level (``VSA_LOG_LEVEL``: DEBUG, INFO, WARNING, ERROR)."""
    value = _env(env).get("VSA_LOG_LEVEL", "INFO").strip().upper() or "INFO"
    if value not in LOG_LEVELS:
        raise VsaError(f"VSA_LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, not {_shown(value)}")
    return value
