"""`labkit-runc`: the command line, shaped like runc's so that any caller of runc (the shim,
containerd's shim, dockerd via --add-runtime) can call us instead.

    labkit-runc [--root DIR] [--log FILE] [--log-format text|json] [--debug]
                [--systemd-cgroup] COMMAND [ARGS]

One verb per module (create.py, start.py, …): each has `add_arguments(parser)` and
`run(args) -> exit status`. Global flags come before the verb, as the shim sends them.
Flags newer runcs accept (--rootless, --pidfd-socket, --preserve-fds, …) are accepted and
ignored, so a caller written for a newer runc still works.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from types import ModuleType

import labkit
from labkit import paths
from labkit.runc import log
from labkit.runc.log import ContainerError

# verb -> (its module in this package, help)
VERBS = {
    "create": ("create", "create a container, leaving its init waiting for `start`"),
    "start": ("start", "run the program of a created container"),
    "state": ("state", "print the state of a container as JSON"),
    "kill": ("kill", "send a signal to the container's init (--all: every process)"),
    "delete": ("delete", "delete a stopped container (--force: kill it first)"),
    "run": ("run", "create and start a container, wait for it unless --detach"),
    "exec": ("exec", "run another process in a running container"),
    "pause": ("pause", "freeze every process of the container (its cgroup's freezer)"),
    "resume": ("pause", "thaw a paused container"),
    "update": ("update", "change a container's cgroup limits (--resources -: JSON on stdin)"),
    "ps": ("ps", "list the processes of a container (--format json: their pids)"),
    "list": ("list", "list the containers under --root"),
    "spec": ("spec", "write a default config.json"),
    "features": ("features", "print what this runtime supports, as JSON"),
}


def verb_module(verb: str) -> ModuleType:
    """The module of `verb`, imported now. Each call of labkit-runc is a new process that runs
    ONE verb, and the shim calls it several times per container: importing every verb's
    module (create's brings init, mounts, seccomp, process …) would make `state` or `delete`
    pay for `create`'s imports. Relative to this package, so that a student's copy of the
    runtime (labkit_student.runc) runs its own verbs."""
    return importlib.import_module(f".{VERBS[verb][0]}", __package__)


class UsageError(Exception):
    pass


class Formatter(argparse.HelpFormatter):
    """argparse's help formatter, told the terminal's width. Left to itself it imports shutil
    to ask, and argparse makes a formatter for every argument it adds: ~1.5 ms per command."""

    def __init__(self, prog: str, **kwargs):
        if kwargs.get("width") is None:                     # as shutil.get_terminal_size
            columns = os.environ.get("COLUMNS", "")
            if not columns.isdigit():
                try:
                    columns = os.get_terminal_size(sys.__stdout__.fileno()).columns
                except (AttributeError, ValueError, OSError):
                    columns = 80                            # not a terminal
            kwargs["width"] = int(columns) - 2
        super().__init__(prog, **kwargs)


class Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is reported like every other error (to --log, exit 1)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", Formatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        raise UsageError(f"{self.prog}: {message}")


VERSION = f"labkit-runc version {labkit.__version__}\ncommit: labkit\nspec: 1.0.2"


def add_global_flags(p: argparse.ArgumentParser) -> None:
    """The flags before the verb, as runc has them."""
    p.add_argument("--version", "-v", action="store_true", help="print the version")
    p.add_argument("--root", default=str(paths.RUNTIME_ROOT),
                   help=f"where container state lives (default {paths.RUNTIME_ROOT})")
    p.add_argument("--log", default=None, help="append log records to this file (default stderr)")
    p.add_argument("--log-format", default="text", choices=("text", "json"))
    p.add_argument("--debug", action="store_true", help="log debug records and tracebacks")
    p.add_argument("--systemd-cgroup", action="store_true", help="accepted, ignored")
    p.add_argument("--rootless", nargs="?", const="true", help="accepted, ignored")
    p.add_argument("--criu", help="accepted, ignored")


def which_verb(argv: list[str]) -> str | None:
    """The verb a command line names, if it names one: the first of main's two parses, the
    global flags and then the verb, the rest left alone."""
    p = Parser(prog="labkit-runc", add_help=False)
    add_global_flags(p)
    p.add_argument("command", nargs="?")
    p.add_argument("rest", nargs=argparse.REMAINDER)
    verb = p.parse_known_args(argv)[0].command
    return verb if verb in VERBS else None


def parser(verb: str | None = None) -> argparse.ArgumentParser:
    """The command line of `verb`: the global flags and its arguments (verb_module says why
    only its). Without a verb, every verb with its help and no arguments: for --help, and for
    the message a missing or unknown verb gets."""
    p = Parser(prog="labkit-runc", description="a runc-compatible OCI runtime")
    add_global_flags(p)
    # prog given: argparse would otherwise format a usage line to find it
    sub = p.add_subparsers(dest="command", metavar="COMMAND", prog="labkit-runc")
    for name, (_module, help_text) in VERBS.items():
        if verb is None:
            sub.add_parser(name, help=help_text, description=help_text, add_help=False)
        elif name == verb:
            verb_module(name).add_arguments(
                sub.add_parser(name, help=help_text, description=help_text))
    return p


def main(argv: list[str] | None = None) -> int:
    """Run one command; return its exit status. Without `argv` (as the program: the console
    script, `python -m labkit.runc.main`) the command line is sys.argv, and main does not
    return: it ends the process with the status, skipping the interpreter's clean-up at exit.
    That clean-up (freeing every object of every module imported, ~4 ms, a tenth of a whole
    `run`) buys a process that is about to vanish nothing: the kernel takes back its memory
    and closes its files anyway. What is still buffered in stdout and stderr is written first;
    everything else labkit-runc writes, it has closed before returning here."""
    if argv is not None:
        return command(argv)
    status = command(sys.argv[1:])
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):      # a closed pipe: nobody is reading any more
            status = status or 1
    os._exit(status)


def command(argv: list[str]) -> int:
    """One labkit-runc command line, without the program's name; its exit status."""
    try:
        p = parser(which_verb(argv))
        args, unknown = p.parse_known_args(argv)
    except UsageError as e:
        # still honour --log/--log-format if they came before the mistake
        log_flags = argparse.ArgumentParser(add_help=False)
        log_flags.add_argument("--log")
        log_flags.add_argument("--log-format", default="text")
        known, _ = log_flags.parse_known_args(argv)
        try:
            log.configure(known.log, known.log_format)
        except ContainerError:
            log.configure(None)
        log.error(str(e))
        return 1
    if args.version:
        print(VERSION)
        return 0
    try:
        log.configure(args.log, args.log_format, args.debug)
        if unknown:
            log.debug(f"ignoring unknown flags: {' '.join(unknown)}")
        if not args.command:
            p.print_help(sys.stderr)
            return 1
        return verb_module(args.command).run(args)
    except ContainerError as e:
        log.error(str(e))
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as e:                     # a bug or an unforeseen failure: still one line
        if args.debug:
            import traceback           # only on this path: a bug, with --debug
            traceback.print_exc()
        log.error(f"{args.command}: {type(e).__name__}: {e}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
