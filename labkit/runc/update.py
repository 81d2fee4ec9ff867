"""`labkit-runc update [--resources FILE|-] [--memory N] [--pids-limit N] [--cpu-shares N]
[--cpu-quota N] [--cpu-period N] ID`: change a running container's cgroup limits.

The shim sends `update --resources - ID` with an OCI `linux.resources` object on stdin
(`docker update -m 128m c1` ends here). The new values are written into the container's
cgroup files at once (the kernel applies them to processes already running) and kept in
state.json.
"""

from __future__ import annotations

import argparse
import json
import sys

from labkit.runc import cgroups
from labkit.runc.container import Container
from labkit.runc.log import ContainerError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--resources", "-r", help="a JSON linux.resources object; - for stdin")
    p.add_argument("--memory", type=int, help="memory limit in bytes")
    p.add_argument("--pids-limit", type=int, help="maximum number of processes")
    p.add_argument("--cpu-shares", type=int)
    p.add_argument("--cpu-quota", type=int)
    p.add_argument("--cpu-period", type=int)
    p.add_argument("id")


def run(args: argparse.Namespace) -> int:
    c = Container.load(args.root, args.id)
    if c.status() == "stopped":
        raise ContainerError("container not running")
    if not c.cgroup_paths:
        raise ContainerError(f"container {c.id} has no cgroup (linux.cgroupsPath was unset)")
    resources: dict = {}
    if args.resources:
        try:
            text = sys.stdin.read() if args.resources == "-" else open(args.resources).read()
            resources = json.loads(text or "{}")
        except (OSError, ValueError) as e:
            raise ContainerError(f"update: cannot read resources: {e}") from None
        if not isinstance(resources, dict):
            raise ContainerError("update: resources must be a JSON object")
    flags = ((args.memory, "memory", "limit"), (args.pids_limit, "pids", "limit"),
             (args.cpu_shares, "cpu", "shares"), (args.cpu_quota, "cpu", "quota"),
             (args.cpu_period, "cpu", "period"))
    for value, section, key in flags:
        if value is not None:
            resources.setdefault(section, {})[key] = value
    # devices are set once at create; everything else can change
    resources.pop("devices", None)
    cgroups.apply(c.cgroup_paths, resources)
    linux = c.config.setdefault("linux", {})
    current = linux.setdefault("resources", {})
    for section, values in resources.items():
        if isinstance(values, dict):
            current.setdefault(section, {}).update(values)
        else:
            current[section] = values
    c.save()
    return 0
