"""`labkit-runc pause ID` and `labkit-runc resume ID`: freeze and thaw every process of the
container at once, through its cgroup's freezer (man 7 cgroups: "freezer" in v1,
cgroup.freeze in v2). A paused container's status is "paused" (container.py).

Signals are not the tool for this: SIGSTOP reaches one process at a time and the process
can see it; the freezer stops the whole group atomically, invisibly to it.
"""

from __future__ import annotations

import argparse

from labkit.runc import cgroups
from labkit.runc.container import Container
from labkit.runc.log import ContainerError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("id")


def pause(args: argparse.Namespace) -> int:
    c = Container.load(args.root, args.id)
    if c.status() != "running":
        raise ContainerError("container not running")
    cgroups.freeze(c.cgroup_paths, True)
    return 0


def resume(args: argparse.Namespace) -> int:
    c = Container.load(args.root, args.id)
    if c.status() != "paused":
        raise ContainerError("container not paused")
    cgroups.freeze(c.cgroup_paths, False)
    return 0


def run(args: argparse.Namespace) -> int:
    """One module for both verbs (main.py's table lists it twice)."""
    return resume(args) if args.command == "resume" else pause(args)
