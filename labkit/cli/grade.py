"""`labkit grade [cp01 …] [--workspace DIR] [--out DIR] …` — grade the checkpoints.

A thin front end: the arguments go unchanged to labkit.course's `grade` (the one
implementation, also reached as `python -m labkit.course grade` and `labkit lab grade`), which
runs the chapters' checkpoints in a pytest subprocess, prints a score table per chapter and
writes grade.json and grade-junit.xml (default ./labkit-grade/) for the instructor.

Exit status: 0 full marks, 1 points missing, 2 the run could not be made (a bad chapter name,
a configuration naming a missing workspace or module: the message names the layer and path).
"""

from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    p = sub.add_parser("grade", add_help=False,
                       help="run the checkpoints and print a score per chapter "
                            "(grade [cp01 …] [--workspace DIR] [--out DIR]; --help for all)")
    p.add_argument("rest", nargs=argparse.REMAINDER)   # the real list: main.passed_through()
    p.set_defaults(func=command, no_client=True, passes_through=True, words=["grade"])


def course(verb: str, arguments: list[str], prog: str = "labkit") -> int:
    """Run `python -m labkit.course VERB ARGUMENTS…` in this process; its exit status.

    `prog` names the command in usage and --help lines: "labkit" (`labkit grade`) or
    "labkit lab" (`labkit lab workspace`, `labkit lab grade`).
    """
    from labkit.course.__main__ import main as course_main

    try:
        return course_main([verb, *arguments], prog=prog)
    except SystemExit as e:   # argparse's --help (0) or a usage error (2)
        return e.code if isinstance(e.code, int) else 2


def add_check_parser(sub) -> None:
    p = sub.add_parser("check", add_help=False,
                       help="check your code for one chapter or exercise "
                            "(check cp01 [NAME]; --help for all)")
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(func=check_command, no_client=True, passes_through=True, words=["check"])


def command(client, args: argparse.Namespace) -> int:
    return course("grade", args.rest)


def check_command(client, args: argparse.Namespace) -> int:
    return course("check", args.rest)
