"""`labkit push NAME[:TAG]` — POST /images/{name}/push?tag=…, progress as it comes.

The stream is pull's (labkit.cli.output.ProgressPrinter draws both): "The push refers to
repository [localhost:5000/x]", per layer "Preparing", "Waiting", "Pushing" {current,total},
"Pushed" (or "Layer already exists"), then "latest: digest: sha256:… size: 527".
"""

from __future__ import annotations

import argparse
import sys

from labkit.cli.output import ProgressPrinter
from labkit.client import Client
from labkit.distribution.reference import DEFAULT_TAG, parse_reference


def add_parser(sub) -> None:
    p = sub.add_parser("push", help="upload an image to a registry")
    p.add_argument("image", help="e.g. 127.0.0.1:5000/hello-world:latest")
    p.set_defaults(func=command)


def command(client: Client, args: argparse.Namespace) -> int:
    ref = parse_reference(args.image)
    if not ref.tag and not ref.digest:
        print(f"Using default tag: {DEFAULT_TAG}")
    printer = ProgressPrinter(sys.stdout, terminal=sys.stdout.isatty())
    for msg in client.push(ref.name, ref.tag or DEFAULT_TAG):
        printer.show(msg)
    return 0
