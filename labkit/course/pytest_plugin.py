"""The pytest side of grading: chapter, points, hint and depends marks; BLOCKED; the JSON report.

Load it with `pytest -p labkit.course.pytest_plugin` (what `labkit grade` does) or from a
conftest.py with `pytest_plugins = ["labkit.course.pytest_plugin"]`. On its own it changes
nothing about tests without a chapter mark; it only records the checkpoints (tests marked
cp00 … cp99). See labkit.course.grading for the marks and the outcomes.

What happens when, in pytest's terms:

    pytest_configure                  the marks are declared (so --strict-markers accepts them)
    pytest_collection_modifyitems     each checkpoint's chapter, points and prerequisites are
                                      read; --labkit-chapters deselects the other tests; a test is
                                      moved after its prerequisites, so they have run when it starts
    pytest_runtest_setup              a test whose prerequisite did not pass is skipped as BLOCKED
    pytest_runtest_call               --labkit-timeout: a checkpoint running longer fails (SIGALRM)
    pytest_runtest_makereport         the outcome is recorded; a failure gets its hint attached
                                      (printed once, in the summary); a SyntaxError or a configuration
                                      error in the exception's chain makes it the chapter's error
    pytest_collectreport              a checkpoint file that fails to import is charged to the
                                      chapter in its file name (test_cp01_*.py)
    pytest_sessionfinish              --labkit-report=PATH: the JSON report is written
    pytest_terminal_summary           the hints of what did not pass (and, when no report file
                                      was asked for, the score table)
"""

from __future__ import annotations

import json
import re
import socket
from datetime import datetime, timezone
import signal
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from labkit.lab import implementations
from labkit.course.grading import CHAPTER, CHAPTER_IN_PATH, TestResult, build_report, format_table


@dataclass
class _State:
    results: dict[str, TestResult] = field(default_factory=dict)      # by nodeid, checkpoints only
    prerequisites: dict[str, list[tuple[str, list[str]]]] = field(default_factory=dict)
    bad_marks: dict[str, str] = field(default_factory=dict)           # nodeid -> what is wrong
    blocked: set[str] = field(default_factory=set)
    chapter_errors: dict[str, str] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    requested: list[str] | None = None


STATE = pytest.StashKey[_State]()
DEFAULT_TIMEOUT = 120.0


