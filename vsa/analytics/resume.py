"""A restarted or resumed stream's analytics state, found in the files it wrote.

A source actor that Ray restarted, or that the engine resumes after a drain or a crash,
starts with empty processors; its files hold what they need to go on:

- the tracker's high-water mark: the largest ``track_id`` in ``<id>.jsonl`` and
  ``<id>.events.jsonl`` (an id is written in the frame it is given in), so new tracks get
  ids above every id written before;
- the counters' totals: ``<id>.events.jsonl`` holds every crossing, entry, exit and
  loitering event once, so replaying it gives the counts.

Tracks themselves do not survive a restart (the tracker's motion state is not saved): the
tracks live at the restart end, new ids follow, and a zone's occupants at the restart get no
``zone_leave`` (docs/analytics.md).
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from pathlib import Path
from typing import Any

from vsa.analytics import counting, tracker
from vsa.core.scene import LINE_CROSS, ZONE_ENTER, ZONE_LEAVE
from vsa.sinks.jsonl import open_nofollow, rotated_files

log = logging.getLogger("vsa.analytics")

_TRACK_ID = re.compile(rb'"track_id":(\d+)')
_CHUNK = 1 << 20


def max_track_id(*paths: Path) -> int:
    """The largest ``track_id`` written in any of ``paths`` (0: none, or no such files)."""
    best = 0
    for path in paths:
        try:
            fd = open_nofollow(Path(path), 0)
        except FileNotFoundError:
            continue
        with open(fd, "rb", closefd=True) as f:
            tail = b""
            while chunk := f.read(_CHUNK):
                data = tail + chunk
                cut = data.rfind(b"\n") + 1  # whole lines only; the rest waits for the next
                for m in _TRACK_ID.finditer(data, 0, cut or len(data)):
                    best = max(best, int(m.group(1)))
                tail = data[cut:] if cut else b""
            for m in _TRACK_ID.finditer(tail):
                best = max(best, int(m.group(1)))
    return best


def replay_events(path: Path, run_id: str) -> dict[str, Any]:
    """The counters' state (``SceneCounter.state``'s shape) from the run's lines of an
    events file; lines of other runs and unreadable lines are skipped."""
    lines: dict[str, dict[str, Counter[str]]] = {}
    zones: dict[str, dict[str, int]] = {}
    events: Counter[str] = Counter()
    try:
        fd = open_nofollow(Path(path), 0)
    except FileNotFoundError:
        return {}
    bad = 0
    with open(fd, "rb", closefd=True) as f:
        for raw in f:
            if not raw.endswith(b"\n"):
                break  # a line cut by a crash: the writer drops it when it appends
            try:
                e = json.loads(raw)
            except ValueError:
                bad += 1
                continue
            if not isinstance(e, dict) or e.get("run") != run_id:
                continue
            kind = e.get("kind")
            if not isinstance(kind, str):
                continue
            events[kind] += 1
            if kind == LINE_CROSS:
                line = lines.setdefault(str(e.get("line")), {"in": Counter(), "out": Counter()})
                direction = e.get("direction")
                if direction in ("in", "out"):
                    line[direction][str(e.get("class"))] += 1
            elif kind in (ZONE_ENTER, ZONE_LEAVE):
                zone = zones.setdefault(str(e.get("zone")), {"entered": 0, "left": 0})
                zone["entered" if kind == ZONE_ENTER else "left"] += 1
    if bad:
        log.warning("%s: %d lines are not JSON and were not counted", path, bad)
    return {
        "lines": {k: {d: dict(c) for d, c in v.items()} for k, v in lines.items()},
        "zones": zones,
        "events": dict(events),
    }


def saved_state(output_dir: Path, run_id: str, source_id: str) -> dict[str, dict[str, Any]]:
    """The processors' state (``ProcessorChain.restore``'s shape) from a stream's files,
    rotated ones included (``vsa.sinks.jsonl.rotated_files``: those still there)."""
    out = Path(output_dir)
    jsonl, events = out / f"{source_id}.jsonl", out / f"{source_id}.events.jsonl"
    every_jsonl = [*rotated_files(jsonl), jsonl]
    every_events = [*rotated_files(events), events]
    return {
        tracker.NAME: {"track_ids": max_track_id(*every_jsonl, *every_events)},
        counting.NAME: merge_states([replay_events(p, run_id) for p in every_events]),
    }


def merge_states(states: list[dict[str, Any]]) -> dict[str, Any]:
    """Counters' states (``replay_events``) of several files added up."""
    lines: dict[str, dict[str, Counter[str]]] = {}
    zones: dict[str, Counter[str]] = {}
    events: Counter[str] = Counter()
    for state in states:
        for lid, directions in (state.get("lines") or {}).items():
            line = lines.setdefault(lid, {"in": Counter(), "out": Counter()})
            for d in ("in", "out"):
                line[d].update(directions.get(d) or {})
        for zid, counts in (state.get("zones") or {}).items():
            zones.setdefault(zid, Counter()).update(counts)
        events.update(state.get("events") or {})
    return {
        "lines": {k: {d: dict(c) for d, c in v.items()} for k, v in lines.items()},
        "zones": {k: dict(v) for k, v in zones.items()},
        "events": dict(events),
    }


__all__ = ["max_track_id", "merge_states", "replay_events", "saved_state"]
