"""Graded checkpoints: what a checkpoint is, how a grading run works, and the report it writes.

Theory of operation
-------------------
A checkpoint is an ordinary pytest test with a few marks:

    @pytest.mark.cp01                       the chapter it belongs to (cp00 … cp99)
    @pytest.mark.points(3)                  what it is worth (default 1)
    @pytest.mark.hint("a new UTS namespace starts with the parent's hostname: see unshare(2)")
    @pytest.mark.depends("test_unshare_uts") a test that must pass first; if it did not, this
                                            one is reported BLOCKED and not run

or, the same in one line, `@checkpoint("cp01", points=3, hint="…", depends=["test_unshare_uts"])`.
A name in `depends` is a test function of the same file; "file.py::test_name" reaches another
file. A prerequisite that is not part of the run (another chapter was not selected) does not
block. The course's checkpoints live in tests/checkpoints/ (files named test_cpNN_*.py, so that
a file that fails to import is still charged to its chapter).

A checkpoint gets the code it grades from labkit.lab.implementations -- inside the test or a
fixture, never at import time:

    def test_sethostname(tmp_path):
        syscalls = resolve_module("syscalls", "labkit.syscalls")   # reference or workspace
        ...

so a syntax error in a student's file shows up as that chapter's error (with file and line)
while the other chapters are still graded.

A grading run (`grade()`, `labkit grade [cp01 …]`, `python -m labkit.course grade`) runs pytest
in a subprocess with the pytest plugin labkit.course.pytest_plugin. A subprocess, because the
student's code is imported there (a crash, a hang or a sys.exit in it cannot take the grader
down), and because the implementations are chosen through the environment (LABKIT_IMPL_*: with
`workspace=DIR`, every layer -- or the `layers` given -- comes from that workspace). The plugin
records every checkpoint's outcome:

    passed    all its points
    failed    0 points; its hint is printed, and kept in the report
    error     0 points; the test could not run (a fixture failed, a bad mark)
    blocked   0 points; a prerequisite did not pass, the test was not run
    skipped   0 points; e.g. a root-only checkpoint run without root

A checkpoint that runs longer than `timeout` seconds (default 120) fails, so an endless loop in
a student's code costs that checkpoint, not the whole grading run. The plugin then writes the
report: JSON (grade.json, read back here) and JUnit XML (grade-junit.xml,
pytest's own writer, with chapter and points as test properties) in `out_dir`. A chapter
whose code does not even compile is shown as ERROR with file:line and counts 0 points.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, TypeVar

from labkit.lab import implementations
from labkit.lab.implementations import STUDENT_PACKAGE, ImplementationError

CHAPTER = re.compile(r"cp\d\d")
# A test file tells its chapter in its name (tests/checkpoints/test_cp01_namespaces.py).
CHAPTER_IN_PATH = re.compile(r"(?<![a-z0-9])(cp\d\d)(?![0-9])")
REPO = Path(__file__).resolve().parents[2]
CHECKPOINTS = REPO / "tests" / "checkpoints"
OUTCOMES = ("passed", "failed", "error", "blocked", "skipped", "not run")

F = TypeVar("F", bound=Callable[..., Any])


class GradeError(Exception):
    """The grading run could not be made; the message says what to fix."""


def checkpoint(chapter: str, points: int = 1, hint: str | None = None,
               depends: Iterable[str] = ()) -> Callable[[F], F]:
    """All of a checkpoint's marks in one decorator (the same as the four pytest marks)."""
    import pytest     # here, not at the top: labkit itself does not need pytest to run

    if not CHAPTER.fullmatch(chapter):
        raise ValueError(f"checkpoint chapter must look like 'cp01', got {chapter!r}")
    if isinstance(points, bool) or not isinstance(points, int) or points < 0:
        raise ValueError(f"checkpoint points must be a whole number >= 0, got {points!r}")

    def mark(test: F) -> F:
        test = getattr(pytest.mark, chapter)(test)
        test = pytest.mark.points(points)(test)
        if hint:
            test = pytest.mark.hint(hint)(test)
        names = list(depends)
        if names:
            test = pytest.mark.depends(*names)(test)
        return test
    return mark


