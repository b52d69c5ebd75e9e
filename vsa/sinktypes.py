"""The sink registry: each sink type names its run-file spec, its factory and the files it
writes. The run file's ``sinks`` union, the reference docs (docs/run-file.md) and
``vsa schema`` follow from it (``vsa.config`` registers the built-in types and builds the
union), and ``vsa.sinks.open_sinks`` opens a stream's sinks through it.

Nothing heavy is imported here: a factory is a ``"module:function"`` string, imported when a
stream opens a sink of that type (the video sink needs PyAV, the others do not).

A factory is called as ``factory(spec, context)`` (``SinkContext``) and returns a
``vsa.sinks.Sink`` (``write(frame, result)``, ``close()``).

Failure policy (every spec's ``policy``): a ``required`` sink that fails fails its stream
(``SINK_ERROR``: it is the record of the stream); a ``best_effort`` sink that fails loses that
frame, counted as that sink's loss by cause, and the stream and the other sinks go on
(docs/failure-policy.md, "Frame accounting").
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

POLICIES = ("required", "best_effort")


@dataclass(frozen=True)
class SinkContext:
    """Where and for what a sink is opened."""

    output_dir: Path
    run_id: str
    source_id: str
    fps: float | None  # the source's rate, when it says
    resume: bool  # continue the files of an earlier incarnation of the stream
    draw_in_place: bool = False  # the last sink that draws may draw into the frame itself


@dataclass(frozen=True)
class SinkType:
    """A sink type: ``name`` is the run file's ``type``; ``spec`` its pydantic model (with
    ``type: Literal[name]`` and ``policy``); ``factory`` ``"module:function"``; ``files``: the
    files a stream's sink of this spec leaves for sure once it wrote frames, by (spec, source
    id) (resume checks and output claims look for them); ``more``: the pattern of its later
    files (``<id>.part2.mp4``), if it writes any."""

    name: str
    spec: type
    factory: str
    files: Callable[[Any, str], list[str]]
    more: Callable[[str], re.Pattern[str]] | None = None
    draws: bool = False  # draws overlays on the frame (the last such sink draws in place)
    reads_pixels: bool = False  # reads the frame's pixels (after it, nobody draws in place)
    # a folder of the output directory, by source id, whose files are all this sink's
    folder: Callable[[str], str] | None = None

    def open(self, spec: Any, context: SinkContext) -> Any:
        module, _, function = self.factory.partition(":")
        return getattr(importlib.import_module(module), function)(spec, context)


_TYPES: dict[str, SinkType] = {}


def register(sink_type: SinkType) -> SinkType:
    """Add a sink type (its name must be new)."""
    if sink_type.name in _TYPES:
        raise ValueError(f"sink type '{sink_type.name}' is registered already")
    _TYPES[sink_type.name] = sink_type
    return sink_type


def sink_types() -> dict[str, SinkType]:
    """Every registered sink type by name, in registration order."""
    return dict(_TYPES)


def sink_type(name: str) -> SinkType:
    try:
        return _TYPES[name]
    except KeyError:
        raise ValueError(f"unknown sink type '{name}' (known: {', '.join(_TYPES)})") from None


__all__ = ["POLICIES", "SinkContext", "SinkType", "register", "sink_type", "sink_types"]
