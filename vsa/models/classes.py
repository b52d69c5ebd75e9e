"""Class names from the run file: a list, or a names file.

A names file is checked to look like one (small UTF-8 text of short printable names) before
its names are used, and errors never quote its content: a run file that names ``/etc/passwd``
as its classes must not make the client print that file. Nor once it passed as one: a file of
one token per line (the engine's own ``secret.key``) is a valid names file, so the names read
from a file are counted in errors, never shown (:func:`preview_names`).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vsa.errors import ModelError

MAX_NAMES_FILE_BYTES = 1 << 20  # 1 MiB
MAX_CLASSES = 10_000
MAX_CLASS_NAME = 256
PREVIEW_NAMES = 10  # names shown in an error message at most
PREVIEW_WIDTH = 40  # characters of each of them

_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_RECORD_SEPARATORS = 3  # `root:*:19000:0:99999:7:::` is a record of a system file, not a name


def short_name(name: str, width: int = PREVIEW_WIDTH) -> str:
    """``name`` cut to ``width`` characters (then ``…``), control characters escaped."""
    if _CONTROL_RE.search(name):
        name = name.encode("unicode_escape").decode("ascii")
    return name if len(name) <= width else name[:width] + "…"


class FileNames(list[str]):
    """Class names read from a names file; ``path`` is the file. :func:`preview_names` never
    shows them: the file may be anything the user can read (a key, a token per line)."""

    path: str = ""


def preview_names(names: Sequence[str], limit: int = PREVIEW_NAMES) -> str:
    """A few names for an error message: ``a, b, c, … and 90 more``, each cut to 40 characters.

    Names from a names file (:class:`FileNames`) are counted, not shown: ``the 80 names of
    /path/names.txt (not shown: …)``.
    """
    if isinstance(names, FileNames):
        return (
            f"the {len(names)} name{'' if len(names) == 1 else 's'} of {names.path} "
            "(not shown: errors never print a names file; open the file to see them)"
        )
    shown = ", ".join(short_name(str(n)) for n in names[:limit])
    if len(names) > limit:
        shown += f", … and {len(names) - limit} more"
    return shown


def _name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a class name, or None."""
    if len(name) > MAX_CLASS_NAME:
        return f"a name longer than {MAX_CLASS_NAME} characters"
    if _CONTROL_RE.search(name):
        return "control characters in a name"
    return None


def _names_problem(names: Sequence[str], where: Sequence[str]) -> str | None:
    """The first reason ``names`` are not class names; ``where[i]`` says where name ``i`` is."""
    if len(names) > MAX_CLASSES:
        return f"{len(names)} names, more than {MAX_CLASSES}"
    for name, place in zip(names, where, strict=True):
        problem = _name_problem(name)
        if problem:
            return f"{place}: {problem}"
    return None


def names_from_data(data: Any, where: str) -> list[str]:
    """A list, ``{0: a, 1: b}``, or a mapping with ``names:`` (Ultralytics data files)."""
    names = _structure(data, where)
    problem = _names_problem(names, [f"name {i + 1}" for i in range(len(names))])
    if problem:
        raise ModelError(f"{where}: {problem}")
    return names


def _structure(data: Any, where: str) -> list[str]:
    if isinstance(data, dict) and "names" in data:
        data = data["names"]
    if isinstance(data, dict):
        try:
            keys = sorted(int(k) for k in data)
        except (TypeError, ValueError):
            raise ModelError(f"{where}: class ids must be integers") from None
        if keys != list(range(len(keys))):
            raise ModelError(f"{where}: class ids must be 0..{len(keys) - 1} without gaps")
        data = [data[k] if k in data else data[str(k)] for k in keys]
    if not isinstance(data, list) or not data or not all(isinstance(n, str | int) for n in data):
        raise ModelError(f"{where}: expected a non-empty list of class names")
    try:
        return [str(n) for n in data]
    except ValueError:  # an integer of thousands of digits
        raise ModelError(f"{where}: expected a non-empty list of class names") from None


class _NotNamesFile(Exception):
    """The file is no class names file; the argument says why, without quoting it."""


def _read_text(path: Path) -> str:
    try:
        with open(path, "rb") as file:
            size = os.fstat(file.fileno()).st_size
            if size > MAX_NAMES_FILE_BYTES:
                raise _NotNamesFile(f"{size} bytes, more than 1 MiB")
            raw = file.read(MAX_NAMES_FILE_BYTES + 1)
    except OSError as exc:
        raise ModelError(
            f"{path}: cannot read the class names file ({exc.strerror or exc})"
        ) from None
    if len(raw) > MAX_NAMES_FILE_BYTES:
        raise _NotNamesFile("more than 1 MiB")
    nul = raw.find(b"\0")
    if nul >= 0:
        line = raw.count(b"\n", 0, nul) + 1
        raise _NotNamesFile(f"binary data: a NUL byte on line {line}")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise _NotNamesFile(f"not UTF-8 text on line {line}") from None


def _from_structured(path: Path, text: str) -> list[str]:
    kind = path.suffix[1:].upper()
    try:
        if kind == "JSON":
            data = json.loads(text)
        else:
            import yaml  # here: the model code must import without PyYAML on GPU check hosts

            data = yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        raise ModelError(f"{path}: not valid JSON (line {exc.lineno})") from None
    except RecursionError:
        raise ModelError(f"{path}: not valid {kind} (nested too deeply)") from None
    except Exception as exc:  # noqa: BLE001 - yaml.YAMLError, or ValueError for a bad value
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise ModelError(f"{path}: not valid {kind}{where}") from None
    names = _structure(data, str(path))
    problem = _names_problem(names, [f"name {i + 1}" for i in range(len(names))])
    if problem:
        raise _NotNamesFile(problem)
    return names


def _from_lines(text: str) -> list[str]:
    names: list[str] = []
    lines: list[str] = []
    for number, line in enumerate(text.splitlines(), 1):
        name = line.strip()
        if not name:
            continue
        if name.count(":") >= _RECORD_SEPARATORS:
            raise _NotNamesFile(f"line {number} looks like a record of a system file, not a name")
        names.append(name)
        lines.append(f"line {number}")
    problem = _names_problem(names, lines)
    if problem:
        raise _NotNamesFile(problem)
    return names


def load_classes(classes: list[str] | str) -> list[str]:
    """Class names from a list, or from a names file (one per line, or YAML/JSON).

    Raises ModelError naming the file and why, never quoting what the file holds.
    """
    if isinstance(classes, list):
        return names_from_data(classes, "model.classes")
    path = Path(classes)
    try:
        text = _read_text(path)
        if path.suffix.lower() in (".yaml", ".yml", ".json"):
            names = _from_structured(path, text)
        else:
            names = _from_lines(text)
            if not names:
                raise ModelError(f"{path}: expected a non-empty list of class names")
    except _NotNamesFile as exc:
        raise ModelError(
            f"{path}: does not look like a class names file ({exc.args[0]}): "
            "give one name per line, or a YAML/JSON list"
        ) from None
    result = FileNames(names)
    result.path = str(path)
    return result
