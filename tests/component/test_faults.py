"""Fault injection wraps the model; the production model object is never modified."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vsa.config import ModelSpec
from vsa.models import load_model
from vsa.models.base import BatchRunner
from vsa.testing.faults import FaultyModel


@pytest.fixture(scope="module")
def model():
    return load_model(ModelSpec(name="builtin", device="cpu"))


FRAMES = [np.zeros((64, 96, 3), np.uint8) for _ in range(4)]


def test_injected_oom_splits_then_fails_the_runner_without_touching_the_model(model):
    forward = model.forward
    runner = BatchRunner(FaultyModel.around(model), max_batch_size=4, fatal_after=3)
    runner.model.inject("oom")
    for _ in range(3):
        with pytest.raises(torch.OutOfMemoryError):
            runner.run(FRAMES[:1])
    assert runner.fatal and "does not fit" in runner.fatal
    assert model.forward == forward  # the real model is as it was
    assert len(BatchRunner(model, 4).run(FRAMES)) == 4


def test_a_hang_blocks_the_next_call_only_and_results_are_the_models(model):
    faulty = FaultyModel.around(model)
    assert FaultyModel.around(faulty) is faulty
    faulty.inject("hang", 0.01)
    runner = BatchRunner(faulty, max_batch_size=4)
    first, second = runner.run(FRAMES), runner.run(FRAMES)
    assert len(first) == len(second) == 4


def test_an_unknown_fault_is_refused(model):
    with pytest.raises(ValueError, match="oom, hang"):
        FaultyModel(model).inject("fire")
