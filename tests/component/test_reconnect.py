"""Reconnect policies, error codes, and the source state machine across outages (no Ray)."""

from __future__ import annotations

import errno
import json
import random
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from pathlib import Path

import av
import numpy as np
import pytest

from vsa.config import JsonlSinkSpec, ReconnectSpec
from vsa.reconnect import Backoff
from vsa.schema import SOURCE_TRANSITIONS, SourceState
from vsa.sinks import FrameResult, open_sinks
from vsa.sources import Frame, SourceOptions
from vsa.sources.errors import CODES, SourceError, classify
from vsa.stream import StreamSettings, StreamWorker

# every scripted scenario here fails on an illegal source transition (tests/fixtures.py)
pytestmark = pytest.mark.usefixtures("strict_transitions")

TIMEOUT = 30.0
URI = "rtsp://admin:hunter2@127.0.0.1:8554/cam1"


# --- backoff ------------------------------------------------------------------------------------


def test_exponential_grows_to_the_cap_without_jitter():
    b = Backoff(ReconnectSpec(initial_s=1, multiplier=2, max_s=10, jitter=0))
    assert [b.delay(n) for n in range(1, 7)] == [1, 2, 4, 8, 10, 10]
    assert b.delay(10_000) == 10  # no overflow


def test_jitter_stays_within_its_band_and_spreads():
    b = Backoff(ReconnectSpec(initial_s=4, multiplier=2, max_s=60, jitter=0.5), random.Random(7))
    delays = [b.delay(1) for _ in range(200)]
    assert all(2.0 <= d <= 4.0 for d in delays)
    assert max(delays) - min(delays) > 1.0  # cameras that failed together retry apart


def test_permanent_errors_wait_the_longest_delay_at_once():
    b = Backoff(ReconnectSpec(initial_s=1, max_s=30, jitter=0))
    assert b.delay(1, permanent=True) == 30
    fixed = Backoff(ReconnectSpec(policy="fixed", interval_s=5))
    assert [fixed.delay(n) for n in (1, 2, 9)] == [5, 5, 5]
    assert fixed.delay(1, permanent=True) == 5


def test_max_attempts():
    assert not Backoff(ReconnectSpec()).exhausted(10**9)
    b = Backoff(ReconnectSpec(max_attempts=3))
    assert [b.exhausted(n) for n in (1, 3, 4)] == [False, False, True]


# --- error codes --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (
            av.error.HTTPUnauthorizedError(errno.EPERM, "Server returned 401 Unauthorized"),
            "AUTH_FAILED",
        ),
        (av.error.HTTPForbiddenError(errno.EPERM, "Server returned 403 Forbidden"), "AUTH_FAILED"),
        (av.error.HTTPNotFoundError(errno.EPERM, "Server returned 404 Not Found"), "NOT_FOUND"),
        (av.error.HTTPServerError(errno.EPERM, "Server returned 5XX Server Error"), "SERVER_ERROR"),
        (av.error.InvalidDataError(errno.EPERM, "Invalid data found"), "CORRUPT_DATA"),
        (av.error.DecoderNotFoundError(errno.EPERM, "Decoder not found"), "UNSUPPORTED_CODEC"),
        (av.error.ExitError(errno.EPERM, "Immediate exit requested"), "TIMEOUT"),
        (ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"), "UNREACHABLE"),
        (OSError(errno.EHOSTUNREACH, "No route to host"), "UNREACHABLE"),
        (TimeoutError(errno.ETIMEDOUT, "Connection timed out"), "TIMEOUT"),
        (ConnectionResetError(errno.ECONNRESET, "Connection reset by peer"), "DISCONNECTED"),
        (FileNotFoundError(errno.ENOENT, "No such file or directory"), "NOT_FOUND"),
        (OSError(errno.EIO, "Input/output error"), "IO_ERROR"),
        (RuntimeError("something else"), "ERROR"),
    ],
)
def test_classify(exc: BaseException, code: str):
    err = classify(exc, URI)
    assert err.code == code
    assert err.permanent is CODES[code][0]


