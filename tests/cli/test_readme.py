"""The README's commands stay true: the two quick-start commands (CI runs the second one
verbatim from .ci/run), and every concrete `labkit …` line parses with today's CLI."""

from __future__ import annotations

import contextlib
import io
import re
import shlex
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text()

SETUP_AND_HELLO = ("./vagrant/setup.sh && labkit lab up && "
                   "DOCKER_HOST=unix:///run/labkit/docker.sock docker run hello-world")
SETUP_AND_TEST = "./vagrant/setup.sh && /opt/labkit/venv/bin/python -m pytest"


def test_quick_start_commands():
    assert f"\n    {SETUP_AND_HELLO}\n" in README
    assert f"\n    {SETUP_AND_TEST}\n" in README
    ci = (REPO / ".ci" / "run").read_text().strip().splitlines()
    assert ci[-1] == SETUP_AND_TEST


def documented_labkit_commands() -> list[list[str]]:
    commands = []
    for line in README.splitlines():
        if not line.startswith("    "):
            continue                                   # only code blocks
        for part in re.split(r";|&&", line.split("#")[0]):
            part = part.strip()
            if part.startswith("labkit ") and not any(c in part for c in "[…'"):
                commands.append(shlex.split(part)[1:])
    return commands


def test_documented_labkit_commands_parse():
    from labkit.cli.main import build_parser

    commands = documented_labkit_commands()
    verbs = {tuple(c[:2]) if c[0] == "lab" else (c[0],) for c in commands}
    assert {("grade",), ("lab", "up"), ("lab", "status"), ("lab", "workspace")} <= verbs
    for words in commands:
        with contextlib.redirect_stderr(io.StringIO()) as err:
            try:
                build_parser().parse_known_args(words)
            except SystemExit as e:
                raise AssertionError(f"README: `labkit {' '.join(words)}` does not parse: "
                                     f"{err.getvalue()}") from e
