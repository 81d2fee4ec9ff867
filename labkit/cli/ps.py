"""`labkit ps [-a]` — GET /containers/json[?all=1], printed as docker's table."""

from __future__ import annotations

import argparse
import json

from labkit.cli.output import ago, ellipsis, table
from labkit.client import Client

HEADERS = ["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"]


def add_parser(sub) -> None:
    p = sub.add_parser("ps", help="list containers")
    p.add_argument("-a", "--all", action="store_true", help="show all containers (default: running)")
    p.add_argument("-q", "--quiet", action="store_true", help="only the IDs")
    p.set_defaults(func=command)


def format_ports(ports: list[dict] | None) -> str:
    shown = []
    for p in ports or []:
        if p.get("PublicPort"):
            shown.append(f"{p.get('IP', '0.0.0.0')}:{p['PublicPort']}->{p.get('PrivatePort')}/{p.get('Type', 'tcp')}")
        elif p.get("PrivatePort"):
            shown.append(f"{p['PrivatePort']}/{p.get('Type', 'tcp')}")
    return ", ".join(shown)


def row(c: dict) -> list[str]:
    names = ",".join(n.lstrip("/") for n in c.get("Names") or [])
    return [
        c.get("Id", "")[:12],
        c.get("Image", ""),
        # docker truncates to 20 characters and quotes the result as Go's strconv.Quote does
        json.dumps(ellipsis(c.get("Command", ""), 20), ensure_ascii=False),
        ago(c["Created"]) if c.get("Created") else "",
        c.get("Status", ""),
        format_ports(c.get("Ports")),
        names,
    ]


def command(client: Client, args: argparse.Namespace) -> int:
    containers = client.containers(all=args.all)
    if args.quiet:
        for c in containers:
            print(c.get("Id", "")[:12])
        return 0
    print(table([row(c) for c in containers], HEADERS), end="")
    return 0
