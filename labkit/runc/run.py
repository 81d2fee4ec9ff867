"""`labkit-runc run [--bundle B] [--detach] [--pid-file F] ID`: create + start in one go.

With --detach it returns once the program runs. Without, it stays as the container's
parent: it becomes a child SUBREAPER (man 2 prctl, PR_SET_CHILD_SUBREAPER) before creating,
so that init, orphaned when the bootstrap child exits, is re-parented to us rather than to
the host's pid 1. Then it can waitpid() for init, forward the signals it receives (^C,
SIGTERM) to the container, delete it and exit with the container's status (128+N when a
signal N killed it, like a shell).
"""

from __future__ import annotations

import argparse
import os
import signal

import prctl

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
    p.add_argument("--preserve-fds", type=int, default=0, help="accepted, ignored")
    p.add_argument("--pidfd-socket", help="accepted, ignored")
    p.add_argument("id")


def run(args: argparse.Namespace) -> int:
    if not args.detach:
        prctl.set_child_subreaper(True)
    c = create(args.root, args.id, args.bundle, args.pid_file, args.console_socket,
               args.no_pivot, verb="run")
    try:
        start(args.root, args.id)
    except ContainerError as e:
        delete(c, force=True)
        raise ContainerError(f"runc run failed: {e}") from None
    if args.detach:
        return 0

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
