"""A container's stdio on dockerd's side: fifos, the json-file log, and attached clients.

For every start, dockerd creates fifos in `<exec-root>/containerd/<id>/` and names them in
Tasks.Create; the shim writes the container's output into them (see labkit.shim.stdio).
dockerd reads each one and copies every chunk to two places:

    init-stdout ─┐                 ┌─▶ <root>/containers/<id>/<id>-json.log  (docker logs)
                 ├─▶ copier thread ┤
    init-stderr ─┘                 └─▶ every attached client (docker run, docker attach)

Opening the read ends, and why in this way: O_RDONLY|O_NONBLOCK returns at once even
though no writer exists yet (a blocking open would wait for the shim, which is started
only after we named the fifos). We then poll(2) before each transfer: on a fifo that
never had a writer, a read returns 0 at once, but poll waits for the first writer — and
reports POLLHUP only after a writer came and went. So EOF means what it should: the
shim closed its end, which it does once the container's stream ended and we have taken
everything the fifo held (or when the task is deleted). Until then the shim's open end keeps
the fifo's contents alive, also while no dockerd runs: a restarted dockerd `reopen()`s the
fifos and reads what came meanwhile (labkit.shim.stdio explains why that needs care).
If the task never starts, `abort()` opens and closes a write end to produce that EOF.

Nothing lost, whatever the moment dockerd is killed. Reading a chunk out of the fifo takes
it away for good; writing it to the log is a second step. A dockerd killed between the two
(`kill -9`, a crash) would lose that chunk, and one killed after logging but before taking
it would log it twice. No order of two steps on two objects closes that window, so the
copier makes taking and keeping ONE system call: splice(2) moves the bytes from the fifo
into a spool file beside it (`init-stdout.spool`), and whatever splice moved is in the
spool, killed or not. The log is then made from the spool, and a small record
(`init-log.state`: how far each spool is logged, and the log's size at that point) is
rewritten after every log write::

    fifo ──splice──▶ spool ──pread, split into lines──▶ json log ──▶ record (offsets, size)

A dockerd that starts again cuts the log back to the recorded size (dropping entries
written after the last record) and logs each spool again from its recorded offset, so
every byte is logged exactly once. A line not yet ended stays in the spool until its newline
comes (or 16 KiB of it, logged as a partial entry as Docker does, or the end of output).

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


# Docker's json-file driver cuts a line longer than this into partial entries.
MAX_ENTRY = 16 * 1024
STREAM_FILES = {STDOUT: "stdout", STDERR: "stderr"}


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
        self.state_path = fifo_dir / f"{prefix}-log.state"
        self.done = threading.Event()   # every output stream reached EOF, log flushed
        self._fds: dict[int, int] = {}  # stream number -> read end of its fifo
        self._spools: dict[int, int] = {}      # stream number -> its spool file
        self._logged: dict[int, int] = {}      # stream number -> spool offset logged so far
        self._stdin_fd: int | None = None
        self._log_lock = threading.Lock()      # the log, the record and the offsets
        self._threads: list[threading.Thread] = []
        self._aborted = threading.Event()

    def _outputs(self) -> list[tuple[int, str]]:
        return [(stream, path) for stream, path in ((STDOUT, self.stdout_path),
                                                    (STDERR, self.stderr_path)) if path]

    def _spool_path(self, stream: int) -> str:
        return f"{self.stdout_path if stream == STDOUT else self.stderr_path}.spool"

    def create(self) -> None:
        """Make the fifos and open our ends (before Tasks.Create names them to the shim)."""
        self.fifo_dir.mkdir(parents=True, exist_ok=True)
        for path in (self.stdin_path, self.stdout_path, self.stderr_path):
            if path:
                if os.path.exists(path):
                    os.unlink(path)
                os.mkfifo(path, 0o600)
        for stream, path in self._outputs():
            self._fds[stream] = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            self._spools[stream] = os.open(self._spool_path(stream),
                                           os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC,
                                           0o600)
            self._logged[stream] = 0
        self._record()   # the log's size now: a restart cuts back to it, no further
        if self.stdin_path:
            # O_RDWR: never blocks for a reader; writes wait in the pipe buffer until the shim reads
            self._stdin_fd = os.open(self.stdin_path, os.O_RDWR | os.O_CLOEXEC)

    def reopen(self) -> None:
        """After a daemon restart: open the read ends of the fifos the shim still writes to,
        and take up the spools where the record says the log stopped."""
        logged, log_size = self._read_record()
        for stream, path in self._outputs():
            if not os.path.exists(path):
                continue
            self._fds[stream] = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            self._spools[stream] = os.open(self._spool_path(stream),
                                           os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            spooled = os.fstat(self._spools[stream]).st_size
            # an offset past the spool's end: killed between emptying the spool and
            # recording that (everything in it was logged)
            self._logged[stream] = min(logged.get(stream, 0), spooled)
        if self.log_path is not None and log_size is not None:
            try:
                if os.path.getsize(self.log_path) > log_size:
                    os.truncate(self.log_path, log_size)   # logged again from the spools
            except FileNotFoundError:
                pass

    def _record(self) -> None:
        """Write down how far each spool is logged, and the log's size (under _log_lock, or
        before the copiers start). One small pwrite: a kill leaves the old or the new one."""
        size = 0
        if self.log_path is not None:
            try:
                size = os.path.getsize(self.log_path)
            except FileNotFoundError:
                pass
        text = " ".join(f"{STREAM_FILES[s]}={n}" for s, n in sorted(self._logged.items()))
        line = f"{text} log={size}".encode().ljust(127) + b"\n"
        fd = os.open(self.state_path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            os.pwrite(fd, line, 0)
        finally:
            os.close(fd)

    def _read_record(self) -> tuple[dict[int, int], int | None]:
        """The record's offsets, and the log size (None: no record, e.g. never created)."""
        try:
            words = self.state_path.read_text().split()
        except FileNotFoundError:
            return {}, None
        values = dict(word.split("=", 1) for word in words)
        names = {name: stream for stream, name in STREAM_FILES.items()}
        return ({names[k]: int(v) for k, v in values.items() if k in names},
                int(values.get("log", 0)))

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
        spool = self._spools[stream]
        end = os.fstat(spool).st_size
        end = self._log_spool(stream, end, new_from=end)   # left from before a restart
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        try:
            while True:
                # A timeout, so that abort() can end a copy even while a writer holds on;
                # after one we still try: a reader that opened the fifo while the shim held it
                # already (reopen) is never told POLLHUP — Linux reports a hang-up only for a
                # writer that came after the reader opened — so there the 0 of an empty
                # transfer with no writer left is how the end shows.
                if not poller.poll(250) and self._aborted.is_set():
                    break
                try:
                    # taking the bytes out of the fifo and keeping them: one system call
                    n = os.splice(fd, spool, CHUNK, offset_dst=end)
                except BlockingIOError:
                    continue
                if not n:
                    break
                end = self._log_spool(stream, end + n, new_from=end)
        except OSError as e:
            log.warning("copying %s of %s stopped: %s", stream, self.fifo_dir.name, e)
        finally:
            try:
                self._log_spool(stream, end, new_from=end, at_eof=True)
            except OSError as e:
                log.warning("logging %s of %s: %s", stream, self.fifo_dir.name, e)
            os.close(fd)
            os.close(spool)
            with self._log_lock:
                del self._fds[stream]
                last = not self._fds
            if last:
                self._finish()

    def _log_spool(self, stream: int, end: int, new_from: int, at_eof: bool = False) -> int:
        """Send the spool's bytes from `new_from` to `end` to the attached clients, log its
        complete lines not yet logged, record that, and empty the spool when all of it is
        logged. Returns where the spool ends now."""
        spool = self._spools[stream]
        start = self._logged[stream]
        data = os.pread(spool, end - start, start) if end > start else b""
        if end > new_from:
            self.broadcaster.publish(stream, data[new_from - start:])
        lines, rest = split_lines(b"", data)
        while len(rest) >= MAX_ENTRY:
            lines.append(rest[:MAX_ENTRY])
            rest = rest[MAX_ENTRY:]
        if at_eof and rest:
            lines.append(rest)
            rest = b""
        with self._log_lock:
            self._log(stream, lines)   # records as it goes
            if not rest and end:
                # all of it is in the log: empty the spool, then record offset 0
                os.ftruncate(spool, 0)
                self._logged[stream] = 0
                self._record()
                return 0
        return end

    def _log(self, stream: int, lines: list[bytes]) -> None:
        """Append `lines` of `stream` to the log and record how far its spool is logged
        (under _log_lock)."""
        if not lines:
            return
        if self.log_path is None:
            self._logged[stream] += sum(map(len, lines))
            return
        now = rfc3339nano()
        if self.rotation[0] < 0:   # no max-size: one write
            with open(self.log_path, "ab") as f:
                f.write(b"".join(encode_log_line(LogEntry(stream, line, now)) for line in lines))
            self._logged[stream] += sum(map(len, lines))
            self._record()
            return
        for line in lines:         # the size is checked before every entry, as Docker
            if rotate_if_full(str(self.log_path), *self.rotation):
                self._record()     # the log starts empty
            with open(self.log_path, "ab") as f:
                f.write(encode_log_line(LogEntry(stream, line, now)))
            self._logged[stream] += len(line)
            self._record()

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
            for fd in (*self._fds.values(), *self._spools.values()):
                os.close(fd)
            self._fds.clear()
            self._spools.clear()
            self._finish()

    def cleanup(self) -> None:
        """Close stdin and remove the fifos (after the task is gone)."""
        self.close_stdin()
        spools = [self._spool_path(stream) for stream, _ in self._outputs()]
        for path in (self.stdin_path, self.stdout_path, self.stderr_path, *spools,
                     str(self.state_path)):
            if path:
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    pass
        try:
            self.fifo_dir.rmdir()  # the container's; an exec's fifos share it
        except OSError:
            pass
