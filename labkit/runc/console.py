"""process.terminal: give the container a pseudo-terminal and hand its master to the caller.

The protocol (INTERFACES.md §2.4), the same as runc's, so the real shim works with us:

    caller (the shim)                         container init
    listens on a unix socket  <---------- the runtime connects (before the container starts)
                                          opens /dev/ptmx of the container's OWN devpts
                                          (after pivot_root, so the pty lives inside)
    recvmsg: data "/dev/ptmx", <---------- ONE sendmsg, SCM_RIGHTS = [master fd]
             one fd = master
    copies master <-> its fifos           the slave becomes stdin/stdout/stderr and the
    resizes with TIOCSWINSZ               controlling terminal (setsid + TIOCSCTTY);
                                          it is also bind-mounted onto /dev/console

man 7 pty, man 4 pts, man 2 ioctl_tty.
"""

from __future__ import annotations

import fcntl
import os
import socket
import struct
import termios

from labkit import syscalls as sc

TIOCGPTN = 0x80045430      # get the pty number of a master
TIOCSPTLCK = 0x40045431    # (un)lock the slave


def connect(path: str) -> socket.socket:
    """Done by the runtime BEFORE pivot_root: the socket path is a host path."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(path)
    return sock


def setup(sock: socket.socket, size: dict | None, console: bool) -> None:
    """Create the pty inside the container, send the master, make the slave our terminal.
    `console`: also bind the slave onto /dev/console (the container's init only)."""
    master = os.open("/dev/ptmx", os.O_RDWR | os.O_NOCTTY)
    fcntl.ioctl(master, TIOCSPTLCK, struct.pack("i", 0))
    number = struct.unpack("I", fcntl.ioctl(master, TIOCGPTN, b"\0\0\0\0"))[0]
    slave_path = f"/dev/pts/{number}"
    slave = os.open(slave_path, os.O_RDWR | os.O_NOCTTY)
    if size:
        fcntl.ioctl(slave, termios.TIOCSWINSZ,
                    struct.pack("HHHH", size.get("height", 0), size.get("width", 0), 0, 0))
    if console:
        # /dev/console is where some programs (and init systems) write: make it this pty.
        # Never for an exec'd process: its pty is freed when it exits, and a mount whose
        # source is gone cannot be mounted on again ("mount /dev/console: ENOENT" for the
        # next `docker exec -it`); init's /dev/console must stay init's anyway.
        if not os.path.lexists("/dev/console"):
            open("/dev/console", "a").close()
        sc.mount(slave_path, "/dev/console", None, sc.MS_BIND)

    socket.send_fds(sock, [b"/dev/ptmx"], [master])
    sock.close()
    os.close(master)

    # A new session whose controlling terminal is the slave: ^C and job control work
    os.setsid()
    fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
    for fd in (0, 1, 2):
        os.dup2(slave, fd)
    if slave > 2:
        os.close(slave)
