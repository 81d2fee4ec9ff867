"""A private, REAL Docker engine for the client and CLI tests (tests/realdocker.py starts it).

    labkit registry (in this process, port 0) <- the lab images, pushed by labkit.images
        ^ --registry-mirror
    dockerd 20.10  -H unix:///tmp/lkd-*/docker.sock   (--bridge=none, no iptables)
        | --containerd
    containerd 1.6 on its own socket, root and state (a config file in the temp dir)

Everything lives in one temporary directory under /tmp (short: unix socket paths must fit in
108 bytes) and is torn down by PID, unmounted from /proc/self/mountinfo (deepest first) and
removed — also when a test fails. The labkit client must work against this real daemon as it
works against labkit-dockerd: that is the point of speaking the real protocol.
"""

from __future__ import annotations

import pytest

from labkit.client import Client
from realdocker import Unavailable, private_real_dockerd
from support import labkit_registry

@pytest.fixture(scope="session")
def lab_registry():
    """A labkit registry in a thread of this process, with the lab images pushed into it."""
    from labkit.images import build_and_push
    with labkit_registry("lkreg-") as server:
        build_and_push(server.address)  # hello-world and busybox, built offline
        yield server.address


@pytest.fixture(scope="session")
def real_dockerd(lab_registry):
    """The host URL of a private real dockerd + containerd (tests/realdocker.py)."""
    try:
        with private_real_dockerd(lab_registry) as host:
            yield host
    except Unavailable as e:
        pytest.skip(str(e))


@pytest.fixture
def client(real_dockerd) -> Client:
    return Client(real_dockerd)
