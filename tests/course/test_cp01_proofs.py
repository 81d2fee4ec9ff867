"""Proof that checkpoint cp01 grades: full marks on the reference, nothing on a fresh workspace,
and every checkpoint caught out by at least one seeded bug.

The chapter's last checkpoint runs the real docker CLI through a private lab whose namespaces
layer is the graded code: on a fresh workspace `docker run` must fail with the name of the
function that is not done yet, on the reference it must work.

A checkpoint that cannot fail is a bug. So for each cp01 test there is a mutation below -- the
reference source of labkit/namespaces.py with one realistic mistake in it -- that is put into a
workspace as the student's module and graded with only that test selected (a prerequisite
outside the run does not block, so the test itself must notice the bug).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

import labkit.namespaces
from labkit.course.grading import grade, skeleton_problems
from labkit.course.workspace import generate_workspace

pytestmark = pytest.mark.root

REFERENCE = Path(labkit.namespaces.__file__).read_text()

# test -> (the mistake, text of the reference, what it becomes)
MUTATIONS: dict[str, tuple[str, str, str]] = {
    "test_namespace_flags": (
        "= for |=: only the last kind's flag is kept",
        "        result |= NAMESPACES[kind].flag", "        result = NAMESPACES[kind].flag"),
    "test_namespace_id": (
        "reads the caller's link instead of pid's",
        'os.readlink(f"/proc/{pid}/ns/{name}")', 'os.readlink(f"/proc/self/ns/{name}")'),
    "test_exit_status": (
        "a signal's number returned as the status",
        "return 128 + os.WTERMSIG(wait_status)", "return os.WTERMSIG(wait_status)"),
    "test_set_hostname": (
        "sethostname never called",
        "    socket.sethostname(name)\n", "    pass\n"),
    "test_make_mounts_private": (
        "MS_REC forgotten: only / becomes private",
        "syscalls.MS_REC | syscalls.MS_PRIVATE", "syscalls.MS_PRIVATE"),
    "test_mount_proc": (
        "proc mounted on /proc whatever the target",
        'syscalls.mount("proc", target, "proc",', 'syscalls.mount("proc", "/proc", "proc",'),
    "test_network_interfaces": (
        "the loopback device left out",
        'sorted(name for _, name in socket.if_nameindex())',
        'sorted(name for _, name in socket.if_nameindex() if name != "lo")'),
    "test_bad_input": (
        "unknown kinds not checked (a KeyError leaks out)",
        "        if not isinstance(kind, str) or kind not in NAMESPACES:\n", "        if False:\n"),
    "test_join_namespace": (
        "setns told no kind (nstype 0): any namespace fd is joined as anything",
        "syscalls.setns(fd, NAMESPACES[kind].flag)", "syscalls.setns(fd, 0)"),
    "test_docker_run_through_your_namespaces": (
        "the hostname set backwards: the container's hostname is wrong under docker run",
        "    socket.sethostname(name)\n", "    socket.sethostname(name[::-1])\n"),
    "test_isolated_uts": (
        "the hostname is never set in the child",
        "    if hostname is not None:\n        set_hostname(hostname)",
        "    if False:\n        set_hostname(hostname)"),
    "test_isolated_pid": (
        "no second fork after unshare(CLONE_NEWPID)",
        "        pid = os.fork()\n        if pid != 0:", "        pid = 0\n        if pid != 0:"),
    "test_isolated_mount": (
        "the new mount namespace is not made private",
        "    if flags & syscalls.CLONE_NEWNS:\n        make_mounts_private()",
        "    if False:\n        make_mounts_private()"),
    "test_isolated_network": (
        "the table edited: network mapped to the mount flag",
        '"network": Kind(syscalls.CLONE_NEWNET', '"network": Kind(syscalls.CLONE_NEWNS'),
    "test_isolated_only_requested": (
        "every kind of the chapter made, not just the ones asked for",
        "    for kind in kinds:\n        if not isinstance(kind, str)",
        "    for kind in KINDS:\n        if not isinstance(kind, str)"),
    "test_exit_status_propagates": (
        "the middle process of a pid namespace always exits 0",
        "os._exit(exit_status(status))", "os._exit(0)"),
}


@pytest.fixture(scope="module")
def workspace():
    """A freshly generated workspace (short path: it ends up in messages and wrapper scripts)."""
    base = Path(tempfile.mkdtemp(prefix="lk-cp01-", dir="/tmp"))
    try:
        generate_workspace(base / "ws")
        yield base / "ws"
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def reference_env(monkeypatch):
    """Whatever the machine's configuration says, these proofs grade what they are told to."""
    monkeypatch.setenv("LABKIT_IMPL_NAMESPACES", "reference")


