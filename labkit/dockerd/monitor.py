"""The exit of a container's task (moby's daemon/monitor.go).

One monitor thread per running task, started by `docker start` (start.py) or by a live
restore (restore.py):

    Tasks.Wait -> output EOF (the shim closes the fifos once the container's streams ended
    and we read everything) -> save ExitCode/FinishedAt -> Tasks.Delete -> end the attach
    streams -> wake the waiters -> AutoRemove removes it (remove.py)

The order matters, and is what makes a kill -9 of dockerd (or containerd) harmless at any
moment:
- the output is in the log before the exit is saved: a container saved as exited has all of
  its output in its log. Were dockerd killed before the save, its next start finds the task
  still there, reopens the fifos (the shim kept what we had not read) and comes here again.
- the exit is saved before the task is deleted: were dockerd killed in between, its next
  start would otherwise find no task and could only guess the exit code.
- containerd away (restarting) is waited for, by Wait and by Delete alike: a task left
  undeleted would keep its shim, its mounts and its place in `docker ps`.
Attached clients see the last output before the CLI's /wait returns.
"""

from __future__ import annotations

import logging

from labkit.wire.containerd import api_pb2 as pb
from labkit.dockerd.container import Container, State
from labkit.dockerd.core import DaemonCore, Live
from labkit.dockerd.errors import DaemonError
from labkit.dockerd.jsonlog import rfc3339nano
from labkit.dockerd.remote import RemoteError
from labkit.dockerd.stdio import TaskIO

log = logging.getLogger("labkit.dockerd")

RETRY = 0.5          # seconds between calls while containerd is away
OUTPUT_GRACE = 2.0   # seconds an exited task's output may take to reach its end


def finished_at(exited_at) -> str | None:
    """A task's time of exit (a protobuf Timestamp) as State.FinishedAt; None if unset."""
    if not exited_at.seconds:
        return None
    return rfc3339nano(exited_at.seconds * 10**9 + exited_at.nanos)


class Monitor(DaemonCore):
    """The Daemon's exit monitoring (mixed into labkit.dockerd.daemon.Daemon)."""

    def _monitor(self, c: Container, live: Live, io: TaskIO | None) -> None:
        """Wait for the task to exit, record the exit, clean up the task, wake the waiters."""
        exit_code, finished = 255, None
        while True:
            try:
                resp = self.ctr.call(self.ctr.tasks.Wait, pb.WaitRequest(container_id=c.ID),
                                     timeout=None)
                exit_code, finished = resp.exit_status, finished_at(resp.exited_at)
                break
            except RemoteError as e:
                if e.code == "UNAVAILABLE" and not self._closing.wait(RETRY):
                    continue   # containerd restarting: the task lives on in its shim; retry
                if self._closing.is_set():
                    return  # dockerd is stopping, not the container: the next start takes over
                log.warning("waiting for %s failed: %s", c.ID[:12], e)
                break
        # All of the output into the log before the exit is saved (see the module docstring).
        # The shim closes the fifos once the container's streams ended and we read what they
        # held; a process that keeps a stream open after the init exited (only possible
        # without a pid namespace of its own) is ended by the Delete below.
        if io is not None:
            io.done.wait(OUTPUT_GRACE)
        with self._lock:
            if self._closing.is_set():
                return  # the next start finds the stopped task and finishes the job
            self._exiting.add(c.ID)  # close() lets this finish: the output must reach the log
        try:
            self._record_exit(c, live, io, exit_code, finished)
        finally:
            with self._lock:
                self._exiting.discard(c.ID)
                self._changed.notify_all()
        if self._after_exit(c, live):   # the restart policy wants it again (restart.py)
            return
        if c.HostConfig.get("AutoRemove") and not live.removed and not self._closing.is_set():
            try:
                self._remove(c, volumes=True)
            except DaemonError as e:
                log.warning("auto-remove of %s failed: %s", c.ID[:12], e)

    def _record_exit(self, c: Container, live: Live, io: TaskIO | None, exit_code: int,
                     finished: str | None) -> None:
        with self._lock:
            if c.State.Status in ("running", "paused"):
                c.State = State(Status="exited", ExitCode=exit_code, StartedAt=c.State.StartedAt,
                                FinishedAt=finished or rfc3339nano())
            if not live.removed:
                c.save(self.config.root)
        # Deleting the task makes the shim let go of the fifos, should it still hold them.
        self._delete_task(c)
        self._network_down(c)   # its address, veths and proxies (network.py)
        if io is not None:
            if not io.done.wait(5):
                io.abort()
                io.done.wait(2)
            io.cleanup()
        live.broadcaster.close_all()  # attached clients see EOF before waiters get the exit
        self._event(c, "die", exitCode=str(exit_code))
        with self._lock:
            live.io = None
            live.exits += 1
            self._changed.notify_all()
        log.info("container %s exited with %d", c.ID[:12], exit_code)

    def _delete_task(self, c: Container, retry: bool = True) -> bool:
        """Tasks.Delete of a stopped task, retried while containerd is away (not once dockerd
        is stopping: its next start deletes the tasks of the containers saved as exited).
        False if containerd was away and `retry` is False."""
        while True:
            try:
                self.ctr.call(self.ctr.tasks.Delete, pb.DeleteTaskRequest(container_id=c.ID))
                return True
            except RemoteError as e:
                if e.code == "UNAVAILABLE":
                    if retry and not self._closing.wait(RETRY):
                        continue
                    return False
                if e.code != "NOT_FOUND":
                    log.warning("deleting task %s: %s", c.ID[:12], e)
                return True
