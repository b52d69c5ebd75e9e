"""The engine owns its outputs: where a run may write, which files are its own, and admission.

Ray-free checks the controller makes before it starts a run (unit-tested in
``tests/unit/test_outputs.py``):

- :func:`check_output_dir`: the directory resolves (symbolic links followed) to a place the host
  allows (``VSA_OUTPUT_ROOTS``; never a system directory), is a directory, and is writable;
- :func:`claim_outputs`: no active run writes into the same directory, and files an earlier run
  left there are replaced only when asked (``--overwrite``);
- :func:`check_admission`: the run's sources fit the per-run and total limits and the host's
  available memory.
"""

from __future__ import annotations

import errno
import os
import secrets
from collections.abc import Iterable
from pathlib import Path

from vsa.config import RunSpec, rotated_pattern, side_files
from vsa.constants import MEMORY_RESERVE_BYTES
from vsa.errors import VsaError
from vsa.sinktypes import sink_type

REPORT_FILES = ("report.json", "report.png")
# Never written into, whatever VSA_OUTPUT_ROOTS says: a run file (or a symbolic link planted in
# an output path) must not make the engine overwrite the host's own files.
SYSTEM_DIRS = (
    "/bin",
    "/boot",
    "/dev",
    "/etc",
    "/lib",
    "/lib32",
    "/lib64",
    "/proc",
    "/run",
    "/sbin",
    "/sys",
    "/usr",
    "/var/lib",
    "/var/run",
)


class OutputConflict(VsaError):
    """A run's output files would be written by another run, or would replace an earlier one's."""


class AdmissionError(VsaError):
    """A run does not fit the engine's limits or the host's memory."""


def _within(path: str, root: str) -> bool:
    root = root.rstrip("/") or "/"
    return path == root or path.startswith(root + "/") or root == "/"


def check_output_dir(output_dir: str, roots: Iterable[str] = ()) -> Path:
    """The run's output directory, resolved and created; VsaError naming what to do otherwise."""
    path, shown = check_output_policy(output_dir, roots)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".vsa-write-test-{secrets.token_hex(4)}"
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        why = exc.strerror or errno.errorcode.get(exc.errno or 0, str(exc))
        raise VsaError(
            f"output_dir {shown} is not writable ({why}): choose a directory this engine's user "
            "can write to"
        ) from None
    return path


def check_output_policy(output_dir: str, roots: Iterable[str] = ()) -> tuple[Path, str]:
    """What this host allows, without touching the disk beyond a look: ``output_dir`` lies
    under ``roots`` (``VSA_OUTPUT_ROOTS``), is no system directory, is not a file. The resolved
    path and how to show it; VsaError naming what to do otherwise. A resumed run is checked
    with this alone: a disk that is slow to come back is the sinks' error, not a refusal."""
    real = os.path.realpath(output_dir)
    roots = [os.path.realpath(r) for r in roots]
    shown = output_dir if real == output_dir else f"{output_dir} (resolves to {real})"
    if roots and not any(_within(real, r) for r in roots):
        raise VsaError(
            f"output_dir {shown} is outside the directories this host lets runs write into "
            f"(VSA_OUTPUT_ROOTS={':'.join(roots)}); choose an output_dir under one of them"
        )
    if real == "/" or any(_within(real, d) for d in SYSTEM_DIRS):
        raise VsaError(
            f"output_dir {shown} is a system directory; vsa does not write there: choose "
            "another output_dir"
        )
    path = Path(real)
    if path.exists() and not path.is_dir():
        raise VsaError(f"output_dir {shown} exists and is not a directory: choose another one")
    return path, shown


def check_input_files(files: Iterable[tuple[str, str]], roots: Iterable[str] = ()) -> None:
    """Each ``(source id, path)`` of a file source must lie under one of ``roots``
    (``VSA_INPUT_ROOTS``; none set: any file). VsaError naming every source outside."""
    roots = [os.path.realpath(r) for r in roots]
    if not roots:
        return
    outside = [
        f"{sid} ({path})"
        for sid, path in files
        if not any(_within(os.path.realpath(path), r) for r in roots)
    ]
    if outside:
        raise VsaError(
            f"file sources outside the directories this host lets runs read "
            f"(VSA_INPUT_ROOTS={':'.join(roots)}): {', '.join(outside)}; move the files under one "
            "of them"
        )