class CheckpointTimeout(Exception):
    """A checkpoint ran out of time: the student's code loops, or waits for something that never comes."""


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("labkit", "labkit checkpoints")
    group.addoption("--labkit-report", metavar="PATH", default=None,
                    help="write the checkpoints' grade report (JSON) to PATH")
    group.addoption("--labkit-timeout", metavar="SECONDS", type=float, default=DEFAULT_TIMEOUT,
                    help="fail a checkpoint that runs longer than this (0: never; default %(default)s)")
    group.addoption("--labkit-chapters", metavar="CP01,CP02|all", default=None,
                    help="run only the checkpoints of these chapters ('all': every checkpoint)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "points(n): the points a checkpoint is worth (default 1)")
    config.addinivalue_line("markers", "hint(text): printed when the checkpoint fails: what the "
                                       "kernel or the spec expected")
    config.addinivalue_line("markers", "depends(*tests): tests that must pass first; otherwise "
                                       "this one is BLOCKED, not run")
    for n in range(100):
        config.addinivalue_line("markers", f"cp{n:02d}: a checkpoint of chapter {n:02d}")
    state = _State()
    option = config.getoption("--labkit-chapters")
    if option and option != "all":
        state.requested = sorted({c.strip() for c in option.split(",") if c.strip()})
        bad = [c for c in state.requested if not CHAPTER.fullmatch(c)]
        if bad:
            raise pytest.UsageError(f"--labkit-chapters: unknown chapter {bad[0]!r} (expected cp00 … cp99)")
    config.stash[STATE] = state
    _CONFIG["config"] = config


def _chapter(item: pytest.Item, state: _State) -> str | None:
    chapters = sorted({m.name for m in item.iter_markers() if CHAPTER.fullmatch(m.name)})
    if len(chapters) > 1:
        state.bad_marks[item.nodeid] = f"a checkpoint belongs to one chapter, not {', '.join(chapters)}"
    return chapters[0] if chapters else None


def _points(item: pytest.Item, state: _State) -> int:
    mark = item.get_closest_marker("points")
    if mark is None:
        return 1
    value = mark.args[0] if len(mark.args) == 1 and not mark.kwargs else None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        state.bad_marks[item.nodeid] = (f"@pytest.mark.points needs one whole number >= 0, "
                                        f"got {mark.args or mark.kwargs!r}")
        return 0
    return value


def _hint(item: pytest.Item, state: _State) -> str | None:
    mark = item.get_closest_marker("hint")
    if mark is None:
        return None
    if len(mark.args) != 1 or not isinstance(mark.args[0], str):
        state.bad_marks[item.nodeid] = f"@pytest.mark.hint needs one string, got {mark.args!r}"
        return None
    return mark.args[0]


def _find(name: str, item: pytest.Item, items: list[pytest.Item]) -> list[pytest.Item]:
    """The tests a `depends` name means: a test of the same file, or "file.py::test" elsewhere."""
    if "::" in name:
        return [i for i in items if i.nodeid == name or i.nodeid.endswith("/" + name)
                or i.nodeid.split("[")[0] == name or i.nodeid.split("[")[0].endswith("/" + name)]
    return [i for i in items if i.path == item.path and i is not item
            and name in (i.name, getattr(i, "originalname", None))]


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config,
                                  items: list[pytest.Item]) -> None:
    state = config.stash[STATE]
    everything = list(items)        # before any deselection: prerequisites are looked up here
    for item in everything:
        chapter = _chapter(item, state)
        if chapter is None:
            continue
        result = TestResult(item.name, item.nodeid, chapter, _points(item, state), hint=_hint(item, state))
        state.results[item.nodeid] = result
        item.user_properties += [("chapter", chapter), ("max_points", result.max)]
        if result.hint:
            item.user_properties.append(("hint", result.hint))
        mark = item.get_closest_marker("depends")
        for name in (mark.args if mark else ()):
            found = _find(str(name), item, everything)
            if not found:
                where = "among the collected tests" if "::" in str(name) else f"in {item.path.name}"
                state.bad_marks[item.nodeid] = f"depends on {name!r}, but there is no such test {where}"
            state.prerequisites.setdefault(item.nodeid, []).append((str(name), [i.nodeid for i in found]))

    if config.getoption("--labkit-chapters"):
        keep = [i for i in items if i.nodeid in state.results and
                (state.requested is None or state.results[i.nodeid].chapter in state.requested)]
        kept = {i.nodeid for i in keep}
        dropped = [i for i in items if i.nodeid not in kept]
        if dropped:
            config.hook.pytest_deselected(items=dropped)
        items[:] = keep

    # Prerequisites first (a depth-first walk keeps the file order otherwise).
    by_id = {i.nodeid: i for i in items}
    ordered: list[pytest.Item] = []
    done: set[str] = set()
    visiting: set[str] = set()

    def visit(item: pytest.Item) -> None:
        if item.nodeid in done:
            return
        if item.nodeid in visiting:
            state.bad_marks[item.nodeid] = "its depends marks form a cycle"
            return
        visiting.add(item.nodeid)
        for _, ids in state.prerequisites.get(item.nodeid, []):
            for nodeid in ids:
                if nodeid in by_id:
                    visit(by_id[nodeid])
        visiting.discard(item.nodeid)
        done.add(item.nodeid)
        ordered.append(item)

    for item in items:
        visit(item)
    items[:] = ordered


