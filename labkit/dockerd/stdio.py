"""A container's stdio on dockerd's side: fifos, the json-file log, and attached clients.

For every start, dockerd creates fifos in `<exec-root>/containerd/<id>/` and names them in
Tasks.Create; the shim writes the container's output into them (see labkit.shim.stdio).
dockerd reads each one and copies every chunk to two places:

    init-stdout ─┐                 ┌─▶ <root>/containers/<id>/<id>-json.log  (docker logs)
                 ├─▶ copier thread ┤
    init-stderr ─┘                 └─▶ every attached client (docker run, docker attach)

Opening the read ends, and why in this way: O_RDONLY|O_NONBLOCK returns at once even
though no writer exists yet (a blocking open would wait for the shim, which is started
only after we named the fifos). We then poll(2) instead of read(2)-ing: on a fifo that
never had a writer, read returns 0 at once, but poll waits for the first writer — and
reports POLLHUP only after a writer came and went. So EOF means what it should: the
shim closed its end, which it does once the container's stream ended and we have read
everything the fifo held (or when the task is deleted). Until then the shim's open end keeps
the fifo's contents alive, also while no dockerd runs: a restarted dockerd `reopen()`s the
fifos and reads what came meanwhile (labkit.shim.stdio explains why that needs care).
If the task never starts, `abort()` opens and closes a write end to produce that EOF.

What is not kept: a chunk read but not yet written to the log, and a line not yet ended
(`pending`, written when its newline comes), are lost if dockerd is killed at that moment —
a window of microseconds for the first; the second holds only output without a newline.

The `Broadcaster` is the list of attached clients of a container; it outlives a single
start, because `docker run` attaches BEFORE it starts the container.
"""

from __future__ import annotations

import errno
import logging
import os
import queue
import select
import threading
from pathlib import Path
from typing import Callable, Iterator

from labkit.dockerd.jsonlog import LogEntry, encode_log_line, rfc3339nano, split_lines
from labkit.dockerd.logdriver import rotate_if_full
from labkit.stdcopy import STDERR, STDOUT

log = logging.getLogger("labkit.dockerd")

CHUNK = 32 * 1024


class Attachment:
    """One attached client (implements backend.AttachStream)."""

    def __init__(self, broadcaster: "Broadcaster", tty: bool, streams: set[int],
                 stdin: Callable[[bytes | None], None] | None) -> None:
        self.tty = tty
        self._broadcaster = broadcaster
        self._streams = streams
        self._stdin = stdin
        self.stdin_attached = stdin is not None   # the client's bytes go somewhere
        self._queue: queue.Queue[tuple[int, bytes] | None] = queue.Queue()

    def deliver(self, item: tuple[int, bytes] | None) -> None:
        if item is None or item[0] in self._streams:
            self._queue.put(item)

    def output(self) -> Iterator[tuple[int, bytes]]:
        while (item := self._queue.get()) is not None:
            yield item

    def write_stdin(self, data: bytes) -> None:
        if self._stdin:
            self._stdin(data)

    def close_stdin(self) -> None:
        if self._stdin:
            self._stdin(None)

    def close(self) -> None:
        """The client is gone, or detached: no more output for it, and output() ends."""
        self._broadcaster.unsubscribe(self)
        self._queue.put(None)


