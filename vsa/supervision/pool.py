"""Where inference actors go and which streams each one serves: plain functions, no Ray.

A cluster gets one inference actor per GPU of each live node (``VSA_INFERENCE_ACTORS`` per
node without GPUs, default 1), each pinned to its node; a stream's source actor is placed on
the node of the inference actor it is given, so its frames never cross nodes. On one host
this is today's single actor named ``inference``.

- :func:`plan_slots`: the slots of the live nodes, the head node first (its first slot is
  ``inference``; the others are named after their node, so a name survives other nodes coming
  and going, and the controller moving);
- :func:`place`: new streams to the slots with the fewest streams (ties: slot order);
- :func:`rehome`: the streams of slots that are gone (their node left, or their actor could
  not be restarted) moved to the remaining slots the same way.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

from vsa.settings import inference_actors, inference_gpus
from vsa.supervision.handles import DEFAULT_SLOT, Slot


def plan_slots(
    nodes: Sequence[tuple[str, float]], head: str | None, env: Mapping[str, str] | None = None
) -> list[Slot]:
    """The slots of the live ``nodes`` (``(node id, GPUs)``); ``head``: the cluster's head
    node, whose slots come first."""
    ordered = sorted(nodes, key=lambda n: (n[0] != head, n[0]))
    per_cpu_node = inference_actors(env)
    slots: list[Slot] = []
    for node, gpus in ordered:
        use = inference_gpus(gpus, env)  # 1 on a node with a GPU (auto), or as forced
        count = max(1, int(gpus)) if use else per_cpu_node
        for k in range(count):
            name = DEFAULT_SLOT if not slots else f"{DEFAULT_SLOT}-{node[:8]}-{k}"
            slots.append(Slot(name, node, use))
    return slots


def place(sources: Iterable[str], load: Mapping[str, int], slots: Sequence[str]) -> dict[str, str]:
    """Each of ``sources`` to the slot serving the fewest streams (``load``: streams per slot
    now; ties go to the earlier slot). Raises ``ValueError`` without slots."""
    if not slots:
        raise ValueError("no inference actor to place streams on")
    count = Counter({slot: load.get(slot, 0) for slot in slots})
    out: dict[str, str] = {}
    for source in sources:
        slot = min(slots, key=lambda s: (count[s], slots.index(s)))
        out[source] = slot
        count[slot] += 1
    return out


def rehome(
    placement: Mapping[str, str], load: Mapping[str, int], alive: Sequence[str]
) -> dict[str, str]:
    """The streams of ``placement`` whose slot is not in ``alive``, moved to alive slots
    (:func:`place` with ``load``); streams already on an alive slot are not in the result."""
    lost = [source for source, slot in placement.items() if slot not in alive]
    return place(lost, load, alive) if lost else {}
