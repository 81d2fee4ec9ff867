"""The event exchange: filters (labkit prefixes and containerd's syntax), namespaces, closing."""

from __future__ import annotations

import threading

import pytest

from labkit.containerd.errors import InvalidArgument
from labkit.containerd.events import Exchange


def topics(sub) -> list[str]:
    out = []
    while (env := sub.get(timeout=0.01)) is not None:
        out.append(env.topic)
    return out


def test_prefix_and_containerd_filters():
    ex = Exchange()
    everything = ex.subscribe()
    tasks = ex.subscribe(["/tasks/"])
    dockerd = ex.subscribe(["namespace==moby,topic~=|^/tasks/|"])
    exits = ex.subscribe(["topic==/tasks/exit", "/images/"])
    ex.publish("moby", "/tasks/create", {"container_id": "a"})
    ex.publish("default", "/tasks/exit", {"container_id": "b"})
    ex.publish("moby", "/images/create", {"name": "x"})
    assert topics(everything) == ["/tasks/create", "/tasks/exit", "/images/create"]
    assert topics(tasks) == ["/tasks/create", "/tasks/exit"]
    assert topics(dockerd) == ["/tasks/create"]
    assert topics(exits) == ["/tasks/exit", "/images/create"]


def test_namespace_scoped_subscription_and_payload():
    ex = Exchange()
    sub = ex.subscribe(namespace="moby")
    ex.publish("default", "/tasks/exit", {})
    ex.publish("moby", "/tasks/exit", {"exit_status": 3})
    env = sub.get(timeout=1)
    assert (env.namespace, env.topic, env.event) == ("moby", "/tasks/exit", {"exit_status": 3})
    assert sub.get(timeout=0.01) is None


def test_close_ends_iteration():
    ex = Exchange()
    sub = ex.subscribe()
    got = []
    t = threading.Thread(target=lambda: got.extend(e.topic for e in sub))
    t.start()
    ex.publish("ns", "/containers/create", {"id": "c"})
    ex.close()
    t.join(5)
    assert not t.is_alive() and got == ["/containers/create"]


@pytest.mark.parametrize("bad", ["color==red", "topic~=|(|"])
def test_bad_filters_are_clear_errors(bad):
    with pytest.raises(InvalidArgument, match="invalid event filter"):
        Exchange().subscribe([bad])
