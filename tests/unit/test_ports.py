"""The tests' port helper: a set of ports is all different, free and out of the kernel's way."""

from __future__ import annotations

import socket

from tests import ports
from tests.ports import LOWEST, _ephemeral_low, free_port, free_ports


def test_the_ports_of_one_set_are_all_different_and_bindable():
    ports = free_ports(400)  # ray start refuses a port given to two components
    assert len(set(ports)) == 400
    for port in (*ports[:5], free_port()):
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))  # free again once chosen


def test_the_ports_lie_between_rays_worker_ports_and_the_ephemeral_range():
    # an outgoing connection or a bind(0) cannot take one before its server binds it
    assert all(LOWEST <= p < _ephemeral_low() for p in free_ports(50))


def test_a_port_in_use_is_not_given(monkeypatch):
    with socket.socket() as held:
        held.bind(("127.0.0.1", free_port()))
        taken = held.getsockname()[1]
        # the port in use is the first candidate tried
        monkeypatch.setattr(
            ports.random, "sample", lambda pool, k: [taken, *(p for p in pool if p != taken)][:k]
        )
        got = ports.free_ports(3)
        assert taken not in got and len(set(got)) == 3
