"""Where the engine's CPU goes: CPU per emitted frame by process and by thread name.

Starts a local Ray cluster, submits one run of N synthetic streams (640x360, 15 fps rendered as
fast as the engine takes them, or paced with ``--realtime``), waits ``--warmup-s``, then reads
every thread's CPU time from ``/proc`` twice, ``--seconds`` apart, and divides by the frames
emitted in between. Ray names its native threads (``worker.io``, ``client.poll0``, ...); the
actors' Python threads and the library threads they start (x264, FFmpeg, torch) carry the
actor's task name (``ray::source:...``, ``ray::IDLE`` in the inference actor). Linux only.

    python scripts/cpu_by_thread.py                       # pass-through model, N = 8, lossless
    python scripts/cpu_by_thread.py --model builtin --n 4 --realtime
    python scripts/cpu_by_thread.py --realtime --fps 1    # what the engine costs per second
                                                          # whatever its frame rate (fixed cost)
    VSA_TRANSPORT=ray python scripts/cpu_by_thread.py     # frames through Ray's object store
    python scripts/cpu_by_thread.py --bare 4              # 4 idle Ray actors: Ray's own cost

Each process and thread also shows its wakeups (context switches) per second, and the run
measures what one wakeup costs on this host: on a VM it can be tens of microseconds of CPU, and
then an idle process that wakes often costs a visible share of a core.
"""

from __future__ import annotations

import argparse
import collections
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def threads_usage() -> tuple[collections.Counter, collections.Counter, collections.Counter]:
    """Per (process name, thread name) of Ray's and the engine's processes: CPU seconds so far,
    wakeups so far (context switches: the thread blocked and was woken, or was preempted),
    and, per process name, how many processes carry it."""
    tick = os.sysconf("SC_CLK_TCK")
    out: collections.Counter = collections.Counter()
    wakeups: collections.Counter = collections.Counter()
    processes: collections.Counter = collections.Counter()
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
        except OSError:
            continue
        name = cmd.rsplit("/", 1)[-1][:30]
        if not ("ray" in cmd or "gcs_server" in cmd or "raylet" in cmd):
            continue
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        processes[name] += 1
        for tid in tids:
            try:
                comm = Path(f"/proc/{pid}/task/{tid}/comm").read_text().strip()
                stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
                status = Path(f"/proc/{pid}/task/{tid}/status").read_text()
            except OSError:
                continue
            out[(name, comm)] += (int(stat[11]) + int(stat[12])) / tick  # utime + stime
            for line in status.splitlines():
                if "ctxt_switches:" in line:  # voluntary_ and nonvoluntary_
                    wakeups[(name, comm)] += int(line.split()[-1])
    return out, wakeups, processes


# A thread that sleeps 10 ms at a time, as Ray's core worker does on every worker process's
# main thread (its signal check, a fixed 10 ms period in Ray's C++): what one wakeup costs on
# this host, measured in a child process during the window.
WAKEUP_PROBE = """
import sys, time
end = time.monotonic() + float(sys.argv[1])
c0, n = time.process_time(), 0
while time.monotonic() < end:
    time.sleep(0.01)
    n += 1
print(f"{(time.process_time() - c0) / max(n, 1) * 1e6:.1f} {n / float(sys.argv[1]):.1f}")
"""


