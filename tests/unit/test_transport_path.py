"""Which transport a source's frames take (``FramePath``), with a fake inference actor, fake
transports (the channel and Ray's) and a fake clock: the decisions the source actor makes around
Ray, without Ray. Every send returns the chosen transport's pending result."""

from __future__ import annotations

import errno
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

from tests.unit.fakes import FakeClock
from vsa.supervision.handles import ActorGone
from vsa.transport.channel import ChannelClosed
from vsa.transport.path import FramePath

NODE = "node-a"
FRAMES = [np.zeros((4, 4, 3), np.uint8)]


@dataclass(eq=False)
class Actor:
    """An inference actor handle: ``name`` is the actor, several handles may name one."""

    name: str
    node: str = NODE
    answer: Exception | None = None  # what asking for its channel raises, if anything


@dataclass(eq=False)
class Channel:
    """The same-host channel of one actor (``ChannelSender``)."""

    path: str
    sent: list[dict[str, Any]] = field(default_factory=list)
    closed: bool = False
    fail: Exception | None = None
    name = "channel"

    def send(
        self, inference: Actor, images: list[np.ndarray], request: dict[str, Any], on_gone: Any
    ) -> str:
        if self.fail is not None:
            raise self.fail
        self.sent.append(request)
        return f"call on {self.path}"

    def close(self) -> None:
        self.closed = True


@dataclass(eq=False)
class Ray:
    """Ray's object store (``actors.frames.RayTransport``): takes frames for any actor."""

    sent: list[str] = field(default_factory=list)
    closed: bool = False
    name = "ray"

    def send(
        self, inference: Actor, images: list[np.ndarray], request: dict[str, Any], on_gone: Any
    ) -> str:
        self.sent.append(inference.name)
        return f"ray call to {inference.name}"

    def close(self) -> None:
        self.closed = True


class World:
    def __init__(self, transport: str = "auto") -> None:
        self.clock = FakeClock(100.0)
        self.asked: list[str] = []
        self.channels: list[Channel] = []
        self.gone = 0
        self.open_fails: Exception | None = None
        self.ray = Ray()
        self.path = FramePath(
            "run/cam",
            4,
            self.ray,
            self.locate,
            NODE,
            transport,
            identity=lambda actor: actor.name,
            open_channel=self.open,
            clock=self.clock,
            retry_s=30.0,
        )

    def locate(self, actor: Actor) -> dict[str, Any]:
        self.asked.append(actor.name)
        if actor.answer is not None:
            raise actor.answer
        return {"path": f"/tmp/{actor.name}.sock", "node": actor.node}

    def open(self, path: str, max_in_flight: int) -> Channel:
        if self.open_fails is not None:
            raise self.open_fails
        channel = Channel(path)
        self.channels.append(channel)
        return channel

    def on_gone(self) -> None:
        self.gone += 1

    def send(self, actor: Actor) -> Any:
        return self.path.send(actor, FRAMES, {"stream": "run/cam"}, self.on_gone)


def test_an_actor_on_this_node_gets_the_frames_through_its_channel_asked_once() -> None:
    world, actor = World(), Actor("inference")
    assert world.path.used is None  # nothing sent yet
    assert world.send(actor) == "call on /tmp/inference.sock"
    assert world.send(actor) == "call on /tmp/inference.sock"
    assert world.asked == ["inference"] and len(world.channels[0].sent) == 2
    assert world.path.used == "channel" and world.ray.sent == []


def test_an_actor_on_another_node_gets_them_through_ray_until_the_actor_changes() -> None:
    world = World()
    assert world.send(Actor("far", node="node-b")) == "ray call to far"
    assert world.path.used == "ray"
    assert world.send(Actor("far", node="node-b")) == "ray call to far"
    assert world.asked == ["far"]  # not asked again: the same actor stays where it is
    assert world.send(Actor("near")) == "call on /tmp/near.sock"
    assert world.path.used == "channel" and world.ray.sent == ["far", "far"]


