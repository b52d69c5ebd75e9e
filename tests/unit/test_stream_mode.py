"""The delivery mode of a stream and the terms it sends frames with (issue 24), without threads:
``mode: auto`` decides an http(s) stream when it first opens (lossless with a known duration,
realtime when live), explicit modes are obeyed, ``max_in_flight`` follows the mode."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future

import numpy as np
import pytest

from vsa.config import SourceSpec
from vsa.core.frames import Frame, FrameResult
from vsa.sources.base import has_known_end
from vsa.stream import StreamSettings, StreamWorker
from vsa.stream.delivery import Lossless, Realtime, Slots
from vsa.stream.results import END


def settings(uri: str, **entry: object) -> StreamSettings:
    return StreamSettings.from_spec(SourceSpec(id="a", uri=uri, **entry), 30.0)


# --- the decision ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "uri, entry, before, finite, after, in_flight",
    [
        # mode auto: http(s) decided when it opens, by its known duration
        ("http://h/vod.m3u8", {}, None, True, "lossless", 8),
        ("https://h/clip.mp4", {}, None, True, "lossless", 8),
        ("http://h/live.m3u8", {}, None, False, "realtime", 1),
        ("http://h/mjpeg", {"max_in_flight": 3}, None, False, "realtime", 3),
        ("http://h/clip.mp4", {"max_in_flight": 3}, None, True, "lossless", 3),
        # mode auto, known from the URI alone: the source does not change it
        ("rtsp://cam/x", {}, "realtime", True, "realtime", 1),
        ("rtmp://h/live", {}, "realtime", True, "realtime", 1),
        ("/data/clip.mp4", {}, "lossless", False, "lossless", 8),
        ("synthetic://shapes", {}, "lossless", False, "lossless", 8),
        # an explicit mode is always obeyed
        ("http://h/clip.mp4", {"mode": "realtime"}, "realtime", True, "realtime", 1),
        ("http://h/live.m3u8", {"mode": "lossless"}, "lossless", False, "lossless", 8),
        ("rtsp://cam/x", {"mode": "lossless"}, "lossless", False, "lossless", 8),
        ("synthetic://shapes", {"mode": "realtime"}, "realtime", True, "realtime", 1),
        (
            "rtsp://cam/x",
            {"mode": "realtime", "max_in_flight": 2},
            "realtime",
            False,
            "realtime",
            2,
        ),
    ],
)
def test_the_mode_in_effect_before_and_after_the_source_opens(
    uri, entry, before, finite, after, in_flight
):
    s = settings(uri, **entry)
    mode = s.mode()
    assert (None if mode is None else mode.name) == before
    mode = s.mode(finite)
    assert mode is not None and (mode.name, mode.max_in_flight) == (after, in_flight)
    assert mode.realtime is (after == "realtime")


@pytest.mark.parametrize(
    "entry, most",
    [
        ({"uri": "http://h/x.m3u8"}, 8),  # undecided: room for the larger of the two
        ({"uri": "http://h/x.m3u8", "max_in_flight": 2}, 2),
        ({"uri": "rtsp://cam/x"}, 1),  # a camera's ring stays small
        ({"uri": "/data/clip.mp4"}, 8),
    ],
)
def test_the_most_frames_in_flight_size_the_ring_before_the_mode_is_known(entry, most):
    assert settings(**entry).most_in_flight == most


@pytest.mark.parametrize(
    "scheme, duration, known",
    [
        ("file", None, True),  # a local file always ends
        ("synthetic", None, True),
        ("http", 4_000_000, True),  # a file over HTTP, an HLS VOD playlist
        ("https", 0, True),
        ("http", None, False),  # MJPEG, live TS, a live HLS playlist
        ("rtsp", 10_000_000, False),  # a camera, whatever it reports
        ("rtsps", None, False),
        ("rtmp", 4_000_000, False),
    ],
)
def test_one_rule_says_whether_a_stream_has_a_known_end(scheme, duration, known):
    assert has_known_end(scheme, duration) is known


# --- the terms frames are sent with -------------------------------------------------------------
def frame(k: int, wall_time: float = 100.0) -> Frame:
    return Frame(index=k, pts=k / 10, wall_time=wall_time, image=np.zeros((2, 2, 3), np.uint8))


def _ignore(*args: object) -> None:
    pass


def test_lossless_frames_go_without_deadline_or_credit():
    d = Lossless(Slots(8, threading.Event()), 4, _ignore, _ignore, _ignore, _ignore)
    assert d.terms([frame(0), frame(1)]) == (None, None, None)


def test_realtime_frames_go_with_their_deadline_and_the_streams_credit():
    stopping = threading.Event()
    d = Realtime(Slots(2, stopping), 0.5, _ignore, _ignore, _ignore, _ignore, stopping)
    deadlines, credit, behind = d.terms([frame(0, 100.0), frame(1, 100.25)])
    assert deadlines == [100.5, 100.75] and credit == 2 and behind is False


def test_a_realtime_stream_says_it_is_behind_once_after_it_lost_a_frame_for_want_of_a_slot():
    """``behind`` tells the engine the camera asks for more than its credit lets through (the
    batch former then holds its peers to its share): set by a ``queue_full`` drop, reported
    with the next send only."""
    stopping = threading.Event()
    now = [100.0]
    d = Realtime(
        Slots(1, stopping), 5.0, _ignore, _ignore, _ignore, _ignore, stopping, lambda: now[0]
    )
    d.offer(frame(0, 100.0), live=False)
    sent, _ = d.release()
    assert sent is not None and d.terms([sent])[2] is False  # nothing lost before it
    d.offer(frame(1, 100.1), live=False)
    d.offer(frame(2, 100.2), live=False)  # frame 1 was never sent: queue_full
    now[0] = 100.3
    sent, _ = d.release()
    assert sent is not None and sent.index == 2
    assert d.terms([sent])[2] is True
    d.offer(frame(3, 100.4), live=False)
    now[0] = 100.5
    sent, _ = d.release()
    assert sent is not None and d.terms([sent])[2] is False  # said once


# --- the worker: decided at the first open, kept across reconnects ------------------------------
class FakeSource:
    """An opened source with ``n`` frames captured now, without timestamps (not paced)."""

    def __init__(self, finite: bool, n: int = 3, live: bool = True) -> None:
        self.finite, self.endless, self.live = finite, False, live
        self.fps, self.decimates, self.n = 15.0, True, n
        self.captured: list[float] = []

    def frames(self) -> Iterator[Frame]:
        for k in range(self.n):
            self.captured.append(time.time())
            yield Frame(k, None, self.captured[-1], image=np.zeros((2, 2, 3), np.uint8))

    def close(self) -> None:
        pass


class Inference:
    """``submit``: records each chunk's indices and terms, answers at once."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[int], list[float] | None, int | None]] = []

    def __call__(self, chunk: list[Frame], deadlines, credit, behind) -> Future:
        self.calls.append(([f.index for f in chunk], deadlines, credit))
        fut: Future = Future()
        fut.set_result([FrameResult(f.index, [], 0.0, len(chunk)) for f in chunk])
        return fut


