"""`labkit-runc ps [--format table|json] ID`: the processes of a container.

`--format json` prints a JSON array of host pids (what containerd's shim asks for, to
answer `docker top` and Task.Pids); the table is `ps -f` limited to those pids.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

from labkit.runc.container import Container
from labkit.runc.kill import container_pids
from labkit.runc.log import ContainerError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", "-f", choices=("table", "json"), default="table")
    p.add_argument("id")
    p.add_argument("ps_args", nargs="*", help="arguments for ps(1) in table format")


def run(args: argparse.Namespace) -> int:
    c = Container.load(args.root, args.id)
    pids = container_pids(c) if c.status() != "stopped" else []
    if args.format == "json":
        sys.stdout.write(json.dumps(sorted(pids)) + "\n")
        return 0
    if not pids:
        return 0
    try:
        out = subprocess.run(["ps", *(args.ps_args or ["-f"]), "-p", ",".join(map(str, pids))],
                             capture_output=True, text=True)
    except OSError as e:
        raise ContainerError(f"ps: {e.strerror.lower()}") from None
    sys.stdout.write(out.stdout)
    return 0
