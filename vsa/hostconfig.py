"""Host configuration: the ``VSA_*`` environment over an optional host file over built-in
defaults, and the effective value of each setting with where it came from (``vsa config``).

Precedence, highest first (docs/configuration.md):

1. the run file, for what a run may set (its ``reconnect`` block, its ``output_dir``, ...);
2. the environment (of ``ray start`` for the engine, of the shell for the CLI);
3. the host file, ``/etc/vsa/vsa.yaml`` (``VSA_CONFIG`` names another; ``VSA_CONFIG=`` empty:
   none), whose keys are the settings' names without ``VSA_`` in lower case;
4. the built-in defaults.

The host file may also hold ``reconnect:``, the default reconnect policy of runs that do not
give one (a run's own block wins, field by field as for a source's). Standard library and
PyYAML only: read by the CLI, the controller and every actor.

The host file is read by the run file's loader (:mod:`vsa.yamlsafe`), with the same limits:
at most 64 KiB, a regular file, UTF-8, no YAML aliases or anchors, no duplicate keys. Every
error starts with the host file's path.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from vsa.errors import VsaError

HOST_FILE = "/etc/vsa/vsa.yaml"
MAX_HOST_FILE_BYTES = 64 * 1024  # vsa.yamlsafe.HOST_FILE (not imported here: it loads PyYAML)


@dataclass(frozen=True)
class Setting:
    key: str  # in the host file
    env: str  # in the environment
    default: str  # as the environment would hold it ("" = unset)
    meaning: str
    secret: bool = False


SETTINGS: tuple[Setting, ...] = (
    Setting("ray_address", "RAY_ADDRESS", "auto", "the Ray cluster the CLI joins"),
    Setting("state_dir", "VSA_STATE_DIR", "~/.vsa", "run records (runs/) and the key"),
    Setting("secret_key_file", "VSA_SECRET_KEY_FILE", "", "key sealing credentials"),
    Setting("output_roots", "VSA_OUTPUT_ROOTS", "", "directories runs may write into"),
    Setting("input_roots", "VSA_INPUT_ROOTS", "", "directories file sources may read"),
    Setting("inference_gpus", "VSA_INFERENCE_GPUS", "auto", "GPUs per inference actor"),
    Setting("inference_actors", "VSA_INFERENCE_ACTORS", "1", "inference actors per CPU node"),
    Setting("torch_threads", "VSA_TORCH_THREADS", "auto", "torch threads per batch"),
    Setting("model_workers", "VSA_MODEL_WORKERS", "auto", "batches at once on the CPU"),
    Setting("transport", "VSA_TRANSPORT", "auto", "frames to inference: auto or ray"),
    Setting("data_plane_nice", "VSA_DATA_PLANE_NICE", "19", "nice of source/inference actors"),
    Setting("max_sources_per_run", "VSA_MAX_SOURCES_PER_RUN", "64", "admission per run"),
    Setting("max_sources", "VSA_MAX_SOURCES", "128", "admission over all runs"),
    Setting("max_engines", "VSA_MAX_ENGINES", "0", "models loaded at once (0: no limit)"),
    Setting("source_memory_mb", "VSA_SOURCE_MEMORY_MB", "250", "memory counted per source"),
    Setting("status_host", "VSA_STATUS_HOST", "127.0.0.1", "address the status endpoint binds"),
    Setting("log_level", "VSA_LOG_LEVEL", "INFO", "the controller's log level"),
    Setting("auth_token", "RAY_AUTH_TOKEN", "", "Ray's token (env only)", secret=True),
)
BY_KEY = {s.key: s for s in SETTINGS}
RUN_DEFAULTS = ("reconnect",)  # host-file blocks that are defaults of every run
_LISTS = {"output_roots", "input_roots"}
_ENV_ONLY = {"auth_token"}  # never read from a file: a secret stays in the environment


def host_file_path(env: Mapping[str, str] | None = None) -> str | None:
    """The host file's path (``VSA_CONFIG``, default /etc/vsa/vsa.yaml); None when disabled."""
    env = os.environ if env is None else env
    value = env.get("VSA_CONFIG", HOST_FILE)
    return value or None


_cache: dict[str, tuple[tuple[int, int], dict[str, Any]]] = {}


