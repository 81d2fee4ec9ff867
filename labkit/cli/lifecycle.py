"""`labkit stop|restart|kill|start` — one POST each per container argument.

    stop [-t N] C…       POST /containers/{id}/stop?t=N     SIGTERM, SIGKILL after N s (304 ok)
    restart [-t N] C…    POST /containers/{id}/restart?t=N
    kill [-s SIG] C…     POST /containers/{id}/kill?signal=SIG   (409: not running)
    start [-a] [-i] C…   POST /containers/{id}/start; with -a the run session of labkit.cli.run
                         (attach, wait, start, copy), so `start -ai` takes you back into the
                         shell a `run -it` left, and exits with the container's status

Like docker, each argument is tried and echoed on success; a failure is one "Error response
from daemon" line and makes the exit status 1.
"""

from __future__ import annotations

import argparse
import sys

from labkit.cli.output import for_each
from labkit.cli.run import attached
from labkit.client import Client


def add_parser(sub) -> None:
    for verb, help_text in (("stop", "stop running containers (SIGTERM, then SIGKILL)"),
                            ("restart", "restart containers")):
        p = sub.add_parser(verb, help=help_text)
        p.add_argument("-t", "--time", type=int, help="seconds to wait before killing")
        p.add_argument("containers", nargs="+")
        p.set_defaults(func=command, verb=verb)
    p = sub.add_parser("kill", help="send a signal to running containers")
    p.add_argument("-s", "--signal", help="signal name or number (default KILL)")
    p.add_argument("containers", nargs="+")
    p.set_defaults(func=command, verb="kill")
    p = sub.add_parser("start", help="start stopped containers")
    p.add_argument("-a", "--attach", action="store_true", help="attach stdout/stderr, exit with its status")
    p.add_argument("-i", "--interactive", action="store_true", help="attach our stdin")
    p.add_argument("containers", nargs="+")
    p.set_defaults(func=command, verb="start")


def command(client: Client, args: argparse.Namespace) -> int:
    if args.verb == "start" and (args.attach or args.interactive):
        if len(args.containers) > 1:
            print("labkit: you cannot start and attach multiple containers at once",
                  file=sys.stderr)
            return 1
        info = client.inspect_container(args.containers[0])
        tty = bool(info.get("Config", {}).get("Tty"))
        if tty and args.interactive and not sys.stdin.isatty():
            print("labkit: the input device is not a TTY", file=sys.stderr)
            return 1
        return attached(client, info["Id"], interactive=args.interactive, tty=tty)

    def act(name: str) -> None:
        if args.verb == "stop":
            client.stop(name, args.time)
        elif args.verb == "restart":
            client.restart(name, args.time)
        elif args.verb == "kill":
            client.kill(name, args.signal)
        else:
            client.start(name)
        print(name)
    return for_each(args.containers, act)
