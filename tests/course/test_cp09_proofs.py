"""Proof that checkpoint cp09 grades: full marks on the reference, nothing on a fresh workspace,
full marks for chapter 09's solution alone (with its prerequisites' solutions), and every
checkpoint caught out by a seeded bug.

Chapter 09's layer is dockerd, a process layer: the last checkpoint runs the real docker CLI
through a private lab whose labkit-dockerd is the workspace's own program (its whole
labkit_student.dockerd package, so chapter 08's network layer inside it must be solved too:
the prerequisite). On a fresh workspace `docker` must fail with the name of the function that
is not done yet -- dispatch, which every request goes through -- on the reference it must work.

A checkpoint that cannot fail is a bug. So for each cp09 test there is a mutation below -- one
file of the solved labkit_student/dockerd/ with one realistic mistake in it -- graded with only
that test selected (a prerequisite outside the run does not block, so the test itself must
notice the bug).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from labkit.course import syllabus
from labkit.course.grading import grade, skeleton_problems
from labkit.course.workspace import generate_workspace, solve_chapters

pytestmark = pytest.mark.root

CHAPTER = syllabus.chapter("09")

# test -> (the mistake, file under labkit_student/dockerd/, text of the solution, what it becomes)
MUTATIONS: dict[str, tuple[str, str, str, str]] = {
    "test_split_version": (
        "versions compared as strings: 1.9 passes for newer than 1.24", "httputils.py",
        "if _version_tuple(version) < _version_tuple(MIN_API_VERSION):",
        "if version < MIN_API_VERSION:"),
    "test_dispatch": (
        "the method not compared: GET /containers/x/start starts it", "router.py",
        "if m and method == req.method:", "if m:"),
    "test_container_create": (
        "create answers 200 OK instead of 201 Created", "router.py",
        'return json_response({"Id": result.id, "Warnings": result.warnings}, 201)',
        'return json_response({"Id": result.id, "Warnings": result.warnings})'),
    "test_container_wait": (
        "the wait registered only when the body is written: a fast exit is missed", "router.py",
        "        waiter = self.backend.container_wait(req.params[\"name\"], condition)\n\n"
        "        def body() -> Iterator[bytes]:\n",
        "        def body() -> Iterator[bytes]:\n"
        "            waiter = self.backend.container_wait(req.params[\"name\"], condition)\n"),
    "test_resources": (
        "--cpus divided before it is multiplied: 1.5 CPUs become 1", "oci.py",
        'cpu["quota"] = nano * 100000 // 10**9', 'cpu["quota"] = nano // 10**9 * 100000'),
    "test_docker_run_through_your_dockerd": (
        "?name= read but dropped: every container gets a generated name", "router.py",
        'self.backend.container_create(name.lstrip("/") if name else None, config)',
        "self.backend.container_create(None, config)"),
}


def with_prerequisites(number: str) -> set[str]:
    """The chapter and every chapter it builds on, transitively."""
    found, todo = set(), [number]
    while todo:
        n = todo.pop()
        if n not in found:
            found.add(n)
            todo += syllabus.chapter(n).prerequisites
    return found


@pytest.fixture(scope="module")
def workspaces():
    """(fresh, solved): a freshly generated workspace, and a copy of it with chapter 09 and
    its prerequisites solved -- nothing else (short paths: they end up in messages). Copies
    serve: the lab runs a workspace's dockerd as `labkit_student.dockerd.main` with the
    workspace on PYTHONPATH, not through its bin/ wrapper that names the original."""
    base = Path(tempfile.mkdtemp(prefix="lk-cp09-", dir="/tmp"))
    try:
        generate_workspace(base / "ws")
        shutil.copytree(base / "ws", base / "solved", symlinks=True)
        changed = solve_chapters(base / "solved", with_prerequisites("09"))
        assert "labkit_student/dockerd/router.py" in changed, changed
        yield base / "ws", base / "solved"
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def reference_env(monkeypatch):
    """Whatever the machine's configuration says, these proofs grade what they are told to."""
    monkeypatch.setenv("LABKIT_IMPL_DOCKERD", "reference")


def test_reference_gets_full_marks(tmp_path, reference_env):
    report = grade(["cp09"], out_dir=tmp_path, quiet=True)
    chapter = report.chapters["cp09"]
    assert chapter.status == "graded", chapter.error
    assert [t.name for t in chapter.tests if t.outcome != "passed"] == [], report.output[-3000:]
    assert chapter.max == CHAPTER.points and report.full_marks
    # Every checkpoint of the chapter has its seeded bug below.
    assert sorted(t.name for t in chapter.tests) == sorted(MUTATIONS)


def test_fresh_workspace_fails_every_checkpoint(workspaces, tmp_path):
    report = grade(["cp09"], workspaces[0], out_dir=tmp_path, layers=["dockerd"], quiet=True)
    chapter = report.chapters["cp09"]
    assert skeleton_problems(report) == []
    assert chapter.points == 0 and len(chapter.tests) == len(MUTATIONS)
    assert all(t.outcome in ("failed", "blocked") for t in chapter.tests), \
        {t.name: t.outcome for t in chapter.tests}
    # the proof: the docker CLI through the blank dockerd fails, naming the function, briefly
    proof = next(t for t in chapter.tests if t.name == "test_docker_run_through_your_dockerd")
    assert proof.outcome == "failed"
    assert "exercise in Router.dispatch() (labkit_student/dockerd/router.py): not done yet" \
        in proof.message, proof.message
    assert "Traceback" not in proof.message


def test_the_chapters_solution_alone_gets_full_marks(workspaces, tmp_path):
    """A workspace where only chapter 09 and the chapters it builds on are solved (every other
    exercise still blank), labkit-dockerd run from it: full marks on cp09, its proof included."""
    report = grade(["cp09"], workspaces[1], out_dir=tmp_path / "grade", layers=["dockerd"], quiet=True)
    chapter = report.chapters["cp09"]
    assert [t.name for t in chapter.tests if t.outcome != "passed"] == [], report.output[-3000:]
    assert chapter.points == chapter.max == CHAPTER.points


@pytest.mark.parametrize("test_name", sorted(MUTATIONS))
def test_seeded_bug_is_caught(test_name, workspaces, tmp_path):
    mistake, file, old, new = MUTATIONS[test_name]
    mutated = tmp_path / "ws"
    shutil.copytree(workspaces[1], mutated, symlinks=True)
    target = mutated / "labkit_student" / "dockerd" / file
    source = target.read_text()
    assert source.count(old) == 1, f"the mutation's text must occur once in {file}: {old!r}"
    target.write_text(source.replace(old, new))
    # Only the targeted test (pytest -k matches substrings: exclude longer names containing it).
    longer = [f"not {other}" for other in MUTATIONS if other != test_name and test_name in other]
    report = grade(["cp09"], mutated, out_dir=tmp_path / "grade", layers=["dockerd"],
                   quiet=True, pytest_args=["-k", " and ".join([test_name, *longer])])
    outcomes = {t.name: t.outcome for t in report.chapters["cp09"].tests}
    assert outcomes == {test_name: "failed"}, f"{mistake}: {outcomes}\n{report.output[-3000:]}"