class Window:
    """Every thread's CPU and wakeups over one measuring window, and the host's wakeup cost
    measured by :data:`WAKEUP_PROBE` in a child process during it."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def __enter__(self) -> Window:
        self.probe = subprocess.Popen(
            [sys.executable, "-c", WAKEUP_PROBE, str(self.seconds)],
            stdout=subprocess.PIPE,
            text=True,
        )
        self.t0 = time.monotonic()
        self.c0, self.w0, _ = threads_usage()
        return self

    def __exit__(self, *exc: object) -> None:
        self.c1, self.w1, self.processes = threads_usage()
        self.elapsed = time.monotonic() - self.t0
        self.probe_out = self.probe.communicate(timeout=60)[0].split()

    def report(self, frames: int | None) -> None:
        """Print the table: per emitted frame and per second when ``frames`` is given, per
        second only otherwise."""
        c0, c1, w0, w1, elapsed = self.c0, self.c1, self.w0, self.w1, self.elapsed
        per_frame = frames if frames is not None else 0
        per_process: collections.Counter = collections.Counter()
        for key, total in c1.items():
            per_process[key[0]] += total - c0.get(key, 0.0)
        per_process_wakeups: collections.Counter = collections.Counter()
        for key, total in w1.items():
            per_process_wakeups[key[0]] += total - w0.get(key, 0)

        def row(cpu: float) -> str:
            ms = f"{1000 * cpu / per_frame:9.2f} ms" if per_frame else f"{'-':>12}"
            return f"{ms} {cpu / elapsed:7.3f}"

        def wake(count: float, n: int = 1) -> str:
            return f"{count / elapsed / n:7.0f}"

        def shown(cpu: float) -> bool:
            return cpu / elapsed >= 0.0005

        print(
            f"  {'':44} {'ms/frame':>12} {'cores':>7} wakeups/s  processes"
            "  per process: cores, wakeups/s"
        )
        total_wakeups = sum(per_process_wakeups.values())
        print(
            f"  {'all processes':44} {row(sum(per_process.values()))} {wake(total_wakeups):>9}"
            f"  {sum(self.processes.values()):>9}"
        )
        for name, cpu in per_process.most_common():
            if shown(cpu):
                n = max(self.processes.get(name, 1), 1)
                print(
                    f"  {name:44} {row(cpu)} {wake(per_process_wakeups[name]):>9}  {n:>9}"
                    f"  {cpu / elapsed / n:11.4f} {wake(per_process_wakeups[name], n)}"
                )
        if len(self.probe_out) == 2:
            cost_us, rate = float(self.probe_out[0]), float(self.probe_out[1])
            print(
                f"  this host's cost of a wakeup: {cost_us:.1f} us of CPU (a thread sleeping 10 ms"
                f" at a time, {rate:.0f} wakeups/s, in a child process during the window);"
                f" wakeups x that = {total_wakeups / elapsed * cost_us / 1e6:.3f} cores"
                f" of the {sum(per_process.values()) / elapsed:.3f} measured"
            )
        print("  by thread name:")
        for key in sorted(c1, key=lambda k: c0.get(k, 0.0) - c1[k]):
            cpu = c1[key] - c0.get(key, 0.0)
            if shown(cpu):
                woken = wake(w1[key] - w0.get(key, 0))
                print(f"    {key[0]:24} {key[1]:18} {row(cpu)} {woken:>9}")


def bare(count: int, args: argparse.Namespace) -> int:
    """Ray's own cost: ``count`` actors that do nothing, beside Ray's daemons."""
    import ray

    ray.init(address="local", include_dashboard=False, logging_level="ERROR", log_to_driver=False)

    @ray.remote(num_cpus=0)
    class Idle:
        def ready(self) -> bool:
            return True

    actors = [Idle.remote() for _ in range(count)]
    try:
        ray.get([a.ready.remote() for a in actors])
        time.sleep(min(args.warmup_s, 5.0))
        with Window(args.seconds) as window:
            time.sleep(args.seconds)
    finally:
        ray.shutdown()
    print(f"{count} idle Ray actors (no engine) over {window.elapsed:.0f} s: cores and wakeups")
    window.report(None)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model", default="passthrough", choices=("passthrough", "builtin", "yolo")
    )
    parser.add_argument("--n", type=int, default=8, help="streams")
    parser.add_argument("--realtime", action="store_true", help="paced at --fps, realtime mode")
    parser.add_argument("--fps", type=float, default=15.0, help="each stream's frame rate")
    parser.add_argument("--warmup-s", type=float, default=25.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument(
        "--bare", type=int, metavar="K", default=0,
        help="no engine: K idle Ray actors, to measure what Ray alone costs per process",
    )  # fmt: skip
    args = parser.parse_args()
    if args.bare:
        return bare(args.bare, args)

    import bench
    import ray

    from vsa import client as vsa_client
    from vsa.config import parse_run
    from vsa.settings import transport

    work = Path(tempfile.mkdtemp(prefix="vsa-cpu-"))
    models = bench.build_models(work / "models")
    # a private state directory: a benchmark's runs are never resumed by a later engine
    os.environ.setdefault("VSA_STATE_DIR", tempfile.mkdtemp(prefix="vsa-state-"))
    ray.init(address="local", include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    client = vsa_client.Client()
    mode, pace = ("realtime", 1) if args.realtime else ("lossless", 0)
    spec = parse_run(
        {
            "name": "cpu-by-thread",
            "output_dir": str(work / "out"),
            "model": bench.model_spec(args.model, models),
            "batching": {"max_batch_size": 8, "max_wait_ms": 20},
            "sources": [
                {
                    "id": f"s{i}",
                    "mode": mode,
                    "uri": f"synthetic://shapes?seed={i}&width=640&height=360&fps={args.fps:g}"
                    f"&frames=1000000&pace={pace}",
                }
                for i in range(args.n)
            ],
            "sinks": [{"type": "video"}, {"type": "jsonl"}],
        }
    )
    run_id = client.submit(spec, overwrite=True)["run_id"]
    try:
        time.sleep(args.warmup_s)  # past model load, imports and the split's first measurement

        def emitted() -> int:
            return sum(s.frames_emitted for s in client.run(run_id).sources)

        e0 = emitted()
        with Window(args.seconds) as window:
            time.sleep(args.seconds)
        e1 = emitted()
    finally:
        client.stop(run_id, timeout_s=30)
        ray.shutdown()
    frames = max(e1 - e0, 1)
    print(
        f"{args.model}, N = {args.n}, {mode}, VSA_TRANSPORT={transport()}: "
        f"{frames / window.elapsed:.1f} frames/s over {window.elapsed:.0f} s; CPU ms per emitted"
        " frame, cores (CPU seconds per second) and wakeups (context switches) per second"
    )
    window.report(frames)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
