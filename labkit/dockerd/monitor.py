"""The exit of a container's task (moby's daemon/monitor.go).

One monitor thread per running task, started by `docker start` (start.py) or by a live
restore (restore.py):

    Tasks.Wait -> save ExitCode/FinishedAt -> Tasks.Delete (the shim drains the output
    and closes the fifos) -> output EOF -> end the attach streams -> wake the waiters
    -> AutoRemove removes it (remove.py)

The order matters: attached clients see the last output before the CLI's /wait returns,
and the exit is on disk before the task is deleted.
"""

from __future__ import annotations

import logging
import time

from labkit.wire.containerd import api_pb2 as pb
from labkit.dockerd.container import Container, State
from labkit.dockerd.core import DaemonCore, Live
from labkit.dockerd.errors import DaemonError
from labkit.dockerd.jsonlog import rfc3339nano
from labkit.dockerd.remote import RemoteError
from labkit.dockerd.stdio import TaskIO

log = logging.getLogger("labkit.dockerd")


class Monitor(DaemonCore):
    """The Daemon's exit monitoring (mixed into labkit.dockerd.daemon.Daemon)."""

    def _monitor(self, c: Container, live: Live, io: TaskIO | None) -> None:
        """Wait for the task to exit, record the exit, clean up the task, wake the waiters."""
        exit_code, finished = 255, None
        while True:
            try:
                resp = self.ctr.call(self.ctr.tasks.Wait, pb.WaitRequest(container_id=c.ID),
                                     timeout=None)
                exit_code = resp.exit_status
                if resp.exited_at.seconds:
                    finished = rfc3339nano(resp.exited_at.seconds * 10**9 + resp.exited_at.nanos)
                break
            except RemoteError as e:
                if self._closing.is_set():
                    return  # dockerd is stopping, not the container: the next start takes over
                if e.code == "UNAVAILABLE":  # containerd restarting: the task lives on; retry
                    time.sleep(1)
                    continue
                log.warning("waiting for %s failed: %s", c.ID[:12], e)
                break
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
        if c.HostConfig.get("AutoRemove") and not live.removed and not self._closing.is_set():
            try:
                self._remove(c)
            except DaemonError as e:
                log.warning("auto-remove of %s failed: %s", c.ID[:12], e)

    def _record_exit(self, c: Container, live: Live, io: TaskIO | None, exit_code: int,
                     finished: str | None) -> None:
        # Save the exit BEFORE deleting the task: were dockerd killed in between, its next
        # start would find no task and could only guess the exit code.
        with self._lock:
            if c.State.Status == "running":
                c.State = State(Status="exited", ExitCode=exit_code, StartedAt=c.State.StartedAt,
                                FinishedAt=finished or rfc3339nano())
            if not live.removed:
                c.save(self.config.root)
        # Deleting the task makes the shim drain the output and close the fifos: that EOF
        # is what ends the attach streams (before the exit is announced, as Docker does).
        try:
            self.ctr.call(self.ctr.tasks.Delete, pb.DeleteTaskRequest(container_id=c.ID))
        except RemoteError as e:
            if e.code != "NOT_FOUND":
                log.warning("deleting task %s: %s", c.ID[:12], e)
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
