"""`docker wait`, and the wait `docker run` registers before it starts the container
(moby's daemon/wait.go).

The router calls container_wait when the request arrives and only then sends the
headers; the CLI sends /start after it has them. So the interest is registered before
the container can exit, and a fast exit is never missed. The waiter it returns blocks
until its condition holds (see backend.py's glossary).
"""

from __future__ import annotations

from labkit.dockerd.backend import WaitResult, Waiter
from labkit.dockerd.core import DaemonCore


class Wait(DaemonCore):
    """The Daemon's `docker wait` (mixed into labkit.dockerd.daemon.Daemon)."""

    def container_wait(self, ref: str, condition: str) -> Waiter:
        with self._lock:
            c = self._get(ref)
            live = self._live[c.ID]
            seen = live.exits

        if condition == "removed":
            done = lambda: live.removed  # noqa: E731
        elif condition == "next-exit":
            done = lambda: live.exits > seen or live.removed  # noqa: E731
        else:
            # not running, and its output drained (live.io is dropped last)
            done = lambda: (not c.State.Running and live.io is None  # noqa: E731
                            and not live.starting) or live.removed

        def waiter() -> WaitResult:
            # The answer carries no Error: a failed start was already reported by /start
            # (the CLI would print it twice, as "Error waiting for container: ...").
            with self._changed:
                self._changed.wait_for(done)
                return WaitResult(c.State.ExitCode)
        return waiter
