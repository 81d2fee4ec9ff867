"""`labkit-runc run [--bundle B] [--detach] [--pid-file F] ID`: create + start in one go.

With --detach it returns once the program runs. Without, it stays as the container's
parent: it becomes a child SUBREAPER (man 2 prctl, PR_SET_CHILD_SUBREAPER) before creating,
so that init, orphaned when the bootstrap child exits, is re-parented to us rather than to
the host's pid 1. Then it can waitpid() for init, forward the signals it receives (^C,
SIGTERM) to the container, delete it and exit with the container's status (128+N when a
signal N killed it, like a shell).

With process.terminal (what `labkit-runc spec` writes) and no --console-socket, we play
the shim's part ourselves: listen on a private console socket, receive the pty master,
and copy bytes between our terminal (in raw mode) and the master until init exits.
"""

from __future__ import annotations

import fcntl
import os
import select
import signal
import socket
import struct
import sys
import termios
import tty

import prctl

from labkit.namespaces import exit_status   # chapter 01: a wait status as a shell shows it
from labkit.runc import config, create as create_verb
from labkit.runc.create import create
from labkit.runc.delete import delete
from labkit.runc.start import start
from labkit.runc.log import ContainerError

# argparse only for readers and type checkers: `run` is run by main.quick_args, which
# spares it argparse's import (main.py says why)
TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse

FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT,
             signal.SIGUSR1, signal.SIGUSR2, signal.SIGWINCH)


def add_arguments(p: argparse.ArgumentParser) -> None:
    create_verb.add_arguments(p)                   # run takes create's flags, and these:
    p.add_argument("--detach", "-d", action="store_true", help="do not wait for the container")
    p.add_argument("--keep", action="store_true", help="do not delete the container on exit")


def run(args: argparse.Namespace) -> int:
    try:
        terminal = bool(config.load(os.path.abspath(args.bundle))["process"].get("terminal"))
    except ContainerError as e:
        raise ContainerError(f"runc run failed: {e}") from None
    if terminal and args.detach and not args.console_socket:
        raise ContainerError("runc run failed: cannot allocate tty if runc will detach "
                             "without setting console socket")
    if not args.detach:
        prctl.set_child_subreaper(True)
    master = None
    with ConsoleListener(terminal and not args.console_socket) as console:
        c = create(args.root, args.id, args.bundle, args.pid_file,
                   console.path or args.console_socket, args.no_pivot, verb="run",
                   preserve_fds=args.preserve_fds)
        if console.path:
            master = console.receive()
            copy_window_size(master)    # before start: the program's first look is right
    try:
        start(args.root, args.id)
    except ContainerError as e:
        delete(c, force=True)
        raise ContainerError(f"runc run failed: {e}") from None
    if args.detach:
        return 0
    if master is not None:
        status = attach_terminal(c.pid, master)
    else:
        status = wait_forwarding_signals(c.pid)
    if not args.keep:
        delete(c, force=True)
    return status


def wait_forwarding_signals(pid: int) -> int:
    """Wait for our child `pid` (we are a subreaper: reap the orphans we inherit too),
    passing on the signals we get; return its exit status."""
    def forward(signum, _frame):
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass
    for signum in FORWARDED:
        signal.signal(signum, forward)
    while True:
        try:
            child, wait_status = os.wait()
        except ChildProcessError:
            return 128 + signal.SIGKILL          # reaped elsewhere: we cannot know
        if child == pid:
            return exit_status(wait_status)


class ConsoleListener:
    """The receiving side of the console-socket protocol (console.py has the diagram), on a
    private socket in a temporary directory. Inactive (path None) unless `wanted`."""

    def __init__(self, wanted: bool):
        self.path = self._dir = self._sock = None
        if wanted:
            import tempfile      # only with a terminal: it costs every `run` ~3 ms to import
            self._dir = tempfile.mkdtemp(prefix="labkit-runc-", dir="/tmp")
            self.path = os.path.join(self._dir, "console.sock")
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self._sock.bind(self.path)
            self._sock.listen(1)

    def receive(self) -> int:
        self._sock.settimeout(10)
        conn, _ = self._sock.accept()
        with conn:
            _name, fds, _flags, _addr = socket.recv_fds(conn, 4096, 1)
        if len(fds) != 1:
            raise ContainerError(f"console socket: expected one fd, got {len(fds)}")
        return fds[0]

    def __enter__(self) -> "ConsoleListener":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            os.unlink(self.path)
            os.rmdir(self._dir)
            self._sock = None


def window_size() -> dict | None:
    """Our terminal's size as an OCI process.consoleSize, or None if stdin is no terminal
    (or one that does not know its size)."""
    stdin = sys.stdin.fileno()
    if not os.isatty(stdin):
        return None
    rows, cols, _x, _y = struct.unpack("HHHH", fcntl.ioctl(stdin, termios.TIOCGWINSZ, b"\0" * 8))
    return {"height": rows, "width": cols} if rows and cols else None


def copy_window_size(master: int) -> None:
    """Give the container's terminal our window size (TIOCSWINSZ; man 2 ioctl_tty)."""
    size = window_size()
    if size:
        fcntl.ioctl(master, termios.TIOCSWINSZ,
                    struct.pack("HHHH", size["height"], size["width"], 0, 0))


def attach_terminal(pid: int, master: int) -> int:
    """Copy our stdin to the pty master and the master to our stdout until `pid` (our
    child) exits; return its exit status."""
    stdin, stdout = sys.stdin.fileno(), sys.stdout.fileno()
    saved = termios.tcgetattr(stdin) if os.isatty(stdin) else None

    # the container's terminal follows our window's size (the first one it got earlier)
    signal.signal(signal.SIGWINCH, lambda _signum, _frame: copy_window_size(master))
    if saved is not None:
        tty.setraw(stdin)       # keys (^C included) go to the container's terminal as bytes
    status = None
    try:
        readers = [master, stdin]
        while master in readers:
            ready, _, _ = select.select(readers, [], [], 0.1)
            if stdin in ready:
                data = os.read(stdin, 4096)
                if data:
                    os.write(master, data)
                else:
                    readers.remove(stdin)             # our stdin ended; keep showing output
            if master in ready:
                try:
                    data = os.read(master, 4096)
                except OSError:                       # EIO: every slave fd is closed
                    data = b""
                if data:
                    os.write(stdout, data)
                else:
                    readers.remove(master)
            if status is None:
                status = _reap(pid)
                if status is not None and master not in ready:
                    break
    finally:
        signal.signal(signal.SIGWINCH, signal.SIG_DFL)     # the master is about to close
        if saved is not None:
            termios.tcsetattr(stdin, termios.TCSADRAIN, saved)
        os.close(master)
    while status is None:
        status = _reap(pid, block=True)
    return status


def _reap(pid: int, block: bool = False) -> int | None:
    """Reap children (we are a subreaper); `pid`'s exit status once it has exited."""
    while True:
        try:
            child, wait_status = os.waitpid(-1, 0 if block else os.WNOHANG)
        except ChildProcessError:
            return 128 + signal.SIGKILL if block else None
        if child == 0:
            return None
        if child == pid:
            return exit_status(wait_status)
