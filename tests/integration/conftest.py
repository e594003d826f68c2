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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
