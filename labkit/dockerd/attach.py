"""`docker attach` and `docker logs`: a client's view of a container's stdio (moby's
daemon/attach.go, logs.go, resize.go).

    attach  the saved log first (logs=1), then live output from the container's
            Broadcaster (stream=1), and stdin to the container (stdin=1, if OpenStdin).
            `docker run` attaches before it starts the container: stdin that arrives
            before the start is kept and written once the task runs.
    logs    the json-file log (jsonlog.py), filtered by stream and time, its tail; with
            follow, new lines until the container's output ends
    resize  the pty's size (Tasks.ResizePty): the program gets SIGWINCH

The router turns the output into frames (labkit.stdcopy) or raw bytes with a TTY.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Iterator

from labkit.wire.containerd import api_pb2 as pb
from labkit.dockerd import logdriver
from labkit.dockerd.backend import Logs
from labkit.dockerd.container import Container, parse_time
from labkit.dockerd.core import DaemonCore, Live
from labkit.dockerd.errors import Conflict, InvalidParameter
from labkit.dockerd.jsonlog import LogEntry, read_log
from labkit.dockerd.remote import RemoteError, to_daemon_error
from labkit.dockerd.stdio import Attachment
from labkit.stdcopy import STDERR, STDOUT

log = logging.getLogger("labkit.dockerd")


class AttachLogs(DaemonCore):
    """The Daemon's attach, logs and resize (mixed into labkit.dockerd.daemon.Daemon)."""

    def _stdin(self, c: Container, live: Live, data: bytes | None) -> None:
        """Bytes from an attached client for the container's stdin (None: the client closed)."""
        with self._lock:
            io = live.io
            if io is None:  # not started yet: `docker run -i` sends stdin before /start
                if data is None:
                    live.stdin_closed = bool(c.Config.get("StdinOnce"))
                else:
                    live.stdin_pending += data
                return
        if data is None:
            if c.Config.get("StdinOnce"):
                io.close_stdin()
                self._close_io(c)
        else:
            io.write_stdin(data)

    def _close_io(self, c: Container) -> None:
        """Tell the shim that stdin ended (Tasks.CloseIO): it holds the stdin fifo open
        itself, so closing our end alone is no EOF for the container."""
        try:
            self.ctr.call(self.ctr.tasks.CloseIO, pb.CloseIORequest(container_id=c.ID, stdin=True))
        except RemoteError as e:
            log.info("closing stdin of %s: %s", c.ID[:12], e)

    def container_attach(self, ref: str, stdin: bool, stdout: bool, stderr: bool, logs: bool,
                         stream: bool):
        with self._lock:
            c = self._get(ref)
            live = self._live[c.ID]
        feed = None
        if stdin and c.Config.get("OpenStdin"):
            feed = lambda data: self._stdin(c, live, data)  # noqa: E731
        entries: list[LogEntry] = []
        if logs and (c.HostConfig.get("LogConfig") or {}).get("Type") != "none":
            wanted = {s for s, on in ((STDOUT, stdout), (STDERR, stderr)) if on}
            entries = [e for e in _read_all(c.LogPath)[0] if e.stream in wanted]
        inner = live.broadcaster.subscribe(c.tty, stdout, stderr, feed) if stream else None
        self._event(c, "attach")
        return _AttachWithLogs(c.tty, entries, inner)

    def container_logs(self, ref: str, follow: bool, stdout: bool, stderr: bool,
                       tail: int | None, since: float, until: float) -> Logs:
        with self._lock:
            c = self._get(ref)
            live = self._live[c.ID]
        logdriver.check_readable(c.HostConfig)
        wanted = {s for s, on in ((STDOUT, stdout), (STDERR, stderr)) if on}

        def keep(e: LogEntry) -> bool:
            if e.stream not in wanted:
                return False
            t = parse_time(e.time)
            return (not since or t >= since) and (not until or t <= until)

        def entries() -> Iterator[LogEntry]:
            items, offset = _read_all(c.LogPath)
            items = [e for e in items if keep(e)]
            if tail is not None:
                items = items[-tail:] if tail > 0 else []
            yield from items
            while follow:
                with self._lock:
                    # sampled BEFORE reading: once the copiers are done, one last read is complete
                    active = (live.io is not None or live.starting) and not live.removed
                if _size(c.LogPath) < offset:   # rotated: the rest of it is in .1 now
                    rest, _ = read_log(c.LogPath + ".1", offset)
                    yield from (e for e in rest if keep(e))
                    offset = 0
                new, offset = read_log(c.LogPath, offset)
                yield from (e for e in new if keep(e))
                if not active:
                    return
                time.sleep(0.1)
        return Logs(c.tty, entries())

    def container_resize(self, ref: str, height: int, width: int) -> None:
        c = self._get(ref)
        if not c.State.Running:
            raise Conflict(f"Container {c.ID} is not running")
        if height < 0 or width < 0:
            raise InvalidParameter("invalid size: height and width must not be negative")
        if c.tty:  # the shim sets the pty's size (TIOCSWINSZ); the program gets SIGWINCH
            try:
                self.ctr.call(self.ctr.tasks.ResizePty, pb.ResizePtyRequest(
                    container_id=c.ID, width=width, height=height))
            except RemoteError as e:
                raise to_daemon_error(e) from None


def _read_all(path: str) -> tuple[list[LogEntry], int]:
    """Every entry of a json-file log, its rotated files first (logdriver.py), and the
    offset in the current file to follow it from."""
    out: list[LogEntry] = []
    for name in logdriver.files_oldest_first(path)[:-1]:
        out += read_log(name)[0]
    current, offset = read_log(path)
    return out + current, offset


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return 0


class _AttachWithLogs:
    """An attach stream: the saved log first (logs=1), then live output (stream=1)."""

    def __init__(self, tty: bool, entries: list[LogEntry], inner: Attachment | None) -> None:
        self.tty = tty
        self._entries = entries
        self._inner = inner
        self.stdin_attached = inner is not None and inner.stdin_attached

    def output(self) -> Iterator[tuple[int, bytes]]:
        for e in self._entries:
            yield e.stream, e.data
        if self._inner is not None:
            yield from self._inner.output()

    def write_stdin(self, data: bytes) -> None:
        if self._inner is not None:
            self._inner.write_stdin(data)

    def close_stdin(self) -> None:
        if self._inner is not None:
            self._inner.close_stdin()

    def close(self) -> None:
        if self._inner is not None:
            self._inner.close()
