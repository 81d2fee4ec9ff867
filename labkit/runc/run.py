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

import argparse
import fcntl
import os
import select
import shutil
import signal
import socket
import sys
import tempfile
import termios
import tty

import prctl

from labkit.runc import config
from labkit.runc.create import create
from labkit.runc.delete import delete
from labkit.runc.start import start
from labkit.runc.log import ContainerError

FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT,
             signal.SIGUSR1, signal.SIGUSR2, signal.SIGWINCH)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bundle", "-b", default=".", help="path to the bundle (default: .)")
    p.add_argument("--detach", "-d", action="store_true", help="do not wait for the container")
    p.add_argument("--pid-file", help="write init's host pid here")
    p.add_argument("--console-socket", help="unix socket to send the pty master to")
    p.add_argument("--no-pivot", action="store_true")
    p.add_argument("--no-new-keyring", action="store_true")
    p.add_argument("--keep", action="store_true", help="do not delete the container on exit")
    p.add_argument("--preserve-fds", type=int, default=0,
                   help="pass fds 3 .. 3+N-1 on to the container")
    p.add_argument("--pidfd-socket", help="accepted, ignored")
    p.add_argument("id")


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
    console_dir = listener = None
    console_socket = args.console_socket
    if terminal and not console_socket:
        console_dir = tempfile.mkdtemp(prefix="labkit-runc-", dir="/tmp")
        console_socket = os.path.join(console_dir, "console.sock")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(console_socket)
        listener.listen(1)
    try:
        c = create(args.root, args.id, args.bundle, args.pid_file, console_socket,
                   args.no_pivot, verb="run", preserve_fds=args.preserve_fds)
        master = _receive_master(listener) if listener else None
    finally:
        if listener:
            listener.close()
            shutil.rmtree(console_dir, ignore_errors=True)
    try:
        start(args.root, args.id)
    except ContainerError as e:
        delete(c, force=True)
        raise ContainerError(f"runc run failed: {e}") from None
    if args.detach:
        return 0
    if master is not None:
        return _attach_terminal(c, master, keep=args.keep)

    def forward(signum, _frame):
        try:
            os.kill(c.pid, signum)
        except ProcessLookupError:
            pass
    for signum in FORWARDED:
        signal.signal(signum, forward)

    status = 0
    while True:
        # As a subreaper we also inherit the container's orphans: reap them all, and stop
        # when init itself has exited.
        try:
            pid, wait_status = os.wait()
        except ChildProcessError:
            break
        if pid == c.pid:
            status = os.waitstatus_to_exitcode(wait_status)
            break
    if not args.keep:
        delete(c, force=True)
    return status if status >= 0 else 128 - status


def _receive_master(listener: socket.socket) -> int:
    """The console-socket protocol, receiving side (console.py has the diagram)."""
    listener.settimeout(10)
    conn, _ = listener.accept()
    with conn:
        _name, fds, _flags, _addr = socket.recv_fds(conn, 4096, 1)
    if len(fds) != 1:
        raise ContainerError(f"console socket: expected one fd, got {len(fds)}")
    return fds[0]


def _attach_terminal(c, master: int, keep: bool) -> int:
    """Copy our stdin to the pty master and the master to our stdout until init exits."""
    stdin, stdout = sys.stdin.fileno(), sys.stdout.fileno()
    saved = termios.tcgetattr(stdin) if os.isatty(stdin) else None

    def resize(_signum=None, _frame=None):
        if saved is not None:    # the container's terminal gets our window size
            fcntl.ioctl(master, termios.TIOCSWINSZ, fcntl.ioctl(stdin, termios.TIOCGWINSZ, b"\0" * 8))
    resize()
    signal.signal(signal.SIGWINCH, resize)
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
                status = _reap(c.pid)
                if status is not None and master not in ready:
                    break
    finally:
        if saved is not None:
            termios.tcsetattr(stdin, termios.TCSADRAIN, saved)
        os.close(master)
    while status is None:
        status = _reap(c.pid, block=True)
    if not keep:
        delete(c, force=True)
    return status if status >= 0 else 128 - status


def _reap(init_pid: int, block: bool = False) -> int | None:
    """Reap children (we are a subreaper); init's exit code once it has exited, else None."""
    while True:
        try:
            pid, wait_status = os.waitpid(-1, 0 if block else os.WNOHANG)
        except ChildProcessError:
            return -signal.SIGKILL if block else None
        if pid == 0:
            return None
        if pid == init_pid:
            return os.waitstatus_to_exitcode(wait_status)
