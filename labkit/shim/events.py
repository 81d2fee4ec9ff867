"""Telling containerd what happened: /tasks/create, /tasks/start, /tasks/exit … events.

Requests flow from containerd to the shim, but some news starts in the shim: above all, that
the container exited. containerd (and dockerd behind it, which subscribes to `/tasks/` events)
learns it from an event the shim sends back over ttrpc, to the address containerd gave it in
the TTRPC_ADDRESS environment variable::

    shim ── ttrpc ──▶ containerd  containerd.services.events.ttrpc.v1.Events/Forward
                      ForwardRequest{envelope: {timestamp, namespace, topic: "/tasks/exit",
                                                event: Any("containerd.events.TaskExit", …)}}

Sending happens in a background thread, in order, so that a slow or absent containerd never
delays an RPC answer or the reaper. An event that cannot be delivered waits at the head of the
queue and is sent again, every second at most, for as long as the shim lives: a containerd that
was killed and restarts at the same address gets the /tasks/exit it missed (and everything
after it, still in order). containerd also re-synchronizes with State and Wait when it comes
back (INTERFACES.md §4.3), but a subscriber that only listens to events — moby's dockerd on a
real containerd — learns of an exit in no other way. When the shim exits (Shutdown) it gives
the queue a moment to empty (`flush`). Without TTRPC_ADDRESS (a shim started by hand, or by a
containerd that does not listen for events) nothing is sent at all.
"""

from __future__ import annotations

import queue
import threading
import time
from datetime import datetime, timezone

from labkit.shim.log import getLogger
from labkit.wire.protowire import Message
from labkit.wire.shim import messages
from labkit.wire.shim.protocol import EVENTS_SERVICE, TOPICS, TTRPC_NAMESPACE_KEY
from labkit.wire.ttrpc import Client

log = getLogger(__name__)


def envelope(event: Message, namespace: str, when: datetime | None = None) -> messages.ForwardRequest:
    """Wrap `event` the way containerd expects it (the Any's type URL is the message's full name)."""
    req = messages.ForwardRequest()
    req.envelope.timestamp.FromDatetime(when or datetime.now(timezone.utc))
    req.envelope.namespace = namespace
    req.envelope.topic = TOPICS[event.full_name]
    req.envelope.event.CopyFrom(messages.Any(type_url=event.full_name,
                                             value=event.SerializeToString()))
    return req


class Publisher:
    MAX_BACKOFF = 1.0   # seconds between attempts while containerd is away

    def __init__(self, ttrpc_address: str, namespace: str):
        self.address = ttrpc_address.removeprefix("unix://")
        self.namespace = namespace
        self._queue: queue.Queue[messages.ForwardRequest] = queue.Queue()
        self._client: Client | None = None
        if self.address:
            threading.Thread(target=self._run, daemon=True, name="events").start()

    def publish(self, event: Message) -> None:
        if self.address:
            self._queue.put(envelope(event, self.namespace))

    def flush(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for every published event to be delivered."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)
        return True

    def _run(self) -> None:
        while True:
            request = self._queue.get()
            attempt = 0
            while not self._send(request, log_failure=attempt == 0):
                attempt += 1
                time.sleep(min(0.05 * 2 ** attempt, self.MAX_BACKOFF))
            self._queue.task_done()

    def _send(self, request: messages.ForwardRequest, log_failure: bool) -> bool:
        try:
            if self._client is None:
                self._client = Client(self.address, connect_timeout=2)
            self._client.call(EVENTS_SERVICE, "Forward", request.SerializeToString(), timeout=5,
                              metadata=[(TTRPC_NAMESPACE_KEY, self.namespace)])
            return True
        except Exception as e:   # OSError, ConnectionError, RPCError: all mean "not now"
            if self._client is not None:
                self._client.close()
                self._client = None
            if log_failure:
                log.info("event %s not delivered (%s): retrying until containerd is back",
                         request.envelope.topic, e)
            return False