class Broadcaster:
    """The attached clients of one container."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscribers: list[Attachment] = []

    def subscribe(self, tty: bool, stdout: bool, stderr: bool,
                  stdin: Callable[[bytes | None], None] | None) -> Attachment:
        streams = {s for s, on in ((STDOUT, stdout), (STDERR, stderr)) if on}
        a = Attachment(self, tty, streams, stdin)
        with self._lock:
            self._subscribers.append(a)
        return a

    def unsubscribe(self, a: Attachment) -> None:
        with self._lock:
            if a in self._subscribers:
                self._subscribers.remove(a)

    def publish(self, stream: int, data: bytes) -> None:
        with self._lock:
            for a in self._subscribers:
                a.deliver((stream, data))

    def close_all(self) -> None:
        """End every client's output (the container's output ended, or it failed to start)."""
        with self._lock:
            subscribers, self._subscribers = self._subscribers, []
        for a in subscribers:
            a.deliver(None)


class TaskIO:
    """The fifos of one task and the threads copying its output (see the module docstring)."""

    def __init__(self, fifo_dir: Path, log_path: Path | None, tty: bool, open_stdin: bool,
                 broadcaster: Broadcaster, prefix: str = "init",
                 end_clients_at_eof: bool = True, rotation: tuple[int, int] = (-1, 1)) -> None:
        """`prefix` names the fifos: "init" for the container's process, the exec id for
        `docker exec` (whose output goes to its client only: `log_path` None).

        `end_clients_at_eof` False leaves ending the clients' streams to the caller: the
        daemon ends them only once the exit code is recorded, because a client asks for it
        right after its stream ends (and the shim may close the fifos before the exit is
        reported).

        `rotation` is the json-file log's (max-size, max-file): logdriver.rotate_if_full."""
        self.end_clients_at_eof = end_clients_at_eof
        self.rotation = rotation
        self.fifo_dir = fifo_dir
        self.log_path = log_path
        self.tty = tty
        self.broadcaster = broadcaster
        self.stdin_path = str(fifo_dir / f"{prefix}-stdin") if open_stdin else ""
        self.stdout_path = str(fifo_dir / f"{prefix}-stdout")
        # With a TTY the shim has only the pty: one output stream, raw
        self.stderr_path = "" if tty else str(fifo_dir / f"{prefix}-stderr")
        self.done = threading.Event()   # every output stream reached EOF, log flushed
        self._fds: dict[int, int] = {}  # stream number -> read end
        self._stdin_fd: int | None = None
        self._log_lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._aborted = threading.Event()

    def create(self) -> None:
        """Make the fifos and open our ends (before Tasks.Create names them to the shim)."""
        self.fifo_dir.mkdir(parents=True, exist_ok=True)
        for path in (self.stdin_path, self.stdout_path, self.stderr_path):
            if path:
                if os.path.exists(path):
                    os.unlink(path)
                os.mkfifo(path, 0o600)
        for stream, path in ((STDOUT, self.stdout_path), (STDERR, self.stderr_path)):
            if path:
                self._fds[stream] = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        if self.stdin_path:
            # O_RDWR: never blocks for a reader; writes wait in the pipe buffer until the shim reads
            self._stdin_fd = os.open(self.stdin_path, os.O_RDWR | os.O_CLOEXEC)

    def reopen(self) -> None:
        """After a daemon restart: open the read ends of the fifos the shim still writes to."""
        for stream, path in ((STDOUT, self.stdout_path), (STDERR, self.stderr_path)):
            if path and os.path.exists(path):
                self._fds[stream] = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)

    def start(self) -> None:
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
        for stream, fd in self._fds.items():
            t = threading.Thread(target=self._copy, args=(stream, fd), daemon=True,
                                 name=f"copy-{stream}-{self.fifo_dir.name[:12]}")
            self._threads.append(t)
            t.start()
        if not self._fds:
            self._finish()

    def _copy(self, stream: int, fd: int) -> None:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        pending = b""
        try:
            while True:
                # a timeout, so that abort() can end a copy even while a writer holds on
                ready = poller.poll(250)
                if not ready and self._aborted.is_set():
                    break
                try:
                    data = os.read(fd, CHUNK)
                except BlockingIOError:
                    continue
                if not data:
                    break
                self.broadcaster.publish(stream, data)
                lines, pending = split_lines(pending, data)
                self._log(stream, lines)
        except OSError as e:
            log.warning("copying %s of %s stopped: %s", stream, self.fifo_dir.name, e)
        finally:
            if pending:
                self._log(stream, [pending])
            os.close(fd)
            with self._log_lock:
                del self._fds[stream]
                last = not self._fds
            if last:
                self._finish()

    def _log(self, stream: int, lines: list[bytes]) -> None:
        if not lines or self.log_path is None:
            return
        now = rfc3339nano()
        entries = [encode_log_line(LogEntry(stream, line, now)) for line in lines]
        with self._log_lock:
            if self.rotation[0] < 0:   # no max-size: one write
                with open(self.log_path, "ab") as f:
                    f.write(b"".join(entries))
                return
            for entry in entries:      # the size is checked before every entry, as Docker
                rotate_if_full(str(self.log_path), *self.rotation)
                with open(self.log_path, "ab") as f:
                    f.write(entry)

    def _finish(self) -> None:
        if self.end_clients_at_eof:
            self.broadcaster.close_all()
        self.done.set()

    # ---- stdin

    def write_stdin(self, data: bytes) -> None:
        fd = self._stdin_fd
        if fd is None:
            return
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(fd, view):]
        except OSError as e:
            if e.errno != errno.EBADF:
                log.info("writing stdin of %s: %s", self.fifo_dir.name, e)

    def close_stdin(self) -> None:
        fd, self._stdin_fd = self._stdin_fd, None
        if fd is not None:
            os.close(fd)

    # ---- the end

    def abort(self) -> None:
        """Make every reader see EOF now (the task never started, or its output never ends)."""
        self._aborted.set()
        for path in (self.stdout_path, self.stderr_path):
            if not path:
                continue
            try:
                os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:
                pass  # no reader left: that copier is done already
        if not self._threads:  # never started copying: close our ends ourselves
            for fd in self._fds.values():
                os.close(fd)
            self._fds.clear()
            self._finish()

    def cleanup(self) -> None:
        """Close stdin and remove the fifos (after the task is gone)."""
        self.close_stdin()
        for path in (self.stdin_path, self.stdout_path, self.stderr_path):
            if path:
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    pass
        try:
            self.fifo_dir.rmdir()  # the container's; an exec's fifos share it
        except OSError:
            pass