# -- the report --------------------------------------------------------------------------------

@dataclass
class TestResult:
    name: str                       # the test's name, e.g. test_uts[hostname]
    nodeid: str                     # pytest's id, e.g. test_cp01_ns.py::test_uts
    chapter: str
    max: int = 1
    outcome: str = "not run"
    points: int = 0
    hint: str | None = None         # shown when the test did not pass
    message: str | None = None      # the failure, the skip reason, what blocked it
    # Why the whole chapter cannot be graded: "syntax error in file:line: message" when the code
    # under test does not compile, or the configuration's complaint (a module missing from the
    # workspace). Not in the JSON per test: the chapter's `error` carries it.
    chapter_error: str | None = None

    __test__ = False                # not a pytest test class, despite the name


@dataclass
class ChapterResult:
    chapter: str
    points: int = 0
    max: int = 0
    status: str = "graded"          # graded | error | missing (no checkpoint found)
    error: str | None = None
    tests: list[TestResult] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for t in self.tests:
            counts[t.outcome] = counts.get(t.outcome, 0) + 1
        return counts


@dataclass
class GradeReport:
    chapters: dict[str, ChapterResult] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)     # not charged to a chapter
    implementations: dict[str, str] = field(default_factory=dict)
    workspace: str | None = None
    created: str = ""                                    # when, ISO 8601 UTC
    host: str = ""                                       # where (the student's VM)
    json_path: Path | None = None
    junit_path: Path | None = None
    exit_code: int | None = None                         # pytest's
    output: str = ""                                     # pytest's output, when run quietly

    @property
    def points(self) -> int:
        return sum(c.points for c in self.chapters.values())

    @property
    def max(self) -> int:
        return sum(c.max for c in self.chapters.values())

    @property
    def full_marks(self) -> bool:
        return (not self.errors and self.max > 0 and self.points == self.max
                and all(c.status == "graded" for c in self.chapters.values()))

    def to_json(self) -> dict[str, Any]:
        chapters = {}
        for name, c in sorted(self.chapters.items()):
            chapters[name] = {
                "points": c.points, "max": c.max, "status": c.status, "error": c.error,
                "tests": [{"name": t.name, "nodeid": t.nodeid, "outcome": t.outcome,
                           "points": t.points, "max": t.max,
                           "hint": t.hint if t.outcome != "passed" else None,
                           "message": t.message} for t in c.tests],
            }
        return {"format": "labkit-grade/1", "points": self.points, "max": self.max,
                "chapters": chapters, "errors": self.errors,
                "implementations": self.implementations, "workspace": self.workspace,
                "created": self.created, "host": self.host}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "GradeReport":
        report = cls(errors=list(data.get("errors", [])),
                     implementations=dict(data.get("implementations", {})),
                     workspace=data.get("workspace"), created=data.get("created", ""),
                     host=data.get("host", ""))
        for name, c in data.get("chapters", {}).items():
            chapter = ChapterResult(name, c["points"], c["max"], c["status"], c.get("error"))
            for t in c["tests"]:
                chapter.tests.append(TestResult(t["name"], t["nodeid"], name, t["max"], t["outcome"],
                                                t["points"], t.get("hint"), t.get("message")))
            report.chapters[name] = chapter
        return report


def build_report(results: Iterable[TestResult], chapter_errors: dict[str, str],
                 errors: list[str], requested: list[str] | None) -> GradeReport:
    """Sum the tests up per chapter. A chapter with an error (its code did not compile, a
    checkpoint file did not import) is reported as ERROR and counts 0 points."""
    report = GradeReport(errors=list(errors))
    for name in requested or []:
        report.chapters[name] = ChapterResult(name, status="missing")
    for t in results:
        chapter = report.chapters.setdefault(t.chapter, ChapterResult(t.chapter))
        chapter.status = "graded" if chapter.status == "missing" else chapter.status
        chapter.tests.append(t)
        chapter.max += t.max
        chapter.points += t.points
        if t.chapter_error and chapter.error is None:
            chapter.status, chapter.error = "error", t.chapter_error
    for name, message in chapter_errors.items():
        chapter = report.chapters.setdefault(name, ChapterResult(name))
        chapter.status = "error"
        chapter.error = chapter.error or message
    for chapter in report.chapters.values():
        if chapter.status == "error":
            chapter.points = 0
    return report