def read_host_file(path: str | None, explicit: bool = False) -> dict[str, Any]:
    """The host file's settings (key -> value); {} when there is none. ``explicit``: the
    user named it (``VSA_CONFIG``), so a missing file is an error. Raises :class:`VsaError`
    naming the file and the key for anything else wrong in it."""
    if path is None:
        return {}
    try:
        st = os.stat(path)
    except FileNotFoundError:
        if explicit:
            raise VsaError(f"{path}: host configuration file not found (VSA_CONFIG)") from None
        return {}
    except OSError as exc:
        raise VsaError(f"{path}: cannot read the host configuration: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):  # a FIFO would hang every vsa command on open()
        raise VsaError(f"{path}: not a regular file; the host configuration must be one")
    stamp = (st.st_mtime_ns, st.st_size)
    cached = _cache.get(path)
    if cached is not None and cached[0] == stamp:
        return cached[1]
    values = _parse(path)
    _cache[path] = (stamp, values)
    return values


def _parse(path: str) -> dict[str, Any]:
    from vsa import yamlsafe  # PyYAML: only where a host file is read

    try:
        data = yamlsafe.load_file(path, yamlsafe.HOST_FILE)
    except yamlsafe.Refused as exc:
        raise VsaError(f"{path}: " + "; ".join(exc.problems)) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise VsaError(f"{path}: must be a mapping of settings (see `vsa config`)")
    problems = []
    for key, value in data.items():
        if key in RUN_DEFAULTS:
            if not isinstance(value, dict):
                problems.append(f"{key}: must be a mapping, like a run file's {key} block")
        elif key not in BY_KEY or key in _ENV_ONLY:
            known = ", ".join(s.key for s in SETTINGS if s.key not in _ENV_ONLY)
            problems.append(f"{str(key)[:60]}: unknown setting (one of: {known}, reconnect)")
        elif key in _LISTS:
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                problems.append(f"{key}: must be a list of absolute paths")
            else:
                problems += _root_problems(key, value)
        elif not isinstance(value, (str, int, float)) or isinstance(value, bool):
            problems.append(f"{key}: must be a string or a number, not {type(value).__name__}")
    if problems:
        raise VsaError(f"{path}: " + "; ".join(problems))
    return data


def _root_problems(key: str, roots: list[str]) -> list[str]:
    """What is wrong with the directories of ``output_roots`` / ``input_roots``: each must be
    absolute (relative to which directory? the CLI's, the controller's and each actor's
    differ) and hold no ``:``, which separates them in ``VSA_OUTPUT_ROOTS``."""
    problems = []
    for i, root in enumerate(roots):
        shown = _shown(root)
        if not os.path.isabs(root):
            problems.append(f"{key}[{i}]: {shown} is relative; give an absolute path")
        elif ":" in root:
            problems.append(f"{key}[{i}]: {shown} holds ':', which separates the roots")
    return problems


def _shown(text: str, limit: int = 60) -> str:
    return repr(text) if len(text) <= limit else f"{text[:limit]!r}… ({len(text)} chars)"


def _as_env(key: str, value: Any) -> str:
    return ":".join(value) if key in _LISTS else str(value)


def environ(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment as the settings read it: the host file's values under their ``VSA_``
    names, overridden by the real environment."""
    env = os.environ if env is None else env
    explicit = bool(env.get("VSA_CONFIG"))
    merged = {
        BY_KEY[key].env: _as_env(key, value)
        for key, value in read_host_file(host_file_path(env), explicit).items()
        if key in BY_KEY
    }
    merged.update(env)
    return merged


def run_defaults(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The host file's defaults for runs (``reconnect``), to go under a run file's own."""
    env = os.environ if env is None else env
    data = read_host_file(host_file_path(env), bool(env.get("VSA_CONFIG")))
    return {key: data[key] for key in RUN_DEFAULTS if key in data}


def effective(env: Mapping[str, str] | None = None) -> list[dict[str, str]]:
    """Every setting's value and where it came from (``env VSA_X``, the host file's path,
    ``default``); secrets hidden, credentials in addresses masked."""
    from vsa.uri import mask_uri

    env = os.environ if env is None else env
    path = host_file_path(env)
    data = read_host_file(path, bool(env.get("VSA_CONFIG")))
    rows = []
    for s in SETTINGS:
        if s.env in env:
            value, origin = env[s.env], f"env {s.env}"
        elif s.key in data:
            value, origin = _as_env(s.key, data[s.key]), str(path)
        else:
            value, origin = s.default, "default"
        if s.secret and value:
            value = "(set, hidden)"
        elif "://" in value or "@" in value:
            value = mask_uri(value)
        rows.append({"setting": s.key, "env": s.env, "value": value, "from": origin})
    for key in RUN_DEFAULTS:
        if key in data:
            rows.append({"setting": key, "env": "", "value": str(data[key]), "from": str(path)})
    return rows
