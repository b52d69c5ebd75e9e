"""Where inference actors go and which streams each serves (``vsa.supervision.pool``)."""

from __future__ import annotations

import pytest

from vsa.errors import VsaError
from vsa.supervision.handles import Slot
from vsa.supervision.pool import place, plan_slots, rehome

HEAD, OTHER = "aaaaaaaa11", "bbbbbbbb22"


@pytest.mark.parametrize(
    ("nodes", "env", "expected"),
    [
        # one CPU host: today's single actor named `inference`
        ([(HEAD, 0)], {}, [Slot("inference", HEAD, 0)]),
        # several CPU actors on a node when asked
        (
            [(HEAD, 0)],
            {"VSA_INFERENCE_ACTORS": "2"},
            [Slot("inference", HEAD, 0), Slot("inference-aaaaaaaa-1", HEAD, 0)],
        ),
        # one per GPU; the controller's node first whatever the order given
        (
            [(OTHER, 1), (HEAD, 2)],
            {},
            [
                Slot("inference", HEAD, 1),
                Slot("inference-aaaaaaaa-1", HEAD, 1),
                Slot("inference-bbbbbbbb-0", OTHER, 1),
            ],
        ),
        # a GPU node whose GPUs are not for inference counts as a CPU node
        ([(HEAD, 1)], {"VSA_INFERENCE_GPUS": "0"}, [Slot("inference", HEAD, 0)]),
        # a node forced to use a GPU it does not advertise still gets its actor (which waits)
        ([(HEAD, 0)], {"VSA_INFERENCE_GPUS": "1"}, [Slot("inference", HEAD, 1)]),
        # two nodes without GPUs: one actor each
        (
            [(HEAD, 0), (OTHER, 0)],
            {},
            [Slot("inference", HEAD, 0), Slot("inference-bbbbbbbb-0", OTHER, 0)],
        ),
    ],
)
def test_plan_slots(
    nodes: list[tuple[str, float]], env: dict[str, str], expected: list[Slot]
) -> None:
    assert plan_slots(nodes, HEAD, env) == expected


def test_plan_slots_refuses_a_bad_actor_count() -> None:
    with pytest.raises(VsaError, match="VSA_INFERENCE_ACTORS must be a positive integer"):
        plan_slots([(HEAD, 0)], HEAD, {"VSA_INFERENCE_ACTORS": "0"})


def test_a_slot_name_does_not_change_when_another_node_leaves() -> None:
    third = "cccccccc33"
    before = plan_slots([(HEAD, 0), (OTHER, 0), (third, 0)], HEAD, {})
    after = plan_slots([(HEAD, 0), (third, 0)], HEAD, {})
    assert before[2] == after[1] == Slot("inference-cccccccc-0", third, 0)


@pytest.mark.parametrize(
    ("sources", "load", "slots", "expected"),
    [
        (["a", "b", "c"], {}, ["x", "y"], {"a": "x", "b": "y", "c": "x"}),
        # the busier slot gets the new streams last
        (["a", "b"], {"x": 3, "y": 1}, ["x", "y"], {"a": "y", "b": "y"}),
        (["a", "b", "c"], {"x": 1}, ["x", "y"], {"a": "y", "b": "x", "c": "y"}),
        # load on a slot that is not offered does not matter
        (["a"], {"z": 9}, ["x"], {"a": "x"}),
        ([], {}, ["x"], {}),
    ],
)
def test_place_balances_the_streams(
    sources: list[str], load: dict[str, int], slots: list[str], expected: dict[str, str]
) -> None:
    assert place(sources, load, slots) == expected


def test_place_without_a_slot_says_so() -> None:
    with pytest.raises(ValueError, match="no inference actor"):
        place(["a"], {}, [])


def test_rehome_moves_only_the_streams_of_slots_that_are_gone() -> None:
    placement = {"a": "x", "b": "y", "c": "y", "d": "z"}
    load = {"x": 1, "y": 2, "z": 1}
    assert rehome(placement, load, ["x", "z"]) == {"b": "x", "c": "z"}
    assert rehome(placement, load, ["x", "y", "z"]) == {}
