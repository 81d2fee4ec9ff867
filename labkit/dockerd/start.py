"""`docker start`, `stop`, `kill` and `restart` (moby's daemon/start.go, stop.go, kill.go,
restart.go).

    start   mkfifo init-stdin/out/err; Tasks.Create(fifos) (containerd finds the rootfs from
            the container's snapshot key) — the shim mounts it and runs the runtime's `create`; copy the fifos to the log and the attached
            clients; its networks into the namespace init waits in (network.py);
            Tasks.Start — the runtime's `start`; a monitor thread waits for the
            exit (monitor.py). A failed start is recorded as Docker does (exit code 127,
            126 or 128) and reported to the client.
    stop    the stop signal (StopSignal, SIGTERM by default), then SIGKILL after the
            timeout (StopTimeout, 10 s by default); returns once the exit is recorded
    kill    one signal (SIGKILL by default), no waiting
    pause   Tasks.Pause: the runtime freezes the container's cgroup; State.Paused, "paused";
            unpause: Tasks.Resume. A paused container still counts as running (docker stop
            and kill work: the runtime thaws what it SIGKILLs), but takes no exec.
    restart stop (a stopped container is fine), then start
"""

from __future__ import annotations

import logging
import signal as signals
import threading

from labkit.wire.containerd import api_pb2 as pb
from labkit.dockerd import logdriver
from labkit.dockerd.container import Container, State
from labkit.dockerd.core import DaemonCore, Live
from labkit.dockerd.errors import (Conflict, DaemonError, InvalidParameter, NotModified,
                                   SystemError_)
from labkit.dockerd.jsonlog import rfc3339nano
from labkit.dockerd.remote import RemoteError, to_daemon_error
from labkit.dockerd.stdio import TaskIO
from labkit.dockerd.validate import parse_signal

log = logging.getLogger("labkit.dockerd")

SETTLE_WAIT = 10.0   # seconds `docker start` waits for a restore to learn about the task


