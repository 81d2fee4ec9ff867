"""`python -m labkit.course`: the course commands, until `labkit` itself carries them.

    python -m labkit.course workspace DIR [--force]      generate (or update) a student workspace
    python -m labkit.course grade [cp01 …] [--workspace DIR] [--layer L …] [--out DIR] [--timeout S]
    python -m labkit.course check cp01 [NAME]             one exercise's checkpoints, for the notebook
    python -m labkit.course status                        which implementation runs each layer

`grade` exits 0 on full marks, 1 otherwise, 2 when the run could not be made.
The `labkit` CLI calls `main(argv)` with the same arguments (`labkit grade …` -> ["grade", …]).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from labkit.lab import implementations
from labkit.course.grading import GradeError, grade
from labkit.lab.implementations import ImplementationError
from labkit.course.workspace import REFERENCE_PACKAGE, WorkspaceError, generate_workspace


def parser(prog: str = "python -m labkit.course") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog,
                                description="labkit's course machinery: workspaces, grading, implementations")
    sub = p.add_subparsers(dest="command", required=True)
    ws = sub.add_parser("workspace", help="generate a student workspace from the reference source")
    ws.add_argument("dir", type=Path, help="the workspace directory (created if missing)")
    ws.add_argument("--force", action="store_true",
                    help="replace files you edited (they are saved under DIR/.backup/<time>/ first)")
    ws.add_argument("--source", type=Path, default=REFERENCE_PACKAGE,
                    help="the reference package (default: %(default)s)")
    g = sub.add_parser("grade", help="run the checkpoints and print a score per chapter")
    g.add_argument("chapters", nargs="*", metavar="cpNN", help="chapters to grade (default: all)")
    g.add_argument("--workspace", type=Path, help="grade this workspace (default: the configured implementations)")
    g.add_argument("--layer", action="append", dest="layers", metavar="LAYER",
                   help="with --workspace: take only this layer from it (repeatable)")
    g.add_argument("--tests", type=Path, help="the checkpoints directory (default: tests/checkpoints)")
    g.add_argument("--out", type=Path, help="where grade.json and grade-junit.xml go (default: ./labkit-grade)")
    g.add_argument("--timeout", type=float, default=120.0,
                   help="seconds one checkpoint may run (default %(default)s; 0: no limit)")
    g.add_argument("--quiet", action="store_true", help="print only the score table")
    g.add_argument("-v", "--verbose", action="store_true",
                   help="also show pytest's traceback of each failure")
    c = sub.add_parser("check", help="check your code for one chapter (or one exercise of it): "
                                     "the configured implementations, as `docker run` uses them")
    c.add_argument("chapter", metavar="cpNN", help="the chapter's checkpoint, e.g. cp01")
    c.add_argument("name", nargs="?", default="",
                   help="only the checkpoints whose name contains this, e.g. namespace_flags")
    c.add_argument("--timeout", type=float, default=120.0, help=argparse.SUPPRESS)
    sub.add_parser("status", help="which implementation runs each layer")
    return p


def check(chapter: str, name: str = "", *, timeout: float = 120.0) -> int:
    """Grade `chapter` as configured and print the checkpoints whose name contains `name`
    (all of them without one), each once: PASSED, or what failed and its hint. The whole
    chapter runs, so a prerequisite that fails shows up as the reason (BLOCKED), never as a
    misleading failure. Exit status 0 when every one shown passed."""
    import tempfile
    with tempfile.TemporaryDirectory(prefix="labkit-check-") as out:
        report = grade([chapter], tests_dir=None, out_dir=Path(out), quiet=True, timeout=timeout,
                       table=False)
    tests = [t for c in report.chapters.values() for t in c.tests if name in t.name]
    if not tests:
        print(f"no checkpoint of {chapter} is named like {name!r}", file=sys.stderr)
        return 2
    for t in tests:
        print(f"{t.outcome.upper():<8} {t.name} ({t.points}/{t.max})"
              + (f": {t.message}" if t.outcome == "blocked" and t.message else ""))
        if t.outcome in ("failed", "error"):
            if t.message:
                print(f"    {t.message.splitlines()[0]}")
            if t.hint:
                print(f"    hint: {t.hint}")
    return 0 if all(t.outcome == "passed" for t in tests) else 1


def main(argv: list[str] | None = None, prog: str = "python -m labkit.course") -> int:
    """`prog` is how the usage lines name the command (`labkit grade` passes "labkit")."""
    args = parser(prog).parse_args(argv)
    try:
        if args.command == "workspace":
            report = generate_workspace(args.dir, args.source, force=args.force)
            print(report.summary())
            return 0
        if args.command == "check":
            return check(args.chapter, args.name, timeout=args.timeout)
        if args.command == "grade":
            result = grade(args.chapters or None, args.workspace, tests_dir=args.tests,
                           out_dir=args.out, layers=args.layers, quiet=args.quiet,
                           timeout=args.timeout, verbose=args.verbose)
            return 0 if result.full_marks else 1
        impls = implementations.load()
        where = impls.config_path or f"{implementations.config_path()} (absent: defaults)"
        print(f"configuration: {where}")
        for layer, choice, source in impls.table():
            print(f"  {layer:<13} {choice:<40} {source}")
        return 0
    except (WorkspaceError, GradeError, ImplementationError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:          # e.g. a workspace or report directory we may not write to
        where = f"{e.filename}: " if e.filename else ""
        print(f"error: {where}{e.strerror or e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
