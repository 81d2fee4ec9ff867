"""`labkit` — entry point: parse the command line, find the daemon, turn failures into messages.

The daemon's address comes from -H/--host, else DOCKER_HOST, else the lab's socket
(unix:///run/labkit/docker.sock), in the docker CLI's order. No failure ends in a traceback:
a daemon that is not running, an error answer from it, or bad input each get one line on
stderr and an exit status (1; 125 for `run`, as docker uses).
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback

from labkit.cli import (build, exec, grade, images, info, inspect, lab, lifecycle, logs, ps,
                        pull, push, rm, rmi, run, tag, version)
from labkit.client import APIError, Client, DaemonNotRunning

COMMANDS = [run, exec, logs, lifecycle, inspect, ps, build, pull, push, tag, images, rm, rmi,
            version, info, lab, grade]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="labkit",
        description="labkit: a docker-like client for labkit-dockerd (or any Docker Engine), "
                    "and the lab's control commands",
    )
    parser.add_argument("-H", "--host", help="daemon socket, e.g. unix:///run/labkit/docker.sock "
                                             "(default: $DOCKER_HOST, then the lab's socket)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for module in COMMANDS:
        module.add_parser(sub)
    grade.add_check_parser(sub)
    return parser


def passed_through(argv: list[str], words: list[str]) -> list[str]:
    """The arguments after a pass-through command's words (`labkit lab grade --out X cp01` ->
    ["--out", "X", "cp01"]), in their order: argparse would split them into the ones it
    recognised and the rest, and lose the order an option's value depends on."""
    i = 0
    while i < len(argv) and argv[i].startswith("-"):   # global options come before the command
        i += 2 if argv[i] in ("-H", "--host") else 1
    return argv[i + len(words):]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if getattr(args, "passes_through", False):
        # `labkit grade …`, `labkit lab workspace …`: the other program parses its arguments
        args.rest = passed_through(argv, args.words)
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    failure_status = getattr(args, "error_status", 1)
    try:
        client = None
        if not getattr(args, "no_client", False):
            client = Client(args.host)  # parses the address; connects only when used
        return args.func(client, args)
    except DaemonNotRunning as e:
        print(str(e), file=sys.stderr)
        return 1
    except APIError as e:
        print(f"Error response from daemon: {e.message}", file=sys.stderr)
        return failure_status
    except ValueError as e:  # bad input: a reference, an address, a version
        print(f"labkit: {e}", file=sys.stderr)
        return failure_status
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 1
    except Exception as e:  # last resort: still no traceback unless asked for
        if os.environ.get("LABKIT_DEBUG"):
            traceback.print_exc()
        print(f"labkit: unexpected error: {type(e).__name__}: {e} "
              "(set LABKIT_DEBUG=1 for a traceback)", file=sys.stderr)
        return failure_status


if __name__ == "__main__":
    sys.exit(main())
