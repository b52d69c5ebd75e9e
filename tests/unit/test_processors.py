"""A stream's result processors (issue 25), without threads: the chain's order, its failure
policy, close and state; and the worker running it on the sink thread's path, in frame order,
just before the sinks, with every frame accounted for."""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Iterator
from concurrent.futures import Future
from typing import Any

import numpy as np
import pytest

from vsa.core.detections import Detection
from vsa.core.frames import Frame, FrameResult
from vsa.schema import SourceState
from vsa.stream import StreamSettings, StreamWorker
from vsa.stream.outputs import EarlierOutputs
from vsa.stream.processors import LOG_EVERY, ProcessorChain


# --- fakes -------------------------------------------------------------------------------------
class Stamp:
    """Adds ``attributes[name] = n`` to each detection (n: frames it has seen) and records what
    it was given; fails on the frames in ``fail_on`` (raising, or returning None)."""

    def __init__(self, name: str, events: list[str], fail_on: dict[int, str] | None = None) -> None:
        self.name, self.events, self.fail_on = name, events, fail_on or {}
        self.seen: list[tuple[int, list[str]]] = []  # frame index, attributes already there
        self.n = 0

    def process(self, frame: Frame, result: FrameResult) -> FrameResult:
        how = self.fail_on.get(frame.index)
        if how == "raise":
            raise RuntimeError(f"{self.name} broke on {frame.index}")
        self.seen.append((frame.index, sorted(result.detections[0].attributes)))
        if how == "none":
            return None  # type: ignore[return-value] - a broken processor
        self.n += 1
        stamped = [
            dataclasses.replace(d, attributes={**d.attributes, self.name: self.n})
            for d in result.detections
        ]
        return dataclasses.replace(result, detections=stamped)

    def close(self) -> None:
        self.events.append(f"close {self.name}")

    def state(self) -> dict[str, Any]:
        return {"n": self.n}

    def restore(self, state: dict[str, Any]) -> None:
        self.n = state["n"]


class Broken(Stamp):
    """Closes, saves and restores with an error."""

    def close(self) -> None:
        self.events.append(f"close {self.name}")
        raise OSError("close failed")

    def state(self) -> dict[str, Any]:
        return {"not json": object()}

    def restore(self, state: dict[str, Any]) -> None:
        raise KeyError("restore failed")


class Sink:
    def __init__(self, events: list[str]) -> None:
        self.events = events
        self.written: list[tuple[int, FrameResult]] = []

    def write(self, frame: Frame, result: FrameResult) -> None:
        self.written.append((frame.index, result))

    def close(self) -> None:
        self.events.append("close sink")


class Source:
    """An opened finite source of ``n`` frames, not live (lossless: delivered in chunks)."""

    finite, endless, live, fps, decimates = True, False, False, 15.0, True

    def __init__(self, n: int) -> None:
        self.n = n

    def frames(self) -> Iterator[Frame]:
        for k in range(self.n):
            yield Frame(k, k / 15, 1000.0 + k, image=np.zeros((2, 2, 3), np.uint8))

    def close(self) -> None:
        pass


class Inference:
    """``submit``: one detection per frame; the futures are completed by the test."""

    def __init__(self) -> None:
        self.futures: list[tuple[list[Frame], Future]] = []

    def __call__(self, chunk: list[Frame], deadlines, credit, behind) -> Future:
        fut: Future = Future()
        self.futures.append((chunk, fut))
        return fut

    def complete(self, order: list[int]) -> None:
        """Complete the chunks in ``order`` (positions in submit order): batch = that order."""
        for batch, at in enumerate(order):
            chunk, fut = self.futures[at]
            box = (0.0, 0.0, 1.0, 1.0)
            fut.set_result(
                [
                    FrameResult(f.index, [Detection("car", 2, 0.9, box)], 1.0, 2, batch)
                    for f in chunk
                ]
            )


class Ended:
    """The decode thread, already ended (the test ran its work on this thread)."""

    ident = 1

    def join(self, timeout: float | None = None) -> None:
        pass

    def is_alive(self) -> bool:
        return False


