"""The tests' port helper: the ports it gives for one cluster are all different."""

from __future__ import annotations

import socket

from tests.ports import free_port, free_ports


def test_the_ports_of_one_set_are_all_different_and_bindable():
    ports = free_ports(400)  # ray start refuses a port given to two components
    assert len(set(ports)) == 400
    for port in (*ports[:5], free_port()):
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))  # free again once chosen
