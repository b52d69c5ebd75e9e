"""A frame's pixels are made when first read, so frames dropped unseen cost no conversion."""

from __future__ import annotations

import time

import numpy as np
import pytest

from vsa.core.frames import Frame


def lazy(k: int, made: list[int]) -> Frame:
    def convert(frame: Frame) -> np.ndarray:
        made.append(k)
        frame.truth = [{"k": k}]
        return np.full((2, 2, 3), k, np.uint8)

    return Frame(k, k / 10, 100.0, decode_s=0.001, convert=convert)


def test_pixels_are_made_once_on_first_read():
    made: list[int] = []
    frame = lazy(3, made)
    assert not frame.converted and made == []
    assert frame.image[0, 0, 0] == 3 and frame.image[1, 1, 2] == 3
    assert made == [3] and frame.converted
    assert frame.decode_s is not None and frame.decode_s >= 0.001


def test_truth_comes_with_the_pixels():
    made: list[int] = []
    frame = lazy(5, made)
    assert frame.truth == [{"k": 5}] and made == [5]


def test_a_frame_needs_exactly_one_of_image_and_convert():
    with pytest.raises(ValueError):
        Frame(0, 0.0, 0.0)
    with pytest.raises(ValueError):
        Frame(0, 0.0, 0.0, np.zeros((1, 1, 3), np.uint8), convert=lambda f: f.image)


def test_realtime_delivery_never_converts_the_frames_it_replaces():
    from tests.unit.fakes import FakeClock
    from tests.unit.test_stream_parts import realtime

    made: list[int] = []
    delivery, book = realtime(FakeClock(100.0))
    for k in range(5):
        delivery.offer(lazy(k, made), live=True)
    delivery.decoding_ended()
    delivery.run()
    assert book.chunks == [[4]] and book.drops == {"queue_full": 4}
    assert made == []  # sending hands the frame over; the source actor converts it


def test_the_conversion_cpu_is_added_to_the_frames_decode_cpu():
    def convert(frame: Frame) -> np.ndarray:  # 30 ms of this thread's CPU
        started = time.thread_time()
        while time.thread_time() - started < 0.03:
            pass
        return np.zeros((2, 2, 3), np.uint8)

    frame = Frame(0, None, 0.0, convert=convert, decode_cpu_s=0.01)
    frame.image  # noqa: B018
    assert frame.decode_cpu_s >= 0.04
    assert Frame(1, None, 0.0, np.zeros((2, 2, 3), np.uint8)).decode_cpu_s == 0.0
