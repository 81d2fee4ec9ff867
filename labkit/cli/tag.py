"""`labkit tag SOURCE TARGET` — POST /images/{source}/tag?repo=…&tag=… (201, no output)."""

from __future__ import annotations

import argparse

from labkit.client import Client
from labkit.distribution.reference import DEFAULT_TAG, parse_reference


def add_parser(sub) -> None:
    p = sub.add_parser("tag", help="give an image another name")
    p.add_argument("source")
    p.add_argument("target")
    p.set_defaults(func=command)


def command(client: Client, args: argparse.Namespace) -> int:
    target = parse_reference(args.target)
    if target.digest:
        raise ValueError(f"refusing to create a tag with a digest reference: {args.target}")
    client.tag(args.source, target.name, target.tag or DEFAULT_TAG)
    return 0
