"""Events forwarded by shims over ttrpc reach Events subscribers (except our own topics)."""

from __future__ import annotations

import os
import queue
import socket
import threading

from google.protobuf import empty_pb2

from labkit.containerd.events import Exchange
from labkit.containerd.forward import SERVICE, ForwardServer
from labkit.wire.shim import events_pb2
from labkit.shim.events import Publisher, envelope
from labkit.wire.shim import messages   # what the shim sends its events with
from labkit.wire.ttrpc import Client, Server


def test_forwarded_events_are_published(short_tmp):
    ex = Exchange()
    sub = ex.subscribe()
    path = str(short_tmp / "c.sock.ttrpc")
    server = ForwardServer(path, ex)
    try:
        # what labkit-shim sends: /tasks/exit, which containerd publishes itself (dropped)
        Publisher(path, "moby").publish(messages.TaskExit(container_id="c1", exit_status=3))
        # a topic containerd does not produce itself is passed on, decoded
        req = envelope(messages.TaskExecAdded(container_id="c1", exec_id="e1"), "moby")
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


def test_events_that_find_no_containerd_are_delivered_when_it_is_back(short_tmp):
    """A shim's /tasks/exit sent while containerd is down waits and is delivered, in order,
    once something listens on the address again (a restarted containerd)."""
    path = str(short_tmp / "c.sock.ttrpc")
    publisher = Publisher(path, "moby")
    publisher.publish(messages.TaskExit(container_id="c1", exit_status=3))
    publisher.publish(messages.TaskDelete(container_id="c1", exit_status=3))
    assert not publisher.flush(0.5)   # nobody listens: both wait

    received: queue.Queue = queue.Queue()

    def forward(payload: bytes) -> bytes:
        req = events_pb2.ForwardRequest()
        req.ParseFromString(payload)
        received.put(req.envelope)
        return empty_pb2.Empty().SerializeToString()

    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(8)
    server = Server(listener, {SERVICE: {"Forward": forward}})
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        assert publisher.flush(10)
        envelopes = [received.get(timeout=1) for _ in range(2)]
        assert [(e.namespace, e.topic) for e in envelopes] == [("moby", "/tasks/exit"),
                                                               ("moby", "/tasks/delete")]
        exit_event = events_pb2.TaskExit()
        exit_event.ParseFromString(envelopes[0].event.value)
        assert (exit_event.container_id, exit_event.exit_status) == ("c1", 3)
    finally:
        server.close()
        os.unlink(path)