def format_table(report: GradeReport) -> str:
    """The per-chapter score table a student sees at the end of `labkit grade`."""
    rows = [("chapter", "points", "result")]
    for name, c in sorted(report.chapters.items()):
        counts = c.counts()
        summary = ", ".join(f"{counts[o]} {'errors' if o == 'error' and counts[o] > 1 else o}"
                            for o in OUTCOMES if counts.get(o))
        if c.status == "error":
            result = f"ERROR {c.error}"
        elif c.status == "missing":
            result = "no checkpoints found"
        else:
            result = summary or "no tests"
        rows.append((name, f"{c.points}/{c.max}", result))
    rows.append(("total", f"{report.points}/{report.max}", "full marks" if report.full_marks else ""))
    width = [max(len(r[i]) for r in rows) for i in range(2)]
    lines = [f"{r[0]:<{width[0]}}  {r[1]:>{width[1]}}  {r[2]}".rstrip() for r in rows]
    lines.insert(1, "-" * max(len(line) for line in lines))
    lines.insert(len(lines) - 1, "-" * len(lines[1]))
    lines += [f"error: {e}" for e in report.errors]
    return "\n".join(lines)


def skeleton_problems(report: GradeReport) -> list[str]:
    """What is wrong with grading a *fresh* workspace: every checkpoint must fail with
    NotImplementedError, or with a message that carries one's text (a chapter's proof: `docker
    run` fails with "exercise in f() (file): not done yet"), or be BLOCKED behind one that did
    -- a checkpoint that passes on the skeleton cannot tell a student's work from none, and an
    ImportError means a broken skeleton."""
    problems = [f"chapter {c.chapter}: {c.error}" for c in report.chapters.values() if c.error]
    for chapter in report.chapters.values():
        for t in chapter.tests:
            message = t.message or ""
            if t.outcome == "blocked" or (t.outcome == "failed" and (
                    "NotImplementedError" in message or "): not done yet" in message)):
                continue
            problems.append(f"{t.nodeid}: {t.outcome} on a fresh workspace"
                            + (f" ({t.message})" if t.message else "")
                            + ("; a checkpoint must fail until the exercise is done"
                               if t.outcome == "passed" else ""))
    return problems + report.errors


def syntax_errors(workspace: Path) -> list[str]:
    """Every file of the workspace's package that does not compile, as "file:line: message"."""
    found = []
    for path in sorted((workspace / STUDENT_PACKAGE).rglob("*.py")):
        try:
            ast.parse(path.read_bytes(), str(path))
        except SyntaxError as e:
            found.append(f"{path}:{e.lineno}: {e.msg}")
        except ValueError as e:        # e.g. a NUL byte in the file
            found.append(f"{path}:1: {e}")
    return found


# -- a grading run ------------------------------------------------------------------------------

