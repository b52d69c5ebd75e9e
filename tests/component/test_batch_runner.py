"""A device out-of-memory during a batch is split and retried, and the batch size remembered."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vsa.models.base import Batch, BatchRunner, Detection, Letterbox, is_out_of_memory


class OomAbove:
    """Fails like CUDA when a batch has more than ``limit`` frames; one detection per frame."""

    name, classes, device = "oom", ["x"], torch.device("cpu")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.calls: list[int] = []

    def preprocess(self, frames):
        return Batch(
            torch.tensor([float(f[0, 0, 0]) for f in frames]),
            [Letterbox(1, 0, 0, 4, 4)] * len(frames),
        )

    def forward(self, batch):
        self.calls.append(len(batch.boxes))
        if len(batch.boxes) > self.limit:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return batch.tensor

    def postprocess(self, raw, batch):
        return [[Detection("x", 0, 1.0, (v, 0, v + 1, 1))] for v in raw.tolist()]


def frames(n):
    return [np.full((4, 4, 3), i, np.uint8) for i in range(n)]


def test_oom_splits_retries_and_lowers_the_batch_size():
    model = OomAbove(limit=2)
    runner = BatchRunner(model, max_batch_size=8)
    out = runner.run(frames(8))
    assert [d[0].box[0] for d in out] == list(range(8))  # every frame, in order
    assert runner.max_batch_size == 2
    assert runner.oom_events == 2  # 8 failed, then 4 failed, then 2s fit
    model.calls.clear()
    runner.run(frames(8))  # remembered: no more OOM
    assert model.calls == [2, 2, 2, 2]


def test_oom_at_batch_size_one_is_raised():
    runner = BatchRunner(OomAbove(limit=0), max_batch_size=4)
    with pytest.raises(torch.cuda.OutOfMemoryError):
        runner.run(frames(2))
    assert runner.max_batch_size == 1


def test_repeated_oom_for_a_single_frame_becomes_fatal():
    model = OomAbove(limit=0)
    runner = BatchRunner(model, max_batch_size=1, fatal_after=3)
    for _ in range(2):
        with pytest.raises(torch.cuda.OutOfMemoryError):
            runner.run(frames(1))
    assert runner.fatal is None  # recoverable so far
    model.limit = 1
    runner.run(frames(1))  # a success resets the streak
    model.limit = 0
    for _ in range(3):
        with pytest.raises(torch.cuda.OutOfMemoryError):
            runner.run(frames(1))
    assert runner.fatal is not None and "3 times in a row" in runner.fatal


def test_other_errors_are_not_retried():
    class Broken(OomAbove):
        def forward(self, batch):
            raise ValueError("bad weights")

    runner = BatchRunner(Broken(limit=8), max_batch_size=4)
    with pytest.raises(ValueError, match="bad weights"):
        runner.run(frames(4))
    assert runner.max_batch_size == 4 and runner.oom_events == 0


def test_is_out_of_memory():
    assert is_out_of_memory(torch.cuda.OutOfMemoryError("x"))
    assert is_out_of_memory(RuntimeError("MPS backend out of memory"))
    assert not is_out_of_memory(RuntimeError("shape mismatch"))
