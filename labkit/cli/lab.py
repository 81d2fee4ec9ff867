"""`labkit lab up|down|status|reset|images` — a thin front end to labkit.lab."""

from __future__ import annotations

import argparse
import sys

from labkit.cli.output import table


def add_parser(sub) -> None:
    p = sub.add_parser("lab", help="control the lab: up, down, status, reset, images")
    verbs = p.add_subparsers(dest="verb", metavar="VERB")
    verbs.required = True
    verbs.add_parser("up", help="start registry, containerd and dockerd (idempotent)")
    verbs.add_parser("down", help="stop the daemons (containers keep running in their shims)")
    verbs.add_parser("status", help="which layer runs, where, and whether it answers")
    verbs.add_parser("reset", help="down, stop leftover shims/containers, unmount, remove "
                                   "the lab's run, data and log directories")
    verbs.add_parser("images", help="build hello-world and busybox and push them into the "
                                    "lab registry")
    # The course's own commands (labkit.course), under the lab's name as the course text uses it.
    for verb, text in (("workspace", "generate a student workspace: workspace DIR [--force]"),
                       ("grade", "run the checkpoints and print a score per chapter")):
        v = verbs.add_parser(verb, help=text, add_help=False)
        v.add_argument("rest", nargs=argparse.REMAINDER)
        v.set_defaults(passes_through=True)  # main() hands us the options argparse left over
    p.set_defaults(func=command, no_client=True)


def print_status() -> int:
    from labkit.lab import status

    rows = []
    for s in status():
        impl = f"{s.daemon.implementation} {s.daemon.argv[0]}"
        rows.append([s.daemon.layer, impl, str(s.pid or "-"), "yes" if s.answering else "no",
                     s.daemon.address])
    print(table(rows, ["LAYER", "IMPLEMENTATION", "PID", "ANSWERING", "ADDRESS"]), end="")
    return 0


def command(client, args: argparse.Namespace) -> int:
    from labkit import lab

    if args.verb in ("workspace", "grade"):
        from labkit.course.__main__ import main as course_main
        return course_main([args.verb, *args.rest, *args.extra])
    try:
        if args.verb == "up":
            lab.up()
        elif args.verb == "down":
            lab.down()
        elif args.verb == "status":
            return print_status()
        elif args.verb == "reset":
            lab.reset()
        elif args.verb == "images":
            lab.push_images()
    except (lab.LabError, ValueError, OSError) as e:
        print(f"labkit lab {args.verb}: {e}", file=sys.stderr)
        return 1
    return 0
