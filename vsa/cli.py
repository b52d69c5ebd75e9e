"""``vsa submit|status|stop|list|source|pause|resume|...`` (also ``python -m vsa.submit`` etc.)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from typing import Any, TextIO

from vsa.errors import ConfigError, RunNotFound, VsaError
from vsa.schema import TERMINAL_RUN_STATES, RunState, RunStatus, SourceState, SourceStatus
from vsa.uri import mask_uri

# the terminal run states' strings, in RunState's order
TERMINAL = tuple(s.value for s in RunState if s in TERMINAL_RUN_STATES)


def _add_address(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--address", help="Ray cluster address (default: RAY_ADDRESS, then the local cluster)"
    )


def _add_timeout(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument(
        "--timeout",
        type=stop_timeout,
        default=60.0,
        help=f"seconds to wait for {what} to drain, more than 0 and at most 3600 (default 60)",
    )


def stop_timeout(text: str) -> float:
    """argparse ``type=`` for ``vsa stop --timeout``: a finite number of seconds in (0, 3600]."""
    from vsa.client import MAX_STOP_TIMEOUT_S, check_stop_timeout

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    try:
        return check_stop_timeout(value)
    except VsaError:
        raise argparse.ArgumentTypeError(
            f"must be a finite number of seconds in (0, {MAX_STOP_TIMEOUT_S:.0f}], not {text!r}"
        ) from None


SOURCE_OPTIONS = ("id", "uri", "fps")
"""The source fields ``vsa source add`` has an option of its own for (not settable by --set)."""


def set_item(text: str) -> tuple[list[str], Any]:
    """argparse ``type=`` for ``vsa source add --set KEY=VALUE``: the key's dotted path and the
    value parsed as YAML (a scalar or a flow collection: ``3``, ``true``, ``[a, b]``,
    ``{max_attempts: 3}``). The value is never quoted back in an error: it may be a secret."""
    import yaml

    key, eq, raw = text.partition("=")
    key = key.strip()
    if not eq or not key:
        raise argparse.ArgumentTypeError(
            "expected KEY=VALUE (e.g. --set mode=realtime or --set reconnect.max_attempts=3)"
        )
    path = key.split(".")
    if any(not part.strip() for part in path):
        raise argparse.ArgumentTypeError(f"{key!r} is not a key (dotted keys: a.b, no empty part)")
    if path[0] in SOURCE_OPTIONS:
        raise argparse.ArgumentTypeError(f"set {path[0]} with --{path[0]}, not --set")
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        why = getattr(exc, "problem", None) or type(exc).__name__
        raise argparse.ArgumentTypeError(
            f"the value of {key} is not valid YAML ({why}); quote it for the shell and YAML"
        ) from None
    return [part.strip() for part in path], value


class _SetAction(argparse.Action):
    """Collects ``--set KEY=VALUE`` into one nested mapping (``args.set``); a key set twice, or
    below a key that holds a value, is a usage error."""

    def __call__(self, parser, namespace, values, option_string=None):  # type: ignore[override]
        fields = getattr(namespace, self.dest, None)
        fields = {} if fields is None else fields
        path, value = values
        node = fields
        for depth, part in enumerate(path[:-1]):
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise argparse.ArgumentError(
                    self, f"{'.'.join(path[: depth + 1])} is set to a value already"
                )
        if path[-1] in node:
            key = ".".join(path)
            below = isinstance(node[path[-1]], dict)
            raise argparse.ArgumentError(
                self, f"{key} is set twice" + (f" ({key}.* set before)" if below else "")
            )
        node[path[-1]] = value
        setattr(namespace, self.dest, fields)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vsa", description="Video stream analytics on Ray.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("submit", help="validate a run file and start the run")
    p.add_argument("run_file")
    p.add_argument(
        "--follow",
        "-f",
        action="store_true",
        help="stay attached and print progress until the run ends",
    )
    p.add_argument(
        "--local", action="store_true", help="start an in-process Ray cluster (implies --follow)"
    )
    p.add_argument(
        "--replace-controller",
        action="store_true",
        help="replace a controller running other code even if it has active runs (they are "
        "drained and resume on the new one)",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the outputs of an earlier, finished run in output_dir; without it, a run "
        "whose output files already exist is refused",
    )
    p.add_argument("--check", action="store_true", help="only validate the run file")
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="print what submitting would do (to the active run of that name: the sources "
        "added, removed, restarted and kept, an engine swap) and change nothing",
    )
    p.add_argument("--json", action="store_true", help="print the submit result as JSON")
    _add_address(p)

    p = sub.add_parser("status", help="state and counters of runs and their sources")
    p.add_argument("run", nargs="?", help="run id or name (default: all runs)")
    p.add_argument("--json", action="store_true", help="one JSON document for scripts")
    p.add_argument(
        "--follow",
        action="store_true",
        help="refresh the run's table in place until it ends (plain lines when not a terminal)",
    )
    _add_address(p)

    p = sub.add_parser("stop", help="stop a run; files are closed and playable")
    p.add_argument("run", help="run id or name")
    _add_timeout(p, "sources")
    p.add_argument("--json", action="store_true")
    _add_address(p)

    p = sub.add_parser(
        "source", help="add a source to a running run, or remove one; the others go on"
    )
    verbs = p.add_subparsers(dest="source_command", metavar="{add,remove}", required=True)
    q = verbs.add_parser(
        "add", help="add a source to an active run without restarting its other sources"
    )
    q.add_argument("run", help="run id or name")
    q.add_argument("--id", required=True, help="the source's id, unique in the run")
    q.add_argument(
        "--uri",
        required=True,
        help="the source's URI, as in a run file (a relative file path is taken from here; "
        "${ENV} references are expanded)",
    )
    q.add_argument("--fps", type=float, help="process at most this many frames per second")
    q.add_argument(
        "--set",
        type=set_item,
        action=_SetAction,
        metavar="KEY=VALUE",
        help="any other field of a run file's source, its value as YAML (repeat it; dotted "
        "keys nest: --set mode=realtime --set reconnect.max_attempts=3)",
    )
    q.add_argument("--dry-run", action="store_true", help="print the plan and change nothing")
    q.add_argument("--json", action="store_true", help="print the engine's answer as JSON")
    _add_address(q)
    q = verbs.add_parser(
        "remove", help="stop one source of an active run and drop it; its files are closed"
    )
    q.add_argument("run", help="run id or name")
    q.add_argument("source_id", metavar="ID", help="the source's id")
    _add_timeout(q, "the source")
    q.add_argument("--dry-run", action="store_true", help="print the plan and change nothing")
    q.add_argument("--json", action="store_true", help="print the engine's answer as JSON")
    _add_address(q)

    p = sub.add_parser(
        "pause",
        help="pause an active run: its sources stop (files closed) until vsa resume; same id",
    )
    p.add_argument("run", help="run id or name")
    _add_timeout(p, "sources")
    p.add_argument("--json", action="store_true")
    _add_address(p)

    p = sub.add_parser("resume", help="resume a paused run: same id, its files continued")
    p.add_argument("run", help="run id or name")
    p.add_argument("--json", action="store_true")
    _add_address(p)

    p = sub.add_parser("list", help="runs known to the controller")
    p.add_argument("--json", action="store_true")
    _add_address(p)

    p = sub.add_parser(
        "drain",
        help="before a restart or an upgrade: refuse new runs, stop every run's sources and "
        "close their files; the runs resume when the engine starts again",
    )
    p.add_argument(
        "--timeout",
        type=stop_timeout,
        default=60.0,
        help="seconds to wait for each source's frames in flight (default 60)",
    )
    p.add_argument("--json", action="store_true")
    _add_address(p)

    p = sub.add_parser(
        "config",
        help="the effective host configuration: each setting, its value and where it came "
        "from (environment, host file, default); secrets hidden",
    )
    p.add_argument("--json", action="store_true")

    p = sub.add_parser(
        "schema", help="the run file's JSON Schema (editor completion, CI checks of run files)"
    )
    p.add_argument(
        "--mqtt",
        action="store_true",
        help="instead: the JSON Schema of the mqtt sink's payloads, by topic (docs/mqtt.md)",
    )

    p = sub.add_parser(
        "serve",
        help="run the engine as a service in the foreground: start (or join) the local Ray "
        "head, start the controller (it resumes the runs that were active), log to stdout; "
        "SIGTERM or Ctrl-C drains the runs (and stops the Ray head it started)",
    )
    p.add_argument(
        "--ray-start-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="extra argument for `ray start --head` (repeat it), e.g. --ray-start-arg=--num-gpus=1",
    )
    p.add_argument(
        "--interval", type=float, default=30.0, help="seconds between status lines (default 30)"
    )
    p.add_argument(
        "--replace-controller",
        action="store_true",
        help="when the head it joins runs a controller of other code (an upgrade in place): "
        "drain its runs and replace it; they resume on this code",
    )
    _add_ui_args(p, "--ui-host", "--ui-port")
    p.add_argument("--ui", action="store_true", help="also serve the live page (docs/live-page.md)")
    _add_address(p)

    p = sub.add_parser(
        "ui",
        help="serve the live page: runs, streams and a live annotated view of each, in a "
        "browser (127.0.0.1:8090 by default; elsewhere it asks for a token)",
    )
    _add_ui_args(p, "--host", "--port")
    _add_address(p)
    return parser


def _add_ui_args(p: argparse.ArgumentParser, host: str, port: str) -> None:
    from vsa.ui import DEFAULT_PORT

    p.add_argument(
        host,
        default="127.0.0.1",
        help="the live page's address (default 127.0.0.1; any other asks for a token)",
    )
    p.add_argument(
        port, type=int, default=DEFAULT_PORT, help=f"its port (default {DEFAULT_PORT}; 0: any)"
    )


# --- rendering ------------------------------------------------------------------------------


def render_run(run: RunStatus) -> str:
    model = run.model or {}
    lines = [
        f"run {run.id}  {run.state.value}"
        + (f"  model {model.get('model')} on {model.get('device')}" if model else "")
        + f"  output {run.output_dir}"
    ]
    if run.error:
        lines.append(f"  error: {run.error}")
    if run.reason:
        lines.append(f"  why: {run.reason}")
    for warning in run.warnings:
        lines.append(f"  warning: {warning}")
    header = ("source", "state", "fps", "p50 ms", "p99 ms", "emitted", "dropped", "reconn")
    rows = [header] + [
        (
            s.id,
            source_state_text(s),
            f"{s.fps:.1f}",
            _ms(s.latency_ms.p50),
            _ms(s.latency_ms.p99),
            str(s.frames_emitted),
            str(s.frames_dropped),
            str(s.reconnects),
        )
        for s in run.sources
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    for r in rows:
        cells = [r[0].ljust(widths[0]), r[1].ljust(widths[1])] + [
            c.rjust(w) for c, w in zip(r[2:], widths[2:], strict=True)
        ]
        lines.append("  " + "  ".join(cells))
    for s in run.sources:
        if s.error:
            lines.append(f"  {s.id}: {s.error}")
        if s.drops:
            causes = ", ".join(f"{k} {v}" for k, v in sorted(s.drops.items()))
            lines.append(f"  {s.id} drops: {causes}")
        arrival = getattr(s, "arrival", None)
        if arrival is not None and arrival.bursty:
            held = "" if arrival.hold_ms is None else f", held up to {arrival.hold_ms:.0f} ms"
            lines.append(
                f"  {s.id} arrives in bursts of {arrival.burst_frames or 0:.0f} frames: paced "
                f"by its timestamps{held}"
            )
        lines.extend(analytics_lines(s))
        lines.extend(sink_loss_lines(s))
    for s in run.removed:  # taken out of the run by a change: its final counts
        lines.append(f"  {s.id} removed: emitted {s.frames_emitted}, dropped {s.frames_dropped}")
    if run.report:
        lines.append(f"  report: {', '.join(run.report)}")
    return "\n".join(lines)


def analytics_lines(s: SourceStatus) -> list[str]:
    """One line per counting line and zone of a source with analytics (none without)."""
    analytics = s.analytics
    if analytics is None:
        return []
    out = [
        f"  {s.id}: line {line_id} in {line.in_} out {line.out}"
        for line_id, line in analytics.lines.items()
    ]
    out += [
        f"  {s.id}: zone {zone_id} {zone.occupancy} inside ({zone.entered} entered, "
        f"{zone.left} left, {zone.loitering} loitering)"
        for zone_id, zone in analytics.zones.items()
    ]
    return out


def sink_loss_lines(s: SourceStatus) -> list[str]:
    """One line per best-effort sink of a source that lost frames (none otherwise)."""
    return [
        f"  {s.id}: sink {name} (best effort) lost {c.frames_lost} of "
        f"{c.written + c.frames_lost} frames ("
        + ", ".join(f"{cause} {n}" for cause, n in sorted(c.lost.items()) if n)
        + ")"
        for name, c in s.sinks.items()
        if c.frames_lost
    ]


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def source_state_text(s: SourceStatus, now: float | None = None) -> str:
    """``STREAMING``, or ``RECONNECTING #3 in 4s`` with the attempt and time to the next try."""
    if s.state is not SourceState.RECONNECTING:
        return s.state.value
    text = f"RECONNECTING #{s.attempt}"
    if s.next_retry_at is not None:
        text += f" in {max(0.0, s.next_retry_at - (time.time() if now is None else now)):.0f}s"
    return text


