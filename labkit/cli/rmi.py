"""`labkit rmi [-f] IMAGE…` — DELETE /images/{name}[?force=1]; prints what was untagged and deleted.

Like `labkit rm`, every argument is tried and the exit status is 1 if any failed.
"""

from __future__ import annotations

import argparse

from labkit.cli.output import for_each
from labkit.client import Client


def add_parser(sub) -> None:
    p = sub.add_parser("rmi", help="remove images")
    p.add_argument("-f", "--force", action="store_true", help="remove even if in use or tagged twice")
    p.add_argument("images", nargs="+")
    p.set_defaults(func=command)


def command(client: Client, args: argparse.Namespace) -> int:
    def remove(name: str) -> None:
        for item in client.remove_image(name, force=args.force):
            for key in ("Untagged", "Deleted"):
                if key in item:
                    print(f"{key}: {item[key]}")
    return for_each(args.images, remove)
