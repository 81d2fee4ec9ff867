"""`labkit exec [-i] [-t] [-e K=V] [-w DIR] [-u USER] CONTAINER CMD…` — a second process in a
running container.

    GET  /containers/{id}/json        it must exist and run (docker's check, and its Tty)
    POST /containers/{id}/exec        {"Cmd", "AttachStdin", "AttachStdout", "AttachStderr",
                                       "Tty", "Env", "WorkingDir", "User"} -> {"Id": exec id}
    POST /exec/{exec id}/start        {"Detach": false, "Tty": …} upgraded to a raw socket,
                                      framed as attach is (raw with -t)
    POST /exec/{exec id}/resize       -t: our terminal's size
    GET  /exec/{exec id}/json         after the stream ends: {"ExitCode": N}

The exit status is the process's own; 126/127 when it could not be started, as docker exec.
"""

from __future__ import annotations

import argparse
import sys

from labkit.cli.run import parse_env, pump, start_error_status, terminal_size
from labkit.client import APIError, Client


def add_parser(sub) -> None:
    p = sub.add_parser("exec", help="run a command in a running container")
    p.add_argument("-i", "--interactive", action="store_true", help="send our stdin to it")
    p.add_argument("-t", "--tty", action="store_true", help="give it a terminal")
    p.add_argument("-d", "--detach", action="store_true", help="start it and return")
    p.add_argument("-e", "--env", action="append", default=[], metavar="KEY[=VALUE]")
    p.add_argument("-w", "--workdir", help="working directory inside the container")
    p.add_argument("-u", "--user", help="user[:group] to run as")
    p.add_argument("container")
    p.add_argument("cmd", nargs=argparse.REMAINDER)
    p.set_defaults(func=command, error_status=1)


def command(client: Client, args: argparse.Namespace) -> int:
    if not args.cmd:
        print("labkit: exec needs a command", file=sys.stderr)
        return 1
    if args.tty and args.interactive and not sys.stdin.isatty():
        print("labkit: the input device is not a TTY", file=sys.stderr)
        return 1
    info = client.inspect_container(args.container)
    if not info.get("State", {}).get("Running"):
        print(f"Error response from daemon: container {info['Id']} is not running",
              file=sys.stderr)
        return 1
    attached = not args.detach
    config = {"Cmd": args.cmd, "Tty": args.tty, "Env": parse_env(args.env),
              "WorkingDir": args.workdir or "", "User": args.user or "",
              "AttachStdin": args.interactive and attached,
              "AttachStdout": attached, "AttachStderr": attached}
    exec_id = client.exec_create(args.container, config)
    if args.detach:
        client.exec_start_detached(exec_id, tty=args.tty)
        return 0
    attachment = client.exec_start(exec_id, tty=args.tty)

    def started() -> None:
        if args.tty and (size := terminal_size()):
            try:
                client.exec_resize(exec_id, *size)
            except APIError:
                pass

    try:
        detached, failures = pump(attachment, interactive=args.interactive, tty=args.tty,
                                  on_started=started)
    finally:
        attachment.close()
    for failure in failures:
        print(f"labkit: {failure}", file=sys.stderr)
        if "exec failed" in failure or "executable file not found" in failure:
            return start_error_status(failure) if start_error_status(failure) != 125 else 126
    if detached:
        return 0
    code = client.exec_inspect(exec_id).get("ExitCode")
    return 126 if code is None else int(code)
