"""The same-host frame channel without Ray: a real Unix socket, real rings in /dev/shm, the
server on an asyncio loop in a thread as in the inference actor, the client's reader thread."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

from vsa.transport import (
    ChannelClient,
    ChannelClosed,
    ChannelSender,
    ChannelServer,
    FrameRing,
    RemoteError,
    RingReader,
)
from vsa.transport.channel import sweep_sockets

ACTOR = None  # the inference actor's handle: a channel is bound to its actor and ignores it


def image(value: int, shape: tuple[int, ...] = (36, 64, 3)) -> np.ndarray:
    return np.full(shape, value, np.uint8)


def wait_for(check: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


# --- the channel --------------------------------------------------------------------------------
class Loop:
    """An asyncio loop in a thread, as the inference actor's."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Any, timeout: float = 30.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture
def loop() -> Iterator[Loop]:
    running = Loop()
    yield running
    running.stop()


class Engine:
    """A handler that answers with the frames' first pixels, after ``delay_s`` (or raises)."""

    def __init__(self) -> None:
        self.reader = RingReader()
        self.started = 0  # calls whose handler began (a call cancelled before never does)
        self.cancelled = 0
        self.closed: list[int] = []
        self.delay_s = 0.0

    async def handle(self, request: dict[str, Any]) -> list[int]:
        self.started += 1
        frames = [self.reader.view(request["connection"], s) for s in request["slots"]]
        if request.get("fail"):
            raise ValueError("model exploded")
        try:
            await asyncio.sleep(self.delay_s)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        return [int(f[0, 0, 0]) for f in frames]

    def on_close(self, connection: int) -> None:
        self.closed.append(connection)
        self.reader.forget(connection)


def serve(loop: Loop, engine: Engine) -> ChannelServer:
    server = ChannelServer(engine.handle, engine.on_close)
    loop.run(server.start())
    assert oct(os.stat(server.path).st_mode & 0o777) == "0o600"
    assert oct(os.stat(os.path.dirname(server.path)).st_mode & 0o777) == "0o700"
    return server


def test_frames_sent_through_the_channel_come_back_answered_in_order_and_free_their_slots(
    loop: Loop,
) -> None:
    engine = Engine()
    server = serve(loop, engine)
    sender = ChannelSender(server.path, max_in_flight=4)
    assert sender.name == "channel"  # what the source's status shows (FrameTransport.name)
    gone = []
    try:
        calls = [
            sender.send(
                ACTOR, [image(i), image(i + 100)], {"stream": "run/cam"}, lambda: gone.append(1)
            )
            for i in range(1, 4)
        ]
        assert [call.result(30) for call in calls] == [[1, 101], [2, 102], [3, 103]]
        assert sender.rings.ring is not None and sender.rings.ring.in_flight == 0
        assert not sender.rings.ring.retired and not gone
    finally:
        sender.close()
        loop.run(server.close())
    wait_for(lambda: engine.closed == [1])  # the engine let go of the ring
    assert len(engine.reader) == 0


def test_an_error_in_the_engine_fails_that_call_only_and_retires_the_ring(loop: Loop) -> None:
    engine = Engine()
    server = serve(loop, engine)
    sender = ChannelSender(server.path, max_in_flight=2)
    try:
        bad = sender.send(ACTOR, [image(1)], {"stream": "s", "fail": True}, lambda: None)
        with pytest.raises(RemoteError, match="ValueError: model exploded"):
            bad.result(30)
        retired = bad.slots[0].path
        assert not os.path.exists(retired)
        good = sender.send(ACTOR, [image(2)], {"stream": "s"}, lambda: None)
        assert good.result(30) == [2]
        assert good.slots[0].path != retired
    finally:
        sender.close()
        loop.run(server.close())


def test_a_call_that_timed_out_is_withdrawn_from_the_engine(loop: Loop) -> None:
    engine = Engine()
    engine.delay_s = 60.0
    server = serve(loop, engine)
    sender = ChannelSender(server.path, max_in_flight=2)
    try:
        slow = sender.send(ACTOR, [image(1)], {"stream": "s"}, lambda: None)
        wait_for(lambda: engine.started == 1)
        with pytest.raises(TimeoutError):
            slow.result(0.2)
        slow.cancel()
        wait_for(lambda: engine.cancelled == 1)
        assert sender.rings.ring is not None and sender.rings.ring.retired
    finally:
        sender.close()
        loop.run(server.close())