def progress_line(run: RunStatus, elapsed: float) -> str:
    parts = [
        f"{s.id} {source_state_text(s)} {s.frames_emitted} {s.fps:.1f}fps" for s in run.sources
    ]
    return f"[{elapsed:5.0f}s] {run.state.value:<8} " + " | ".join(parts)


PLAN_MARKS = {"add": "+", "remove": "-", "restart": "~", "keep": "="}


def plan_text(plan: dict[str, Any]) -> str:
    """What ``--dry-run`` prints: the plan of a change to a run, one line per source (``+``
    add, ``-`` remove, ``~`` restart with what changed, ``=`` keep), then the engine and the
    run-level fields applied in place. A plan names sources by id only, never by URI."""
    who = f"run {plan['run']}" if plan.get("run") else f"new run {plan.get('name')}"
    lines = [f"plan for {who}:"]
    for source in plan.get("sources") or []:
        action = source.get("action")
        line = f"  {PLAN_MARKS.get(action, '?')} {source.get('id')} {action}"
        if source.get("changed"):
            line += f" ({', '.join(source['changed'])})"
        lines.append(line)
    engine = plan.get("engine") or {}
    if plan.get("engine_swap"):
        lines.append(f"  engine: swap {engine.get('from')} -> {engine.get('to')}")
    else:
        lines.append("  engine: keep")
    if plan.get("run_changes"):
        lines.append(f"  run: {', '.join(plan['run_changes'])} (applied in place)")
    if plan.get("noop"):
        lines.append("  no changes")
    return "\n".join(lines)