def run_stream(
    n: int, processors: list[Stamp] | None, events: list[str], **settings: Any
) -> tuple[StreamWorker, Sink]:
    """A lossless stream of ``n`` frames in chunks of 2 whose results complete in reverse
    order, run without threads: the decode thread's work, then the sink thread's."""
    sink, inference = Sink(events), Inference()
    made = None if processors is None else (lambda: processors)
    w = StreamWorker(
        "r",
        "a",
        "/data/clip.mp4",
        lambda fps: [sink],
        inference,
        StreamSettings(chunk_size=2, realtime=False, processors=made, **settings),
        opener=lambda uri, options: Source(n),
    )
    w.decoder.run()
    inference.complete(list(reversed(range(len(inference.futures)))))
    w.writer.run(Ended(), lambda: False)
    return w, sink


def stamps(result: FrameResult) -> dict[str, Any]:
    return dict(result.detections[0].attributes)


# --- the chain ---------------------------------------------------------------------------------
def result(index: int = 0) -> FrameResult:
    return FrameResult(index, [Detection("car", 2, 0.9, (0.0, 0.0, 1.0, 1.0))], 1.0, 1)


def frame(index: int = 0) -> Frame:
    return Frame(index, None, 1000.0, image=np.zeros((2, 2, 3), np.uint8))


def test_processors_run_in_order_each_on_the_result_of_the_one_before():
    a, b = Stamp("a", []), Stamp("b", [])
    out = ProcessorChain([a, b]).process(frame(), result())
    assert stamps(out) == {"a": 1, "b": 1}
    assert a.seen == [(0, [])] and b.seen == [(0, ["a"])]


def test_an_empty_chain_hands_the_result_on_untouched():
    r = result()
    chain = ProcessorChain()
    assert not chain and chain.process(frame(), r) is r
    assert chain.state() == {}


@pytest.mark.parametrize(
    "names, message",
    [
        (["a", "b"], None),
        (["a", "a"], r"processor names must be unique in a stream, got \['a'\] more than once"),
        (["a", "b", "b", "a"], r"got \['a', 'b'\] more than once"),
    ],
)
def test_processor_names_are_unique(names, message):
    processors = [Stamp(n, []) for n in names]
    if message is None:
        assert len(ProcessorChain(processors)) == len(names)
    else:
        with pytest.raises(ValueError, match=message):
            ProcessorChain(processors)


@pytest.mark.parametrize("how", ["raise", "none"])
def test_a_failing_processor_leaves_the_result_as_it_was_before_it(how, caplog):
    a, b, c = Stamp("a", []), Stamp("b", [], fail_on={1: how}), Stamp("c", [])
    chain = ProcessorChain([a, b, c], name="run=r source=a")
    with caplog.at_level(logging.ERROR, logger="vsa.stream"):
        outs = [chain.process(frame(k), result(k)) for k in range(3)]
    assert [stamps(o) for o in outs] == [
        {"a": 1, "b": 1, "c": 1},
        {"a": 2},  # as it was before b; c skipped: it never sees a frame that missed b
        {"a": 3, "b": 2, "c": 2},
    ]
    assert [k for k, _ in c.seen] == [0, 2]
    assert chain.errors == {"b": 1}
    assert "run=r source=a processor b failed on frame 1" in caplog.text


def test_a_processor_failing_on_every_frame_is_logged_once_every_log_every(caplog):
    n = 2 * LOG_EVERY + 1
    chain = ProcessorChain([Stamp("a", [], fail_on=dict.fromkeys(range(n), "raise"))])
    with caplog.at_level(logging.ERROR, logger="vsa.stream"):
        for k in range(n):
            chain.process(frame(k), result(k))
    assert chain.errors == {"a": n}
    assert len(caplog.records) == 3  # the 1st, then every LOG_EVERY


def test_closing_closes_every_processor_once_even_after_one_fails(caplog):
    events: list[str] = []
    chain = ProcessorChain([Stamp("a", events), Broken("b", events), Stamp("c", events)])
    with caplog.at_level(logging.ERROR, logger="vsa.stream"):
        chain.close()
        chain.close()
    assert events == ["close a", "close b", "close c"]
    assert "closing processor b failed" in caplog.text


