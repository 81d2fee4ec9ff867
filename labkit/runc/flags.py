"""labkit-runc's whole command line, with argparse: every verb's flags, --help, usage errors.

    labkit-runc [--root DIR] [--log FILE] [--log-format text|json] [--debug]
                [--systemd-cgroup] COMMAND [ARGS]

Each verb's module has `add_arguments(parser)`; global flags come before the verb, as the
shim sends them. Flags newer runcs accept (--rootless, --pidfd-socket, --preserve-fds, …)
are accepted and ignored, so a caller written for a newer runc still works.

main.py reads the few command lines the shim sends for every container (start, state,
delete) without this module (main.quick_args), because importing argparse costs each of
those short commands more than their work; everything else comes here.
tests/runc/test_runc_units.py checks that both read those command lines alike.
"""

from __future__ import annotations

import argparse
import os
import sys

from labkit.runc import log
from labkit.runc.log import ContainerError
from labkit.runc.main import VERBS, verb_module


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


def add_global_flags(p: argparse.ArgumentParser) -> None:
    """The flags before the verb, as runc has them."""
    p.add_argument("--version", "-v", action="store_true", help="print the version")
    # default None, filled in by main.command: labkit.paths imports pathlib (~3 ms a command)
    p.add_argument("--root", default=None,
                   help="where container state lives (default: the lab's, runc/ under "
                        "$LABKIT_RUN_DIR or /run/labkit)")
    p.add_argument("--log", default=None, help="append log records to this file (default stderr)")
    p.add_argument("--log-format", default="text", choices=("text", "json"))
    p.add_argument("--debug", action="store_true", help="log debug records and tracebacks")
    p.add_argument("--systemd-cgroup", action="store_true", help="accepted, ignored")
    p.add_argument("--rootless", nargs="?", const="true", help="accepted, ignored")
    p.add_argument("--criu", help="accepted, ignored")


def which_verb(argv: list[str]) -> str | None:
    """The verb a command line names, if it names one: the first of parse's two passes, the
    global flags and then the verb, the rest left alone."""
    p = Parser(prog="labkit-runc", add_help=False)
    add_global_flags(p)
    p.add_argument("command", nargs="?")
    p.add_argument("rest", nargs=argparse.REMAINDER)
    verb = p.parse_known_args(argv)[0].command
    return verb if verb in VERBS else None


def parser(verb: str | None = None) -> argparse.ArgumentParser:
    """The command line of `verb`: the global flags and its arguments (main.verb_module says
    why only its). Without a verb, every verb with its help and no arguments: for --help, and
    for the message a missing or unknown verb gets."""
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


def parse(argv: list[str]) -> tuple[argparse.Namespace, list[str], argparse.ArgumentParser]:
    """(args, the flags nobody knows, the parser) for a command line; UsageError if wrong."""
    p = parser(which_verb(argv))
    args, unknown = p.parse_known_args(argv)
    return args, unknown, p


def configure_log_after(argv: list[str]) -> None:
    """After a usage mistake: still honour --log/--log-format if they came before it."""
    log_flags = argparse.ArgumentParser(add_help=False)
    log_flags.add_argument("--log")
    log_flags.add_argument("--log-format", default="text")
    known, _ = log_flags.parse_known_args(argv)
    try:
        log.configure(known.log, known.log_format)
    except ContainerError:
        log.configure(None)