def test_reference_gets_full_marks(tmp_path, reference_env):
    report = grade(["cp01"], out_dir=tmp_path, quiet=True)
    chapter = report.chapters["cp01"]
    assert chapter.status == "graded", chapter.error
    assert [t.name for t in chapter.tests if t.outcome != "passed"] == [], report.output[-3000:]
    assert chapter.max >= 10 and report.full_marks
    # Every checkpoint of the chapter has its seeded bug below.
    assert sorted(t.name for t in chapter.tests) == sorted(MUTATIONS)


def test_fresh_workspace_fails_every_checkpoint(workspace, tmp_path):
    report = grade(["cp01"], workspace, out_dir=tmp_path, layers=["namespaces"], quiet=True)
    chapter = report.chapters["cp01"]
    assert skeleton_problems(report) == []
    assert chapter.points == 0 and len(chapter.tests) == len(MUTATIONS)
    assert any(t.outcome == "failed" for t in chapter.tests)
    # the proof: docker run through the blank workspace fails, naming the function, briefly
    proof = next(t for t in chapter.tests if t.name == "test_docker_run_through_your_namespaces")
    assert proof.outcome == "failed"
    assert "OCI runtime create failed" in proof.message, proof.message
    assert "exercise in namespace_flags() (labkit_student/namespaces.py): not done yet" \
        in proof.message, proof.message
    assert "Traceback" not in proof.message


def test_the_chapters_solution_alone_gets_full_marks(workspace, tmp_path):
    """A workspace where only chapter 01 is solved (every other exercise still blank): full
    marks on cp01, its proof included -- the chapter depends on no other chapter's work."""
    solved = tmp_path / "ws"
    shutil.copytree(workspace, solved, symlinks=True)
    (solved / "labkit_student" / "namespaces.py").write_text(REFERENCE)
    report = grade(["cp01"], solved, out_dir=tmp_path / "grade", layers=["namespaces"], quiet=True)
    chapter = report.chapters["cp01"]
    assert [t.name for t in chapter.tests if t.outcome != "passed"] == [], report.output[-3000:]
    assert chapter.points == chapter.max == 26


@pytest.mark.parametrize("test_name", sorted(MUTATIONS))
def test_seeded_bug_is_caught(test_name, workspace, tmp_path):
    mistake, old, new = MUTATIONS[test_name]
    assert REFERENCE.count(old) == 1, f"the mutation's text must occur once in the reference: {old!r}"
    mutated = tmp_path / "ws"
    shutil.copytree(workspace, mutated, symlinks=True)
    (mutated / "labkit_student" / "namespaces.py").write_text(REFERENCE.replace(old, new))
    # Only the targeted test (pytest -k matches substrings: exclude longer names containing it).
    longer = [f"not {other}" for other in MUTATIONS if other != test_name and test_name in other]
    report = grade(["cp01"], mutated, out_dir=tmp_path / "grade", layers=["namespaces"],
                   quiet=True, pytest_args=["-k", " and ".join([test_name, *longer])])
    outcomes = {t.name: t.outcome for t in report.chapters["cp01"].tests}
    assert outcomes == {test_name: "failed"}, f"{mistake}: {outcomes}\n{report.output[-3000:]}"
