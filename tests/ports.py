"""Free TCP ports for the servers and clusters the tests start (no Ray, no pytest)."""

from __future__ import annotations

import random
import socket
from contextlib import ExitStack
from pathlib import Path

LOWEST = 20000
"""Above the ports Ray's workers bind by default (10002-19999, ``ray start --min/max-worker-port``)."""


def _ephemeral_low() -> int:
    """The lowest port the kernel hands out for ``bind(0)`` and outgoing connections."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def free_ports(n: int) -> list[int]:
    """``n`` different TCP ports on 127.0.0.1, free a moment ago, outside the kernel's ephemeral
    range.

    Every socket stays bound until all ``n`` are chosen, so no two are the same: ports taken
    one at a time can come back twice, and ``ray start`` refuses a port given to two of its
    components (seen in CI). And they lie below the ephemeral range, so that no outgoing
    connection (a gRPC client of the cluster being started, say) or ``bind(0)`` takes one in
    the moment between its choice here and the server binding it. Where that range leaves no
    room, the kernel's own ``bind(0)`` is used."""
    high = _ephemeral_low()
    candidates = random.sample(range(LOWEST, high), high - LOWEST) if high - LOWEST >= n else []
    with ExitStack() as stack:
        ports: list[int] = []
        for port in candidates:
            if len(ports) == n:
                break
            s = stack.enter_context(socket.socket())
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue  # in use
            ports.append(port)
        while len(ports) < n:
            s = stack.enter_context(socket.socket())
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
        return ports


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (see ``free_ports``)."""
    return free_ports(1)[0]
