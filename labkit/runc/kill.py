"""`labkit-runc kill [--all] ID [SIGNAL]`: send a signal to the container's init (or, with
--all, to every process of the container).

SIGNAL is a number (the shim sends "9", "15") or a name, with or without SIG (KILL, SIGKILL);
the default is SIGTERM. Remember that the container's init is pid 1 of its pid namespace:
the kernel drops signals to pid 1 that it has no handler for, EXCEPT SIGKILL and SIGSTOP
sent from an ancestor namespace (us). That is why `docker stop` falls back to SIGKILL.

--all finds the processes through the container's cgroup when it has one; otherwise
through its pid namespace (every process whose /proc/<pid>/ns/pid is init's).
"""

from __future__ import annotations

import os

from labkit import signals
from labkit.procfs import pid_namespace_members
from labkit.runc import cgroups
from labkit.runc.container import Container
from labkit.runc.log import ContainerError

# argparse only for readers and type checkers: delete imports this module, and `delete`
# is run by main.quick_args, which spares it argparse's import (main.py says why)
TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--all", "-a", action="store_true", help="signal every process")
    p.add_argument("id")
    p.add_argument("signal", nargs="?", default="SIGTERM")


def parse_signal(text: str) -> int:
    """"9", "KILL", "SIGKILL" -> 9 (labkit.signals reads them as runc does)."""
    try:
        return signals.parse_signal(text)
    except ValueError:
        raise ContainerError(f"unknown signal {text!r}") from None


def run(args: argparse.Namespace) -> int:
    c = Container.load(args.root, args.id)
    kill(c, parse_signal(args.signal), args.all)
    return 0


def container_pids(c: Container) -> list[int]:
    """Every process of the container, init included."""
    if c.cgroup_paths:
        found = cgroups.pids(c.cgroup_paths)
        if found:
            return found
    return pid_namespace_members(c.pid)


def kill(c: Container, signum: int, all_processes: bool = False) -> None:
    if c.status() == "stopped":
        raise ContainerError("container not running")
    targets = container_pids(c) if all_processes else [c.pid]
    for pid in targets or [c.pid]:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            if pid == c.pid:
                raise ContainerError("no such process") from None
    if signum == signals.SIGKILL and c.cgroup_paths and cgroups.is_frozen(c.cgroup_paths):
        # A frozen task takes its SIGKILL only once thawed (as runc, thaw the killed)
        cgroups.freeze(c.cgroup_paths, False)
