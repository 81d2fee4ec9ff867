"""`labkit pull IMAGE` — POST /images/create?fromImage=<name>&tag=<tag>, progress as it comes.

The reference is normalized on the client, as the docker CLI does: `busybox` is sent as
fromImage=docker.io/library/busybox&tag=latest (labkit.distribution.reference has the rules).
"""

from __future__ import annotations

import argparse
import sys

from labkit.cli.output import ProgressPrinter
from labkit.client import Client
from labkit.distribution.reference import DEFAULT_TAG, Reference, parse_reference


def add_parser(sub) -> None:
    p = sub.add_parser("pull", help="download an image from a registry")
    p.add_argument("image", help="image reference, e.g. busybox or busybox:latest")
    p.set_defaults(func=command)


def pull_image(client: Client, ref: Reference, out) -> None:
    """Pull `ref`, rendering progress on `out` (stdout for pull, stderr for run)."""
    # A digest is sent in the tag parameter: the daemon takes "tag" as tag-or-digest.
    tag = ref.digest or ref.tag or DEFAULT_TAG
    printer = ProgressPrinter(out, terminal=out.isatty())
    for msg in client.pull(ref.name, tag):
        printer.show(msg)


def command(client: Client, args: argparse.Namespace) -> int:
    ref = parse_reference(args.image)
    if not ref.tag and not ref.digest:
        print(f"Using default tag: {DEFAULT_TAG}")
        ref = Reference(ref.domain, ref.path, DEFAULT_TAG)
    pull_image(client, ref, sys.stdout)
    print(str(ref))
    return 0
