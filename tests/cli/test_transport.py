"""DOCKER_HOST parsing: the forms the docker CLI accepts, and clear errors for the rest."""

from __future__ import annotations

import pytest

from labkit.client import default_host, parse_host


def test_unix_and_tcp():
    h = parse_host("unix:///run/labkit/docker.sock")
    assert (h.scheme, h.path) == ("unix", "/run/labkit/docker.sock")
    h = parse_host("tcp://127.0.0.1:2375")
    assert (h.scheme, h.host, h.port) == ("tcp", "127.0.0.1", 2375)
    assert parse_host("/tmp/d.sock").path == "/tmp/d.sock"


@pytest.mark.parametrize("bad, why", [
    ("ssh://host", "expected unix:///path or tcp://host:port"),
    ("unix://", "needs a socket path"),
    ("tcp://:2375", "needs host:port"),
    ("tcp://127.0.0.1:99999", "bad port"),
])
def test_bad_hosts(bad, why):
    with pytest.raises(ValueError, match=why):
        parse_host(bad)


def test_default_is_docker_host_then_the_lab(monkeypatch):
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    assert default_host().startswith("unix://") and default_host().endswith("docker.sock")
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:15999")
    assert default_host() == "tcp://127.0.0.1:15999"