def grade(chapters: list[str] | None = None, workspace: Path | None = None, *,
          tests_dir: Path | None = None, out_dir: Path | None = None,
          layers: list[str] | None = None, quiet: bool = False, timeout: float = 120.0,
          verbose: bool = False, table: bool = True, pytest_args: Iterable[str] = ()
          ) -> GradeReport:
    """Run the checkpoints of `chapters` (None: all) and print the score table.

    workspace: grade this workspace -- every layer (or only `layers`) is taken from it; without
        it, the configured implementations (labkit.lab.implementations) are graded.
    tests_dir: where the checkpoints are (default tests/checkpoints of the labkit source tree).
    out_dir:   where grade.json and grade-junit.xml go (default ./labkit-grade).
    quiet:     keep pytest's own output out of the terminal (it is then in `report.output`).
    verbose:   also pytest's tracebacks (by default each failure is one line and its hint).
    timeout:   seconds one checkpoint may run before it fails (0: no limit).
    Raises GradeError when the run cannot be made (bad chapter name, missing directory, a
    configuration naming a missing workspace or module).
    """
    requested = None
    if chapters:
        bad = [c for c in chapters if not CHAPTER.fullmatch(c)]
        if bad:
            raise GradeError(f"unknown chapter {bad[0]!r}: chapters are named cp00 … cp99 (e.g. cp01)")
        requested = sorted(set(chapters))
    tests_dir = Path(tests_dir) if tests_dir else CHECKPOINTS
    if not tests_dir.is_dir():
        raise GradeError(f"no checkpoints directory {tests_dir}")
    out_dir = Path(out_dir) if out_dir else Path.cwd() / "labkit-grade"

    env = dict(os.environ)
    if workspace is not None:
        workspace = Path(os.path.abspath(workspace))
        for layer in layers or list(implementations.LAYERS):
            if layer not in implementations.LAYERS:
                raise GradeError(f"unknown layer {layer!r} (known layers: "
                                 f"{', '.join(implementations.LAYERS)})")
            env[implementations.LAYER_ENV_PREFIX + layer.upper()] = f"workspace:{workspace}"
    elif layers:
        raise GradeError("layers only make sense with a workspace to take them from")
    try:
        configured = implementations.load(environ=env)
    except ImplementationError as e:
        raise GradeError(str(e)) from None
    # The student's files must not collect __pycache__ directories from grading runs.
    env["PYTHONDONTWRITEBYTECODE"] = "1"

    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, junit_path = out_dir / "grade.json", out_dir / "grade-junit.xml"
    for stale in (json_path, junit_path):
        stale.unlink(missing_ok=True)
    command = [sys.executable, "-m", "pytest", str(tests_dir),
               "-p", "labkit.course.pytest_plugin",
               f"--labkit-report={json_path}", f"--junitxml={junit_path}",
               f"--labkit-chapters={','.join(requested) if requested else 'all'}",
               f"--labkit-timeout={timeout}",
               "-o", "junit_suite_name=labkit-grade",
               # a checkpoint file that does not import is that chapter's error, not the end of grading
               "--continue-on-collection-errors",
               "-p", "no:cacheprovider", "-q",
               # each failure once: its line and hint in the plugin's summary; tracebacks and
               # pytest's own summary only when asked for
               *(["--tb=short", "-rfE"] if verbose else ["--tb=no", "-rN"]), *pytest_args]
    proc = subprocess.run(command, env=env, text=True,
                          stdout=subprocess.PIPE if quiet else None,
                          stderr=subprocess.STDOUT if quiet else None)
    if not json_path.is_file():
        tail = "\n".join((proc.stdout or "").splitlines()[-15:]) if quiet else "see pytest's output above"
        raise GradeError(f"pytest ended (exit status {proc.returncode}) without a grade report: {tail}")
    report = GradeReport.from_json(json.loads(json_path.read_text()))
    report.json_path, report.junit_path, report.exit_code = json_path, junit_path, proc.returncode
    report.output = proc.stdout or ""
    if workspace is not None:
        report.workspace = str(workspace)
        # Files no checkpoint imported still deserve a word: the student will need them later.
        charged = " ".join(c.error or "" for c in report.chapters.values())
        for problem in syntax_errors(workspace):
            if problem.split(": ")[0] not in charged:
                report.errors.append(f"syntax error in {problem}")
    report.implementations = report.implementations or {
        name: kind for name, kind, _ in configured.table()}
    json_path.write_text(json.dumps(report.to_json(), indent=2) + "\n")
    if table:
        print(format_table(report))
        print(f"reports: {json_path}  {junit_path}")
    return report
