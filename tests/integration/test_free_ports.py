"""The port helper of the local-cluster tests: ports reserved together are distinct, also across calls."""

from __future__ import annotations

import socket

from tests.integration.conftest import free_port, free_ports


def test_ports_reserved_together_are_distinct_and_bindable() -> None:
    first = free_ports(40)
    second = free_ports(40) + [free_port() for _ in range(10)]

    assert len(set(first)) == 40 and len(set(second)) == 50
    assert not set(first) & set(second)  # a port handed out once is not handed out again
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", first[0]))  # still free: nothing kept it
