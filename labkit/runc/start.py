"""`labkit-runc start ID`: let a created container's init go on to execve.

init is blocked opening exec.fifo for writing (init.py, step 16). Opening the fifo for
reading unblocks it; init writes one byte ("0") and execs the program. Reading that byte
is our proof that init really went on; then the fifo is removed, and from now on the
container's status derives as "running" (container.py).

The fifo is opened non-blocking and polled, so that if init died in the meantime we
notice instead of waiting forever for a writer that will never come.
"""

from __future__ import annotations

import os
import select
import time

from labkit import procfs
from labkit.runc.container import Container
from labkit.runc.hooks import run_hooks   # cheap: json and subprocess only when hooks run
from labkit.runc.log import ContainerError, warning

# argparse only for readers and type checkers: this command is run by main.quick_args,
# which spares it argparse's import (main.py says why)
TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("id")


def run(args: argparse.Namespace) -> int:
    start(args.root, args.id)
    return 0


def start(root: str, container_id: str) -> Container:
    c = Container.load(root, container_id)
    status = c.status()
    if status == "stopped":
        raise ContainerError("cannot start a container that has stopped")
    if status == "running":
        raise ContainerError("cannot start an already running container")
    try:
        fifo = os.open(c.fifo_path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise ContainerError("cannot start an already running container") from None
    try:
        # BEGIN SOLUTION chapter="04" hint="man 7 fifo; man 2 poll: wait for POLLIN, but give up if init died"
        # TODO: read the one byte init writes once our open() lets its open() complete
        # HINT: loop: poll 100 ms; os.read(fifo, 1); stop when data came or c.init_alive() is False
        poller = select.poll()
        poller.register(fifo, select.POLLIN)
        data = b""
        while not data:
            if poller.poll(100):
                data = os.read(fifo, 1)
                if not data and not c.init_alive():
                    break
            elif not c.init_alive():
                break
        # END SOLUTION
        if data == b"0":
            _wait_for_exec(fifo, c)
    finally:
        os.close(fifo)
    if data != b"0":
        raise ContainerError("cannot start a container that has stopped")
    os.unlink(c.fifo_path)
    poststart = (c.config.get("hooks") or {}).get("poststart")
    if poststart:
        _first_go(c)
        # The spec: a failing poststart hook is logged as a warning; the remaining hooks and
        # the container's life go on as if it had succeeded (the program is running already).
        # The state they get says "running" with init's pid even if a quick program has
        # already exited: it describes the step they belong to (after the program started).
        run_hooks(poststart, dict(c.oci_state(), status="running", pid=c.pid),
                  warn=lambda msg: warning(f"poststart: {msg}"))
    return c


# CPU time after which a program that neither waits nor ends has had its first go anyway (one
# that computes from its first instruction on): 10 clock ticks, 0.1 s of its own CPU time.
FIRST_GO_CPU_TICKS = 10


def _first_go(c: Container) -> None:
    """Before the poststart hooks, let the program have its first go: until it waits for
    something (state S: a read, a child, a timer), is stopped (T, t), has ended (Z, X, or
    gone), or has used FIRST_GO_CPU_TICKS of CPU time.

    Why: EOF on exec.fifo says that execve has begun the program, not that it has run a single
    instruction. A hook started at once races with it, and "the poststart hooks are called
    after the process is executed" reads, to a user and to the OCI runtime-tools validation,
    as "after it did what it does first": that program's container writes a line, its
    poststart hook another, and it wants them in that order -- they came the other way round
    about one run in three on a busy machine (crun's too). Measured in the program's own
    CPU time, not in wall-clock time, so that a loaded machine delays the hooks instead of
    letting them overtake. /proc is polled: the kernel has no event for "has blocked".
    A program stuck in D (uninterruptible I/O) holds the hooks back until the I/O is done."""
    first = procfs.stat(c.pid)
    if first is None or first.start_time != c.start_time:
        return
    while True:
        now = procfs.stat(c.pid)
        if now is None or now.start_time != c.start_time or now.state in "STtZXx" \
                or now.cpu_time - first.cpu_time >= FIRST_GO_CPU_TICKS:
            return
        time.sleep(0.001)               # a poll interval: ours, so the program gets the CPU


def _wait_for_exec(fifo: int, c: Container) -> None:
    """Read on until EOF: init keeps its end of the fifo open (close-on-exec) until execve
    replaces it with the program (or it dies), as runc's init does. So when `start`
    returns, the program runs, and the poststart hooks come after it, as the spec says."""
    poller = select.poll()
    poller.register(fifo, select.POLLIN | select.POLLHUP)
    while True:
        if poller.poll(100):
            if not os.read(fifo, 1):
                return                                    # EOF: execve (or exit) happened
        elif not c.init_alive():
            return
