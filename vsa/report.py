"""The end-of-run report: ``<output_dir>/report.json`` and ``report.png`` (fps and latency over
time per stream, and the analytics counts over time when a stream has analytics). Built by the
controller when a run ends or is stopped; no Ray needed here."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from vsa.flow import LatencyHistogram
from vsa.fsutil import atomic_write_with
from vsa.schema import Analytics, SourceStatus

Series = dict[str, list[list[float]]]  # source id -> [t, fps, p50 ms, p99 ms] rows
# source id -> count name ("line:door:in", "zone:lobby:entered") -> [t, n] rows
Counts = dict[str, dict[str, list[list[float]]]]

PERCENTILES = (50, 90, 99)


def _percentiles(hist: LatencyHistogram) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for q in PERCENTILES:
        v = hist.percentile(q)
        out[f"p{q}"] = None if v is None else round(v * 1000, 1)
    out["max"] = round(hist.max_s * 1000, 1) if hist.total else None
    return out


def analytics_totals(analytics: Analytics) -> dict[str, Any]:
    """A source's final analytics without its live values (tracks, occupancy, loitering)."""
    return {
        "track_ids": analytics.track_ids,
        "lines": {
            line_id: {
                "in": line.in_,
                "out": line.out,
                "classes": {name: {"in": c.in_, "out": c.out} for name, c in line.classes.items()},
            }
            for line_id, line in analytics.lines.items()
        },
        "zones": {
            zone_id: {"entered": zone.entered, "left": zone.left}
            for zone_id, zone in analytics.zones.items()
        },
        "events": dict(analytics.events),
    }


def _run_analytics(streams: dict[str, Analytics]) -> dict[str, Any]:
    """The run's analytics summed over its streams (line and zone ids are a stream's own: the
    run sums crossings, by class too, and zone entries and exits)."""
    crossings: Counter[str] = Counter()
    zones: Counter[str] = Counter()
    events: Counter[str] = Counter()
    classes: dict[str, Counter[str]] = {}
    for analytics in streams.values():
        for line in analytics.lines.values():
            crossings.update({"in": line.in_, "out": line.out})
            for name, c in line.classes.items():
                classes.setdefault(name, Counter()).update({"in": c.in_, "out": c.out})
        for zone in analytics.zones.values():
            zones.update({"entered": zone.entered, "left": zone.left})
        events.update(analytics.events)
    return {
        "streams": list(streams),
        "track_ids": sum(a.track_ids for a in streams.values()),
        "crossings": {"in": crossings["in"], "out": crossings["out"]},
        "classes": {name: {"in": c["in"], "out": c["out"]} for name, c in sorted(classes.items())},
        "zones": {"entered": zones["entered"], "left": zones["left"]},
        "events": dict(events),
    }


def build_report(
    run: dict[str, Any], series: Series, counts: Counts | None = None
) -> dict[str, Any]:
    """``run``: the controller's run summary; ``series``: per source, [t, fps, p50, p99] rows;
    ``counts``: per source with analytics, its sampled cumulative counts (``Counts``).

    A run without analytics has no ``analytics`` or ``counts`` keys (the report is as before
    analytics existed)."""
    end = run.get("finished_at") or run["created_at"]
    duration = max(1e-9, end - run["created_at"])
    streams, everything = [], LatencyHistogram()
    totals: Counter[str] = Counter()
    drops: Counter[str] = Counter()
    analytics: dict[str, Analytics] = {}
    removed = {r["id"] for r in run.get("removed") or []}  # sources a change took out
    for s in map(SourceStatus.from_dict, [*run["sources"], *(run.get("removed") or [])]):
        # bucket counts, plus the exact maximum the source measured (None: no samples, or a
        # source that did not send it; then the top bucket's edge stands in)
        buckets = s.latency_hist
        max_ms = s.latency_max_ms
        max_s = None if max_ms is None else max_ms / 1000
        hist = LatencyHistogram()
        hist.merge(buckets, max_s)
        everything.merge(buckets, max_s)
        totals["frames_decoded"] += s.frames_decoded
        totals["frames_inferred"] += s.frames_inferred
        totals["frames_emitted"] += s.frames_emitted
        totals["frames_dropped"] += s.frames_dropped
        drops.update(s.drops)
        stream: dict[str, Any] = {
            "id": s.id,
            "uri": s.uri,  # already masked
            "state": s.state.value,
            "code": s.code,
            "error": s.error,
            "frames_decoded": s.frames_decoded,
            "frames_inferred": s.frames_inferred,
            "frames_emitted": s.frames_emitted,
            "frames_dropped": s.frames_dropped,
            "drops": s.drops,
            "fps_mean": round(s.frames_emitted / duration, 2),
            "latency_ms": _percentiles(hist),
            "reconnects": s.reconnects,
            "restarts": s.restarts,
            "transitions": [t.to_dict() for t in s.transitions],
        }
        if s.id in removed:
            stream["removed"] = True
        if s.sinks:  # per sink: written, and what a best-effort one lost by cause
            stream["sinks"] = {
                name: {"policy": c.policy, "written": c.written, "lost": dict(c.lost)}
                for name, c in s.sinks.items()
            }
        if s.analytics is not None:
            analytics[s.id] = s.analytics
            stream["analytics"] = analytics_totals(s.analytics)
        streams.append(stream)
    report: dict[str, Any] = {
        "run": run["id"],
        "name": run["name"],
        "state": run["state"],
        "error": run.get("error"),
        "started_at": run["created_at"],
        "finished_at": run.get("finished_at"),
        "duration_s": round(duration, 3),
        "model": run.get("model"),
        "totals": {
            **totals,
            "drops": dict(drops),
            "fps_mean": round(totals["frames_emitted"] / duration, 2),
        },
        "latency_ms": _percentiles(everything),
        "streams": streams,
        "transitions": run.get("transitions", []),
        "events": run.get("events", []),
        "series": {
            sid: {"columns": ["t", "fps", "p50_ms", "p99_ms"], "rows": rows}
            for sid, rows in series.items()
        },
    }
    if analytics:
        report["analytics"] = _run_analytics(analytics)
    sampled = {sid: dict(named) for sid, named in (counts or {}).items() if named}
    if sampled:
        report["counts"] = sampled
    return report