def test_the_state_round_trips_through_json_by_processor_name():
    chain = ProcessorChain([Stamp("a", []), Stamp("b", [])])
    for k in range(3):
        chain.process(frame(k), result(k))
    saved = json.loads(json.dumps(chain.state()))
    assert saved == {"a": {"n": 3}, "b": {"n": 3}}
    again = ProcessorChain([Stamp("b", []), Stamp("a", [])])  # order does not matter
    again.restore(saved)
    assert stamps(again.process(frame(3), result(3))) == {"a": 4, "b": 4}


def test_a_state_that_cannot_be_saved_or_restored_is_logged_and_the_others_go_on(caplog):
    chain = ProcessorChain([Broken("x", []), Stamp("a", [])])
    with caplog.at_level(logging.WARNING, logger="vsa.stream"):
        assert chain.state() == {"a": {"n": 0}}  # x's is not JSON-able: left out
        chain.restore({"x": {"n": 1}, "a": {"n": 5}, "gone": {"n": 9}})
    assert chain.processors[1].n == 5
    assert "processor x: its state cannot be saved" in caplog.text
    assert "processor x: its saved state cannot be restored" in caplog.text
    assert "no processor named ['gone']" in caplog.text


# --- the worker: in frame order, before the sinks, every frame counted --------------------------
def test_enriched_results_reach_the_sinks_in_frame_order_though_batches_complete_out_of_order():
    events: list[str] = []
    a, b = Stamp("a", events), Stamp("b", events)
    w, sink = run_stream(6, [a, b], events)
    assert [k for k, _ in sink.written] == list(range(6))
    assert [r.batch for _, r in sink.written] == [2, 2, 1, 1, 0, 0]  # the last chunk came first
    assert [stamps(r) for _, r in sink.written] == [{"a": k, "b": k} for k in range(1, 7)]
    assert [k for k, _ in a.seen] == [k for k, _ in b.seen] == list(range(6))
    assert events == ["close sink", "close a", "close b"]  # closed once the sinks are
    assert w.state is SourceState.FINISHED
    fields = w.books.fields()
    assert fields["frames_decoded"] == fields["frames_emitted"] == 6 and not fields["drops"]
    assert w.processor_state() == {"a": {"n": 6}, "b": {"n": 6}}


def test_a_frame_a_processor_fails_on_is_still_written_and_counted(caplog):
    events: list[str] = []
    with caplog.at_level(logging.ERROR, logger="vsa.stream"):
        w, sink = run_stream(4, [Stamp("a", events, fail_on={2: "raise"})], events)
    assert [(k, stamps(r)) for k, r in sink.written] == [
        (0, {"a": 1}),
        (1, {"a": 2}),
        (2, {}),  # as inference made it
        (3, {"a": 3}),
    ]
    assert w.processors.errors == {"a": 1} and "processor a failed on frame 2" in caplog.text
    fields = w.books.fields()
    assert fields["frames_emitted"] == 4 and not fields["drops"]
    assert w.state is SourceState.FINISHED


def test_without_processors_the_sinks_get_the_results_inference_made():
    events: list[str] = []
    w, sink = run_stream(4, None, events)
    assert not w.processors and [stamps(r) for _, r in sink.written] == [{}] * 4
    assert w.processor_state() == {} and w.writer.processors_cpu_s == 0.0
    assert w.books.fields()["frames_emitted"] == 4


def test_a_restarted_stream_goes_on_from_its_saved_processor_state():
    events: list[str] = []
    first, _ = run_stream(2, [Stamp("a", events)], events)
    saved = json.loads(json.dumps(first.processor_state()))
    _, sink = run_stream(2, [Stamp("a", events)], events, processor_state=saved)
    assert [stamps(r) for _, r in sink.written] == [{"a": 3}, {"a": 4}]


def test_a_stream_that_fails_before_it_starts_still_closes_its_processors(tmp_path):
    events: list[str] = []
    earlier = EarlierOutputs(3, [tmp_path / "gone.jsonl"])
    w = StreamWorker(
        "r",
        "a",
        "/data/clip.mp4",
        lambda fps: [],
        Inference(),
        StreamSettings(earlier=earlier, processors=lambda: [Stamp("a", events)]),
    )
    w.start()
    assert w.state is SourceState.FAILED and events == ["close a"]
