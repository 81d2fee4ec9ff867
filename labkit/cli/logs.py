"""`labkit logs [-f] [--tail N] [-t] CONTAINER` — GET /containers/{id}/logs?stdout=1&stderr=1.

The container's stdout goes to our stdout, its stderr to our stderr, as the docker CLI does.
The stream is multiplexed (labkit.stdcopy) unless the container has a TTY; the CLI asks
inspect which it is, because below API 1.42 the answer's Content-Type does not tell.
-f follows: the daemon keeps the connection open until the container stops.
"""

from __future__ import annotations

import argparse
import sys

from labkit.cli.run import copy_output
from labkit.client import Client


def add_parser(sub) -> None:
    p = sub.add_parser("logs", help="show a container's output")
    p.add_argument("-f", "--follow", action="store_true", help="keep following new output")
    p.add_argument("-n", "--tail", default="all", help="only the last N lines (default all)")
    p.add_argument("-t", "--timestamps", action="store_true", help="prefix each line with its time")
    p.add_argument("container")
    p.set_defaults(func=command)


def command(client: Client, args: argparse.Namespace) -> int:
    tty = bool(client.inspect_container(args.container).get("Config", {}).get("Tty"))
    failures: list[str] = []
    copy_output(client.logs(args.container, follow=args.follow, tail=args.tail,
                            timestamps=args.timestamps, tty=tty),
                sys.stdout.buffer, sys.stderr.buffer, failures)
    for failure in failures:
        print(f"labkit: {failure}", file=sys.stderr)
    return 1 if failures else 0
