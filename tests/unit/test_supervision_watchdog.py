"""The inference watchdog's decisions (docs/failure-policy.md), one row per case, no Ray."""

from __future__ import annotations

from typing import Any

import pytest

from vsa.supervision.watchdog import (
    OK,
    STATUS_TIMEOUT_S,
    ActorDied,
    Decision,
    FailRuns,
    Health,
    NoActor,
    NoAnswer,
    Restart,
    WatchedRun,
    check_inference,
    spill_warning,
)


def engine(
    waiting: int = 0, running: int = 0, since: float = 0.0, fatal: str | None = None
) -> dict[str, Any]:
    """An engine's entry in ``InferenceActor.health``."""
    return {
        "model": "shapenet",
        "waiting": waiting,
        "running": running,
        "since_progress_s": since,
        "fatal": fatal,
        "max_batch_size": 8,
    }


def run(rid: str, key: str | None = "A", stall: float = 30.0) -> WatchedRun:
    return WatchedRun(rid, key, stall)


OOM = "the device cannot fit one frame (out of memory at batch size 1)"
LOST = Restart("the inference actor lost a model", kill=True)

# (id, health, watched runs, decision)
CASES: list[tuple[str, Health, list[WatchedRun], Decision]] = [
    ("no actor", NoActor(), [run("r1")], Decision(restart=Restart("no inference actor"))),
    (
        "dead actor",
        ActorDied("ActorDiedError"),
        [run("r1")],
        Decision(restart=Restart("inference actor died (ActorDiedError)")),
    ),
    (
        "no answer within STATUS_TIMEOUT_S",
        NoAnswer(STATUS_TIMEOUT_S),
        [run("r1")],
        Decision(restart=Restart("inference actor did not answer within 10 s")),
    ),
    ("idle", {"A": engine(since=999.0)}, [run("r1")], OK),
    ("busy and progressing", {"A": engine(waiting=8, running=4, since=0.2)}, [run("r1")], OK),
    ("frames waiting, at the limit exactly", {"A": engine(waiting=3, since=30.0)}, [run("r1")], OK),
    (
        "frames waiting past the stall limit",
        {"A": engine(waiting=3, since=31.0)},
        [run("r1")],
        Decision(
            restart=Restart(
                "pipeline blocked: no batch finished for 31 s with 3 frames waiting", kill=True
            )
        ),
    ),
    (
        "a batch running past the stall limit (nothing queued)",
        {"A": engine(running=4, since=40.4)},
        [run("r1")],
        Decision(
            restart=Restart(
                "pipeline blocked: no batch finished for 40 s with 4 frames waiting", kill=True
            )
        ),
    ),
    (
        "the smallest stall limit among the runs on the engine counts",
        {"A": engine(waiting=2, running=2, since=6.0)},
        [run("r1", stall=30.0), run("r2", stall=5.0)],
        Decision(
            restart=Restart(
                "pipeline blocked: no batch finished for 6 s with 4 frames waiting", kill=True
            )
        ),
    ),
    (
        "under every run's stall limit",
        {"A": engine(waiting=2, since=4.0)},
        [run("r1", stall=30.0), run("r2", stall=5.0)],
        OK,
    ),
    (
        "a stall limit of a run on another engine does not count",
        {"A": engine(waiting=2, since=6.0), "B": engine()},
        [run("r1", "A", stall=30.0), run("r2", "B", stall=5.0)],
        OK,
    ),
    (
        "an engine no watched run uses is not looked at",
        {"A": engine(), "X": engine(waiting=9, since=999.0, fatal=OOM)},
        [run("r1")],
        OK,
    ),
    (
        "fatal engine: its runs fail",
        {"A": engine(fatal=OOM), "B": engine(waiting=1, since=0.1)},
        [run("r1", "A"), run("r2", "B"), run("r3", "A")],
        Decision(fail=(FailRuns("A", ("r1", "r3"), OOM),)),
    ),
    (
        "fatal engine even while stalled: its runs fail, no restart",
        {"A": engine(waiting=5, since=999.0, fatal=OOM)},
        [run("r1")],
        Decision(fail=(FailRuns("A", ("r1",), OOM),)),
    ),
    (
        "a run's engine missing from health",
        {"A": engine()},
        [run("r1", "A"), run("r2", "B")],
        Decision(restart=LOST),
    ),
    ("no engine at all", {}, [run("r1")], Decision(restart=LOST)),
    ("a run without an engine key", {"A": engine()}, [run("r1", None)], Decision(restart=LOST)),
    (
        "fatal engine then a stalled one: fail, then kill and restart",
        {"A": engine(fatal=OOM), "B": engine(waiting=1, since=60.0)},
        [run("r1", "A"), run("r2", "B")],
        Decision(
            fail=(FailRuns("A", ("r1",), OOM),),
            restart=Restart(
                "pipeline blocked: no batch finished for 60 s with 1 frames waiting", kill=True
            ),
        ),
    ),
    (
        "a stalled engine before a fatal one: restart; the fatal one is seen next time",
        {"B": engine(waiting=1, since=60.0), "A": engine(fatal=OOM)},
        [run("r1", "A"), run("r2", "B")],
        Decision(
            restart=Restart(
                "pipeline blocked: no batch finished for 60 s with 1 frames waiting", kill=True
            )
        ),
    ),
    (
        "fatal engine and a missing one: fail, then kill and restart",
        {"A": engine(fatal=OOM)},
        [run("r1", "A"), run("r2", "B")],
        Decision(fail=(FailRuns("A", ("r1",), OOM),), restart=LOST),
    ),
    ("nothing watched", {}, [], OK),
]


@pytest.mark.parametrize(
    ("health", "runs", "expected"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_check_inference(health: Health, runs: list[WatchedRun], expected: Decision):
    decision = check_inference(health, runs)
    assert decision == expected
    assert decision.ok == (expected == OK)


def test_the_unreachable_actor_wins_over_any_run():
    for health in (NoActor(), ActorDied("RayActorError"), NoAnswer(2.4)):
        decision = check_inference(health, [])
        assert decision.restart is not None and not decision.restart.kill
        assert decision.fail == ()
    assert check_inference(NoAnswer(2.4), []).restart == Restart(
        "inference actor did not answer within 2 s"
    )


@pytest.mark.parametrize(
    ("seen", "used", "spilled", "expected"),
    [
        (None, 10 << 20, 500 << 20, None),  # the first check only takes the count
        (500 << 20, 10 << 20, 500 << 20, None),  # nothing spilled since
        (600 << 20, 10 << 20, 500 << 20, None),  # the counter went back (a new cluster)
        (
            100 << 20,
            300 << 20,
            164 << 20,
            "object store spilling to disk: 64 MiB in the last 5 s (300 MiB in memory); the "
            "engine holds at most max_in_flight frames per source, so another workload fills "
            "the store",
        ),
    ],
)
def test_spill_warning(seen: int | None, used: int, spilled: int, expected: str | None):
    assert spill_warning(seen, used, spilled, 5.0) == expected
