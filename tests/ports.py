"""Free TCP ports for the servers and clusters the tests start (no Ray, no pytest)."""

from __future__ import annotations

import socket
from contextlib import ExitStack


def free_ports(n: int) -> list[int]:
    """``n`` different TCP ports on 127.0.0.1 that were free a moment ago.

    Every socket stays bound until all ``n`` are chosen, so no two are the same: ports taken
    one at a time (bound, released, the next bound) can come back twice, and ``ray start``
    refuses a port given to two of its components (seen in CI)."""
    with ExitStack() as stack:
        ports = []
        for _ in range(n):
            s = stack.enter_context(socket.socket())
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
        return ports


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    return free_ports(1)[0]
