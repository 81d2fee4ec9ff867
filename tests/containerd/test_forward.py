"""Events forwarded by shims over ttrpc reach Events subscribers (except our own topics)."""

from __future__ import annotations

from labkit.containerd.events import Exchange
from labkit.containerd.forward import SERVICE, ForwardServer
from labkit.wire.shim import events_pb2
from labkit.shim.events import Publisher, envelope
from labkit.wire.ttrpc import Client


def test_forwarded_events_are_published(short_tmp):
    ex = Exchange()
    sub = ex.subscribe()
    path = str(short_tmp / "c.sock.ttrpc")
    server = ForwardServer(path, ex)
    try:
        # what labkit-shim sends: /tasks/exit, which containerd publishes itself (dropped)
        Publisher(path, "moby").publish(events_pb2.TaskExit(container_id="c1", exit_status=3))
        # a topic containerd does not produce itself is passed on, decoded
        req = envelope(events_pb2.TaskExecAdded(container_id="c1", exec_id="e1"), "moby")
        req.envelope.topic = "/tasks/paused"
        conn = Client(path)
        try:
            conn.call(SERVICE, "Forward", req.SerializeToString(), timeout=5)
        finally:
            conn.close()
        env = sub.get(timeout=5)
        assert (env.namespace, env.topic) == ("moby", "/tasks/paused")
        assert env.event == {"container_id": "c1", "exec_id": "e1"}
        assert sub.get(timeout=0.5) is None
    finally:
        server.close()
    assert not (short_tmp / "c.sock.ttrpc").exists()
