"""Restart policies: `docker run --restart no|always|on-failure[:N]|unless-stopped` (moby's
restartmanager and daemon/monitor.go).

When a container's task exits, the monitor (monitor.py) records the exit and asks
`_after_exit` whether the container's HostConfig.RestartPolicy wants it running again:

    no              never
    always          always — unless `docker stop`/`kill` ended it (until the daemon restarts)
    unless-stopped  the same, and a daemon restart does not bring a stopped one back either
    on-failure[:N]  when the exit code is not 0, at most N times (N = 0: no limit)

A restart is not immediate: the first waits 100 ms, each next one twice as long (at most a
minute), so a program that fails at once does not spin; a run of 10 s or more starts the
count again. Meanwhile the container is "restarting" (State.Restarting) and RestartCount
counts the restarts since the last `docker start`.

`docker stop` and `docker kill` (with the stop signal or SIGKILL) mark the exit they cause as
wanted (Live.exit_on_next) and the container as manually stopped (saved, so a restarted
daemon knows it): no restart follows. A restart waiting for its time is cancelled by stop,
kill and rm -f.

Kept across daemon restarts: the policy, RestartCount and HasBeenManuallyStopped are in
config.v2.json. A container that exited while dockerd was away is seen by its monitor after
the restore, like any exit. When dockerd starts, the containers it finds stopped are started
again if their policy says so (`_restart_at_boot`): always; unless-stopped if not stopped by
hand; on-failure after a failure — moby's Container.ShouldRestart.
"""

from __future__ import annotations

import logging
import signal as signals
import threading

from labkit.dockerd.container import Container, parse_time
from labkit.dockerd.core import DaemonCore, Live
from labkit.dockerd.errors import DaemonError
from labkit.dockerd.jsonlog import rfc3339nano
from labkit.dockerd.validate import parse_signal

log = logging.getLogger("labkit.dockerd")

FIRST_BACKOFF = 0.1      # seconds before the first restart (moby: 100 ms)
MAX_BACKOFF = 60.0       # ... doubling up to a minute
RESET_AFTER = 10.0       # a run this long starts the backoff again
POLICIES = ("no", "always", "on-failure", "unless-stopped")


def policy_of(c: Container) -> tuple[str, int]:
    policy = c.HostConfig.get("RestartPolicy") or {}
    return policy.get("Name") or "no", int(policy.get("MaximumRetryCount") or 0)


def wants_restart(c: Container, exit_code: int, manually_stopped: bool) -> bool:
    """The policy's answer for an exit (moby's RestartManager.ShouldRestart)."""
    name, max_retries = policy_of(c)
    if name == "always":
        return True
    if name == "unless-stopped":
        return not manually_stopped
    if name == "on-failure":
        return exit_code != 0 and (max_retries == 0 or c.RestartCount < max_retries)
    return False


class Restarts(DaemonCore):
    """The Daemon's restart policies (mixed into labkit.dockerd.daemon.Daemon)."""

    def _after_exit(self, c: Container, live: Live) -> bool:
        """After an exit is recorded: schedule a restart if the policy wants one (True)."""
        with self._lock:
            ran = parse_time(c.State.FinishedAt) - parse_time(c.State.StartedAt)
            if (live.removed or live.exit_on_next or self._closing.is_set()
                    or not wants_restart(c, c.State.ExitCode, c.HasBeenManuallyStopped)):
                live.exit_on_next = False
                return False
            live.backoff = (FIRST_BACKOFF if ran >= RESET_AFTER or not live.backoff
                            else min(live.backoff * 2, MAX_BACKOFF))
            c.RestartCount += 1
            c.State.Status, c.State.Restarting = "restarting", True
            c.save(self.config.root)
            cancel = live.restart_cancel = threading.Event()
            delay = live.backoff
            self._changed.notify_all()
        log.info("container %s exited with %d: restart %d in %.1fs (policy %s)", c.ID[:12],
                 c.State.ExitCode, c.RestartCount, delay, policy_of(c)[0])
        threading.Thread(target=self._restart_later, args=(c, live, cancel, delay),
                         daemon=True, name=f"restart-{c.ID[:12]}").start()
        return True

    def _restart_later(self, c: Container, live: Live, cancel: threading.Event,
                       delay: float) -> None:
        if cancel.wait(delay) or self._closing.is_set():
            return
        with self._lock:
            if live.removed or live.restart_cancel is not cancel:
                return
            live.restart_cancel = None
            if c.State.Running or live.starting:
                return
            live.starting = True
        try:
            self._start(c, live)
        except DaemonError as e:   # recorded by _start_failed; moby leaves it stopped too
            log.warning("restart of %s failed: %s", c.ID[:12], e.message)
            with self._lock:
                c.State.Restarting = False
                c.State.Status = "exited"
                c.save(self.config.root)
        finally:
            with self._lock:
                live.starting = False
                self._changed.notify_all()

    def _stopped_by_hand(self, c: Container, sig: int | None) -> bool:
        """`docker stop`/`kill`: no restart for the exit this causes (if `sig` is the stop
        signal or SIGKILL; None: stop), and none by unless-stopped after a daemon restart.
        True if the container was only waiting to restart: then it is stopped now."""
        stop_signal = parse_signal(c.Config.get("StopSignal") or "SIGTERM")
        with self._lock:
            live = self._live.get(c.ID)
            c.HasBeenManuallyStopped = True
            if live is not None and sig in (None, signals.SIGKILL, stop_signal):
                live.exit_on_next = True
            waiting = c.State.Restarting and not c.State.Running
            if waiting:
                self._cancel_restart(c, live)
            c.save(self.config.root)
            self._changed.notify_all()
        return waiting

    def _cancel_restart(self, c: Container, live: Live | None) -> None:
        """A restart waiting for its time is called off (under the lock)."""
        if live is not None and live.restart_cancel is not None:
            live.restart_cancel.set()
            live.restart_cancel = None
        if c.State.Restarting and not c.State.Running:
            c.State.Restarting = False
            c.State.Status = "exited"
            c.State.FinishedAt = c.State.FinishedAt or rfc3339nano()

    def _started_by_hand(self, c: Container, live: Live) -> None:
        """`docker start`/`restart`: a fresh restart count, no longer stopped by hand."""
        c.HasBeenManuallyStopped = False
        c.RestartCount = 0
        live.exit_on_next = False
        live.backoff = 0.0
        self._cancel_restart(c, live)

    def _restart_at_boot(self) -> None:
        """After a restore: start what the policies want running (in the background, once
        each container's task is settled)."""
        with self._lock:
            candidates = []
            for c in self._containers.values():
                if c.State.Running:
                    continue
                if (c.State.StartedAt[:4] != "0001"
                        and wants_restart(c, c.State.ExitCode, c.HasBeenManuallyStopped)):
                    candidates.append((c, self._live[c.ID]))
                elif c.State.Restarting:   # saved while waiting to restart; not any more
                    self._cancel_restart(c, None)
                    c.save(self.config.root)
        for c, live in candidates:
            threading.Thread(target=self._boot_start, args=(c, live), daemon=True,
                             name=f"boot-{c.ID[:12]}").start()

    def _boot_start(self, c: Container, live: Live) -> None:
        with self._lock:
            self._changed.wait_for(lambda: not live.settling, timeout=60)
            if c.State.Running or live.removed:
                return
            cancel = live.restart_cancel = threading.Event()
        log.info("container %s: restart policy %s, starting it again", c.ID[:12],
                 policy_of(c)[0])
        self._restart_later(c, live, cancel, 0)