@pytest.fixture
def implementations_config() -> implementations.Implementations:
    """The configured implementations, for a checkpoint:
    `impl.resolve_module("syscalls", "labkit.syscalls")`, `impl.resolve_binary("runtime")`."""
    return implementations.load()


def pytest_deselected(items: list[pytest.Item]) -> None:
    """Deselected (by --labkit-chapters, -m or -k): not part of this grade."""
    config = _CONFIG.get("config")
    if config is not None:
        for item in items:
            config.stash[STATE].results.pop(item.nodeid, None)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    state = item.config.stash[STATE]
    if item.nodeid not in state.results:
        return
    if item.nodeid in state.bad_marks:
        pytest.fail(f"checkpoint marks: {state.bad_marks[item.nodeid]}", pytrace=False)
    for name, ids in state.prerequisites.get(item.nodeid, []):
        for nodeid in ids:
            prerequisite = state.results.get(nodeid)
            # not a checkpoint, or not part of this run: it cannot block
            if prerequisite is None or prerequisite.outcome == "not run":
                continue
            if prerequisite.outcome != "passed":
                state.blocked.add(item.nodeid)
                pytest.skip(f"BLOCKED: needs {name}, which {_verb(prerequisite.outcome)}")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item):
    """Stop a checkpoint that runs too long (SIGALRM), so one endless loop cannot hang the grading."""
    seconds = item.config.getoption("--labkit-timeout")
    if (item.nodeid not in item.config.stash[STATE].results or not seconds
            or threading.current_thread() is not threading.main_thread()):
        return (yield)

    def expire(signum: int, frame: object) -> None:
        raise CheckpointTimeout(f"the checkpoint took longer than {seconds:g} s "
                                "(an endless loop? a wait for something that never happens?)")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        return (yield)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _verb(outcome: str) -> str:
    return {"failed": "failed", "error": "had an error", "blocked": "was blocked itself",
            "skipped": "was skipped"}.get(outcome, outcome)


def _chapter_error(excinfo: pytest.ExceptionInfo[BaseException] | None) -> str | None:
    """Why the chapter cannot be graded at all, if the failure says so: a SyntaxError anywhere in
    the exception's chain (cause/context) as "syntax error in file:line: message", or a
    configuration error (a module missing from the workspace) with its own message."""
    seen: set[int] = set()
    error: BaseException | None = excinfo.value if excinfo else None
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, SyntaxError):
            return f"syntax error in {error.filename}:{error.lineno}: {error.msg}"
        if isinstance(error, implementations.ImplementationError):
            return str(error)
        error = error.__cause__ or error.__context__
    return None


def _message(report: pytest.TestReport, call: pytest.CallInfo[None]) -> str:
    if call.excinfo is not None:
        text = call.excinfo.exconly().strip()
        if call.excinfo.errisinstance(pytest.skip.Exception):
            text = str(call.excinfo.value.msg) if hasattr(call.excinfo.value, "msg") else text
    else:
        text = report.longreprtext.strip()
    return text if len(text) <= 400 else text[:400] + " …"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    report: pytest.TestReport = yield
    state = item.config.stash[STATE]
    result = state.results.get(item.nodeid)
    if result is None:
        return report
    if report.when == "setup":
        if report.failed:
            result.outcome, result.message = "error", _message(report, call)
        elif report.skipped:
            result.outcome = "blocked" if item.nodeid in state.blocked else "skipped"
            result.message = _skip_reason(report).removeprefix("BLOCKED: ")
    elif report.when == "call":
        if hasattr(report, "wasxfail"):
            result.outcome, result.message = "skipped", f"xfail: {report.wasxfail}"
        elif report.passed:
            result.outcome, result.message = "passed", None
        elif report.failed:
            result.outcome, result.message = "failed", _message(report, call)
        else:
            result.outcome, result.message = "skipped", _skip_reason(report)
    elif report.failed and result.outcome == "passed":      # teardown
        result.outcome, result.message = "error", "teardown: " + _message(report, call)
    if report.failed:
        problem = _chapter_error(call.excinfo)
        if problem:
            result.outcome, result.chapter_error = "error", problem
    result.points = result.max if result.outcome == "passed" else 0
    return report


