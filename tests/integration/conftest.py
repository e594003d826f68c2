"""Integration fixtures: one shared tiny data/model cache per session, free loopback ports."""

import socket

import pytest


@pytest.fixture(scope="session")
def cache_env(tmp_path_factory, monkeypatch_session):
    cache = tmp_path_factory.mktemp("f3ocus-cache")
    monkeypatch_session.setenv("F3OCUS_CACHE_DIR", str(cache))
    return cache


@pytest.fixture(scope="session")
def monkeypatch_session():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


_HANDED_OUT: set[int] = set()  # ports this test session already gave out (a server may not have bound them yet)


def free_ports(count: int) -> list[int]:
    """`count` distinct free ports on 127.0.0.1, reserved together.

    All sockets stay bound until every port is read, so the kernel cannot hand one port back twice (asking
    one at a time can: a port just closed is free again), and ports given out earlier in this session are
    skipped, so two components started by one test never get the same port.
    """
    sockets: list[socket.socket] = []
    ports: list[int] = []
    try:
        while len(ports) < count:
            sock = socket.socket()
            sockets.append(sock)  # kept bound, also when skipped, so the kernel moves on to another port
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
            if port not in _HANDED_OUT:
                ports.append(port)
    finally:
        for sock in sockets:
            sock.close()
    _HANDED_OUT.update(ports)
    return ports


def free_port() -> int:
    return free_ports(1)[0]
