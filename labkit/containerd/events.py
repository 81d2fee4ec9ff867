"""The event exchange: containerd tells its clients what happened, as it happens.

dockerd does not poll containerd to learn that a container exited: it subscribes to events
and reacts to /tasks/exit (record the exit code, close the logs, answer `docker wait`).
Every state change publishes one envelope {timestamp, namespace, topic, event}:

    /containers/create  {"id", "image", "runtime"}     /containers/delete  {"id"}
    /containers/update  {"id", "image"}
    /images/create      {"name"}                        /images/update, /images/delete {"name"}
    /tasks/create       {"container_id", "bundle", "pid", …}
    /tasks/start        {"container_id", "pid"}
    /tasks/exit         {"container_id", "id", "pid", "exit_status", "exited_at"}
    /tasks/delete       {"container_id", "id", "pid", "exit_status", "exited_at"}

Each subscriber gets its own queue, so a slow reader never holds up the publisher or the
other subscribers (containerd's exchange works the same way). A subscription lives until
its reader goes away.

Filters, per subscriber, any one of which may match:
    "/tasks/"                          a topic prefix (labkit's simple form)
    "topic~=|^/tasks/|"                containerd's filter syntax, as dockerd sends it:
    "namespace==moby,topic==/tasks/exit"   comma = and; `==` equals, `~=` regular expression
"""

from __future__ import annotations

import queue
import re
import threading
import time
from dataclasses import dataclass
from typing import Iterator

from labkit.containerd.errors import InvalidArgument


@dataclass
class Envelope:
    timestamp: float
    namespace: str
    topic: str
    event: dict


class _Filter:
    """One filter string, compiled (see the module docstring for the syntax)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.clauses: list[tuple[str, str, str]] = []  # (field, op, value)
        if "==" not in text and "~=" not in text:
            self.clauses.append(("topic", "prefix", text))
            return
        for clause in text.split(","):
            m = re.fullmatch(r"\s*(namespace|topic)\s*(==|~=)\s*(.*?)\s*", clause)
            if not m:
                raise InvalidArgument(f"invalid event filter {text!r}: expected "
                                      "namespace|topic followed by == or ~=")
            field, op, value = m.groups()
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "|\"'/":
                value = value[1:-1]  # containerd quotes regular expressions as |…|
            if op == "~=":
                try:
                    re.compile(value)
                except re.error as e:
                    raise InvalidArgument(f"invalid event filter {text!r}: {e}") from None
            self.clauses.append((field, op, value))

    def matches(self, env: Envelope) -> bool:
        for field, op, value in self.clauses:
            have = env.topic if field == "topic" else env.namespace
            if op == "prefix" and not have.startswith(value):
                return False
            if op == "==" and have != value:
                return False
            if op == "~=" and not re.search(value, have):
                return False
        return True


class Subscription:
    """An iterator of envelopes; close() (or the exchange's close) ends it."""

    _END = object()

    def __init__(self, exchange: "Exchange", namespace: str | None, filters: list[_Filter]):
        self._exchange, self.namespace, self.filters = exchange, namespace, filters
        self._queue: queue.Queue = queue.Queue()
        self.closed = False

    def wants(self, env: Envelope) -> bool:
        if self.namespace is not None and env.namespace != self.namespace:
            return False
        return not self.filters or any(f.matches(env) for f in self.filters)

    def deliver(self, env: Envelope) -> None:
        self._queue.put(env)

    def get(self, timeout: float | None = None) -> Envelope | None:
        """The next envelope, or None after `timeout` seconds or once closed."""
        try:
            item = self._queue.get(timeout=timeout)
        except queue.Empty:
            return None
        if item is self._END:
            self._queue.put(item)  # keep later get() calls ending too
            return None
        return item

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._exchange._remove(self)
            self._queue.put(self._END)

    def __iter__(self) -> Iterator[Envelope]:
        """Every envelope until close(); those queued before close() are still delivered."""
        while (env := self.get()) is not None:
            yield env


class Exchange:
    """Publish/subscribe for events inside one labkit-containerd."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subs: list[Subscription] = []

    def publish(self, namespace: str, topic: str, event: dict) -> Envelope:
        env = Envelope(time.time(), namespace, topic, event)
        with self._lock:
            subs = list(self._subs)
        for s in subs:
            if s.wants(env):
                s.deliver(env)
        return env

    def subscribe(self, filters: list[str] | None = None, namespace: str | None = None
                  ) -> Subscription:
        """Start receiving events (of `namespace` only, unless None) matching any filter."""
        sub = Subscription(self, namespace, [_Filter(f) for f in filters or [] if f])
        with self._lock:
            self._subs.append(sub)
        return sub

    def _remove(self, sub: Subscription) -> None:
        with self._lock:
            if sub in self._subs:
                self._subs.remove(sub)

    def close(self) -> None:
        """End every subscription (the daemon is shutting down)."""
        with self._lock:
            subs = list(self._subs)
        for s in subs:
            s.close()
