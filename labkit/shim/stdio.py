"""The container's stdio, held by the shim.

containerd (or dockerd behind it) names three fifos in Task.Create: it reads the container's
output from the stdout/stderr fifos and writes its input into the stdin fifo. The container
does not write into those fifos itself. It gets pipes whose other ends the shim holds, and
one thread per stream copies between pipe and fifo::

    container fd 1 ──pipe──▶ shim ──copy──▶ stdout fifo ──▶ containerd/dockerd (log, attach)
    container fd 2 ──pipe──▶ shim ──copy──▶ stderr fifo ──▶ …
    container fd 0 ◀──pipe── shim ◀──copy── stdin fifo  ◀── …

Why the indirection: the container must outlive its readers. If dockerd dies, the fifo loses
its reader; a process writing into a reader-less fifo gets SIGPIPE/EPIPE, and a process opening
one blocks. Put between them, the shim absorbs all that, and the container never notices.

How the fifos are opened, and why: O_RDWR (Linux allows it on a fifo; see man 7 fifo). An
O_RDWR open never blocks waiting for a peer, and because the shim itself then counts as a
reader, a write never fails with EPIPE when the real reader goes away (containerd's runc shim
gets the same effect by keeping an extra read-only fd). While nobody reads, the fifo's buffer
(64 KiB) fills, the copy thread blocks in write(), the container's pipe fills in turn and the
container blocks on its next write — paused, not killed, and nothing lost. When a reader opens
the fifo again, it drains the buffer and everything flows again.

When the container's stream ends, the shim closes its end of the fifo — that EOF is how the
reader learns the output is complete — but only once the reader has taken everything the fifo
holds (FIONREAD, the number of unread bytes, is 0). Closing the last open end of a fifo throws
away what is still in it (the kernel frees the buffer with the last file), so a container that
printed and exited while dockerd was away would otherwise lose its last 64 KiB: "bye" printed
into the fifo, the shim closes, and the dockerd that comes back finds an empty fifo. Until the
reader comes back, the shim's open end keeps the output; Task.Delete (or close()) ends the wait.

The stdin fifo is opened read-only and non-blocking (the open returns at once), and read when
select() says so. Linux reports end-of-file on a fifo only after a writer has come *and gone*
(a reader that opened before any writer just waits), so the container's stdin is closed when
dockerd closes its end (`echo hi | docker run -i busybox cat` ends), or on Task.CloseIO.

An empty path means /dev/null. A `file://` URI appends to a regular file (containerd's
log-uri form); `binary://` (a logging driver process) is not supported.

With a terminal (Task.Create terminal=true, config.json process.terminal=true) there are no
pipes: the runtime creates a pseudo-terminal inside the container and sends its master to the
shim over a "console socket" (INTERFACES.md §2.4; man 7 pty). The shim then copies
master → stdout fifo and stdin fifo → master, and resizes the terminal on Task.ResizePty::

    shim: listen on /tmp/labkit-pty…/pty.sock ──▶ runtime create --console-socket …
    runtime ── connect, one sendmsg(data "/dev/ptmx", SCM_RIGHTS [master]) ──▶ shim
"""

from __future__ import annotations

import errno
import os
import fcntl
import select
import socket
import stat
import struct
import termios
import threading

from labkit.shim.log import getLogger

log = getLogger(__name__)

CHUNK = 32 * 1024


def open_output(path: str) -> int:
    """Open a stdout/stderr destination for writing: a fifo (the usual case), a regular file,
    or a file:// URI (appended to). A fifo's open must return at once, reader or not, and later
    writes must never fail with EPIPE: see the module docstring for O_RDWR."""
    if path.startswith("binary://"):
        raise ValueError(f"stdio destination {path}: binary:// logging is not supported by labkit-shim")
    if path.startswith("file://"):
        from urllib.parse import urlparse   # (here: most shims never see a file:// URI)

        target = urlparse(path).path
        return os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise ValueError(f"stdio fifo {path} does not exist") from None
    # BEGIN SOLUTION chapter="05" hint="man 7 fifo: on Linux, opening a FIFO for read and write succeeds without blocking"
    # TODO: a fifo is opened so that the open never waits for a reader and a write never gets
    # TODO: EPIPE; anything else (a regular file) for appending. Both close-on-exec.
    # HINT: stat.S_ISFIFO(mode) tells a fifo; os.O_CLOEXEC keeps the fd out of the runtime's hands
    if stat.S_ISFIFO(mode):
        return os.open(path, os.O_RDWR | os.O_CLOEXEC)
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
    # END SOLUTION


