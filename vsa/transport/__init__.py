"""The frame path between a host's source actors and its inference actor, without Ray's object
store or a Ray call per frame: frames in shared-memory rings (``ring``), calls on a Unix socket
(``channel``), the source's side of both (``sender``). Ray-free; ``actors`` wires it in and
falls back to Ray's object store and actor calls where it cannot be used."""

from vsa.transport.channel import ChannelClient, ChannelClosed, ChannelServer, RemoteError
from vsa.transport.ring import FrameRing, RingReader, RingWriter, Slot
from vsa.transport.sender import ChannelCall, ChannelSender

__all__ = [
    "ChannelCall",
    "ChannelClient",
    "ChannelClosed",
    "ChannelSender",
    "ChannelServer",
    "FrameRing",
    "RemoteError",
    "RingReader",
    "RingWriter",
    "Slot",
]
