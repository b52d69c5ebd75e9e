"""One stream's pipeline without Ray: a real model behind an in-process submit, real sinks."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import av
import pytest
import torch

from vsa.config import JsonlSinkSpec, ReconnectSpec, VideoSinkSpec
from vsa.models import run_model
from vsa.models.builtin import BuiltinModel
from vsa.sinks import FrameResult, open_sinks
from vsa.sources import Frame, open_source
from vsa.sources.synthetic import SyntheticSource
from vsa.stream import SourceState, StreamSettings, StreamWorker

pytestmark = pytest.mark.usefixtures("strict_transitions")  # tests/fixtures.py

W, H = 128, 96
FINITE = f"synthetic://shapes?seed=3&width={W}&height={H}&pace=0&frames=30"
ENDLESS = f"synthetic://shapes?seed=4&width={W}&height={H}&pace=0"
TIMEOUT = 60.0


@pytest.fixture(scope="module")
def model() -> BuiltinModel:
    return BuiltinModel(torch.device("cpu"))


@pytest.fixture
def executor() -> Iterator[ThreadPoolExecutor]:
    pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="infer")
    yield pool
    pool.shutdown(wait=True, cancel_futures=True)


class InProcessInference:
    """``submit`` for StreamWorker: runs the model on a thread pool, like the inference actor.

    ``raise_on`` chunk numbers fail at submit (inference unreachable); ``fail_on`` chunk
    numbers fail in the future (the model call failed). ``gate`` holds every model call
    until it is set.
    """

    def __init__(
        self,
        model: BuiltinModel,
        executor: ThreadPoolExecutor,
        raise_on: set[int] = frozenset(),
        fail_on: set[int] = frozenset(),
        gate: threading.Event | None = None,
    ) -> None:
        self.model, self.executor = model, executor
        self.raise_on, self.fail_on, self.gate = raise_on, fail_on, gate
        self.chunks: list[list[int]] = []
        self.on_submit: Callable[[], None] | None = None

    def __call__(self, chunk: list[Frame], *terms: object) -> Future:  # terms: ignored
        n = len(self.chunks)
        self.chunks.append([f.index for f in chunk])
        if self.on_submit is not None:
            self.on_submit()
        if n in self.raise_on:
            raise ConnectionError("inference actor unreachable")
        images = [f.image for f in chunk]
        indices = [f.index for f in chunk]

        def work() -> list[FrameResult]:
            if self.gate is not None:
                assert self.gate.wait(TIMEOUT), "gate never opened"
            if n in self.fail_on:
                raise RuntimeError("CUDA error: out of memory")
            start = time.perf_counter()
            dets = run_model(self.model, images)
            ms = (time.perf_counter() - start) * 1000
            return [FrameResult(i, d, ms, len(images)) for i, d in zip(indices, dets, strict=True)]

        return self.executor.submit(work)


class Recorder:
    """A sink that counts writes and can signal after ``n`` of them, or fail."""

    def __init__(self, signal_after: int | None = None, fail_with: Exception | None = None):
        self.indices: list[int] = []
        self.closed = False
        self.reached = threading.Event()
        self.signal_after, self.fail_with = signal_after, fail_with
        self.on_write: Callable[[], None] | None = None

    def write(self, frame: Frame, result: FrameResult) -> None:
        if self.fail_with is not None:
            raise self.fail_with
        assert result.index == frame.index
        self.indices.append(frame.index)
        if self.on_write is not None:
            self.on_write()
        if self.signal_after is not None and len(self.indices) >= self.signal_after:
            self.reached.set()

    def close(self) -> None:
        self.closed = True


class Sinks:
    """sinks_factory: real video + jsonl sinks into ``out`` plus a Recorder."""

    def __init__(self, out: Path, recorder: Recorder | None = None) -> None:
        self.out = out
        self.recorder = recorder or Recorder()
        self.opened: list = []
        self.fps: float | None = None

    def __call__(self, fps: float | None) -> list:
        self.fps = fps
        specs = [VideoSinkSpec(type="video"), JsonlSinkSpec(type="jsonl")]
        self.opened = [*open_sinks(specs, self.out, "run-1", "cam1", fps), self.recorder]
        return self.opened

    @property
    def video_path(self) -> Path:
        return self.out / "cam1.mp4"

    @property
    def jsonl_path(self) -> Path:
        return self.out / "cam1.jsonl"

    def jsonl(self) -> list[dict]:
        return [json.loads(line) for line in self.jsonl_path.read_text().splitlines()]

    def video_frames(self) -> int:
        with av.open(str(self.video_path)) as container:
            return sum(1 for _ in container.decode(video=0))

    def all_closed(self) -> bool:
        video, jsonl, recorder = self.opened
        return video.writer.closed and jsonl.writer.closed and recorder.closed


def invariant(status: dict) -> None:
    assert status["frames_decoded"] == status["frames_emitted"] + status["frames_dropped"]
    assert status["frames_dropped"] == sum(status["drops"].values())
    assert status["in_flight"] == 0


def test_finite_source_every_frame_written_in_order(tmp_path: Path, model, executor):
    sinks = Sinks(tmp_path)
    submit = InProcessInference(model, executor)
    worker = StreamWorker(
        "run-1", "cam1", FINITE, sinks, submit, StreamSettings(max_in_flight=8, chunk_size=4)
    )
    assert worker.status()["state"] == "CONNECTING"
    worker.start()
    assert worker.join(TIMEOUT), "worker did not finish"

    status = worker.status()
    assert status["state"] == "FINISHED" and worker.state is SourceState.FINISHED
    assert worker.done
    assert status["error"] is None
    assert status["frames_decoded"] == status["frames_inferred"] == status["frames_emitted"] == 30
    assert status["frames_dropped"] == 0 and status["drops"] == {}
    invariant(status)
    assert status["id"] == "cam1" and status["uri"] == FINITE

    assert sinks.fps == 15.0  # the source's rate reaches the sinks
    records = sinks.jsonl()
    assert [r["frame"] for r in records] == list(range(30))
    assert {(r["run"], r["source"], r["width"], r["height"]) for r in records} == {
        ("run-1", "cam1", W, H)
    }
    assert [r["pts"] for r in records] == [round(k / 15, 6) for k in range(30)]
    assert sum(len(r["detections"]) for r in records) >= 30  # the model saw the shapes
    assert all(r["batch_size"] in (1, 2, 3, 4) for r in records)
    assert sinks.video_frames() == 30
    assert sinks.recorder.indices == list(range(30))
    assert sinks.all_closed()
    # the CPU the frames cost by stage (vsa_stream_cpu_seconds): decoding 30 H.264 frames and
    # writing them (x264 + JSONL) both take measurable CPU
    assert worker.writer.decode_cpu_s > 0 and worker.writer.sinks_cpu_s > 0
    # finite, unpaced: submitted in chunks of chunk_size
    assert submit.chunks[0] == [0, 1, 2, 3]
    assert [i for c in submit.chunks for i in c] == list(range(30))


def test_failed_inference_chunks_are_counted_as_drops(tmp_path: Path, model, executor):
    sinks = Sinks(tmp_path)
    # chunk 1 (frames 4-7) cannot be submitted, chunk 3 (frames 12-15) fails in the model
    submit = InProcessInference(model, executor, raise_on={1}, fail_on={3})
    worker = StreamWorker(
        "run-1", "cam1", FINITE, sinks, submit, StreamSettings(max_in_flight=8, chunk_size=4)
    )
    worker.start()
    assert worker.join(TIMEOUT)

    status = worker.status()
    assert status["state"] == "FINISHED"
    assert status["drops"] == {"inference_error": 8}
    assert status["frames_decoded"] == 30
    assert status["frames_emitted"] == status["frames_inferred"] == 22
    invariant(status)
    expected = [k for k in range(30) if not (4 <= k < 8 or 12 <= k < 16)]
    assert [r["frame"] for r in sinks.jsonl()] == expected
    assert sinks.video_frames() == 22
    assert sinks.all_closed()


def test_stop_on_an_endless_source(tmp_path: Path, model, executor):
    recorder = Recorder(signal_after=10)
    sinks = Sinks(tmp_path, recorder)
    closed = threading.Event()

    def opener(uri: str, options):
        source = open_source(uri, options)
        close = source.close

        def close_and_note():
            closed.set()
            close()

        source.close = close_and_note
        return source

    worker = StreamWorker(
        "run-1", "cam1", ENDLESS, sinks, InProcessInference(model, executor), opener=opener
    )
    worker.start()
    assert recorder.reached.wait(TIMEOUT), "no frames were written"
    assert worker.status()["state"] == "STREAMING"
    worker.stop(timeout=TIMEOUT)
    assert worker.join(0), "threads still running after stop()"

    status = worker.status()
    assert status["state"] == "STOPPED"
    assert status["error"] is None
    assert status["frames_emitted"] >= 10
    invariant(status)
    assert set(status["drops"]) <= {"shutdown"}
    assert closed.is_set()
    assert sinks.all_closed()
    # everything that was emitted is in the files, in order
    records = sinks.jsonl()
    assert [r["frame"] for r in records] == list(range(status["frames_emitted"]))
    assert sinks.video_frames() == status["frames_emitted"]


def test_stop_before_start_of_streaming(tmp_path: Path, model, executor):
    worker = StreamWorker(
        "run-1", "cam1", ENDLESS, Sinks(tmp_path), InProcessInference(model, executor)
    )
    worker.stop(timeout=1)  # never started: returns, nothing to join
    assert worker.join(0)


def test_opener_error_fails_the_stream(tmp_path: Path, model, executor):
    uri = "rtsp://user:secret@127.0.0.1:1/x"

    def opener(u: str, options):
        raise OSError(f"cannot connect to {u}")

    sinks = Sinks(tmp_path)
    worker = StreamWorker(
        "run-1",
        "cam1",
        uri,
        sinks,
        InProcessInference(model, executor),
        StreamSettings(reconnect=ReconnectSpec(initial_s=0.01, max_attempts=2)),
        opener=opener,
    )
    worker.start()
    assert worker.join(TIMEOUT)
    status = worker.status()
    assert status["state"] == "FAILED"
    assert status["error"] is not None and "cannot connect to" in status["error"]
    assert status["uri"] == "rtsp://user:***@127.0.0.1:1/x"
    assert status["frames_decoded"] == status["frames_emitted"] == 0
    assert sinks.opened == []  # no sink was opened, no file written
    assert not sinks.video_path.exists() and not sinks.jsonl_path.exists()


def test_opener_error_does_not_leak_credentials(tmp_path: Path, model, executor):
    uri = "rtsp://user:secret@127.0.0.1:1/x"

    def opener(u: str, options):
        raise OSError(f"cannot connect to {u}")

    worker = StreamWorker(
        "run-1",
        "cam1",
        uri,
        Sinks(tmp_path),
        InProcessInference(model, executor),
        StreamSettings(reconnect=ReconnectSpec(initial_s=0.01, max_attempts=2)),
        opener=opener,
    )
    worker.start()
    assert worker.join(TIMEOUT)
    status = worker.status()
    assert status["state"] == "FAILED"
    assert "secret" not in json.dumps(status)
    assert status["code"] == "IO_ERROR"
    assert status["error"] == (
        "IO_ERROR: cannot connect to rtsp://user:***@127.0.0.1:1/x (gave up after 2 reconnect attempts)"
    )


def test_sink_error_fails_the_stream(tmp_path: Path, model, executor):
    sinks = Sinks(tmp_path, Recorder(fail_with=OSError("No space left on device")))
    worker = StreamWorker(
        "run-1",
        "cam1",
        ENDLESS,
        sinks,
        InProcessInference(model, executor),
        StreamSettings(max_in_flight=4),
    )
    worker.start()
    assert worker.join(TIMEOUT), "a failing sink must end the endless stream"
    status = worker.status()
    assert status["state"] == "FAILED"
    assert status["error"] == "SINK_ERROR: No space left on device (OSError)"
    assert status["frames_emitted"] == 0
    invariant(status)
    assert sinks.all_closed()


def test_never_more_than_max_in_flight(tmp_path: Path, model, executor):
    max_in_flight = 5
    recorder = Recorder()
    sinks = Sinks(tmp_path, recorder)
    gate = threading.Event()  # model calls wait until the decoder has filled every slot
    submit = InProcessInference(model, executor, gate=gate)
    seen: list[int] = []
    holder: dict[str, StreamWorker] = {}

    def observe() -> None:
        in_flight = holder["worker"].status()["in_flight"]
        seen.append(in_flight)
        if in_flight >= max_in_flight:
            gate.set()

    class Instrumented:
        """The synthetic source, observing frames in flight each time a frame is pulled."""

        def __init__(self, uri: str, options=None) -> None:
            self.inner = SyntheticSource(uri)
            self.live, self.fps = self.inner.live, self.inner.fps
            self.endless, self.decimates = False, False

        def frames(self) -> Iterator[Frame]:
            for frame in self.inner.frames():
                yield frame
                observe()  # the frame got its slot; the decoder asks for the next one

        def close(self) -> None:
            self.inner.close()

    submit.on_submit = observe
    recorder.on_write = observe
    worker = StreamWorker(
        "run-1",
        "cam1",
        FINITE,
        sinks,
        submit,
        StreamSettings(max_in_flight=max_in_flight, chunk_size=2),
        opener=Instrumented,
    )
    holder["worker"] = worker
    worker.start()
    assert worker.join(TIMEOUT)
    status = worker.status()
    assert status["state"] == "FINISHED"
    assert status["frames_emitted"] == 30
    assert max(seen) == max_in_flight  # reached, never exceeded
    assert all(len(c) <= 2 for c in submit.chunks)


def test_chunk_size_is_capped_by_max_in_flight(tmp_path: Path, model, executor):
    worker = StreamWorker(
        "r",
        "c",
        FINITE,
        Sinks(tmp_path),
        InProcessInference(model, executor),
        StreamSettings(max_in_flight=3, chunk_size=10),
    )
    assert worker.delivery.chunk_size == 3


def test_live_source_submits_every_frame_at_once(tmp_path: Path, model, executor):
    class FakeTime:
        now = 0.0

        def clock(self) -> float:
            return self.now

        def sleep(self, seconds: float) -> None:
            self.now += seconds

    t = FakeTime()
    uri = f"synthetic://shapes?seed=5&width={W}&height={H}&fps=25&frames=12"

    def opener(u: str, options) -> SyntheticSource:
        return SyntheticSource(u, clock=t.clock, sleep=t.sleep)  # paced, on a fake clock

    submit = InProcessInference(model, executor)
    sinks = Sinks(tmp_path)
    worker = StreamWorker(
        "run-1", "cam1", uri, sinks, submit, StreamSettings(chunk_size=4), opener=opener
    )
    worker.start()
    assert worker.join(TIMEOUT)
    assert worker.status()["state"] == "FINISHED"
    assert submit.chunks == [[k] for k in range(12)]
    assert [r["frame"] for r in sinks.jsonl()] == list(range(12))
    assert t.now == pytest.approx(11 / 25)
