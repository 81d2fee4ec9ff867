"""Proof that checkpoint cp10 grades: full marks on the reference, nothing on a fresh workspace,
and every checkpoint caught out by at least one seeded bug.

Chapter 10's layer is the `cli` (labkit/cli/run.py): the last checkpoint runs the student's
own `labkit` program -- the workspace's bin/labkit -- against a private lab and a real dockerd
20.10. On a fresh workspace it must fail with the name of the function that is not done yet,
on the reference it must work.

A checkpoint that cannot fail is a bug. So for each cp10 test there is a mutation below -- the
reference source of labkit/cli/run.py with one realistic mistake in it -- that is put into a
workspace as the student's module and graded with only that test selected.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

import labkit.cli.run
from labkit.course.grading import grade, skeleton_problems
from labkit.course.workspace import generate_workspace

pytestmark = pytest.mark.root

REFERENCE = Path(labkit.cli.run.__file__).read_text()
STUDENT_FILE = Path("labkit_student", "cli", "run.py")

# test -> (the mistake, text of the reference, what it becomes)
MUTATIONS: dict[str, tuple[str, str, str]] = {
    "test_container_config": (
        "StdinOnce set for a detached -i as well (the daemon would close stdin at once)",
        '"StdinOnce": args.interactive and attached,', '"StdinOnce": args.interactive,'),
    "test_create_pulls_on_404": (
        "every error is taken for a missing image: a name conflict triggers a pull",
        "        if e.status != 404:\n            raise\n", ""),
    "test_attach_wait_start": (
        "start before attach: hello-world's output is gone before anyone listens",
        "    attachment = client.attach(cid, stdin=stdin, tty=tty)\n"
        "    try:\n        waiter = client.wait(cid, condition)\n"
        "    except BaseException:\n        attachment.close()\n        raise\n"
        "    try:\n        client.start(cid)\n",
        "    client.start(cid)\n"
        "    attachment = client.attach(cid, stdin=stdin, tty=tty)\n"
        "    try:\n        waiter = client.wait(cid, condition)\n"
        "    except BaseException:\n        attachment.close()\n        raise\n"
        "    try:\n        pass\n"),
    "test_copy_output": (
        "the daemon's own error (stream 3) printed as if the container wrote it",
        "            if frame.stream == streams.SYSTEMERR:\n", "            if False:\n"),
    "test_start_error_status": (
        "'no such file or directory' taken for 126 instead of 127",
        'if "executable file not found" in message or "no such file or directory" in message:',
        'if "executable file not found" in message:'),
    "test_labkit_run_through_your_cli": (
        "stdout and stderr swapped",
        "target = err if frame.stream == streams.STDERR else out",
        "target = out if frame.stream == streams.STDERR else err"),
}


def workspace_with(base: Path, run_py: str) -> Path:
    """A fresh workspace under `base` whose labkit_student/cli/run.py is `run_py`. Generated,
    not copied: its bin/labkit wrapper names its own directory (a copy would run the original)."""
    ws = base / "ws"
    generate_workspace(ws)
    (ws / STUDENT_FILE).write_text(run_py)
    return ws


@pytest.fixture(scope="module")
def workspace():
    """A freshly generated workspace (short path: it ends up in messages and wrapper scripts)."""
    base = Path(tempfile.mkdtemp(prefix="lk-cp10-", dir="/tmp"))
    try:
        generate_workspace(base / "ws")
        yield base / "ws"
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def reference_env(monkeypatch):
    """Whatever the machine's configuration says, these proofs grade what they are told to."""
    monkeypatch.setenv("LABKIT_IMPL_CLI", "reference")


def test_reference_gets_full_marks(tmp_path, reference_env):
    report = grade(["cp10"], out_dir=tmp_path, quiet=True)
    chapter = report.chapters["cp10"]
    assert chapter.status == "graded", chapter.error
    assert [t.name for t in chapter.tests if t.outcome != "passed"] == [], report.output[-3000:]
    assert chapter.max == 20 and report.full_marks
    assert sorted(t.name for t in chapter.tests) == sorted(MUTATIONS)


def test_fresh_workspace_fails_every_checkpoint(workspace, tmp_path, reference_env):
    report = grade(["cp10"], workspace, out_dir=tmp_path, layers=["cli"], quiet=True)
    chapter = report.chapters["cp10"]
    assert skeleton_problems(report) == []
    assert chapter.points == 0 and len(chapter.tests) == len(MUTATIONS)
    assert all(t.outcome in ("failed", "blocked") for t in chapter.tests), \
        {t.name: t.outcome for t in chapter.tests}
    # the proof: the student's `labkit run` fails, naming the function, briefly
    proof = next(t for t in chapter.tests if t.name == "test_labkit_run_through_your_cli")
    assert proof.outcome == "failed"
    assert "exercise in container_config() (labkit_student/cli/run.py): not done yet" \
        in proof.message, proof.message
    assert "Traceback" not in proof.message


def test_the_chapters_solution_alone_gets_full_marks(tmp_path):
    """A workspace where only chapter 10 is solved (every other exercise still blank), the cli
    layer taken from it: full marks on cp10, its proof included."""
    solved = workspace_with(tmp_path, REFERENCE)
    report = grade(["cp10"], solved, out_dir=tmp_path / "grade", layers=["cli"], quiet=True)
    chapter = report.chapters["cp10"]
    assert [t.name for t in chapter.tests if t.outcome != "passed"] == [], report.output[-3000:]
    assert chapter.points == chapter.max == 20


@pytest.mark.parametrize("test_name", sorted(MUTATIONS))
def test_seeded_bug_is_caught(test_name, tmp_path, reference_env):
    mistake, old, new = MUTATIONS[test_name]
    assert REFERENCE.count(old) == 1, f"the mutation's text must occur once in the reference: {old!r}"
    mutated = workspace_with(tmp_path, REFERENCE.replace(old, new))
    longer = [f"not {other}" for other in MUTATIONS if other != test_name and test_name in other]
    report = grade(["cp10"], mutated, out_dir=tmp_path / "grade", layers=["cli"],
                   quiet=True, pytest_args=["-k", " and ".join([test_name, *longer])])
    outcomes = {t.name: t.outcome for t in report.chapters["cp10"].tests}
    assert outcomes == {test_name: "failed"}, f"{mistake}: {outcomes}\n{report.output[-3000:]}"
