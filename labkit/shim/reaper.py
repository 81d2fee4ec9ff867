"""The shim as a child subreaper: collecting the container's exit status.

Why the shim must be a subreaper (man 2 prctl, PR_SET_CHILD_SUBREAPER): `runc create` forks
the container's init and exits. An orphan is normally adopted by pid 1, which would then be the
only process able to wait(2) for the container and learn its exit status. A process marked as a
*child subreaper* adopts the orphans among its descendants instead, so the init becomes the
shim's child, and the shim alone can report "exited with status 3 at 10:42:07".

The difficulty is that the shim has two kinds of children:

- the ones it waits for itself: the container's init (adopted), and any orphan a container
  leaves behind (which must be reaped too, or it stays a zombie forever);
- the runtime commands it runs with `subprocess` (runc create, runc kill …), which
  `subprocess` waits for by pid.

A reaper calling `waitpid(-1)` ("any child") would steal the runtime's exit status from
`subprocess` (which then sees ECHILD and believes the command succeeded). containerd solves it
by funnelling every command through its reaper ("Monitor"); labkit does the simpler thing: the
"any child" sweep is suspended while a runtime command is running (`with reaper.commands():`),
and the processes the shim watches by pid (the inits) are always waited for by their own pid,
which never touches anyone else's child.

Who does what here: `become_subreaper()` is the prctl(2) call (TaskService.Create makes it
before the runtime forks the container's init: the moment it starts to matter), `reap()` the
waitpid(2) loop that collects every child that has exited, and `Reaper` the bookkeeping
around them (which pids are watched, when "any child" may be reaped).

Wake-ups: the kernel sends SIGCHLD when a child dies. The daemon's main thread sleeps in
select() on the signal wake-up fd (signal.set_wakeup_fd) and calls `sweep()`; a periodic
sweep covers what a signal might not (a sweep skipped while a runtime command was running).
"""

from __future__ import annotations

import contextlib
import os
import threading
from datetime import datetime, timezone
from collections.abc import Callable, Iterator

import prctl

from labkit.shim.log import getLogger

log = getLogger(__name__)

# Called with (pid, exit status, time of exit) once per watched process.
ExitCallback = Callable[[int, int, datetime], None]


def exit_status(wait_status: int) -> int:
    """A wait(2) status -> the number a shell would show: the code, or 128 + the signal
    (chapter 01 wrote the same conversion, labkit.namespaces.exit_status)."""
    code = os.waitstatus_to_exitcode(wait_status)
    return 128 - code if code < 0 else code


def become_subreaper() -> None:
    """Make the calling process a child subreaper: the orphans among its descendants (the
    container's init, once `runtime create` has exited) become its children, not pid 1's."""
    # BEGIN SOLUTION chapter="05" hint="man 2 prctl: PR_SET_CHILD_SUBREAPER; python-prctl has prctl.set_child_subreaper"
    # TODO: mark this process as a child subreaper (the flag stays set until the process exits)
    prctl.set_child_subreaper(1)
    # END SOLUTION


def reap() -> list[tuple[int, int]]:
    """Collect every child of this process that has exited, without blocking:
    [(pid, exit status as exit_status() gives it)], [] when none has (or there are none)."""
    # BEGIN SOLUTION chapter="05" hint="man 2 waitpid: pid -1 = any child; WNOHANG returns (0, 0) while none has exited"
    # TODO: call waitpid until no exited child is left; convert each status with exit_status()
    # HINT: no children at all raises ChildProcessError (ECHILD): that is "none left" too
    exits = []
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return exits
        if pid == 0:
            return exits
        exits.append((pid, exit_status(status)))
    # END SOLUTION


class Reaper:
    def __init__(self, on_exit: ExitCallback):
        self._on_exit = on_exit
        self._lock = threading.Lock()
        self._watched: set[int] = set()
        self._not_ours: set[int] = set()   # watched, but not our children (see watch())
        self._commands = 0

    def watch(self, pid: int) -> None:
        """Report `pid`'s exit (it may have exited already: it is then reported at once)."""
        with self._lock:
            self._watched.add(pid)
        self.sweep()

    def unwatch(self, pid: int) -> None:
        with self._lock:
            self._watched.discard(pid)
            self._not_ours.discard(pid)

    @contextlib.contextmanager
    def commands(self) -> Iterator[None]:
        """While inside this block, leave unknown children alone (they belong to subprocess)."""
        with self._lock:
            self._commands += 1
        try:
            yield
        finally:
            with self._lock:
                self._commands -= 1
            self.sweep()

    def sweep(self) -> None:
        exits: list[tuple[int, int]] = []   # (pid, exit status)
        with self._lock:
            # 1. The watched processes, each by its own pid.
            for pid in list(self._watched):
                if pid in self._not_ours:
                    # Not our child (a runtime that did not leave its init to us): we cannot
                    # wait for it, only notice that it is gone. Its status is unknowable: 255.
                    from labkit import procfs   # (here: only for a runtime that kept its init)

                    if not procfs.alive(pid):
                        exits.append((pid, 255))
                    continue
                try:
                    done, status = os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    log.warning("pid %d is not a child of the shim: exit status will be unknown", pid)
                    self._not_ours.add(pid)
                    continue
                if done:
                    exits.append((pid, exit_status(status)))
            # 2. Any other child, unless a runtime command is running (see the module docstring):
            #    the watched ones among them are recorded, the orphans only reaped.
            failure = None
            if self._commands == 0:
                try:
                    reaped = reap()
                except Exception as e:   # reported below, once the exits already found are
                    failure, reaped = e, []
                for pid, status in reaped:
                    if pid in self._watched:
                        exits.append((pid, status))
                    else:
                        log.debug("reaped orphan %d (status %d)", pid, status)
            for pid, _ in exits:
                self._watched.discard(pid)
                self._not_ours.discard(pid)
        now = datetime.now(timezone.utc)
        for pid, status in exits:
            self._on_exit(pid, status, now)
        if failure is not None:
            raise failure

