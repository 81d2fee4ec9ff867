"""Proof that checkpoint cp02 grades: full marks on the reference, nothing on a fresh workspace,
full marks for the chapter's solution alone, and every checkpoint caught out by a seeded bug.

The chapter's last checkpoint runs the real docker CLI through a private lab whose cgroups
layer (labkit/runc/cgroups.py, loaded into labkit-runc by labkit.lab.launch) is the graded
code: on a fresh workspace `docker run` must fail naming the function that is not done yet.

Each mutation below is the reference source of labkit/runc/cgroups.py with one realistic
mistake, put into a workspace as the student's file and graded with only its test selected.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

import labkit.runc.cgroups
from labkit.course.grading import grade, skeleton_problems
from labkit.course.workspace import generate_workspace

pytestmark = pytest.mark.root

REFERENCE = Path(labkit.runc.cgroups.__file__).read_text()
STUDENT_FILE = Path("labkit_student") / "runc" / "cgroups.py"

# test -> (the mistake, text of the reference, what it becomes)
MUTATIONS: dict[str, tuple[str, str, str]] = {
    "test_is_v2": (
        "the answer inverted",
        '    return os.path.exists(os.path.join(V2_ROOT, "cgroup.controllers"))',
        '    return not os.path.exists(os.path.join(V2_ROOT, "cgroup.controllers"))'),
    "test_memory_limit_file": (
        "no limit written as -1 on v2 too (the kernel wants 'max')",
        'return "memory.max", "max" if limit < 0 else str(limit)',
        'return "memory.max", str(limit)'),
    "test_pids_max": (
        "a limit of 0 taken as a limit",
        'return "max" if limit <= 0 else str(limit)', 'return "max" if limit < 0 else str(limit)'),
    "test_shares_to_weight": (
        "no clamping: shares below 2 give a weight of 0",
        "    shares = min(max(shares, 2), 262144)\n", ""),
    "test_join": (
        "the first hierarchy skipped (v2 has one: nothing joined at all)",
        "    for directory in paths.values():\n        _write(directory, \"cgroup.procs\"",
        "    for directory in list(paths.values())[1:]:\n        _write(directory, \"cgroup.procs\""),
    "test_destroy": (
        "the shallowest directory first: the parent still has its child",
        "for d in sorted(created, key=len, reverse=True):",
        "for d in sorted(created, key=len, reverse=False):"),
    "test_freeze": (
        "frozen read backwards",
        '        raise ContainerError("the container has no freezer cgroup (linux.cgroupsPath unset)")\n',
        '        raise ContainerError("the container has no freezer cgroup (linux.cgroupsPath unset)")\n'
        '    frozen = not frozen\n'),
    "test_docker_run_limits_bite_through_your_cgroups": (
        "pids.max one too high: the container gets 11 tasks",
        'return "max" if limit <= 0 else str(limit)',
        'return "max" if limit <= 0 else str(limit + 1)'),
}


@pytest.fixture(scope="module")
def workspace():
    """A freshly generated workspace (short path: it ends up in messages and wrapper scripts)."""
    base = Path(tempfile.mkdtemp(prefix="lk-cp02-", dir="/tmp"))
    try:
        generate_workspace(base / "ws")
        yield base / "ws"
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def reference_env(monkeypatch):
    """Whatever the machine's configuration says, these proofs grade what they are told to."""
    monkeypatch.setenv("LABKIT_IMPL_CGROUPS", "reference")


def test_reference_gets_full_marks(tmp_path, reference_env):
    report = grade(["cp02"], out_dir=tmp_path, quiet=True)
    chapter = report.chapters["cp02"]
    assert chapter.status == "graded", chapter.error
    assert [t.name for t in chapter.tests if t.outcome != "passed"] == [], report.output[-3000:]
    assert chapter.max >= 10 and report.full_marks
    assert sorted(t.name for t in chapter.tests) == sorted(MUTATIONS)


def test_fresh_workspace_fails_every_checkpoint(workspace, tmp_path):
    report = grade(["cp02"], workspace, out_dir=tmp_path, layers=["cgroups"], quiet=True)
    chapter = report.chapters["cp02"]
    assert skeleton_problems(report) == []
    assert chapter.points == 0 and len(chapter.tests) == len(MUTATIONS)
    proof = next(t for t in chapter.tests
                 if t.name == "test_docker_run_limits_bite_through_your_cgroups")
    assert proof.outcome == "failed"
    assert "OCI runtime create failed" in proof.message, proof.message
    assert "exercise in is_v2() (labkit_student/runc/cgroups.py): not done yet" \
        in proof.message, proof.message
    assert "Traceback" not in proof.message


def test_the_chapters_solution_alone_gets_full_marks(workspace, tmp_path):
    """A workspace where only chapter 02 is solved (chapter 01's namespaces layer is not
    graded here: the lab keeps the reference for every layer but cgroups): full marks."""
    solved = tmp_path / "ws"
    shutil.copytree(workspace, solved, symlinks=True)
    (solved / STUDENT_FILE).write_text(REFERENCE)
    report = grade(["cp02"], solved, out_dir=tmp_path / "grade", layers=["cgroups"], quiet=True)
    chapter = report.chapters["cp02"]
    assert [t.name for t in chapter.tests if t.outcome != "passed"] == [], report.output[-3000:]
    assert chapter.points == chapter.max == 16


@pytest.mark.parametrize("test_name", sorted(MUTATIONS))
def test_seeded_bug_is_caught(test_name, workspace, tmp_path):
    mistake, old, new = MUTATIONS[test_name]
    assert REFERENCE.count(old) == 1, f"the mutation's text must occur once in the reference: {old!r}"
    mutated = tmp_path / "ws"
    shutil.copytree(workspace, mutated, symlinks=True)
    (mutated / STUDENT_FILE).write_text(REFERENCE.replace(old, new))
    longer = [f"not {other}" for other in MUTATIONS if other != test_name and test_name in other]
    report = grade(["cp02"], mutated, out_dir=tmp_path / "grade", layers=["cgroups"],
                   quiet=True, pytest_args=["-k", " and ".join([test_name, *longer])])
    outcomes = {t.name: t.outcome for t in report.chapters["cp02"].tests}
    assert outcomes == {test_name: "failed"}, f"{mistake}: {outcomes}\n{report.output[-3000:]}"