def test_permanent_codes_are_the_ones_retrying_cannot_fix():
    permanent = {c for c, (p, _) in CODES.items() if p}
    assert {"AUTH_FAILED", "NOT_FOUND", "UNSUPPORTED_CODEC"} <= permanent
    assert not permanent & {"UNREACHABLE", "TIMEOUT", "STALLED", "DISCONNECTED", "ENDED"}


def test_classified_messages_never_carry_credentials():
    err = classify(av.error.HTTPUnauthorizedError(errno.EPERM, "401", URI), URI)
    assert "hunter2" not in str(err) and "admin:***@" in str(err)
    err = classify(OSError(f"cannot open {URI}?password=abc"), URI)
    assert "hunter2" not in str(err) and "abc" not in str(err)


def test_source_error_survives_pickling():
    import pickle

    err = pickle.loads(pickle.dumps(SourceError("STALLED", "no frame for 5 s")))
    assert (err.code, err.message, err.permanent) == ("STALLED", "no frame for 5 s", False)
    with pytest.raises(ValueError):
        SourceError("NOPE", "x")


# --- the state machine, with scripted sources ---------------------------------------------------


class Scripted:
    """A fake camera: each connection follows the next step of a script.

    A step is an exception (the connection fails to open), or ``(n, end)``: deliver ``n``
    frames, then ``end`` (None: the stream ends; an exception: it breaks; "hang": it waits
    until released).
    """

    def __init__(self, steps: list) -> None:
        self.steps = list(steps)
        self.connections = 0
        self.opened = threading.Event()
        self.release = threading.Event()

    def __call__(self, uri: str, options: SourceOptions) -> Scripted._Conn:
        self.connections += 1
        step = self.steps.pop(0) if self.steps else ConnectionRefusedError(111, "refused")
        if isinstance(step, BaseException):
            raise step
        if step == "block-open":
            self.opened.set()
            assert self.release.wait(TIMEOUT)
            raise TimeoutError(errno.ETIMEDOUT, "open timed out")
        return Scripted._Conn(self, *step)

    class _Conn:
        live = True
        endless = True
        decimates = False
        fps = 50.0

        def __init__(self, owner: Scripted, n: int, end: object) -> None:
            self.owner, self.n, self.end = owner, n, end

        def frames(self) -> Iterator[Frame]:
            for k in range(self.n):
                img = np.full((24, 32, 3), k % 255, np.uint8)
                yield Frame(index=k, pts=k / 50, wall_time=time.time(), image=img)
            if self.end == "hang":
                self.owner.opened.set()
                assert self.owner.release.wait(TIMEOUT)
                return
            if isinstance(self.end, BaseException):
                raise self.end

        def close(self) -> None:
            pass


def instant(chunk: list[Frame], *terms: object) -> Future:  # terms: ignored
    fut: Future = Future()
    fut.set_result([FrameResult(f.index, [], 0.0, len(chunk)) for f in chunk])
    return fut


def make_worker(tmp_path: Path, opener: Callable, uri: str = URI, **reconnect) -> StreamWorker:
    spec = ReconnectSpec(**{"initial_s": 0.01, "max_s": 0.05, **reconnect})
    return StreamWorker(
        "run-1",
        "cam1",
        uri,
        lambda fps: open_sinks([JsonlSinkSpec(type="jsonl")], tmp_path, "run-1", "cam1", fps),
        instant,
        StreamSettings(reconnect=spec),
        opener=opener,
    )


