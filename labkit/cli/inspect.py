"""`labkit inspect [--type container|image] [-f FORMAT] NAME…` — the daemon's JSON, as docker.

    GET /containers/{name}/json, and if that is 404 (and no --type), GET /images/{name}/json

Without -f: one JSON array of all the answers, indented with four spaces (docker's layout).
With -f: each object through labkit.cli.template (`{{.State.Status}}`, `{{json .Config}}`,
index/upper/lower/join), one line each. A name found nowhere: "Error: No such object: x"
on stderr and exit status 1, after the others are printed.
"""

from __future__ import annotations

import argparse
import json
import sys

from labkit.cli.template import render
from labkit.client import APIError, Client


def add_parser(sub) -> None:
    p = sub.add_parser("inspect", help="show low-level information on containers and images")
    p.add_argument("-f", "--format", help="Go-template subset, e.g. '{{.State.Status}}'")
    p.add_argument("--type", choices=["container", "image"], help="only look for this kind")
    p.add_argument("names", nargs="+")
    p.set_defaults(func=command)


def find(client: Client, name: str, kind: str | None) -> dict | None:
    lookups = [("container", client.inspect_container), ("image", client.inspect_image)]
    for k, lookup in lookups:
        if kind and k != kind:
            continue
        try:
            return lookup(name)
        except APIError as e:
            if e.status != 404:
                raise
    return None


def command(client: Client, args: argparse.Namespace) -> int:
    found, status = [], 0
    for name in args.names:
        obj = find(client, name, args.type)
        if obj is None:
            what = f"{args.type}" if args.type else "object"
            print(f"Error: No such {what}: {name}", file=sys.stderr)
            status = 1
            continue
        found.append(obj)
    if args.format is not None:
        for obj in found:
            print(render(args.format, obj))
    else:
        print(json.dumps(found, indent=4, ensure_ascii=False))
    return status
