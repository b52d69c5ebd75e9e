"""The CPU profiler counts the wakeups of Ray's and the engine's processes, thread by thread, and
the host's cost of one wakeup: the two figures the engine's fixed cost is explained with
(docs/performance.md, Engine overhead). Its numbers are for people; what is asserted is that
they are counted from the right threads."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))

import cpu_by_thread  # noqa: E402

# a process that looks like one of Ray's (its argv[0]) and wakes every 10 ms, as Ray's core
# worker does on each worker's main thread
TICKER = "import time\nwhile True:\n    time.sleep(0.01)\n"


def test_wakeups_are_counted_per_process_and_thread():
    ticker = subprocess.Popen(["ray::WakeupProbeTest", "-c", TICKER], executable=sys.executable)
    try:
        name = "ray::WakeupProbeTest"
        deadline = time.monotonic() + 60
        first = cpu_by_thread.threads_usage()
        while True:
            cpu, wakeups, processes = cpu_by_thread.threads_usage()
            woken = sum(n for (proc, _), n in wakeups.items() if proc == name)
            before = sum(n for (proc, _), n in first[1].items() if proc == name)
            if processes.get(name) == 1 and woken - before >= 50:
                break
            assert time.monotonic() < deadline, (processes.get(name), woken - before)
            time.sleep(0.2)
        # a thread whose wakeups are counted also has its CPU counted, under its own name
        assert any(proc == name for proc, _ in cpu)
    finally:
        ticker.kill()
        ticker.wait(timeout=30)


def test_the_wakeup_probe_prints_its_cost_and_rate():
    done = subprocess.run(
        [sys.executable, "-c", cpu_by_thread.WAKEUP_PROBE, "1"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    cost_us, rate = (float(x) for x in done.stdout.split())
    # 100 sleeps of 10 ms a second at most; a busy host gives fewer, never none
    assert 0 < rate <= 101
    assert cost_us > 0
