"""`labkit rmi [-f] IMAGE…` — DELETE /images/{name}[?force=1]; prints what was untagged and deleted."""

from __future__ import annotations

import argparse
import sys

from labkit.client import APIError, Client


def add_parser(sub) -> None:
    p = sub.add_parser("rmi", help="remove images")
    p.add_argument("-f", "--force", action="store_true", help="remove even if in use or tagged twice")
    p.add_argument("images", nargs="+")
    p.set_defaults(func=command)


def command(client: Client, args: argparse.Namespace) -> int:
    status = 0
    for name in args.images:
        try:
            deleted = client.remove_image(name, force=args.force)
        except APIError as e:
            print(f"Error response from daemon: {e.message}", file=sys.stderr)
            status = 1
            continue
        for item in deleted:
            for key in ("Untagged", "Deleted"):
                if key in item:
                    print(f"{key}: {item[key]}")
    return status
