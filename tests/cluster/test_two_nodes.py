"""Past one inference actor: on a two-node cluster each node gets its own inference actor,
each stream's source actor runs on the node of the actor that infers its frames (no pixels
cross nodes), one node's inference actor dying leaves the other node's streams alone, and
when a node leaves, its streams move to the other node and go on."""

from __future__ import annotations

import time

import pytest
import ray

from tests.integration.conftest import wait_for
from tests.integration.test_supervision import emitted, run_of, spec

pytestmark = pytest.mark.integration


def actor_nodes() -> dict[str, str]:
    """Live actor name -> node id (Ray's own actor table; the state API needs the dashboard,
    which this cluster runs without)."""
    table = ray._private.state.actors()  # private but stable for years; a test-only look
    return {
        a["Name"]: a["Address"]["NodeID"]
        for a in table.values()
        if a["State"] == "ALIVE" and a.get("Name")
    }


def emitted_or_none(client, run_id) -> dict[str, int] | None:
    """Frames emitted per stream, or None while the controller is being restarted (it may
    have run on the node that left: Ray restarts it on the other one)."""
    from vsa.errors import VsaError

    try:
        return emitted(client, run_id)
    except VsaError:
        return None


def test_each_nodes_frames_stay_on_its_node_and_survive_the_other_nodes_failure(
    two_nodes, tmp_path
):
    from vsa.client import Client

    cluster, worker = two_nodes
    client = Client()
    run_id = client.submit(spec(tmp_path, "two-nodes", n=4))["run_id"]
    try:
        wait_for(lambda: min(emitted(client, run_id).values()) >= 5, 240, "frames on both nodes")
        nodes = actor_nodes()
        infer = {name: node for name, node in nodes.items() if name.startswith("inference")}
        assert len(infer) == 2 and set(infer.values()) == {
            cluster.head_node.node_id,
            worker.node_id,
        }, nodes
        run = run_of(client, run_id)
        serving = {s["id"]: s["inference"] for s in run["sources"]}
        # the streams spread over both actors, two each, and each source actor runs on the
        # node of the actor that infers its frames
        assert sorted(serving.values()).count("inference") == 2, serving
        for sid, actor in serving.items():
            assert nodes[f"source:{run_id}/{sid}"] == infer[actor], (sid, actor)
        other = next(name for name in infer if name != "inference")
        on_other = [sid for sid, actor in serving.items() if actor == other]
        on_head = [sid for sid, actor in serving.items() if actor == "inference"]

        marks = emitted(client, run_id)
        killed_at = time.monotonic()
        ray.kill(ray.get_actor(other, namespace="vsa"), no_restart=True)
        wait_for(
            lambda: all(emitted(client, run_id)[s] >= marks[s] + 10 for s in on_other),
            180,
            "the killed actor's streams to emit again",
        )
        recovery = time.monotonic() - killed_at
        run = run_of(client, run_id)
        events = [e for e in run["events"] if e["event"] == "inference_restarted"]
        assert events and all(e.get("inference") == other for e in events), run["events"]
        assert not any(e["event"] == "streams_moved" for e in run["events"]), run["events"]
        # the head node's streams did not notice: no frame lost to inference, still on their
        # actor, and they went on emitting while the other actor was down
        by_id = {s["id"]: s for s in run["sources"]}
        for sid in on_head:
            assert "inference_error" not in by_id[sid]["drops"], by_id[sid]
            assert by_id[sid]["frames_emitted"] >= marks[sid] + 10, by_id[sid]
        after = actor_nodes()
        assert after["inference"] == infer["inference"]
        assert after[other] == infer[other]  # the new actor is on the same node
        print(f"one node's inference actor killed: its streams emit again after {recovery:.1f} s")

        # the other node leaves the cluster: its streams move to the head's actor, their source
        # actors are created again there and continue their files
        marks = emitted(client, run_id)
        left_at = time.monotonic()

        def counts() -> dict[str, int] | None:
            return emitted_or_none(client, run_id)

        cluster.remove_node(worker)
        wait_for(
            lambda: all(now[s] >= marks[s] + 10 for s in marks) if (now := counts()) else False,
            240,
            "every stream to emit again after the node left",
        )
        moved = time.monotonic() - left_at
        run = run_of(client, run_id)
        kinds = [e["event"] for e in run["events"]]
        assert "streams_moved" in kinds and kinds.count("source_recreated") == len(on_other), kinds
        assert {s["inference"] for s in run["sources"]} == {"inference"}
        nodes = actor_nodes()
        assert {nodes[f"source:{run_id}/{sid}"] for sid in serving} == {infer["inference"]}
        print(f"a node left: its streams emit again on the other node after {moved:.1f} s")
    finally:
        final = client.stop(run_id).to_dict()
    for s in final["sources"]:
        assert s["frames_decoded"] == s["frames_emitted"] + sum(s["drops"].values()), s
        assert s["transport"] == "ray"  # VSA_TRANSPORT=ray in this tier (conftest)