def plan_summary(plan: dict[str, Any], run_id: str | None) -> str:
    """One line after a change was applied: ``updated run <id>: added cam3; removed cam4;
    restarted cam2 (fps, sinks); kept cam1; engine swapped (a -> b)`` (empty parts left out;
    ``no changes`` for a plan that changed nothing)."""
    head = f"updated run {run_id or plan.get('run')}: "
    if plan.get("noop"):
        return head + "no changes"
    by_action: dict[str, list[str]] = {}
    for source in plan.get("sources") or []:
        text = str(source.get("id"))
        if source.get("action") == "restart" and source.get("changed"):
            text += f" ({', '.join(source['changed'])})"
        by_action.setdefault(str(source.get("action")), []).append(text)
    parts = [
        f"{verb} {', '.join(by_action.pop(action))}"
        for action, verb in (
            ("add", "added"),
            ("remove", "removed"),
            ("restart", "restarted"),
            ("keep", "kept"),
        )
        if action in by_action
    ]
    parts += [f"{action} {', '.join(ids)}" for action, ids in by_action.items()]  # unknown
    if plan.get("engine_swap"):
        engine = plan.get("engine") or {}
        parts.append(f"engine swapped ({engine.get('from')} -> {engine.get('to')})")
    if plan.get("run_changes"):
        parts.append(f"changed in place: {', '.join(plan['run_changes'])}")
    return head + ("; ".join(parts) or "no changes")


