"""ctr tasks: ls, kill, rm. A task is a container's running (or exited) process, kept by
its shim; deleting it collects the exit status and frees the shim."""

from __future__ import annotations

import signal as signals
import sys

from labkit.ctr import output
from labkit.ctr.backend import Backend


def ls(backend: Backend, args) -> int:
    tasks = sorted(backend.tasks(), key=lambda t: t.id)
    if args.quiet:
        for t in tasks:
            print(t.id)
        return 0
    output.table(["TASK", "PID", "STATUS"], [[t.id, str(t.pid), t.status] for t in tasks])
    return 0


def parse_signal(name: str) -> int:
    """"9", "KILL", "SIGKILL" -> 9 (ctr's --signal takes any of them)."""
    if name.isdigit():
        return int(name)
    name = name.upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    try:
        return int(signals.Signals[name])
    except KeyError:
        raise ValueError(f"unknown signal {name}") from None


def kill(backend: Backend, args) -> int:
    backend.kill(args.id, parse_signal(args.signal), all=args.all)
    return 0


def rm(backend: Backend, args) -> int:
    for id in args.ids:
        if args.force:
            # ctr's --force: kill a running task first, and wait for it to stop
            for t in backend.tasks():
                if t.id == id and t.status in ("RUNNING", "PAUSED"):
                    backend.kill(id, signals.SIGKILL, all=True)
                    backend.wait(id)
        status = backend.delete_task(id)
        if status:
            print(f"WARN task {id} exit with non-zero exit code {status}", file=sys.stderr)
    return 0


def register(sub) -> None:
    p = sub.add_parser("tasks", aliases=["task", "t"], help="manage tasks")
    s = p.add_subparsers(dest="command", required=True)
    c = s.add_parser("ls", aliases=["list"], help="list tasks")
    c.add_argument("-q", "--quiet", action="store_true", help="print only the task id")
    c.set_defaults(run=ls)
    c = s.add_parser("kill", help="signal a container (default: SIGTERM)")
    c.add_argument("id")
    c.add_argument("-s", "--signal", default="SIGTERM")
    c.add_argument("-a", "--all", action="store_true", help="send the signal to all processes")
    c.set_defaults(run=kill)
    c = s.add_parser("rm", aliases=["delete", "del", "remove"], help="delete tasks")
    c.add_argument("ids", nargs="+")
    c.add_argument("-f", "--force", action="store_true", help="kill a running task first")
    c.set_defaults(run=rm)