def wait_for(predicate: Callable[[], bool], timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


def frames_written(tmp_path: Path) -> list[int]:
    path = tmp_path / "cam1.jsonl"
    return [json.loads(line)["frame"] for line in path.read_text().splitlines()]


def states(status: dict) -> list[str]:
    return [t["state"] for t in status["transitions"]]


def test_down_at_start_then_up(tmp_path: Path):
    refused = ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused")
    script = Scripted([refused, refused, (5, "hang")])
    worker = make_worker(tmp_path, script)
    worker.start()
    wait_for(lambda: worker.status()["frames_emitted"] == 5)
    status = worker.status()
    assert status["state"] == "STREAMING" and status["attempt"] == 0 and status["code"] is None
    assert states(status) == [
        "CONNECTING",
        "RECONNECTING",
        "CONNECTING",
        "RECONNECTING",
        "CONNECTING",
        "STREAMING",
    ]
    assert [t.get("code") for t in status["transitions"] if t["state"] == "RECONNECTING"] == [
        "UNREACHABLE",
        "UNREACHABLE",
    ]
    assert status["reconnects"] == 1
    script.release.set()
    worker.stop(TIMEOUT)


def test_outage_mid_stream_resumes_and_numbers_frames_across_connections(tmp_path: Path):
    reset = ConnectionResetError(errno.ECONNRESET, "Connection reset by peer")
    script = Scripted([(7, reset), (4, None), (3, "hang")])  # breaks, ends, then streams
    worker = make_worker(tmp_path, script)
    worker.start()
    wait_for(lambda: worker.status()["frames_emitted"] == 14)
    status = worker.status()
    assert status["state"] == "STREAMING" and status["reconnects"] == 2
    codes = [t.get("code") for t in status["transitions"] if t["state"] == "RECONNECTING"]
    assert codes == ["DISCONNECTED", "ENDED"]
    script.release.set()
    worker.stop(TIMEOUT)
    assert worker.status()["state"] == "STOPPED"
    assert frames_written(tmp_path) == list(range(14))  # one file, in order, no repeats


def test_permanent_error_waits_the_maximum_and_says_why(tmp_path: Path):
    unauthorized = av.error.HTTPUnauthorizedError(errno.EPERM, "401 Unauthorized", URI)
    script = Scripted([unauthorized])
    worker = make_worker(tmp_path, script, initial_s=0.01, max_s=60)
    worker.start()
    wait_for(lambda: worker.status()["state"] == "RECONNECTING")
    status = worker.status()
    assert status["code"] == "AUTH_FAILED"
    assert status["error"].startswith("AUTH_FAILED: ")
    assert "hunter2" not in json.dumps(status)
    assert status["next_retry_at"] - time.time() > 40  # max_s with jitter, not initial_s
    assert status["attempt"] == 1 and script.connections == 1
    started = time.monotonic()
    worker.stop(TIMEOUT)  # a stop does not wait out the delay
    assert time.monotonic() - started < 5
    assert worker.status()["state"] == "STOPPED"


def test_gives_up_after_max_attempts(tmp_path: Path):
    worker = make_worker(tmp_path, Scripted([]), max_attempts=3)
    worker.start()
    assert worker.join(TIMEOUT)
    status = worker.status()
    assert status["state"] == "FAILED" and status["code"] == "UNREACHABLE"
    assert "gave up after 3 reconnect attempts" in status["error"]
    assert states(status)[-1] == "FAILED"


def test_files_are_not_retried(tmp_path: Path):
    script = Scripted([av.error.InvalidDataError(errno.EPERM, "Invalid data found")])
    worker = make_worker(tmp_path, script, uri=str(tmp_path / "clip.mp4"))
    worker.start()
    assert worker.join(TIMEOUT)
    status = worker.status()
    assert status["state"] == "FAILED" and status["code"] == "CORRUPT_DATA"
    assert script.connections == 1


def test_stop_while_connecting(tmp_path: Path):
    script = Scripted(["block-open"])
    worker = make_worker(tmp_path, script)
    worker.start()
    assert script.opened.wait(TIMEOUT)
    assert worker.status()["state"] == "CONNECTING"
    stopper = threading.Thread(target=worker.stop, args=(TIMEOUT,))
    stopper.start()
    script.release.set()  # the open times out, as a real one does after open_timeout_s
    stopper.join(TIMEOUT)
    wait_for(lambda: worker.join(0))
    assert worker.status()["state"] == "STOPPED"
    assert script.connections == 1  # no reconnect after the stop


def test_counts_hold_across_outages(tmp_path: Path):
    reset = ConnectionResetError(errno.ECONNRESET, "reset")
    script = Scripted([(10, reset), reset, (10, reset), (5, "hang")])
    worker = make_worker(tmp_path, script)
    worker.start()
    wait_for(lambda: worker.status()["frames_emitted"] == 25)
    script.release.set()
    worker.stop(TIMEOUT)
    s = worker.status()
    assert s["frames_decoded"] == s["frames_emitted"] + s["frames_dropped"] == 25


def test_stop_does_not_wait_for_a_hanging_open(tmp_path: Path):
    script = Scripted(["block-open"])
    worker = make_worker(tmp_path, script)
    worker.start()
    assert script.opened.wait(TIMEOUT)
    started = time.monotonic()
    worker.stop(TIMEOUT)
    assert time.monotonic() - started < 5  # not open_timeout_s, not the stop timeout
    assert worker.status()["state"] == "STOPPED"
    script.release.set()
    wait_for(lambda: worker.join(0))  # the blocked decode thread ended too
    assert script.connections == 1
    assert not (tmp_path / "cam1.jsonl").exists()  # nothing opened after the stop


def _legal(status: dict) -> bool:
    seq = [SourceState(t["state"]) for t in status["transitions"]]
    return all(new in SOURCE_TRANSITIONS[old] for old, new in zip(seq, seq[1:], strict=False))


@pytest.mark.parametrize("state", ["CONNECTING", "STREAMING", "RECONNECTING"])
def test_stop_from_every_state(tmp_path: Path, state: str):
    unauthorized = av.error.HTTPUnauthorizedError(errno.EPERM, "401 Unauthorized", URI)
    script = Scripted(
        {
            "CONNECTING": ["block-open"],
            "STREAMING": [(10**6, None)],
            "RECONNECTING": [unauthorized],  # waits max_s: stopped while it waits
        }[state]
    )
    worker = make_worker(tmp_path, script, max_s=60)
    worker.start()
    if state == "CONNECTING":
        assert script.opened.wait(TIMEOUT)
    wait_for(lambda: worker.status()["state"] == state)
    if state == "STREAMING":
        wait_for(lambda: worker.status()["frames_emitted"] > 0)
    stopper = threading.Thread(target=worker.stop, args=(TIMEOUT,))
    stopper.start()
    wait_for(worker.stopping.is_set)  # the stop is under way before the open gives up
    script.release.set()  # a blocked open times out, as a real one does after open_timeout_s
    stopper.join(TIMEOUT)
    wait_for(lambda: worker.join(0))
    status = worker.status()
    assert status["state"] == "STOPPED"
    assert states(status)[-2:] == [state, "STOPPED"]
    assert _legal(status), states(status)
    assert status["frames_decoded"] == status["frames_emitted"] + status["frames_dropped"]


def test_every_scripted_path_is_in_the_table(tmp_path: Path):
    """Down at start, then up, an outage, then the end of a finite file: each step is legal."""
    refused = ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused")
    reset = ConnectionResetError(errno.ECONNRESET, "Connection reset by peer")
    script = Scripted([refused, (3, reset), (2, "hang")])
    worker = make_worker(tmp_path, script)
    worker.start()
    wait_for(lambda: worker.status()["frames_emitted"] == 5)
    script.release.set()
    worker.stop(TIMEOUT)
    status = worker.status()
    assert (
        states(status)
        == [
            "CONNECTING",
            "RECONNECTING",
            "CONNECTING",
            "STREAMING",
            "RECONNECTING",
            "CONNECTING",
            "STREAMING",
        ]
        + states(status)[7:]
    )
    assert states(status)[-1] == "STOPPED" and _legal(status)
