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


def run(args: argparse.Namespace) -> int:
    """One module for both verbs (main.py's table lists it twice): pause freezes a running
    container, resume thaws a paused one."""
    freeze = args.command != "resume"
    c = Container.load(args.root, args.id)
    needed = "running" if freeze else "paused"
    if c.status() != needed:
        raise ContainerError(f"container not {needed}")       # runc's wording, both verbs
    cgroups.freeze(c.cgroup_paths, freeze)
    return 0