def worker(uri: str, sources: list[FakeSource], inference: Inference, **entry) -> StreamWorker:
    opened = iter(sources)
    return StreamWorker(
        "r",
        "a",
        uri,
        lambda fps: [],
        inference,
        settings(uri, **entry),
        opener=lambda uri, options: next(opened),
    )


def pending_frames(w: StreamWorker) -> int:
    n = 0
    while (item := w.writer.pending.get_nowait()) is not END:
        n += len(item[0])
    return n


def test_a_finite_http_source_in_mode_auto_is_read_lossless(caplog):
    inference = Inference()
    w = worker("http://user:secret@h/vod.m3u8", [FakeSource(finite=True)], inference)
    assert w.delivery is None and w.status()["mode"] == "auto"  # honest before it opens
    with caplog.at_level(logging.INFO, logger="vsa.stream"):
        w.decoder.run()  # the decode thread's work, on this thread: a finite source ends
    assert isinstance(w.delivery, Lossless) and w.status()["mode"] == "lossless"
    assert w.delivery.slots.capacity == 8 and w.writer.release_early is False
    assert [c[0] for c in inference.calls] == [[0], [1], [2]]  # live: each frame at once
    assert all(c[1:] == (None, None) for c in inference.calls)
    assert "mode lossless" in caplog.text and "known duration" in caplog.text
    assert "secret" not in caplog.text
    assert pending_frames(w) == 3  # every decoded frame is in flight, then END
    assert w.books.fields()["frames_decoded"] == 3


def test_a_live_http_source_in_mode_auto_is_realtime_and_a_reconnect_keeps_it(caplog):
    inference = Inference()
    sources = [FakeSource(finite=False), FakeSource(finite=True)]
    # two slots: after sending its frame the submit thread finds a free one and sees the end
    w = worker("http://h/live.m3u8", sources, inference, max_in_flight=2, max_age_ms=600_000)
    with caplog.at_level(logging.INFO, logger="vsa.stream"):
        assert w.decoder._connect_and_stream() is None  # the fake says it ended: no reconnect
        delivery = w.delivery
        assert isinstance(delivery, Realtime) and w.status()["mode"] == "realtime"
        assert w.writer.release_early is True
        assert [t.name for t in w._threads] == ["decode:a", "sink:a", "submit:a"]
        w.decoder._connect_and_stream()  # the next connection has a duration: mode kept
    assert w.delivery is delivery and caplog.text.count("mode realtime") == 1
    w.decoder._ended()
    delivery.run()  # the submit thread's work: the newest frame, then the end
    newest = sources[1].captured[-1]
    assert inference.calls == [([5], [newest + 600.0], 2)]  # the newest, with its terms
    fields = w.books.fields()
    assert fields["frames_decoded"] == 6 and fields["drops"] == {"queue_full": 5}
    assert pending_frames(w) == 1  # decoded = dropped + in flight


def test_a_stream_that_never_opened_ends_its_results_and_stays_auto():
    w = worker("http://h/x.m3u8", [], Inference())
    w.decoder._ended()
    assert w.writer.pending.get_nowait() is END and w.status()["mode"] == "auto"


@pytest.mark.parametrize(
    "uri, entry, kind",
    [
        ("/data/clip.mp4", {}, Lossless),
        ("rtsp://cam/x", {}, Realtime),
        ("http://h/clip.mp4", {"mode": "realtime"}, Realtime),
    ],
)
def test_a_mode_known_from_the_run_file_is_built_at_once(uri, entry, kind):
    w = worker(uri, [], Inference(), **entry)
    assert isinstance(w.delivery, kind) and w.status()["mode"] == w.mode.name
