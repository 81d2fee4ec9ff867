"""`docker events`: what happened in the daemon, as a stream of JSON objects.

Every state change the daemon makes (create, start, die, destroy, pull, ...) is published
here as one event; `GET /events` replays the recent ones (`since`) and then follows live,
until `until` or until the client hangs up. An event, as the docker CLI reads it:

    {"Type": "container", "Action": "die", "Actor": {"ID": "<64 hex>",
     "Attributes": {"image": "busybox", "name": "brave_hopper", "exitCode": "0"}},
     "status": "die", "id": "<64 hex>", "from": "busybox", "scope": "local",
     "time": 1795417709, "timeNano": 1795417709123456789}

(status/id/from are the pre-1.22 spelling of Action/Actor.ID/Attributes.image, still sent.)
This is dockerd's own log of events; containerd has its own (Events.Subscribe) one layer down.
"""

from __future__ import annotations

import collections
import queue
import threading
import time
from typing import Iterator

from labkit.dockerd.errors import InvalidParameter

KEEP = 1000  # recent events kept for `docker events --since`


class EventBus:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._recent: collections.deque[dict] = collections.deque(maxlen=KEEP)
        self._subscribers: list[queue.Queue] = []

    def publish(self, type_: str, action: str, actor_id: str,
                attributes: dict[str, str] | None = None) -> None:
        now = time.time_ns()
        attributes = dict(attributes or {})
        event = {"Type": type_, "Action": action,
                 "Actor": {"ID": actor_id, "Attributes": attributes},
                 "scope": "local", "time": now // 10**9, "timeNano": now}
        if type_ == "container":
            event.update(status=action, id=actor_id, **({"from": attributes["image"]}
                                                          if "image" in attributes else {}))
        with self._lock:
            self._recent.append(event)
            for q in self._subscribers:
                q.put(event)

    def stream(self, since: float | None, until: float,
               filters: dict[str, list[str]]) -> Iterator[dict]:
        """Recent events from `since` (unix seconds; None = none), then live ones until
        `until` (0 = forever). Filters: type, event (action), container (id or name), image."""
        q: queue.Queue = queue.Queue()
        with self._lock:
            backlog = [e for e in self._recent
                       if since is not None and e["timeNano"] >= since * 1e9]
            self._subscribers.append(q)
        try:
            for e in backlog:
                if until and e["timeNano"] > until * 1e9:
                    return
                if _matches(e, filters):
                    yield e
            while True:
                timeout = None if not until else until - time.time()
                if timeout is not None and timeout <= 0:
                    return
                try:
                    e = q.get(timeout=timeout)
                except queue.Empty:
                    return
                if _matches(e, filters):
                    yield e
        finally:
            with self._lock:
                self._subscribers.remove(q)


EVENT_FILTERS = {"type", "event", "container", "image", "label", "volume", "network",
                 "daemon", "scope"}


def check_filters(filters: dict[str, list[str]]) -> None:
    """moby refuses a filter it does not know (filters.Validate): a 400 naming it."""
    unknown = set(filters) - EVENT_FILTERS
    if unknown:
        raise InvalidParameter(f"invalid filter '{sorted(unknown)[0]}'")


def _named(event: dict, kind: str, values: list[str]) -> bool:
    """An event about the object of `kind` named (or id-prefixed) by one of `values`."""
    actor = event["Actor"]
    return event["Type"] == kind and any(
        actor["ID"].startswith(v) or actor["Attributes"].get("name") == v for v in values)


def _matches(event: dict, filters: dict[str, list[str]]) -> bool:
    """Every filter key must match, any of its values (moby's daemon/events/filter.go).
    label=k or label=k=v looks at the actor's attributes (a container's labels are there);
    event=exec_start matches "exec_start: sh -c ..." too."""
    attributes = event["Actor"]["Attributes"]
    for key, values in filters.items():
        if not values:
            continue
        if key == "type":
            ok = event["Type"] in values
        elif key == "event":
            ok = any(event["Action"] == v or event["Action"].startswith(v + ":")
                     for v in values)
        elif key in ("container", "volume", "network"):
            ok = _named(event, key, values)
        elif key == "image":
            ok = attributes.get("image") in values or event["Actor"]["ID"] in values or (
                event["Type"] == "image" and attributes.get("name") in values)
        elif key == "label":
            ok = all(attributes.get(k) == v if eq else k in attributes
                     for k, eq, v in (f.partition("=") for f in values))
        elif key == "daemon":
            ok = event["Type"] == "daemon"
        else:  # scope: everything here is local
            ok = "local" in values
        if not ok:
            return False
    return True
