"""`labkit-runc list [--format table|json] [--quiet]`: the containers under --root."""

from __future__ import annotations

import argparse
import json
import sys

from labkit.runc.container import list_containers


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", "-f", choices=("table", "json"), default="table")
    p.add_argument("--quiet", "-q", action="store_true", help="only the ids")


def run(args: argparse.Namespace) -> int:
    states = [c.oci_state() for c in list_containers(args.root)]
    if args.quiet:
        for s in states:
            print(s["id"])
    elif args.format == "json":
        sys.stdout.write(json.dumps(states) + "\n")
    else:
        rows = [("ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER")]
        rows += [(s["id"], str(s["pid"]), s["status"], s["bundle"], s["created"],
                  s["owner"] or "root") for s in states]
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        for r in rows:
            print("   ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip())
    return 0