def test_a_new_handle_of_the_same_actor_keeps_the_channel() -> None:
    # a controller restart hands every source a new handle of the actor it already uses
    world = World()
    world.send(Actor("inference"))
    world.send(Actor("inference"))
    assert world.asked == ["inference"] and not world.channels[0].closed


def test_a_new_actor_closes_the_old_channel_and_opens_its_own() -> None:
    world = World()
    world.send(Actor("old"))
    assert world.send(Actor("new")) == "call on /tmp/new.sock"
    assert world.channels[0].closed and not world.channels[1].closed


def test_a_gone_actor_is_reported_as_gone_and_its_frames_fail() -> None:
    world = World()
    with pytest.raises(ActorGone):
        world.send(Actor("dead", answer=ActorGone("ActorDiedError")))
    assert world.gone == 1  # the source waits for the controller's new inference actor
    assert world.ray.sent == [] and world.path.used is None  # not sent through Ray either


def test_a_channel_that_closed_is_asked_for_again() -> None:
    world, actor = World(), Actor("inference")
    world.send(actor)
    world.channels[0].closed = True  # the actor's process ended
    actor.answer = ActorGone("ActorDiedError")
    with pytest.raises(ActorGone):
        world.send(actor)
    assert world.asked == ["inference", "inference"] and world.gone == 1


def test_no_answer_in_time_sends_through_ray_and_asks_again_later() -> None:
    world, actor = World(), Actor("busy", answer=TimeoutError("no answer"))
    assert world.send(actor) == "ray call to busy"
    world.clock.advance(29.0)
    assert world.send(actor) == "ray call to busy" and world.asked == ["busy"]
    world.clock.advance(2.0)
    actor.answer = None
    assert world.send(actor) == "call on /tmp/busy.sock"
    assert world.path.used == "channel"


def test_a_channel_that_cannot_be_used_means_ray_for_good() -> None:
    world = World()
    actor = Actor("inference", answer=RuntimeError("no channel method"))
    assert world.send(actor) == "ray call to inference"
    actor.answer = None
    world.clock.advance(3600.0)
    assert world.send(actor) == "ray call to inference" and world.asked == ["inference"]


def test_a_channel_that_cannot_be_opened_means_ray_for_good() -> None:
    world, actor = World(), Actor("inference")
    world.open_fails = OSError(errno.ENOENT, "No such file or directory: '/dev/shm'")
    assert world.send(actor) == "ray call to inference"
    assert world.send(actor) == "ray call to inference" and world.asked == ["inference"]


def test_a_full_dev_shm_moves_the_stream_to_ray_and_closes_its_channel() -> None:
    world, actor = World(), Actor("inference")
    world.send(actor)
    world.channels[0].fail = OSError(errno.ENOSPC, "No space left on device")
    assert world.send(actor) == "ray call to inference"  # these frames too
    assert world.path.used == "ray"
    assert world.channels[0].closed and world.send(actor) == "ray call to inference"
    assert world.asked == ["inference"] and world.ray.sent == ["inference", "inference"]


def test_a_closed_channel_on_send_is_an_error_for_those_frames_not_a_move_to_ray() -> None:
    world, actor = World(), Actor("inference")
    world.send(actor)
    world.channels[0].fail = ChannelClosed("the inference actor closed the channel")
    with pytest.raises(ChannelClosed):
        world.send(actor)
    assert world.ray.sent == [] and world.path.used == "channel"


def test_vsa_transport_ray_never_asks_for_a_channel() -> None:
    world = World(transport="ray")
    assert world.send(Actor("inference")) == "ray call to inference" and world.asked == []
    assert world.path.used == "ray"


def test_close_closes_the_channel_and_ray_s_transport() -> None:
    world, actor = World(), Actor("inference")
    world.send(actor)
    world.path.close()
    assert world.channels[0].closed and world.ray.closed