def _skip_reason(report: pytest.TestReport) -> str:
    if isinstance(report.longrepr, tuple) and len(report.longrepr) == 3:
        return str(report.longrepr[2]).removeprefix("Skipped: ")
    return report.longreprtext.strip()


def pytest_report_teststatus(report: pytest.TestReport, config: pytest.Config):
    if report.when == "setup" and report.skipped and report.nodeid in config.stash[STATE].blocked:
        return "blocked", "B", "BLOCKED"
    return None


# pytest_collectreport gets no config: pytest_configure remembers it (one pytest run per process).
_CONFIG: dict[str, pytest.Config] = {}
_FILE_LINE = re.compile(r'File "(?P<file>[^"]+)", line (?P<line>\d+)')


def pytest_collectreport(report: pytest.CollectReport) -> None:
    if not report.failed:
        return
    config = _CONFIG.get("config")
    if config is None:
        return
    state = config.stash[STATE]
    text = report.longreprtext
    match = CHAPTER_IN_PATH.search(Path(report.nodeid.split("::")[0]).name)
    # The most useful line: a SyntaxError's "File …, line N" (the last one is the innermost).
    places = list(_FILE_LINE.finditer(text))
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    detail = next((line for line in reversed(lines) if line.startswith("E ")), lines[-1] if lines else "")
    detail = detail.removeprefix("E").strip()
    if places and "SyntaxError" in text:
        where = f"{places[-1]['file']}:{places[-1]['line']}"
        message = f"syntax error in {where}: {detail.removeprefix('SyntaxError: ')}"
    else:
        message = f"{report.nodeid} could not be imported: {detail}"
    if match is None:
        state.errors.append(message)
        return
    chapter = match.group(1)
    if state.requested is None or chapter in state.requested:
        state.chapter_errors.setdefault(chapter, message)


def _report(config: pytest.Config):
    state = config.stash[STATE]
    report = build_report(state.results.values(), state.chapter_errors, state.errors, state.requested)
    report.created = datetime.now(timezone.utc).isoformat(timespec="seconds")
    report.host = socket.gethostname()
    try:
        report.implementations = {name: kind for name, kind, _ in implementations.load().table()}
    except implementations.ImplementationError as e:
        report.errors.append(str(e))
    return report


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    path = session.config.getoption("--labkit-report")
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(_report(session.config).to_json(), indent=2) + "\n")


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    state = config.stash[STATE]
    if config.option.collectonly or (not state.results and not state.chapter_errors):
        return   # nothing was graded: a score table of "not run" would only mislead
    report = _report(config)
    terminalreporter.section("labkit checkpoints")
    for chapter in sorted(report.chapters.values(), key=lambda c: c.chapter):
        if chapter.error:
            terminalreporter.write_line(f"{chapter.chapter} ERROR {chapter.error}")
        for t in chapter.tests:
            if t.outcome == "passed":
                continue
            terminalreporter.write_line(f"{chapter.chapter} {t.outcome.upper()} {t.name} "
                                        f"(0/{t.max}){': ' + t.message if t.outcome == 'blocked' else ''}")
            if t.outcome in ("failed", "error") and t.message:
                # the assertion or the exception, first line: "NotImplementedError: exercise
                # in namespace_flags() (labkit_student/namespaces.py): not done yet …"
                terminalreporter.write_line(f"    {t.message.splitlines()[0]}")
            if t.hint and t.outcome in ("failed", "error"):
                terminalreporter.write_line(f"    hint: {t.hint}")
    if not config.getoption("--labkit-report"):
        terminalreporter.write_line("")
        for line in format_table(report).splitlines():
            terminalreporter.write_line(line)