def unread_bytes(fd: int) -> int:
    """How many bytes written into the pipe or fifo `fd` no reader has taken yet."""
    # BEGIN SOLUTION chapter="05" hint="man 2 ioctl / man 7 pipe: FIONREAD (termios.FIONREAD) stores the count in an int"
    # TODO: ask the kernel with ioctl(FIONREAD): fcntl.ioctl(fd, request, a 4-byte buffer)
    # HINT: struct.unpack("i", …) turns the 4 bytes it returns into the number
    return struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0" * 4))[0]
    # END SOLUTION


def _open_input(path: str) -> int:
    try:
        os.stat(path)
    except FileNotFoundError:
        raise ValueError(f"stdin fifo {path} does not exist") from None
    return os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)


class ConsoleSocket:
    """The unix socket on which the runtime hands over the container's pty master."""

    def __init__(self) -> None:
        import tempfile   # (here: only a container with a terminal needs it)

        # A short, private path: runc and crun connect to it from the host's mount namespace.
        self._dir = tempfile.mkdtemp(prefix="labkit-pty-")
        self.path = os.path.join(self._dir, "pty.sock")
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.bind(self.path)
        self._sock.listen(1)

    def receive(self, timeout: float = 10.0) -> int:
        """The master fd the runtime sent (it connected during `create`, so it is waiting)."""
        self._sock.settimeout(timeout)
        try:
            conn, _ = self._sock.accept()
        except socket.timeout:
            raise ValueError("the runtime did not connect to the console socket") from None
        with conn:
            conn.settimeout(timeout)
            _, fds, _, _ = socket.recv_fds(conn, 4096, 4)
        if len(fds) != 1:
            for fd in fds:
                os.close(fd)
            raise ValueError(f"the runtime sent {len(fds)} fds on the console socket, not one")
        return fds[0]

    def close(self) -> None:
        import shutil

        self._sock.close()
        shutil.rmtree(self._dir, ignore_errors=True)