def _same_dir(a: str | Path, b: str | Path) -> bool:
    """One directory, by inode when both exist (case-insensitive filesystems, bind mounts)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def run_files(spec: RunSpec, directory: Path) -> list[Path]:
    """The files of ``spec``'s outputs that exist in ``directory`` (symbolic links included):
    each sink type's files (``vsa.sinktypes``) and later parts, each source's side files, the
    report."""
    types = [sink_type(s.type) for s in spec.sinks]
    names: list[str] = []
    for source in spec.sources:
        for sink, kind in zip(spec.sinks, types, strict=True):
            names += kind.files(sink, source.id)
        names += side_files(source)
    names += REPORT_FILES
    found = [directory / n for n in names if os.path.lexists(directory / n)]
    for kind in types:
        for source in spec.sources if kind.folder else ():
            folder = directory / kind.folder(source.id)
            if folder.is_dir() and not folder.is_symlink():
                found += sorted(p for p in folder.iterdir() if p.is_file() or p.is_symlink())
    patterns = [kind.more(s.id) for kind in types if kind.more for s in spec.sources]
    patterns += [rotated_pattern(name) for s in spec.sources for name in side_files(s)]
    if patterns:
        try:
            entries = sorted(os.listdir(directory))
        except OSError:
            entries = []
        found += [directory / e for e in entries if any(p.match(e) for p in patterns)]
    return found


def claim_outputs(
    spec: RunSpec,
    directory: Path,
    active: Iterable[tuple[str, str]],
    overwrite: bool = False,
) -> list[Path]:
    """Check that ``spec`` may write into ``directory``; with ``overwrite``, remove what an
    earlier run left there. ``active``: (run id, resolved output_dir) of the runs writing now.

    Two active runs never share a directory (their report.json alone would collide). Returns
    the files removed.
    """
    for run_id, other in active:
        if _same_dir(other, directory):
            raise OutputConflict(
                f"output_dir {directory} is being written by run {run_id}: two active runs cannot "
                f"share an output directory; choose another output_dir or stop that run first "
                f"(vsa stop {run_id})"
            )
    existing = run_files(spec, directory)
    if not existing:
        return []
    if not overwrite:
        names = ", ".join(p.name for p in existing[:5])
        more = f" and {len(existing) - 5} more" if len(existing) > 5 else ""
        raise OutputConflict(
            f"output_dir {directory} already holds outputs of an earlier run ({names}{more}): "
            "submit with --overwrite to replace them, or choose another output_dir"
        )
    for path in existing:
        path.unlink(missing_ok=True)  # a symbolic link is removed, never followed
    return existing


def check_admission(
    new_sources: int,
    active_sources: int,
    available_bytes: int | None,
    per_run: int,
    total: int,
    source_mb: int,
) -> None:
    """Refuse a run that would exceed the source limits or the host's available memory."""
    if new_sources > per_run:
        raise AdmissionError(
            f"the run has {new_sources} sources; this engine admits at most {per_run} per run "
            "(VSA_MAX_SOURCES_PER_RUN in the environment of `ray start`): split it into runs"
        )
    if active_sources + new_sources > total:
        raise AdmissionError(
            f"the run has {new_sources} sources and {active_sources} are active; this engine "
            f"admits at most {total} in all (VSA_MAX_SOURCES): stop a run or raise the limit"
        )
    if available_bytes is None:
        return
    need = new_sources * source_mb << 20
    spare = available_bytes - MEMORY_RESERVE_BYTES
    if need > spare:
        raise AdmissionError(
            f"the run's {new_sources} sources need about {need >> 20} MiB ({source_mb} MiB each, "
            f"VSA_SOURCE_MEMORY_MB) and the host has {max(0, available_bytes) >> 20} MiB "
            f"available ({MEMORY_RESERVE_BYTES >> 20} MiB kept free): stop a run, add memory, or "
            "submit fewer sources"
        )