def status_json(runs: Sequence[RunStatus]) -> dict[str, Any]:
    """What ``vsa status --json`` prints: ``{"runs": [run, ...]}``, each run versioned
    (``"v"``, vsa.schema.STATUS_VERSION)."""
    return {"runs": [r.to_dict() for r in runs]}


# --- commands -------------------------------------------------------------------------------


def _client(args: argparse.Namespace, local: bool = False):
    from vsa.client import Client

    return Client(
        address=args.address,
        local=local,
        replace_controller=getattr(args, "replace_controller", False),
    )


def cmd_submit(args: argparse.Namespace, out: TextIO) -> int:
    from vsa.client import load_spec

    spec = load_spec(args.run_file)  # what Client.submit(path) sends
    if args.check:
        print(f"{args.run_file}: OK ({len(spec.sources)} sources)", file=out)
        return 0
    client = _client(args, local=args.local)
    dry_run = getattr(args, "dry_run", False)
    # dry_run only when asked: the call stays what it was for a plain submit
    result = client.submit(spec, overwrite=args.overwrite, **({"dry_run": True} if dry_run else {}))
    run_id = result.get("run_id")
    if args.json:
        print(json.dumps(result), file=out)
    elif dry_run:
        print(f"{plan_text(result['plan'])}\ndry run: nothing was changed", file=out)
    elif "plan" in result:  # a run of that name was active: the difference was applied
        print(plan_summary(result["plan"], run_id), file=out)
    else:
        model = result.get("model") or {}
        on = f" on {model['device']}" if model.get("device") else ""
        state = ""
        if result.get("state") == "PENDING":
            why = f" ({result['reason']})" if result.get("reason") else ""
            state = f" PENDING{why}, it starts by itself when there is room;"
        print(
            f"submitted run {run_id}:{state} {len(spec.sources)} sources, model "
            f"{model.get('model')}{on}, outputs in {spec.output_dir}",
            file=out,
        )
    if dry_run or not (args.follow or args.local):
        return 0
    return follow(StatusReader(args, client, local=args.local), run_id, out, local=args.local)


