"""Proof that checkpoint cp03 grades: full marks on the reference, nothing on a fresh workspace,
and every checkpoint caught out by at least one seeded bug.

The chapter's last checkpoint runs the real docker CLI through a private lab whose rootfs
layer (labkit.runc.mounts, loaded into labkit-runc) is the graded code: on a fresh workspace
`docker run` must fail with the name of the function that is not done yet, on the reference
it must work.

A checkpoint that cannot fail is a bug. So for each cp03 test there is a mutation below -- the
reference source of labkit/runc/mounts.py with one realistic mistake in it -- that is put into
a workspace as the student's module and graded with only that test selected (a prerequisite
outside the run does not block, so the test itself must notice the bug).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

import labkit.namespaces
import labkit.runc.mounts
from labkit.course.grading import grade, skeleton_problems
from labkit.course.workspace import generate_workspace

pytestmark = pytest.mark.root

REFERENCE = Path(labkit.runc.mounts.__file__).read_text()
STUDENT_FILE = Path("labkit_student", "runc", "mounts.py")

# test -> (the mistake, text of the reference, what it becomes)
MUTATIONS: dict[str, tuple[str, str, str]] = {
    "test_mount_entry_filesystem": (
        "the data string (mode=…, size=…) never reaches the filesystem",
        "sc.mount(source, target, fstype, opts.flags, opts.data or None)",
        "sc.mount(source, target, fstype, opts.flags)"),
    "test_mount_entry_bind": (
        "the bind remount forgets the flags the mount already had (noexec is lost)",
        "sc.mount(None, target, None, MS_BIND | MS_REMOUNT | extra | current_flags(target))",
        "sc.mount(None, target, None, MS_BIND | MS_REMOUNT | extra)"),
    "test_mount_entry_propagation": (
        "the propagation options are parsed and then never applied",
        "    for propagation in opts.propagation or []:\n        sc.mount(None, target, None, propagation)",
        "    for propagation in opts.propagation or []:\n        pass"),
    "test_enter_root": (
        "pivot_root without detaching the old root: the host stays mounted on top of '/'",
        '    sc.umount2(".", MNT_DETACH)\n', "    pass\n"),
    "test_populate_dev": (
        "every default device made as 1:3 (they are all /dev/null)",
        'make_device(os.path.join(dev, name), "c", major, minor,',
        'make_device(os.path.join(dev, name), "c", 1, 3,'),
    "test_readonly_path": (
        "the read-only remount drops nosuid/nodev/noexec (no current_flags)",
        "MS_BIND | MS_REMOUNT | MS_RDONLY | MS_REC | current_flags(path))",
        "MS_BIND | MS_REMOUNT | MS_RDONLY | MS_REC)"),
    "test_mask_path": (
        "a masked directory hidden under a WRITABLE tmpfs",
        'sc.mount("tmpfs", path, "tmpfs", MS_RDONLY)', 'sc.mount("tmpfs", path, "tmpfs", 0)'),
    "test_bad_input": (
        "a missing bind source is not checked: the mount point is made, the kernel's error "
        "names the target",
        '        if not os.path.exists(source):\n'
        '            raise OSError(2, f"mount {dest}: bind source {source}: ENOENT")\n', ""),
    "test_docker_run_through_your_rootfs": (
        "readonly paths bound onto themselves but never remounted: /proc/sys stays writable",
        "    sc.mount(None, path, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_REC | current_flags(path))\n",
        "    pass\n"),
}


@pytest.fixture(scope="module")
def workspace():
    """A freshly generated workspace (short path: it ends up in messages and wrapper scripts)."""
    base = Path(tempfile.mkdtemp(prefix="lk-cp03-", dir="/tmp"))
    try:
        generate_workspace(base / "ws")
        yield base / "ws"
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def reference_env(monkeypatch):
    """Whatever the machine's configuration says, these proofs grade what they are told to."""
    monkeypatch.setenv("LABKIT_IMPL_ROOTFS", "reference")
    monkeypatch.setenv("LABKIT_IMPL_NAMESPACES", "reference")


def test_reference_gets_full_marks(tmp_path, reference_env):
    report = grade(["cp03"], out_dir=tmp_path, quiet=True)
    chapter = report.chapters["cp03"]
    assert chapter.status == "graded", chapter.error
    assert [t.name for t in chapter.tests if t.outcome != "passed"] == [], report.output[-3000:]
    assert chapter.max >= 10 and report.full_marks
    # Every checkpoint of the chapter has its seeded bug below.
    assert sorted(t.name for t in chapter.tests) == sorted(MUTATIONS)


def test_fresh_workspace_fails_every_checkpoint(workspace, tmp_path, reference_env):
    report = grade(["cp03"], workspace, out_dir=tmp_path, layers=["rootfs"], quiet=True)
    chapter = report.chapters["cp03"]
    assert skeleton_problems(report) == []
    assert chapter.points == 0 and len(chapter.tests) == len(MUTATIONS)
    assert all(t.outcome in ("failed", "blocked") for t in chapter.tests), \
        {t.name: t.outcome for t in chapter.tests}
    # the proof: docker run through the blank workspace fails, naming the function, briefly
    proof = next(t for t in chapter.tests if t.name == "test_docker_run_through_your_rootfs")
    assert proof.outcome == "failed"
    assert "OCI runtime create failed" in proof.message, proof.message
    assert "exercise in mount_entry() (labkit_student/runc/mounts.py): not done yet" \
        in proof.message, proof.message
    assert "Traceback" not in proof.message


def test_the_chapters_solution_alone_gets_full_marks(workspace, tmp_path):
    """A workspace where only chapter 03 and its prerequisite, chapter 01, are solved (every
    other exercise still blank), both layers taken from it: full marks on cp03, its proof
    included -- the chapter depends on no other chapter's work."""
    solved = tmp_path / "ws"
    shutil.copytree(workspace, solved, symlinks=True)
    (solved / STUDENT_FILE).write_text(REFERENCE)
    (solved / "labkit_student" / "namespaces.py").write_text(
        Path(labkit.namespaces.__file__).read_text())
    report = grade(["cp03"], solved, out_dir=tmp_path / "grade", layers=["rootfs", "namespaces"],
                   quiet=True)
    chapter = report.chapters["cp03"]
    assert [t.name for t in chapter.tests if t.outcome != "passed"] == [], report.output[-3000:]
    assert chapter.points == chapter.max == 18


@pytest.mark.parametrize("test_name", sorted(MUTATIONS))
def test_seeded_bug_is_caught(test_name, workspace, tmp_path, reference_env):
    mistake, old, new = MUTATIONS[test_name]
    assert REFERENCE.count(old) == 1, f"the mutation's text must occur once in the reference: {old!r}"
    mutated = tmp_path / "ws"
    shutil.copytree(workspace, mutated, symlinks=True)
    (mutated / STUDENT_FILE).write_text(REFERENCE.replace(old, new))
    # Only the targeted test (pytest -k matches substrings: exclude longer names containing it).
    longer = [f"not {other}" for other in MUTATIONS if other != test_name and test_name in other]
    report = grade(["cp03"], mutated, out_dir=tmp_path / "grade", layers=["rootfs"],
                   quiet=True, pytest_args=["-k", " and ".join([test_name, *longer])])
    outcomes = {t.name: t.outcome for t in report.chapters["cp03"].tests}
    assert outcomes == {test_name: "failed"}, f"{mistake}: {outcomes}\n{report.output[-3000:]}"
