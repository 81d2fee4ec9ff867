"""The shims' way back in: Events.Forward over ttrpc on <socket>.ttrpc.

Requests go from containerd down to a shim; but some news starts in the shim (the container
exited, an exec started), and the shim sends it *up*, over ttrpc, to the address containerd
gave it in TTRPC_ADDRESS (our gRPC socket's path plus ".ttrpc", as in containerd):

    shim ── ttrpc ──▶ labkit-containerd   containerd.services.events.ttrpc.v1.Events/Forward
                      ForwardRequest{envelope{timestamp, namespace, topic, event: Any}}

labkit-containerd already learns each process's exit from its own watcher thread (tasks.py)
and publishes the task lifecycle itself (/tasks/create, /start, /exit, /delete, /exec-added,
/exec-started), so forwarded copies of those are acknowledged and dropped; any other topic
(/tasks/oom, /tasks/paused …) is passed on to Events.Subscribe. Serving this socket also matters for a real containerd-shim-runc-v2:
without anyone to deliver to, it keeps retrying its events for a long while before it exits.
"""

from __future__ import annotations

import logging
import os
import socket
import threading

from google.protobuf import empty_pb2
from google.protobuf.json_format import MessageToDict

from labkit.containerd.events import Exchange
from labkit.wire.shim import events_pb2
from labkit.wire.shim.protocol import EVENTS_SERVICE as SERVICE
from labkit.wire.ttrpc import Server

log = logging.getLogger("labkit.containerd.forward")
# Published by labkit-containerd itself; a shim's copy would be a duplicate.
OWN_TOPICS = frozenset({"/tasks/create", "/tasks/start", "/tasks/exit", "/tasks/delete",
                        "/tasks/exec-added", "/tasks/exec-started"})


class ForwardServer:
    """Listens on `path` and publishes what shims forward into `exchange`."""

    def __init__(self, path: str, exchange: Exchange) -> None:
        self.path, self.exchange, self._pb = path, exchange, events_pb2
        if os.path.exists(path):
            os.unlink(path)  # left by a daemon that did not shut down cleanly
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(path)
        os.chmod(path, 0o600)
        listener.listen(64)
        self._server = Server(listener, {SERVICE: {"Forward": self.forward}})
        self._thread = threading.Thread(target=self._server.serve_forever, name="ttrpc-events",
                                        daemon=True)
        self._thread.start()

    def forward(self, payload: bytes) -> bytes:
        req = self._pb.ForwardRequest()
        req.ParseFromString(payload)
        env = req.envelope
        if env.topic in OWN_TOPICS:
            log.debug("shim event %s %s: already published by containerd", env.namespace,
                      env.topic)
        else:
            self.exchange.publish(env.namespace, env.topic, self._decode(env.event))
        return empty_pb2.Empty().SerializeToString()

    def _decode(self, event) -> dict:
        """The Any as a dict, when it is one of containerd's task events we know."""
        name = event.type_url.rsplit("/", 1)[-1]
        cls = next((getattr(self._pb, n) for n in dir(self._pb)
                    if n.startswith("Task") and
                    getattr(getattr(self._pb, n), "DESCRIPTOR", None) is not None and
                    getattr(self._pb, n).DESCRIPTOR.full_name == name), None)
        if cls is None:
            return {"type_url": event.type_url}
        msg = cls()
        msg.ParseFromString(event.value)
        return MessageToDict(msg, preserving_proto_field_name=True)

    def close(self) -> None:
        self._server.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