def follow(
    reader: Any, run_id: str, out: TextIO, local: bool = False, interval_s: float = 2.0
) -> int:
    """Print the run's table every ``interval_s`` until it ends (the exit status: 0 for
    FINISHED or STOPPED). While the controller does not answer (Ray is restarting it) a line
    says so and the refresh goes on."""
    started = time.monotonic()
    live = LiveTable(out)
    last: RunStatus | None = None
    try:
        while True:
            try:
                run = reader.run(run_id)
            except ControllerUnavailable as exc:
                text = f"[{time.monotonic() - started:5.0f}s] controller restarting ({exc})"
                if live.tty:
                    live.show((render_run(last) + "\n" if last else "") + text)
                else:
                    print(text, file=out, flush=True)
                time.sleep(interval_s)
                continue
            last = run
            if run.terminal:
                break
            if live.tty:
                live.show(render_run(run))  # refreshed in place
            else:
                print(progress_line(run, time.monotonic() - started), file=out, flush=True)
            time.sleep(interval_s)
    except KeyboardInterrupt:
        if local:
            print(
                f"\nstopping run {run_id} (the in-process cluster ends with this command)", file=out
            )
            run = reader.client().stop(run_id)
        else:
            print(
                f"\ndetached; run {run_id} keeps going "
                f"(`vsa status {run_id}`, `vsa stop {run_id}`)",
                file=out,
            )
            return 0
    if live.tty:
        live.show(render_run(run))
    else:
        print(render_run(run), file=out)
    return 0 if run.state in (RunState.FINISHED, RunState.STOPPED) else 1


class ControllerUnavailable(VsaError):
    """Neither the controller's endpoint nor Ray got an answer from the controller."""


