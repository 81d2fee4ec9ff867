"""Grading: points, hints, BLOCKED, chapter errors with file:line, JSON and JUnit reports.

Each test writes a tiny checkpoint suite and a workspace to temporary directories and grades
them through `grade()` (pytest in a subprocess), exactly as `labkit grade` does.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from labkit.course.grading import GradeError, format_table, grade, skeleton_problems
from labkit.course.workspace import generate_workspace

CP01 = '''
import pytest
from labkit.course.grading import checkpoint
from labkit.lab.implementations import resolve_module


@checkpoint("cp01", points=2, hint="one plus one is two")
def test_arithmetic():
    assert 1 + 1 == 2


@pytest.mark.cp01
@pytest.mark.points(3)
@pytest.mark.hint("sethostname(2): the name comes back without its blanks")
def test_sethostname():
    ns = resolve_module("content", "labkit.ns")
    assert ns.sethostname(" box ") == "box"


@pytest.mark.cp01
@pytest.mark.depends("test_sethostname")
def test_after_hostname():
    assert True


def test_not_a_checkpoint():
    assert False, "not graded"
'''

CP02 = '''
from labkit.course.grading import checkpoint
from labkit.lab.implementations import resolve_module


@checkpoint("cp02", points=4, hint="runc(8): exit status 0 on success")
def test_main_returns_zero():
    main = resolve_module("runtime", "labkit.runc.main")
    assert main.main() == 0
'''

# a checkpoint file that imports the student's code when it is imported itself
CP03 = '''
import pytest
from labkit.lab.implementations import resolve_module

ns = resolve_module("content", "labkit.ns")


@pytest.mark.cp03
def test_helper():
    assert ns.Helper.value == "SECRET-5"
'''

CP04_BAD_MARKS = '''
import pytest


@pytest.mark.cp04
@pytest.mark.depends("test_nope")
def test_unknown_prerequisite():
    pass


@pytest.mark.cp04
@pytest.mark.points("many")
def test_bad_points():
    pass
'''


@pytest.fixture
def lab(sample_pkg: Path, short_tmp: Path):
    """A checkpoint suite, a fresh workspace generated from the sample package, an output dir."""
    suite = short_tmp / "suite"
    suite.mkdir()
    for name, text in (("test_cp01_basics.py", CP01), ("test_cp02_main.py", CP02),
                       ("test_cp03_import.py", CP03)):
        (suite / name).write_text(textwrap.dedent(text))
    ws = short_tmp / "ws"
    generate_workspace(ws, sample_pkg)
    return suite, ws, short_tmp / "out"


def solve(ws: Path, sample_pkg: Path) -> None:
    """The student's finished work: the reference's own text."""
    shutil.copy(sample_pkg / "ns.py", ws / "labkit_student" / "ns.py")
    shutil.copy(sample_pkg / "runc" / "main.py", ws / "labkit_student" / "runc" / "main.py")


def test_fresh_workspace_fails_with_hints_and_blocks(lab, capsys: pytest.CaptureFixture[str]) -> None:
    suite, ws, out = lab
    (suite / "test_cp04_marks.py").write_text(CP04_BAD_MARKS)
    report = grade(None, ws, tests_dir=suite, out_dir=out, quiet=True)
    cp01 = report.chapters["cp01"]
    outcome = {t.name: t for t in cp01.tests}
    assert set(outcome) == {"test_arithmetic", "test_sethostname", "test_after_hostname"}
    assert (outcome["test_arithmetic"].outcome, outcome["test_arithmetic"].points) == ("passed", 2)
    failed = outcome["test_sethostname"]
    assert (failed.outcome, failed.points, failed.max) == ("failed", 0, 3)
    assert "NotImplementedError" in (failed.message or "")
    assert failed.hint == "sethostname(2): the name comes back without its blanks"
    blocked = outcome["test_after_hostname"]
    assert blocked.outcome == "blocked" and "test_sethostname" in (blocked.message or "")
    assert (cp01.points, cp01.max, cp01.status) == (2, 6, "graded")
    assert (report.chapters["cp02"].points, report.chapters["cp02"].max) == (0, 4)
    cp03 = report.chapters["cp03"]                 # the skeleton imports: that test passes... or not
    assert cp03.status == "graded" and cp03.tests[0].outcome == "failed"
    cp04 = {t.name: t for t in report.chapters["cp04"].tests}
    assert cp04["test_unknown_prerequisite"].outcome == "error"
    assert "depends on 'test_nope'" in (cp04["test_unknown_prerequisite"].message or "")
    assert "points needs one whole number" in (cp04["test_bad_points"].message or "")
    assert not report.full_marks
    # the proof a course suite owes: on a fresh workspace nothing passes, nothing fails to import
    problems = skeleton_problems(report)
    assert any("test_arithmetic: passed on a fresh workspace" in p for p in problems)
    assert any("test_helper: failed" in p for p in problems)        # AssertionError, not NIE
    assert not any("test_sethostname" in p or "test_after_hostname" in p for p in problems)
    # the hint is printed under the failure, and BLOCKED is named
    assert "sethostname(2): the name comes back without its blanks" in report.output
    assert "BLOCKED" in report.output or "blocked" in report.output
    table = capsys.readouterr().out
    assert "cp01" in table and "2/6" in table and "1 passed, 1 failed, 1 blocked" in table

    data = json.loads((out / "grade.json").read_text())
    assert data["created"] and data["host"]
    assert data["chapters"]["cp01"]["points"] == 2 and data["chapters"]["cp01"]["max"] == 6
    tests = {t["name"]: t for t in data["chapters"]["cp01"]["tests"]}
    assert tests["test_sethostname"]["hint"].startswith("sethostname(2)")
    assert tests["test_arithmetic"]["hint"] is None                   # passed: no hint needed
    assert tests["test_after_hostname"]["outcome"] == "blocked"
    assert data["implementations"]["runtime"] == f"workspace:{ws}"
    assert "test_not_a_checkpoint" not in json.dumps(data)

    root = ET.parse(out / "grade-junit.xml").getroot()
    cases = {c.get("name"): c for c in root.iter("testcase")}
    assert "test_not_a_checkpoint" not in cases
    assert cases["test_sethostname"].find("failure") is not None
    assert cases["test_after_hostname"].find("skipped") is not None
    props = {p.get("name"): p.get("value") for p in cases["test_sethostname"].iter("property")}
    assert props["chapter"] == "cp01" and props["max_points"] == "3"


def test_syntax_error_is_that_chapters_error(lab, sample_pkg: Path) -> None:
    suite, ws, out = lab
    solve(ws, sample_pkg)
    broken = ws / "labkit_student" / "ns.py"
    broken.write_text(broken.read_text().replace("def sethostname(name: str)", "def sethostname(name: str"))
    line = next(n for n, text in enumerate(broken.read_text().splitlines(), 1)
                if text.startswith("def sethostname"))
    report = grade(None, ws, tests_dir=suite, out_dir=out, quiet=True)
    # cp01 calls the broken module in a test, cp03 imports it when its file is collected
    for chapter in ("cp01", "cp03"):
        c = report.chapters[chapter]
        assert c.status == "error" and c.points == 0, (chapter, c)
        assert str(broken) in (c.error or "") and "syntax error" in (c.error or "")
    assert f"{broken}:{line}" in (report.chapters["cp01"].error or "")
    assert f"{broken}:" in (report.chapters["cp03"].error or "")
    cp02 = report.chapters["cp02"]                 # the other chapter is still graded
    assert (cp02.status, cp02.points, cp02.max) == ("graded", 4, 4)
    assert "ERROR syntax error in" in format_table(report)
    data = json.loads((out / "grade.json").read_text())
    assert data["chapters"]["cp01"]["status"] == "error"


def test_solved_workspace_gets_full_marks_from_the_cli(lab, sample_pkg: Path) -> None:
    suite, ws, out = lab
    solve(ws, sample_pkg)
    proc = subprocess.run([sys.executable, "-m", "labkit.course", "grade", "--workspace", str(ws),
                           "--tests", str(suite), "--out", str(out), "--quiet"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "full marks" in proc.stdout
    data = json.loads((out / "grade.json").read_text())
    assert data["points"] == data["max"] == 2 + 3 + 1 + 4 + 1


CP06_DEPENDS = '''
import pytest


@pytest.mark.cp06
@pytest.mark.depends("test_defined_later")
def test_runs_after_its_prerequisite():
    assert ORDER == ["later"]


ORDER = []


@pytest.mark.cp06
def test_defined_later():
    ORDER.append("later")


@pytest.mark.cp06
@pytest.mark.parametrize("x", [1, 2])
def test_param(x):
    assert x == 1


@pytest.mark.cp06
@pytest.mark.depends("test_param")
def test_needs_every_param():
    pass


@pytest.mark.cp06
@pytest.mark.depends("test_cp01_basics.py::test_arithmetic")
def test_other_file():
    pass
'''


def test_dependencies_order_and_parametrized(lab) -> None:
    suite, ws, out = lab
    (suite / "test_cp06_depends.py").write_text(CP06_DEPENDS)
    report = grade(["cp01", "cp06"], ws, tests_dir=suite, out_dir=out, quiet=True)
    tests = {t.name: t for t in report.chapters["cp06"].tests}
    assert tests["test_runs_after_its_prerequisite"].outcome == "passed"
    assert tests["test_param[2]"].outcome == "failed"
    assert tests["test_needs_every_param"].outcome == "blocked"
    assert tests["test_other_file"].outcome == "passed"
    assert report.chapters["cp06"].points == 4
    # with cp01 not selected, its test cannot block anything: the dependent test just runs
    report = grade(["cp06"], ws, tests_dir=suite, out_dir=out, quiet=True)
    assert {t.name: t.outcome for t in report.chapters["cp06"].tests}["test_other_file"] == "passed"


def test_endless_loop_costs_one_checkpoint(lab) -> None:
    suite, ws, out = lab
    (suite / "test_cp05_loop.py").write_text(
        "import pytest\n\n\n@pytest.mark.cp05\ndef test_loops():\n    while True:\n        pass\n\n\n"
        "@pytest.mark.cp05\ndef test_after():\n    pass\n")
    report = grade(["cp05"], ws, tests_dir=suite, out_dir=out, quiet=True, timeout=0.5)
    tests = {t.name: t for t in report.chapters["cp05"].tests}
    assert tests["test_loops"].outcome == "failed"
    assert "took longer than 0.5 s" in (tests["test_loops"].message or "")
    assert tests["test_after"].outcome == "passed"


def test_module_missing_from_workspace_is_the_chapters_error(lab) -> None:
    suite, ws, out = lab
    (suite / "test_cp07_snapshots.py").write_text(
        "import pytest\n\n\n@pytest.mark.cp07\ndef test_prepare(implementations_config):\n"
        "    implementations_config.resolve_module('snapshotter', 'labkit.containerd.snapshots')\n")
    report = grade(["cp07", "cp02"], ws, tests_dir=suite, out_dir=out, quiet=True)
    cp07 = report.chapters["cp07"]
    assert cp07.status == "error"
    assert "layer 'snapshotter'" in (cp07.error or "")
    assert f"{ws}/labkit_student/containerd/snapshots.py" in (cp07.error or "")
    assert report.chapters["cp02"].status == "graded"


def test_one_chapter_only(lab) -> None:
    suite, ws, out = lab
    report = grade(["cp02"], ws, tests_dir=suite, out_dir=out, quiet=True)
    assert list(report.chapters) == ["cp02"]
    report = grade(["cp09"], ws, tests_dir=suite, out_dir=out, quiet=True)
    assert report.chapters["cp09"].status == "missing"
    assert "no checkpoints found" in format_table(report)


@pytest.mark.parametrize("kwargs, words", [
    ({"chapters": ["1"]}, ["unknown chapter '1'", "cp01"]),
    ({"workspace": Path("/nonexistent/ws")}, ["layer '", "/nonexistent/ws", "does not exist"]),
    ({"tests_dir": Path("/nonexistent/suite")}, ["no checkpoints directory /nonexistent/suite"]),
    ({"layers": ["runtime"]}, ["only make sense with a workspace"]),
])
def test_bad_requests_are_named(kwargs: dict, words: list[str], short_tmp: Path) -> None:
    kwargs.setdefault("tests_dir", short_tmp)
    with pytest.raises(GradeError) as err:
        grade(out_dir=short_tmp / "out", quiet=True, **kwargs)
    for word in words:
        assert word in str(err.value)


def test_cli_reports_config_errors_without_traceback(short_tmp: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "labkit.course", "grade", "--tests", str(short_tmp)],
                          capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", "LABKIT_IMPL_SHIM": "workspace:/nonexistent/ws"})
    assert proc.returncode == 2
    assert "layer 'shim'" in proc.stderr and "/nonexistent/ws" in proc.stderr
    assert "Traceback" not in proc.stderr