SERVER = """
import asyncio, sys
from vsa.transport import ChannelServer

async def handle(request):
    await asyncio.sleep(3600)  # a batch that never ends: the process is killed meanwhile

async def main():
    server = ChannelServer(handle)
    print(await server.start(), flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""


def test_when_the_inference_process_is_killed_every_open_call_fails_and_says_so() -> None:
    server = subprocess.Popen([sys.executable, "-c", SERVER], stdout=subprocess.PIPE, text=True)
    try:
        path = server.stdout.readline().strip()  # type: ignore[union-attr]
        sender = ChannelSender(path, max_in_flight=4)
        gone: list[int] = []
        calls = [
            sender.send(ACTOR, [image(i)], {"stream": "s"}, lambda: gone.append(1))
            for i in range(3)
        ]
        server.send_signal(signal.SIGKILL)
        for call in calls:
            with pytest.raises(ChannelClosed):
                call.result(30)
        assert len(gone) == 3  # the source waits for the controller's new inference actor
        assert sender.closed
        with pytest.raises(ChannelClosed):
            sender.send(ACTOR, [image(9)], {"stream": "s"}, lambda: None)
        sender.close()
    finally:
        server.kill()
        server.wait(30)


def test_the_server_cancels_the_calls_of_a_client_that_went_away(loop: Loop) -> None:
    engine = Engine()
    engine.delay_s = 60.0
    server = serve(loop, engine)
    client = ChannelClient(server.path)
    ring = FrameRing(2, image(0).nbytes)
    try:
        client.call({"stream": "run/a", "slots": [ring.put(image(1)).as_tuple()]})
        client.call({"stream": "run/a", "slots": [ring.put(image(2)).as_tuple()]})
        wait_for(lambda: engine.started == 2)
        client.close()
        wait_for(lambda: engine.cancelled == 2)
        wait_for(lambda: engine.closed == [1])
    finally:
        ring.retire(force=True)
        loop.run(server.close())


def test_calls_open_when_the_source_closes_its_channel_do_not_say_the_engine_died(
    loop: Loop,
) -> None:
    # a source that reconnects closes its old channel: its open calls fail, but the inference
    # actor is fine, so the source must not wait for a replacement that never comes
    engine = Engine()
    engine.delay_s = 60.0
    server = serve(loop, engine)
    sender = ChannelSender(server.path, max_in_flight=2)
    gone: list[int] = []
    call = sender.send(ACTOR, [image(1)], {"stream": "s"}, lambda: gone.append(1))
    wait_for(lambda: engine.started == 1)
    sender.close()
    with pytest.raises(ChannelClosed) as caught:
        call.result(30)
    assert caught.value.local and gone == []
    wait_for(lambda: engine.cancelled == 1)  # the engine withdrew its frames
    loop.run(server.close())


def test_the_socket_of_a_server_that_was_killed_is_swept_and_a_live_one_is_kept(
    loop: Loop, tmp_path: Any
) -> None:
    server = serve(loop, Engine())  # alive: kept
    dead = subprocess.Popen([sys.executable, "-c", SERVER], stdout=subprocess.PIPE, text=True)
    dead_path = dead.stdout.readline().strip()  # type: ignore[union-attr]
    dead.send_signal(signal.SIGKILL)
    dead.wait(30)
    assert os.path.exists(dead_path)  # a killed server leaves its socket behind
    stranger = tempfile.mkdtemp(prefix="vsa-chan-")  # someone else's files: not touched
    open(os.path.join(stranger, "notes.txt"), "w").close()
    try:
        assert sweep_sockets() >= 1
        assert not os.path.exists(os.path.dirname(dead_path))
        assert os.path.exists(server.path) and os.path.exists(stranger)
    finally:
        loop.run(server.close())
        os.unlink(os.path.join(stranger, "notes.txt"))
        os.rmdir(stranger)
