"""`labkit rm [-f] CONTAINER…` — DELETE /containers/{id}[?force=1] for each argument.

Like docker, every argument is tried; failures are reported one by one and the exit status
is 1 if any failed.
"""

from __future__ import annotations

import argparse

from labkit.cli.output import for_each
from labkit.client import Client


def add_parser(sub) -> None:
    p = sub.add_parser("rm", help="remove containers")
    p.add_argument("-f", "--force", action="store_true", help="kill a running container first")
    p.add_argument("containers", nargs="+")
    p.set_defaults(func=command)


def command(client: Client, args: argparse.Namespace) -> int:
    def remove(name: str) -> None:
        client.remove_container(name, force=args.force)
        print(name)  # docker echoes each argument it removed
    return for_each(args.containers, remove)