class StatusReader:
    """Where a command reads runs from: the controller's status endpoint on this host
    (``vsa.control.endpoint``: no Ray driver, an answer in milliseconds even on a saturated
    host), else the controller through Ray.

    The endpoint is that of the cluster addressed (``--address``, ``RAY_ADDRESS``, else the
    one ``auto`` joins), found in this user's index by its GCS port or in the newest Ray
    session (``vsa.control.endpoint.locate``); without one, or when it does not answer, Ray,
    with a line on stderr saying why when there is something to say (an endpoint of another
    cluster, one that did not answer) once Ray answered: a failing command prints its error
    alone.
    ``strict``: an endpoint that was found but does not answer raises
    :class:`ControllerUnavailable` instead of going through Ray (``--follow`` says "controller
    restarting" and retries, where a Ray call would hang until the controller is back).
    """

    def __init__(self, args: argparse.Namespace, client: Any = None, local: bool = False) -> None:
        self.args, self._client, self._local = args, client, local
        self.endpoint, self._why = (None, None) if local else _find_endpoint(args.address)

    def client(self) -> Any:
        if self._client is None:
            self._client = _client(self.args, local=self._local)
        return self._client

    def status_dicts(self, run: str | None = None, strict: bool = False) -> dict[str, Any]:
        if self.endpoint:
            from vsa.control.endpoint import NoEndpoint, Unavailable, read_status

            try:
                return read_status(run, self.endpoint)
            except NoEndpoint:
                pass  # none here, or not this user's to read: through Ray
            except Unavailable as exc:
                if strict:
                    raise ControllerUnavailable(str(exc)) from None
                self._why = f"{exc}; asking through Ray (slower)"
        try:
            answer = self.client().status_dicts(run)
        except VsaError as exc:
            if strict and "controller is unavailable" in str(exc):
                raise ControllerUnavailable(str(exc)) from None
            raise  # one error, not the note as well
        if self._why:  # once, with an answer: why this status was slow, how to avoid it
            print(f"vsa: {self._why}", file=sys.stderr)
            self._why = None
        return answer

    def status(self, run: str | None = None) -> list[RunStatus]:
        from vsa.schema import runs_from_dict, typed

        return typed(runs_from_dict, self.status_dicts(run))

    def run(self, run: str) -> RunStatus:
        """One run by id or name; ``RunNotFound`` when none; ``ControllerUnavailable`` while
        the controller does not answer."""
        from vsa.schema import runs_from_dict, typed

        runs = typed(runs_from_dict, self.status_dicts(run, strict=True))
        if not runs:
            raise RunNotFound(f"no run with id or name '{run}' (see `vsa list`)")
        return runs[0]


def _find_endpoint(address: str | None) -> tuple[Any, str | None]:
    """(the endpoint file of the cluster ``address`` names, or None; why status then goes
    through Ray, when that is worth a line): ``--address``, else ``RAY_ADDRESS``, else the
    cluster ``auto`` joins (``vsa.control.endpoint.locate``)."""
    from vsa.control.endpoint import locate
    from vsa.hostconfig import environ

    return locate(address or environ().get("RAY_ADDRESS") or "auto")


