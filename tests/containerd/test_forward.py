"""Events forwarded by shims over ttrpc reach Events subscribers (except our own topics)."""

from __future__ import annotations

from labkit.containerd.events import Exchange
from labkit.containerd.forward import ForwardServer
from labkit.shim import events_pb2
from labkit.shim.events import Publisher


def test_forwarded_events_are_published(short_tmp):
    ex = Exchange()
    sub = ex.subscribe()
    server = ForwardServer(str(short_tmp / "c.sock.ttrpc"), ex)
    try:
        shim = Publisher(str(short_tmp / "c.sock.ttrpc"), "moby")
        shim.publish(events_pb2.TaskExit(container_id="c1", id="c1", pid=42, exit_status=3))
        shim.publish(events_pb2.TaskExecAdded(container_id="c1", exec_id="e1"))
        env = sub.get(timeout=5)
        assert (env.namespace, env.topic) == ("moby", "/tasks/exec-added")
        assert env.event == {"container_id": "c1", "exec_id": "e1"}
        assert sub.get(timeout=0.3) is None  # /tasks/exit: containerd publishes its own
    finally:
        server.close()
    assert not (short_tmp / "c.sock.ttrpc").exists()
