"""Reading vsa's YAML files, the run file and the host file, with one loader and one set of
limits: a size limit checked before the file is read, UTF-8, no YAML aliases or anchors, no
duplicate keys, bounded nesting, and errors that never echo more than a short cut of a value.

Aliases are refused while composing, before any value is built: ``${VAR}`` interpolation,
validation and ``vsa config`` walk every value, and a few hundred bytes of nested aliases
(the "billion laughs") expand to gigabytes.

Standard library and PyYAML only (no pydantic): the host file is read by the CLI, the
controller and every actor (:mod:`vsa.hostconfig`).
"""

from __future__ import annotations

import os
import reprlib
from dataclasses import dataclass
from typing import Any

import yaml

MAX_YAML_DEPTH = 100  # nesting levels; a run file needs about 4, a host file 2
SHORT = 60  # characters of a value echoed into an error message


@dataclass(frozen=True)
class Kind:
    """Which file is read, for its limit and its messages."""

    name: str  # "run file"
    max_bytes: int
    size_text: str  # "1 MiB"
    holds: str  # what such a file holds, to tell a wrong file


RUN_FILE = Kind("run file", 1 << 20, "1 MiB", "a run file lists streams and settings")
HOST_FILE = Kind("host file", 64 * 1024, "64 KiB", "a host file holds a few settings")


class Refused(Exception):
    """The file cannot be read as one of vsa's YAML files; ``problems`` holds one line per
    problem, without the file's name (the caller adds it)."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


# --- values echoed into error messages ------------------------------------------------------

_REPR = reprlib.Repr()  # bounded work and size, whatever the value holds
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother = 2, 40, 40


def short(value: Any, limit: int = SHORT) -> str:
    """``repr(value)`` cut to about ``limit`` characters, for an error message.

    ``'aaaa…' (52428800 chars)``: the cut keeps the quotes and says how long the value was,
    so a 50 MB string in a run file costs a line, not 50 MB, in the error. Containers show
    their first items and their size: ``['x', 'x', 'x', 'x', 'x', 'x', ...] (1000 items)``.
    """
    if isinstance(value, str):
        if len(value) <= limit:
            return repr(value)
        head = repr(value[:limit])
        quote = head[-1]
        return f"{head[:-1][: limit + 1]}…{quote} ({len(value)} chars)"
    try:
        text = _REPR.repr(value)
    except ValueError:  # an int of more digits than str() converts
        return f"<{type(value).__name__} of about {value.bit_length() * 0.30103:.0f} digits>"
    if len(text) > limit:
        text = text[:limit] + "…"
    if isinstance(value, list | tuple | dict | set | frozenset) and ("…" in text or "..." in text):
        text += f" ({len(value)} item{'' if len(value) == 1 else 's'})"
    return text


def key_text(part: Any) -> str:
    """A mapping key of a location: as is when short and printable, else quoted and cut."""
    text = str(part)
    if not text.isprintable():
        return short(text)
    return text if len(text) <= SHORT else text[:SHORT] + "…"


# --- reading --------------------------------------------------------------------------------


def read_text(path: str | os.PathLike[str], kind: Kind) -> str:
    """The text of the file, at most ``kind.max_bytes``; :class:`Refused` otherwise."""
    limit = (
        f"the limit of {kind.max_bytes} bytes ({kind.size_text}); {kind.holds}: check that "
        "this is the right file"
    )
    try:
        with open(path, "rb") as file:
            size = os.fstat(file.fileno()).st_size
            if size > kind.max_bytes:
                raise Refused([f"the {kind.name} is {size} bytes, more than {limit}"])
            raw = file.read(kind.max_bytes + 1)  # a pipe or device may not know its size
    except OSError as exc:
        raise Refused([f"cannot read the {kind.name}: {exc.strerror or exc}"]) from None
    if len(raw) > kind.max_bytes:
        raise Refused([f"the {kind.name} is larger than {limit}"])
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise Refused([f"line {line}: not UTF-8 text; save the {kind.name} as UTF-8"]) from None


class _Unsupported(yaml.MarkedYAMLError):
    """YAML that vsa does not read; ``problem`` says which and what to do."""


class _Loader(yaml.SafeLoader):
    """``yaml.SafeLoader`` without aliases or anchors, without duplicate keys, bounded depth.

    Duplicate keys (the last one would win silently) are collected in ``duplicates``, all of
    them, at every level.
    """

    def __init__(self, stream: str, kind: Kind) -> None:
        super().__init__(stream)
        self.kind = kind
        self.duplicates: list[tuple[int, str]] = []  # (line, problem)
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        event = self.peek_event()
        what = f"a {self.kind.name}"
        if isinstance(event, yaml.AliasEvent):
            raise _Unsupported(
                problem=f"YAML aliases (*{key_text(event.anchor)}) are not allowed in {what}; "
                "write the value out",
                problem_mark=event.start_mark,
            )
        if getattr(event, "anchor", None) is not None:
            raise _Unsupported(
                problem=f"YAML anchors (&{key_text(event.anchor)}) are not allowed in {what}; "
                "write the value out",
                problem_mark=event.start_mark,
            )
        self._depth += 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                raise _Unsupported(
                    problem=f"nested deeper than {MAX_YAML_DEPTH} levels; {what} needs a few",
                    problem_mark=event.start_mark,
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except (ValueError, OverflowError):  # 2020-13-45, an int of 5000 digits
            kind = node.tag.rsplit(":", 1)[-1]
            raise yaml.constructor.ConstructorError(
                problem=f"{short(node.value)} is not a valid {kind}; quote it to make it a string",
                problem_mark=node.start_mark,
            ) from None

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, yaml.MappingNode):
            first: dict[Any, int] = {}
            for key_node, _ in node.value:
                if not isinstance(key_node, yaml.ScalarNode) or key_node.tag.endswith(":merge"):
                    continue
                key = self.construct_object(key_node)
                line = key_node.start_mark.line + 1
                try:
                    if key in first:
                        problem = (
                            f"line {line}: duplicate key {short(key)} (also on line {first[key]})"
                        )
                        self.duplicates.append((line, problem))
                    else:
                        first[key] = line
                except TypeError:  # unhashable: the constructor below says so
                    pass
        return super().construct_mapping(node, deep=deep)


def _problem(exc: yaml.YAMLError, text: str) -> str:
    if isinstance(exc, yaml.reader.ReaderError):
        line = text.count("\n", 0, exc.position) + 1
        column = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
        what = f"#x{exc.character:04x}" if isinstance(exc.character, int) else repr(exc.character)
        return (
            f"line {line}, column {column}: invalid YAML: unacceptable character {what}: "
            f"{exc.reason}"
        )
    mark = getattr(exc, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    if isinstance(exc, _Unsupported):
        return f"{where}{problem}"
    return f"{where}invalid YAML: {problem}"


def load(text: str, kind: Kind) -> Any:
    """Parse the YAML of a ``kind`` file; :class:`Refused` for what vsa refuses or cannot parse."""
    try:
        loader = _Loader(text, kind)  # checks that every character is printable
        try:
            data = loader.get_single_data()
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        raise Refused([_problem(exc, text)]) from None
    if loader.duplicates:
        raise Refused([problem for _, problem in sorted(loader.duplicates)])
    return data


def load_file(path: str | os.PathLike[str], kind: Kind) -> Any:
    """:func:`read_text` then :func:`load`."""
    return load(read_text(path, kind), kind)