class ContainerIO:
    """Pipes for the container, fifos for the outside world, and the threads between them.

    Lifecycle: construct (opens everything), pass `container_fds` to `runtime create`, call
    `started_runtime()` once the runtime has exited (the shim drops its copies of the
    container's ends, so a pipe reaches EOF when the container's last process closes it),
    `close_stdin()` on Task.CloseIO, `wait(timeout)` for the output to drain, `close()`.
    """

    def __init__(self, stdin: str = "", stdout: str = "", stderr: str = "", *,
                 terminal: bool = False):
        self.paths = (stdin, stdout, stderr)
        self.terminal = terminal
        self.console: ConsoleSocket | None = None
        self._master: int | None = None      # the pty master, kept for resize()
        self._container: list[int] = []     # the ends the runtime hands to the container
        self._shim: list[int] = []          # everything else we opened, closed in close()
        self._threads: list[threading.Thread] = []
        self._stdin_closed = threading.Event()
        self._stdin_w: int | None = None
        self._fd_lock = threading.Lock()     # copy threads and close() both close fds
        self._closing = threading.Event()    # close() was called: stop waiting for readers
        try:
            if terminal:
                # The runtime's own stdio goes nowhere; the container's is the pty.
                self.console = ConsoleSocket()
                self.container_fds = (self._devnull(os.O_RDONLY), self._devnull(os.O_WRONLY),
                                      self._devnull(os.O_WRONLY))
            else:
                self.container_fds = (self._setup_stdin(stdin), self._setup_output(stdout, "stdout"),
                                      self._setup_output(stderr, "stderr"))
        except BaseException:
            self.close()
            raise

    def _devnull(self, flags: int) -> int:
        fd = os.open(os.devnull, flags | os.O_CLOEXEC)
        self._container.append(fd)
        return fd

    def _setup_output(self, path: str, name: str) -> int:
        if not path:
            return self._devnull(os.O_WRONLY)
        dest = open_output(path)
        self._shim.append(dest)
        r, w = os.pipe()
        self._shim.append(r)
        self._container.append(w)
        t = threading.Thread(target=self._copy_out, args=(r, dest, name), daemon=True,
                             name=f"io-{name}")
        self._threads.append(t)
        return w

    def _setup_stdin(self, path: str) -> int:
        if not path:
            return self._devnull(os.O_RDONLY)
        src = _open_input(path)
        self._shim.append(src)
        r, w = os.pipe()
        self._container.append(r)
        self._stdin_w = w
        self._threads.append(threading.Thread(target=self._copy_in, args=(src, w), daemon=True,
                                              name="io-stdin"))
        return r

    def started_runtime(self) -> None:
        """Start copying and drop the shim's copies of the container's ends of the pipes."""
        with self._fd_lock:
            fds, self._container = self._container, []
        for fd in fds:
            os.close(fd)
        if self.console is not None:
            self._attach_console()
        for t in self._threads:
            t.start()

    def _attach_console(self) -> None:
        master = self.console.receive()
        self.console.close()
        self.console = None
        self._master = master
        self._shim.append(master)
        stdin, stdout, _ = self.paths
        # Separate fds (dup) per thread: each thread closes its own, never another's number.
        reader = os.dup(master)
        dest = open_output(stdout) if stdout else os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)
        self._shim += [reader, dest]
        self._threads.append(threading.Thread(target=self._copy_out, args=(reader, dest, "console"),
                                              daemon=True, name="io-console"))
        if stdin:
            src, writer = _open_input(stdin), os.dup(master)
            self._shim += [src, writer]
            self._stdin_w = None   # CloseIO stops the copy; closing the master would hang up
            self._threads.append(threading.Thread(target=self._copy_in, args=(src, writer),
                                                  daemon=True, name="io-stdin"))

    def resize(self, width: int, height: int) -> None:
        """TIOCSWINSZ on the master: the container gets SIGWINCH (man 2 ioctl_tty)."""
        if self._master is None:
            raise ValueError("the task has no terminal to resize")
        fcntl.ioctl(self._master, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))

    def _release(self, fd: int) -> None:
        """Close one of the shim's fds exactly once (a double close could hit a reused number)."""
        with self._fd_lock:
            if fd not in self._shim:
                return
            self._shim.remove(fd)
        os.close(fd)

    def _copy_out(self, src: int, dest: int, name: str) -> None:
        try:
            while True:
                try:
                    data = os.read(src, CHUNK)
                except OSError as e:
                    if e.errno == errno.EIO:
                        return  # a pty master reads EIO once the last slave fd is closed
                    raise
                if not data:
                    return      # EOF: every process of the container has closed the stream
                view = memoryview(data)
                while view:
                    view = view[os.write(dest, view):]
        except OSError as e:
            log.warning("copying %s stopped: %s", name, e)
        finally:
            # Closing our end of the fifo is what gives its reader EOF (dockerd's attach ends),
            # once the reader has everything (see the module docstring).
            self._release(src)
            self._wait_until_read(dest)
            self._release(dest)

    def _wait_until_read(self, dest: int) -> None:
        """Wait until nothing is left unread in the fifo `dest` (returns at once for a file,
        or when close() takes the fd: the task is being deleted)."""
        delay = 0.005
        while True:
            with self._fd_lock:   # the fd is ours while it is in _shim (never a reused number)
                if dest not in self._shim:
                    return
                try:
                    if not stat.S_ISFIFO(os.fstat(dest).st_mode):
                        return
                    unread = unread_bytes(dest)
                except OSError:
                    return
            if unread == 0 or self._closing.wait(delay):
                return
            delay = min(delay * 2, 0.1)   # nobody reading (dockerd restarting): check less often

    def _copy_in(self, src: int, dest: int) -> None:
        try:
            while True:
                closing = self._stdin_closed.is_set()
                # A timeout, so that CloseIO is noticed even while no input comes; once it is,
                # one last non-blocking pass forwards what was written before it.
                ready, _, _ = select.select([src], [], [], 0 if closing else 0.5)
                if not ready:
                    if closing:
                        break
                    continue
                try:
                    data = os.read(src, CHUNK)
                except BlockingIOError:
                    continue
                if not data:
                    break       # the writer closed its end: end of input
                view = memoryview(data)
                while view:
                    view = view[os.write(dest, view):]
        except OSError as e:
            log.info("copying stdin stopped: %s", e)
        finally:
            self._close_stdin_pipe()
            self._release(src)
            self._release(dest)

    def _close_stdin_pipe(self) -> None:
        with self._fd_lock:
            fd, self._stdin_w = self._stdin_w, None
        if fd is not None:
            try:
                os.close(fd)    # the container reads EOF
            except OSError:
                pass

    def close_stdin(self) -> None:
        self._stdin_closed.set()
        if not any(t.name == "io-stdin" and t.is_alive() for t in self._threads):
            self._close_stdin_pipe()

    def wait(self, timeout: float) -> bool:
        """Wait until stdout and stderr have been copied to the end and read from the fifos;
        False on timeout."""
        outputs = [t for t in self._threads if t.name != "io-stdin" and t.ident is not None]
        for t in outputs:
            t.join(timeout)
        return not any(t.is_alive() for t in outputs)

    def close(self) -> None:
        self._closing.set()
        if self.console is not None:
            self.console.close()
        self._stdin_closed.set()
        self._close_stdin_pipe()
        with self._fd_lock:
            fds = self._container + self._shim
            self._container.clear()
            self._shim.clear()
        for fd in fds:
            try:
                os.close(fd)
            except OSError:
                pass
