"""How a source's frames reach its inference actor: one interface (``base.FrameTransport``),
two implementations. The same-host channel, without Ray's object store or a Ray call per frame:
frames in shared-memory rings (``ring``), calls on a Unix socket (``channel``), the source's side
of both (``sender.ChannelSender``). Ray's object store and actor calls: ``actors.frames
.RayTransport``. ``path.FramePath`` picks one per send. Ray-free; ``actors`` wires it in."""

from vsa.transport.base import FrameTransport, Pending
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
    "FrameTransport",
    "Pending",
    "RemoteError",
    "RingReader",
    "RingWriter",
    "Slot",
]
