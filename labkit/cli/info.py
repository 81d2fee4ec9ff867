"""`labkit info` — GET /info, the daemon's view of itself (a selection of docker info's lines)."""

from __future__ import annotations

import argparse

from labkit.client import Client

FIELDS = [("Containers", "Containers"), (" Running", "ContainersRunning"),
          (" Paused", "ContainersPaused"), (" Stopped", "ContainersStopped"),
          ("Images", "Images"), ("Server Version", "ServerVersion"),
          ("Storage Driver", "Driver"), ("Logging Driver", "LoggingDriver"),
          ("Cgroup Driver", "CgroupDriver"), ("Cgroup Version", "CgroupVersion"),
          ("Default Runtime", "DefaultRuntime"), ("Kernel Version", "KernelVersion"),
          ("Operating System", "OperatingSystem"), ("OSType", "OSType"),
          ("Architecture", "Architecture"), ("CPUs", "NCPU"), ("Total Memory", "MemTotal"),
          ("Name", "Name"), ("ID", "ID"), ("Docker Root Dir", "DockerRootDir")]


def add_parser(sub) -> None:
    p = sub.add_parser("info", help="show the daemon's system-wide information")
    p.set_defaults(func=command)


def command(client: Client, args: argparse.Namespace) -> int:
    info = client.info()
    print("Server:")
    for label, key in FIELDS:
        if key in info:
            print(f" {label}: {info[key]}")
    runtimes = info.get("Runtimes") or {}
    if runtimes:
        print(f" Runtimes: {' '.join(sorted(runtimes))}")
    return 0
