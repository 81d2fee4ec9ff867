"""Live restore: labkit-dockerd starts again and takes its containers back (moby's
daemon/daemon.go restore).

Containers outlive their dockerd: the shim holds each one, its stdio fifos and its exit
status. When labkit-dockerd starts it reloads every config.v2.json it saved and asks
containerd about each container that was running: a task that still runs gets its fifos
reopened and a new monitor (monitor.py); one that exited meanwhile is found by that
monitor at once (Tasks.Wait answers for an exited task), and the fifos give it the output
the shim kept for us (it closes them only once we have read them: labkit.shim.stdio); one
that is gone is marked exited with code 255. A container saved as exited may still have its
task (dockerd was killed before deleting it): that task is deleted, once containerd answers.
"""

from __future__ import annotations

import logging
import threading

from labkit.wire.containerd import api_pb2 as pb
from labkit.dockerd import logdriver
from labkit.dockerd.container import Container, State
from labkit.dockerd.core import DaemonCore, Live
from labkit.dockerd.jsonlog import rfc3339nano
from labkit.dockerd.monitor import RETRY, finished_at
from labkit.dockerd.remote import RemoteError
from labkit.dockerd.stdio import TaskIO

log = logging.getLogger("labkit.dockerd")


class Restore(DaemonCore):
    """The Daemon's live restore (mixed into labkit.dockerd.daemon.Daemon)."""

    def restore(self) -> None:
        """Reload the containers saved under <root>/containers after a daemon restart.

        Containers that were running are checked against containerd: a task that still
        runs gets a new monitor (and its fifos reopened), one that is gone is marked exited.
        The task of a container saved as not running is deleted, or taken over if dockerd
        was killed in the middle of its start (`_settle`).
        Networks first (their bridges, network.py), and at the end whatever no running
        container holds any more is given back (addresses, veths, port proxies).
        """
        self._networks_load()
        for cfg in sorted((self.config.root / "containers").glob("*/config.v2.json")):
            try:
                c = Container.load(cfg.parent)
            except (OSError, ValueError, TypeError) as e:
                log.warning("skipping %s: %s", cfg.parent, e)
                continue
            live = Live()
            with self._lock:
                self._containers[c.ID] = c
                self._live[c.ID] = live
            if not c.State.Running:
                if not self._settle(c, live, retry=False):   # containerd is away: keep trying
                    live.settling = True   # `docker start` waits for this (start.py)
                    threading.Thread(target=self._settle_later, args=(c, live), daemon=True,
                                     name=f"settle-{c.ID[:12]}").start()
                continue
            try:
                self.ctr.call(self.ctr.tasks.Get, pb.GetRequest(container_id=c.ID))
            except RemoteError as e:
                if e.code == "UNAVAILABLE":
                    # containerd is not up (yet): the monitor below retries until it is
                    log.warning("container %s: %s", c.ID[:12], e)
                else:
                    log.warning("container %s was running, but its task is gone (%s)",
                                c.ID[:12], e)
                    c.State = State(Status="exited", ExitCode=255, StartedAt=c.State.StartedAt,
                                    FinishedAt=rfc3339nano(),
                                    Error="the task was gone when labkit-dockerd restarted")
                    c.save(self.config.root)
                    continue
            self._take_over(c, live)
        self._networks_reconcile()
        self._restart_at_boot()   # restart.py: what the policies want running again

    def _take_over(self, c: Container, live: Live) -> None:
        """Running, or exited while we were away: either way a monitor takes over (Wait
        answers at once for an exited task), after the fifos are reopened — the shim kept
        the output that came meanwhile in them."""
        log_path, rotation = logdriver.task_log(c.HostConfig, c.LogPath)
        io: TaskIO | None = TaskIO(self.config.exec_root / "containerd" / c.ID, log_path,
                                   c.tty, False, live.broadcaster, end_clients_at_eof=False,
                                   rotation=rotation)
        try:
            io.reopen()
            io.start()
        except OSError as e:
            log.warning("container %s: cannot reopen its output: %s", c.ID[:12], e)
            io = None
        live.io = io
        threading.Thread(target=self._monitor, args=(c, live, io), daemon=True,
                         name=f"monitor-{c.ID[:12]}").start()

    def _settle_later(self, c: Container, live: Live) -> None:
        try:
            self._settle(c, live)
        finally:
            with self._lock:
                live.settling = False
                self._changed.notify_all()

    def _settle(self, c: Container, live: Live, retry: bool = True) -> bool:
        """The task of a container saved as not running, if it has one. False if containerd
        was away and `retry` is False.

        - its exit is the one saved (dockerd was killed between saving an exit and deleting
          the task; the output is in the log already, monitor.py): delete it;
        - only created (killed between Tasks.Create and Tasks.Start): delete it;
        - running, or stopped with an exit nobody recorded (killed after Tasks.Start, before
          saving "running"): it is this container's run, so take it over like any other.
        """
        while True:
            try:
                p = self.ctr.call(self.ctr.tasks.Get, pb.GetRequest(container_id=c.ID)).process
                break
            except RemoteError as e:
                if e.code == "UNAVAILABLE":
                    if not retry:
                        return False
                    if not self._closing.wait(RETRY):
                        continue
                elif e.code != "NOT_FOUND":
                    log.warning("container %s: its task: %s", c.ID[:12], e)
                return True
        recorded = (c.State.Status == "exited" and p.status == pb.STOPPED
                    and c.State.FinishedAt == finished_at(p.exited_at))
        if recorded or p.status not in (pb.RUNNING, pb.PAUSED, pb.STOPPED):
            self._delete_task(c)
            return True
        log.info("container %s: its start was interrupted after the task started; taking "
                 "it over", c.ID[:12])
        with self._lock:
            paused = p.status == pb.PAUSED
            c.State = State(Status="paused" if paused else "running", Running=True,
                            Paused=paused, Pid=p.pid, StartedAt=rfc3339nano(),
                            FinishedAt=c.State.FinishedAt)
            c.save(self.config.root)
            self._changed.notify_all()
        self._take_over(c, live)
        return True