class StartStop(DaemonCore):
    """The Daemon's start, stop, kill and restart (mixed into labkit.dockerd.daemon.Daemon)."""

    def container_start(self, ref: str) -> None:
        with self._lock:
            c = self._get(ref)
            live = self._live[c.ID]
            # Restarted while containerd was away, dockerd does not know yet whether the
            # container's last start went through (restore.py): wait until it does.
            if not self._changed.wait_for(lambda: not live.settling, timeout=SETTLE_WAIT):
                raise SystemError_(f"container {c.ID[:12]}: labkit-containerd has not said yet "
                                   "what became of its task; try again")
            if c.State.Running or live.starting:
                raise NotModified("container already started")
            if c.State.Status == "removing":
                raise Conflict(f"container {c.ID} is marked for removal and cannot be started")
            self._started_by_hand(c, live)
            live.starting = True
        try:
            self._start(c, live)
        finally:
            with self._lock:
                live.starting = False
                self._changed.notify_all()

    def _start(self, c: Container, live: Live) -> None:
        log_path, rotation = logdriver.task_log(c.HostConfig, c.LogPath)
        io = TaskIO(self.config.exec_root / "containerd" / c.ID, log_path, c.tty,
                    bool(c.Config.get("OpenStdin")), live.broadcaster, end_clients_at_eof=False,
                    rotation=rotation)
        io.create()
        try:
            # No rootfs in the request: containerd takes the mounts of the container's
            # snapshot (snapshot_key) itself, and the shim mounts them.
            created = self.ctr.call(self.ctr.tasks.Create, pb.CreateTaskRequest(
                container_id=c.ID, stdin=io.stdin_path, stdout=io.stdout_path,
                stderr=io.stderr_path, terminal=c.tty), timeout=120)
        except RemoteError as e:
            io.abort()
            io.cleanup()
            self._start_failed(c, live, e)
        io.start()
        failure: DaemonError | None = None
        try:
            # The namespaces exist now, init waits before execve: its network goes in
            # between (network.py says why there).
            self._network_up(c, created.pid)
            pid = self.ctr.call(self.ctr.tasks.Start, pb.StartRequest(container_id=c.ID),
                                timeout=120).pid
        except (RemoteError, DaemonError) as e:
            try:
                self.ctr.call(self.ctr.tasks.Delete, pb.DeleteTaskRequest(container_id=c.ID))
            except RemoteError:
                pass
            self._network_down(c)
            io.abort()
            io.done.wait(5)
            io.cleanup()
            if isinstance(e, DaemonError):
                failure, e = e, RemoteError("INTERNAL", e.message)
            self._start_failed(c, live, e, failure)
        with self._lock:
            live.io = io
            pending, live.stdin_pending = bytes(live.stdin_pending), bytearray()
            close_stdin = live.stdin_closed
            c.State = State(Status="running", Running=True, Pid=pid, StartedAt=rfc3339nano(),
                            FinishedAt=c.State.FinishedAt)
            c.save(self.config.root)
            self._changed.notify_all()
        if pending:
            io.write_stdin(pending)
        if close_stdin:
            io.close_stdin()
        threading.Thread(target=self._monitor, args=(c, live, io), daemon=True,
                         name=f"monitor-{c.ID[:12]}").start()
        self._event(c, "start")
        log.info("started container %s, pid %d", c.ID[:12], pid)

    def _start_failed(self, c: Container, live: Live, e: RemoteError,
                      error: DaemonError | None = None) -> None:
        """Record a failed start as Docker does, then raise the error for the client
        (`error` if given: one of dockerd's own, such as a port already allocated)."""
        message = e.message
        lowered = message.lower()
        if "executable file not found" in lowered or "no such file or directory" in lowered:
            code = 127
        elif "permission denied" in lowered:
            code = 126
        else:
            code = 128
        with self._lock:
            c.State.Error = message
            c.State.ExitCode = code
            c.save(self.config.root)
            live.exits += 1
            self._changed.notify_all()
        live.broadcaster.close_all()
        if c.HostConfig.get("AutoRemove"):
            try:
                self._remove(c, volumes=True)
            except DaemonError as err:
                log.warning("auto-remove of %s after a failed start: %s", c.ID[:12], err)
        if error is not None:
            raise error
        if e.code == "UNAVAILABLE":
            raise SystemError_(message)
        raise InvalidParameter(message)

    def _signal(self, c: Container, sig: int) -> None:
        try:
            self.ctr.call(self.ctr.tasks.Kill, pb.KillRequest(container_id=c.ID, signal=sig))
        except RemoteError as e:
            if e.code == "NOT_FOUND":  # it exited meanwhile
                return
            raise to_daemon_error(e) from None

    def _wait_stopped(self, c: Container, timeout: float | None) -> bool:
        """Wait until the exit is fully processed: recorded, and the output in the log."""
        with self._changed:
            live = self._live.get(c.ID)
            return self._changed.wait_for(
                lambda: not c.State.Running and (live is None or live.io is None),
                timeout=timeout)

    def container_stop(self, ref: str, timeout: int | None, signal: str | None) -> None:
        c = self._get(ref)
        sig = parse_signal(signal or c.Config.get("StopSignal") or "SIGTERM")
        if not c.State.Running:
            if c.State.Restarting and self._stopped_by_hand(c, None):
                self._event(c, "stop")   # it was waiting to restart: it will not now
                return
            raise NotModified("container already stopped")
        if timeout is None:
            timeout = c.Config.get("StopTimeout") or 10
        self._stopped_by_hand(c, None)   # no restart after this exit (restart.py)
        self._signal(c, sig)
        self._event(c, "kill", signal=str(sig))
        if self._wait_stopped(c, None if timeout < 0 else timeout):
            self._event(c, "stop")
            return
        log.info("container %s did not stop after %ss: killing it", c.ID[:12], timeout)
        self._signal(c, signals.SIGKILL)
        if not self._wait_stopped(c, 10):
            raise SystemError_(f"container {c.ID[:12]} did not exit after SIGKILL")
        self._event(c, "stop")

    def container_kill(self, ref: str, signal: str | None) -> None:
        c = self._get(ref)
        sig = parse_signal(signal or "SIGKILL")
        if not c.State.Running:
            if c.State.Restarting and self._stopped_by_hand(c, sig):
                return
            raise Conflict(f"Container {c.ID} is not running")
        self._stopped_by_hand(c, sig)
        self._signal(c, sig)
        self._event(c, "kill", signal=str(sig))

    def container_pause(self, ref: str) -> None:
        self._freeze(ref, pause=True)

    def container_unpause(self, ref: str) -> None:
        self._freeze(ref, pause=False)

    def _freeze(self, ref: str, pause: bool) -> None:
        """moby's daemon/pause.go and unpause.go: the checks, then the task's freezer."""
        with self._lock:
            c = self._get(ref)
            if not c.State.Running:
                raise Conflict(f"Container {c.ID} is not running")
            if pause and c.State.Paused:
                raise Conflict(f"Container {c.ID} is already paused")
            if not pause and not c.State.Paused:
                raise Conflict(f"Container {c.ID} is not paused")
        method = self.ctr.tasks.Pause if pause else self.ctr.tasks.Resume
        request = (pb.PauseTaskRequest if pause else pb.ResumeTaskRequest)(container_id=c.ID)
        try:
            self.ctr.call(method, request)
        except RemoteError as e:
            raise to_daemon_error(e) from None
        with self._lock:
            if c.State.Running:                 # (not if it exited meanwhile)
                c.State.Paused = pause
                c.State.Status = "paused" if pause else "running"
                c.save(self.config.root)
            self._changed.notify_all()
        self._event(c, "pause" if pause else "unpause")

    def container_restart(self, ref: str, timeout: int | None, signal: str | None) -> None:
        try:
            self.container_stop(ref, timeout, signal)
        except DaemonError as e:
            if e.status != 304:  # restarting a stopped container just starts it
                raise
        self.container_start(ref)