def write_report(output_dir: str | Path, report: dict[str, Any]) -> list[Path]:
    """Write report.json and report.png; the PNG is skipped (with a note) if matplotlib fails.

    Each file is replaced atomically: a failed write (a full disk) leaves the previous
    report in place, and a link planted under either name is replaced, not written through.
    """
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "report.json"
    _write_json(path, report)
    written = [path]
    try:
        written.append(plot(report, out / "report.png"))
    except Exception as exc:  # noqa: BLE001 - the JSON is what matters
        report["plot_error"] = f"{type(exc).__name__}: {exc}"
        _write_json(path, report)
    return written


def _write_json(path: Path, report: dict[str, Any]) -> None:
    data = json.dumps(report, indent=1).encode("utf-8")
    write_atomic(path, lambda f: f.write(data))


def write_atomic(path: Path, write: Callable[[IO[bytes]], object]) -> None:
    """Replace ``path`` with what ``write`` puts in a binary file, all or nothing, never
    through a link (``vsa.fsutil.atomic_write_with``), readable by all like the videos."""
    atomic_write_with(path, write, 0o644)


def plot(report: dict[str, Any], path: Path) -> Path:
    """fps and latency over time per stream; below them, when a stream has analytics, its
    cumulative counts (line crossings, zone entries) over time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts: Counts = report.get("counts") or {}
    panels = 3 if any(rows for named in counts.values() for rows in named.values()) else 2
    fig, axes = plt.subplots(panels, 1, figsize=(10, 3 * panels), sharex=True)
    ax_fps, ax_lat = axes[0], axes[1]
    t0 = report["started_at"]
    for sid, data in report["series"].items():
        rows = data["rows"]
        if not rows:
            continue
        t = [r[0] - t0 for r in rows]
        ax_fps.plot(t, [r[1] for r in rows], label=sid)
        p99 = [r[3] for r in rows]
        (line,) = ax_lat.plot(t, p99, label=f"{sid} p99")
        ax_lat.plot(
            t, [r[2] for r in rows], linestyle=":", color=line.get_color(), label=f"{sid} p50"
        )
    ax_fps.set_ylabel("frames/s emitted")
    ax_lat.set_ylabel("latency (ms)")
    axes[-1].set_xlabel("seconds since the run started")
    ax_fps.set_title(f"{report['run']} ({report['state']})")
    if panels == 3:
        ax_counts = axes[2]
        for sid, named in counts.items():
            for name, rows in named.items():
                if rows:
                    label = f"{sid} {name.replace(':', ' ')}"
                    t = [r[0] - t0 for r in rows]
                    ax_counts.step(t, [r[1] for r in rows], where="post", label=label)
        ax_counts.set_ylabel("count so far")
    for ax in axes:
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize="small", ncol=2)
    fig.tight_layout()
    try:
        write_atomic(path, lambda f: fig.savefig(f, format="png", dpi=80))
    finally:
        plt.close(fig)
    return path