class LiveTable:
    """Redraws a block of text in place on a terminal (ANSI: cursor up, clear to the end)."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.tty = bool(getattr(out, "isatty", lambda: False)())
        self._lines = 0

    def show(self, text: str) -> None:
        prefix = f"\x1b[{self._lines}F\x1b[J" if self._lines else ""
        self.out.write(prefix + text + "\n")
        self.out.flush()
        self._lines = text.count("\n") + 1


def cmd_status(args: argparse.Namespace, out: TextIO) -> int:
    reader = StatusReader(args)
    if getattr(args, "follow", False):
        if not args.run:
            raise VsaError("--follow needs a run id or name")
        runs = reader.status(args.run)  # through Ray when the endpoint does not answer
        if not runs:
            raise RunNotFound(f"no run with id or name '{args.run}' (see `vsa list`)")
        return follow(reader, runs[0].id, out)
    runs, problems = _runs_and_problems(reader, args.run)
    if args.json:
        doc = status_json(runs)
        if problems:
            doc["problems"] = problems
        print(json.dumps(doc, indent=2), file=out)
        return 0
    if not runs:
        print("no runs", file=out)
    else:
        print("\n\n".join(render_run(r) for r in runs), file=out)
    if problems:
        print(("\n" if runs else "") + "\n".join(problem_lines(problems)), file=out)
    return 0


def _runs_and_problems(
    reader: StatusReader, run: str | None = None
) -> tuple[list[RunStatus], list[dict[str, Any]]]:
    """The runs, typed, and the saved records the controller could not load (its answer's
    ``problems``; none from a controller that does not say)."""
    from vsa.schema import runs_from_dict, typed

    doc = reader.status_dicts(run)
    problems = doc.get("problems") if isinstance(doc, dict) else None
    if not isinstance(problems, list):
        problems = []
    return typed(runs_from_dict, doc), [p for p in problems if isinstance(p, dict)]


def problem_lines(problems: Sequence[dict[str, Any]]) -> list[str]:
    """One line per saved record the controller could not load, with why."""
    return [
        f"saved record {p['record']} could not be loaded: {p.get('reason')}"
        if p.get("record")
        else f"saved runs could not be loaded: {p.get('reason')}"
        for p in problems
    ]


def cmd_stop(args: argparse.Namespace, out: TextIO) -> int:
    run = _client(args).stop(args.run, timeout_s=args.timeout)
    print(json.dumps(run.to_dict(), indent=2) if args.json else render_run(run), file=out)
    return 0


def source_dict(args: argparse.Namespace) -> dict[str, Any]:
    """The source ``vsa source add`` sends: ``--set`` fields, then ``--id``, ``--uri`` and
    ``--fps``."""
    source: dict[str, Any] = dict(args.set or {})
    source["id"] = args.id
    source["uri"] = args.uri
    if args.fps is not None:
        source["fps"] = args.fps
    return source


def _print_change(args: argparse.Namespace, answer: dict[str, Any], done: str, out: TextIO) -> None:
    """The answer to ``vsa source add|remove``: JSON, the plan (dry run), or one line; never a
    URI (a plan names sources by id)."""
    plan = answer.get("plan") or {}
    if args.json:
        print(json.dumps(answer), file=out)
    elif args.dry_run or not answer.get("applied", True):
        print(f"{plan_text(plan)}\ndry run: nothing was changed", file=out)
    else:
        print(done if _only_change(plan) else plan_summary(plan, answer.get("run_id")), file=out)


def _only_change(plan: dict[str, Any]) -> bool:
    """Whether the plan changes one source and nothing else (the others kept)."""
    changed = [s for s in plan.get("sources") or [] if s.get("action") != "keep"]
    return (
        len(changed) == 1
        and not plan.get("noop")
        and not plan.get("engine_swap")
        and not plan.get("run_changes")
    )


def cmd_source(args: argparse.Namespace, out: TextIO) -> int:
    client = _client(args)
    if args.source_command == "add":
        answer = client.add_source(args.run, source_dict(args), dry_run=args.dry_run)
        run_id = answer.get("run_id") or args.run
        _print_change(args, answer, f"added {args.id} to run {run_id}", out)
        return 0
    answer = client.remove_source(
        args.run, args.source_id, timeout_s=args.timeout, dry_run=args.dry_run
    )
    run_id = answer.get("run_id") or args.run
    _print_change(args, answer, f"removed {args.source_id} from run {run_id}", out)
    return 0


def cmd_pause(args: argparse.Namespace, out: TextIO) -> int:
    run = _client(args).pause(args.run, timeout_s=args.timeout)
    print(json.dumps(run.to_dict(), indent=2) if args.json else render_run(run), file=out)
    return 0


def cmd_resume(args: argparse.Namespace, out: TextIO) -> int:
    run = _client(args).resume(args.run)
    print(json.dumps(run.to_dict(), indent=2) if args.json else render_run(run), file=out)
    return 0


def cmd_list(args: argparse.Namespace, out: TextIO) -> int:
    runs, problems = _runs_and_problems(StatusReader(args))
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "id": r.id,
                        "name": r.name,
                        "state": r.state.value,
                        "created_at": r.created_at,
                        "finished_at": r.finished_at,
                    }
                    for r in runs
                ]
            ),
            file=out,
        )
        return 0
    if not runs:
        print("no runs", file=out)
    for r in runs:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.created_at))
        line = f"{r.id}  {r.state.value:<8}  {when}  {len(r.sources)} sources"
        if any(w.startswith("not durable") for w in r.warnings):
            line += "  NOT DURABLE (see vsa status)"
        if r.state is RunState.FAILED and r.error:
            line += f"  {r.error if len(r.error) <= 160 else r.error[:157] + '...'}"
        print(line, file=out)
    for line in problem_lines(problems):
        print(line, file=out)
    return 0


def cmd_drain(args: argparse.Namespace, out: TextIO) -> int:
    answer = _client(args).drain(timeout_s=args.timeout)
    if args.json:
        print(json.dumps(answer), file=out)
    else:
        print(drain_text(answer), file=out)
    return 0


def drain_text(answer: dict[str, Any]) -> str:
    """What ``vsa drain`` prints: the runs drained, and those that could not be saved (they
    would not resume: never promised)."""
    not_saved = list(answer.get("not_saved") or [])
    runs = ", ".join(answer["drained"]) or "none"
    text = f"drained in {answer['took_s']:.1f} s: {runs}; new runs are refused."
    restart = "Start the engine again (vsa serve, or a new Ray head and any vsa command)"
    if not not_saved:
        return f"{text} {restart}: the runs resume"
    resuming = [r for r in answer["drained"] if r not in not_saved]
    text += (
        f"\nNOT SAVED: {', '.join(not_saved)}: not saved where runs outlive the engine (why: "
        "the warning in vsa status): these runs would NOT resume after a restart; free space "
        "(or fix the state directory) and run vsa drain again"
    )
    if resuming:
        text += f"\n{restart}: {', '.join(resuming)} resume"
    return text


def cmd_config(args: argparse.Namespace, out: TextIO) -> int:
    from vsa.hostconfig import effective, host_file_path

    rows = effective()
    if args.json:
        print(json.dumps({"host_file": host_file_path(), "settings": rows}, indent=2), file=out)
        return 0
    print(f"host file: {host_file_path() or '(none: VSA_CONFIG is empty)'}", file=out)
    widths = [max(len(r[k]) for r in rows) for k in ("setting", "value")]
    for r in rows:
        print(f"{r['setting']:<{widths[0]}}  {r['value']:<{widths[1]}}  {r['from']}", file=out)
    return 0


def cmd_schema(args: argparse.Namespace, out: TextIO) -> int:
    if getattr(args, "mqtt", False):
        from vsa.sinks.mqtt import payload_schemas

        print(json.dumps(payload_schemas(), indent=2), file=out)
        return 0
    from vsa.config import json_schema

    print(json.dumps(json_schema(), indent=2), file=out)
    return 0


def cmd_ui(args: argparse.Namespace, out: TextIO) -> int:
    import signal
    import threading

    from vsa.ui import UiServer, client_picture

    client = _client(args)
    server = UiServer(client.status_dicts, client_picture(client), args.host, args.port)
    print(f"live page: {server.start()} (Ctrl-C stops it)", file=out, flush=True)
    done = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: done.set())
    done.wait()
    server.close()
    return 0


def cmd_serve(args: argparse.Namespace, out: TextIO) -> int:
    from vsa.serve import serve

    return serve(args, out)


COMMANDS = {
    "submit": cmd_submit,
    "status": cmd_status,
    "stop": cmd_stop,
    "source": cmd_source,
    "pause": cmd_pause,
    "resume": cmd_resume,
    "list": cmd_list,
    "drain": cmd_drain,
    "config": cmd_config,
    "schema": cmd_schema,
    "serve": cmd_serve,
    "ui": cmd_ui,
}
EXIT_BROKEN_PIPE = 128 + 13  # 128 + SIGPIPE, what a shell reports for `git log | head -1`


def _discard_stdout(out: TextIO) -> None:
    """Point stdout at /dev/null so that the interpreter's final flush of what is still
    buffered does not raise BrokenPipeError again (the recipe in Python's ``signal`` docs).

    Only the process's real stdout is redirected; a caller's own ``out`` is left alone.
    """
    if out is not sys.stdout and out is not sys.__stdout__:
        return
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, out.fileno())
        finally:
            os.close(devnull)
    except (OSError, ValueError, AttributeError):  # no real file descriptor (e.g. captured)
        pass


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    args: argparse.Namespace | None = None
    try:
        args = build_parser().parse_args(argv)  # --help into a closed pipe fails here
        code = COMMANDS[args.command](args, out)
        out.flush()  # a closed pipe shows up here, not in the interpreter's final flush
        return code
    except BrokenPipeError:
        # `vsa ... | head -1`: the reader went away. Say nothing, like git and coreutils.
        _discard_stdout(out)
        return EXIT_BROKEN_PIPE
    except ConfigError as exc:
        what = "source" if getattr(args, "command", None) == "source" else "run file"
        print(f"vsa: invalid {what}\n{mask_uri(str(exc))}", file=sys.stderr)
        return 2
    except VsaError as exc:  # masked: a URI in a message may hold the credentials typed in
        print(f"vsa: error: {mask_uri(str(exc))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
