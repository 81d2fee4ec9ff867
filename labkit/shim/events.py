"""Telling containerd what happened: /tasks/create, /tasks/start, /tasks/exit … events.

Requests flow from containerd to the shim, but some news starts in the shim: above all, that
the container exited. containerd (and dockerd behind it, which subscribes to `/tasks/` events)
learns it from an event the shim sends back over ttrpc, to the address containerd gave it in
the TTRPC_ADDRESS environment variable::

    shim ── ttrpc ──▶ containerd  containerd.services.events.ttrpc.v1.Events/Forward
                      ForwardRequest{envelope: {timestamp, namespace, topic: "/tasks/exit",
                                                event: Any("containerd.events.TaskExit", …)}}

Sending happens in a background thread, in order, so that a slow or absent containerd never
delays an RPC answer or the reaper. An event that cannot be delivered is retried a few times
and then dropped: a containerd that comes back re-synchronizes with State and Wait instead
(INTERFACES.md §4.3). Without TTRPC_ADDRESS (a shim started by hand, or by a containerd that
does not listen for events) nothing is sent at all.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from datetime import datetime, timezone

from google.protobuf import any_pb2
from google.protobuf.message import Message

from labkit.wire.shim import events_pb2
from labkit.wire.shim.protocol import EVENTS_SERVICE, TOPICS, TTRPC_NAMESPACE_KEY
from labkit.wire.ttrpc import Client

log = logging.getLogger(__name__)


def envelope(event: Message, namespace: str, when: datetime | None = None) -> events_pb2.ForwardRequest:
    """Wrap `event` the way containerd expects it (the Any's type URL is the message's full name)."""
    req = events_pb2.ForwardRequest()
    req.envelope.timestamp.FromDatetime(when or datetime.now(timezone.utc))
    req.envelope.namespace = namespace
    req.envelope.topic = TOPICS[type(event)]
    req.envelope.event.CopyFrom(any_pb2.Any(type_url=event.DESCRIPTOR.full_name,
                                            value=event.SerializeToString()))
    return req


class Publisher:
    RETRIES = 5

    def __init__(self, ttrpc_address: str, namespace: str):
        self.address = ttrpc_address.removeprefix("unix://")
        self.namespace = namespace
        self._queue: queue.Queue[events_pb2.ForwardRequest] = queue.Queue()
        self._client: Client | None = None
        if self.address:
            threading.Thread(target=self._run, daemon=True, name="events").start()

    def publish(self, event: Message) -> None:
        if self.address:
            self._queue.put(envelope(event, self.namespace))

    def _run(self) -> None:
        while True:
            request = self._queue.get()
            for attempt in range(self.RETRIES):
                try:
                    if self._client is None:
                        self._client = Client(self.address, connect_timeout=2)
                    self._client.call(EVENTS_SERVICE, "Forward", request.SerializeToString(), timeout=5,
                                      metadata=[(TTRPC_NAMESPACE_KEY, self.namespace)])
                    break
                except Exception as e:   # OSError, ConnectionError, RPCError: all mean "not now"
                    if self._client is not None:
                        self._client.close()
                        self._client = None
                    if attempt == self.RETRIES - 1:
                        log.info("dropping event %s: %s", request.envelope.topic, e)
                    else:
                        time.sleep(0.2 * 2 ** attempt)
