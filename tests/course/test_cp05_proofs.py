"""Proof that checkpoint cp05 grades: full marks on the reference, nothing on a fresh workspace,
full marks for chapter 05's solution alone (with its prerequisites' solutions), and every
checkpoint caught out by a seeded bug.

The chapter's last checkpoint runs the real docker CLI through a private lab whose shim is the
graded code: on a fresh workspace `docker run` must fail with the name of the function that is
not done yet (become_subreaper, the first one a shim calls), on the reference it must work.

A checkpoint that cannot fail is a bug. So for each cp05 test there is a mutation below -- one
file of the solved labkit_student/shim/ with one realistic mistake in it -- graded with only
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

CHAPTER = syllabus.chapter("05")

# test -> (the mistake, file under labkit_student/shim/, text of the solution, what it becomes)
MUTATIONS: dict[str, tuple[str, str, str, str]] = {
    "test_become_subreaper": (
        "the subreaper flag cleared instead of set", "reaper.py",
        "prctl.set_child_subreaper(1)", "prctl.set_child_subreaper(0)"),
    "test_reap": (
        "the raw wait(2) status returned, not the exit status", "reaper.py",
        "        exits.append((pid, exit_status(status)))\n    # END SOLUTION",
        "        exits.append((pid, status))\n    # END SOLUTION"),
    "test_open_output": (
        "the fifo opened write-only: the open waits for a reader", "stdio.py",
        "return os.open(path, os.O_RDWR | os.O_CLOEXEC)",
        "return os.open(path, os.O_WRONLY | os.O_CLOEXEC)"),
    "test_unread_bytes": (
        "the wrong ioctl: TIOCOUTQ is a tty's output queue", "stdio.py",
        "fcntl.ioctl(fd, termios.FIONREAD,", "fcntl.ioctl(fd, termios.TIOCOUTQ,"),
    "test_output_waits_for_its_reader": (
        "nothing ever counted as unread", "stdio.py",
        '    return struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\\0" * 4))[0]',
        "    return 0"),
    "test_record_exit": (
        "the exit recorded but never published", "service.py",
        "        self.events.publish(exit_event)\n        # END SOLUTION",
        "        # END SOLUTION"),
    "test_your_shim_runs_a_container": (
        "the runtime given no stdio: the container's output goes nowhere", "service.py",
        "str(pid_file), stdio=io.container_fds,\n",
        "str(pid_file), stdio=(None, None, None),\n"),
    "test_docker_run_through_your_shim": (
        "the fifo closed without waiting for its reader: output lost while dockerd is away",
        "stdio.py", "if unread == 0 or self._closing.wait(delay):",
        "if True or self._closing.wait(delay):"),
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
def workspace():
    """A freshly generated workspace (short path: it ends up in messages and wrapper scripts)."""
    base = Path(tempfile.mkdtemp(prefix="lk-cp05-", dir="/tmp"))
    try:
        generate_workspace(base / "ws")
        yield base / "ws"
    finally:
        shutil.rmtree(base, ignore_errors=True)


def solved_workspace(dest: Path) -> Path:
    """A workspace generated at `dest` (not copied: its bin/labkit-shim names its own
    directory) with chapter 05 solved, and its prerequisites: nothing else."""
    generate_workspace(dest)
    changed = solve_chapters(dest, with_prerequisites("05"))
    assert any(rel.startswith("labkit_student/shim/") for rel in changed), changed
    return dest


def test_reference_gets_full_marks(tmp_path, monkeypatch):
    monkeypatch.setenv("LABKIT_IMPL_SHIM", "reference")
    report = grade(["cp05"], out_dir=tmp_path, quiet=True)
    chapter = report.chapters["cp05"]
    assert chapter.status == "graded", chapter.error
    assert [t.name for t in chapter.tests if t.outcome != "passed"] == [], report.output[-3000:]
    assert chapter.max == CHAPTER.points and report.full_marks
    # Every checkpoint of the chapter has its seeded bug below.
    assert sorted(t.name for t in chapter.tests) == sorted(MUTATIONS)


def test_fresh_workspace_fails_every_checkpoint(workspace, tmp_path):
    report = grade(["cp05"], workspace, out_dir=tmp_path, layers=["shim"], quiet=True)
    chapter = report.chapters["cp05"]
    assert skeleton_problems(report) == []
    assert chapter.points == 0 and len(chapter.tests) == len(MUTATIONS)
    assert any(t.outcome == "failed" for t in chapter.tests)
    # the proof: docker run through the blank shim fails, naming the function, briefly
    proof = next(t for t in chapter.tests if t.name == "test_docker_run_through_your_shim")
    assert proof.outcome == "failed"
    assert "exercise in become_subreaper() (labkit_student/shim/reaper.py): not done yet" \
        in proof.message, proof.message
    assert "Traceback" not in proof.message


def test_the_chapters_solution_alone_gets_full_marks(tmp_path):
    """A workspace where only chapter 05 and the chapters it builds on are solved (every other
    exercise still blank): full marks on cp05, its proof included."""
    solved = solved_workspace(tmp_path / "ws")
    report = grade(["cp05"], solved, out_dir=tmp_path / "grade", layers=["shim"], quiet=True)
    chapter = report.chapters["cp05"]
    assert [t.name for t in chapter.tests if t.outcome != "passed"] == [], report.output[-3000:]
    assert chapter.points == chapter.max == CHAPTER.points


@pytest.mark.parametrize("test_name", sorted(MUTATIONS))
def test_seeded_bug_is_caught(test_name, tmp_path):
    mistake, file, old, new = MUTATIONS[test_name]
    mutated = solved_workspace(tmp_path / "ws")
    target = mutated / "labkit_student" / "shim" / file
    source = target.read_text()
    assert source.count(old) == 1, f"the mutation's text must occur once in {file}: {old!r}"
    target.write_text(source.replace(old, new))
    # Only the targeted test (pytest -k matches substrings: exclude longer names containing it).
    longer = [f"not {other}" for other in MUTATIONS if other != test_name and test_name in other]
    report = grade(["cp05"], mutated, out_dir=tmp_path / "grade", layers=["shim"],
                   quiet=True, pytest_args=["-k", " and ".join([test_name, *longer])])
    outcomes = {t.name: t.outcome for t in report.chapters["cp05"].tests}
    assert outcomes == {test_name: "failed"}, f"{mistake}: {outcomes}\n{report.output[-3000:]}"
