"""Proof that checkpoint cp07 grades: full marks on the reference, nothing on a fresh workspace,
full marks for the chapter's solution alone, and every checkpoint caught out by at least one
seeded bug.

Chapter 07's code lives in two in-process layers, both loaded into labkit-containerd (USES in
labkit/lab/daemons.py): the snapshotter (labkit/containerd/snapshots.py) and the content store
(labkit/containerd/content.py). The grade takes both from the workspace; every other layer,
labkit-containerd itself included, stays the reference. On a fresh workspace `docker pull
busybox` must fail with the name of the function that is not done yet; on the reference,
`docker pull`, `docker run` and `docker rmi` must work.

A checkpoint that cannot fail is a bug: for each cp07 test there is a mutation below -- one
realistic mistake in one of the two modules -- put into a workspace where the chapter is
otherwise solved, and graded with only that test selected.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

import pytest

from labkit.course import syllabus
from labkit.course.grading import grade, skeleton_problems
from labkit.course.workspace import (REFERENCE_PACKAGE, STUDENT_PACKAGE, _find_regions,
                                     generate_workspace, own_package_imports, strip_solutions)

pytestmark = pytest.mark.root

CHAPTER = syllabus.chapter("cp07")
LAYERS = ["content", "snapshotter"]
MODULES = ("containerd/snapshots.py", "containerd/content.py")   # under labkit/

# test -> (the mistake, file under labkit/, text of the reference, what it becomes)
MUTATIONS: dict[str, tuple[str, str, str, str]] = {
    "test_overlay_mounts": (
        "lowerdir bottom first: the oldest layer hides every later change",
        "containerd/snapshots.py",
        "lowers = [str(self._fs(r)) for r in self._chain(rec.parent)]  # top first",
        "lowers = [str(self._fs(r)) for r in reversed(self._chain(rec.parent))]"),
    "test_commit_snapshot": (
        "anything can be committed: a read-only view becomes a layer",
        "containerd/snapshots.py",
        "        if rec.kind != ACTIVE:\n            raise FailedPrecondition(f\"commit {key!r}",
        "        if False:\n            raise FailedPrecondition(f\"commit {key!r}"),
    "test_remove_snapshot": (
        "a parent is removed under its children: their overlay loses a lowerdir",
        "containerd/snapshots.py",
        "        if children:\n            raise FailedPrecondition(f\"remove snapshot",
        "        if False:\n            raise FailedPrecondition(f\"remove snapshot"),
    "test_content_commit": (
        "the digest is never compared: any bytes are published under the name asked for",
        "containerd/content.py",
        "        if actual != self._digest:", "        if False:"),
    "test_resumable_ingest": (
        "writes are appended wherever they claim to start",
        "containerd/content.py",
        "        if offset != self.offset:\n            raise OutOfRange",
        "        if False:\n            raise OutOfRange"),
    "test_docker_through_your_stores": (
        "a layer's first snapshot is bound read-only: nothing can be unpacked into it",
        "containerd/snapshots.py",
        "# Nothing to stack on: the snapshot *is* its directory.\n"
        "                return [Mount(\"bind\", str(self._fs(rec)), [\"rbind\", \"rw\"])]",
        "# Nothing to stack on: the snapshot *is* its directory.\n"
        "                return [Mount(\"bind\", str(self._fs(rec)), [\"rbind\", \"ro\"])]"),
}

EXERCISE = re.compile(r"exercise in (\S+)\(\) \(labkit_student/(\S+\.py)\): not done yet")


def solved_text(rel: str, source: str) -> str:
    """The workspace file for labkit/<rel> with chapter 07's regions filled in (only their
    marker lines go), every other chapter's stripped, imports as the generator writes them."""
    regions = [r for r in _find_regions(source, rel) if r.chapter == CHAPTER.number]
    markers = {r.begin for r in regions} | {r.end for r in regions}
    kept = "".join(line for number, line in enumerate(source.splitlines(keepends=True), 1)
                   if number not in markers)
    target = f"{STUDENT_PACKAGE}/{rel}"
    text, _ = strip_solutions(kept, rel, target)
    return own_package_imports(text, Path(rel).parts[0], target)


def solve(ws: Path, mutation: tuple[str, str, str] | None = None) -> None:
    """Chapter 07 solved in workspace `ws` (its two modules); `mutation` (file, old, new)
    changes one reference file first."""
    for rel in MODULES:
        source = (REFERENCE_PACKAGE / rel).read_text()
        if mutation and rel == mutation[0]:
            source = source.replace(mutation[1], mutation[2])
        (ws / STUDENT_PACKAGE / rel).write_text(solved_text(rel, source))


@pytest.fixture(autouse=True)
def graded_as_told(monkeypatch):
    """Whatever the machine's configuration says, these proofs grade what they are told to:
    every layer the reference, but those a test hands grade() a workspace for."""
    from labkit.lab.implementations import LAYER_ENV_PREFIX, LAYERS as ALL
    for layer in ALL:
        monkeypatch.setenv(LAYER_ENV_PREFIX + layer.upper(), "reference")


@pytest.fixture(scope="module")
def workspace():
    """A freshly generated workspace (short path: it ends up in messages and wrapper scripts)."""
    base = Path(tempfile.mkdtemp(prefix="lk-cp07-", dir="/tmp"))
    try:
        generate_workspace(base / "ws")
        yield base / "ws"
    finally:
        shutil.rmtree(base, ignore_errors=True)


def copy_of(workspace: Path, tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    shutil.copytree(workspace, ws, symlinks=True)
    return ws


def test_reference_gets_full_marks(tmp_path):
    report = grade(["cp07"], out_dir=tmp_path, quiet=True)
    chapter = report.chapters["cp07"]
    assert chapter.status == "graded", chapter.error
    assert [t.name for t in chapter.tests if t.outcome != "passed"] == [], report.output[-3000:]
    assert chapter.max == CHAPTER.points and report.full_marks
    assert sorted(t.name for t in chapter.tests) == sorted(MUTATIONS)


def test_fresh_workspace_fails_every_checkpoint(workspace, tmp_path):
    report = grade(["cp07"], workspace, out_dir=tmp_path, layers=LAYERS, quiet=True)
    chapter = report.chapters["cp07"]
    assert skeleton_problems(report) == []
    assert chapter.points == 0 and len(chapter.tests) == len(MUTATIONS)
    assert all(t.outcome == "failed" for t in chapter.tests), \
        {t.name: t.outcome for t in chapter.tests}
    # the proof: docker pull through the blank stores fails, naming one of the chapter's functions
    proof = next(t for t in chapter.tests if t.name == "test_docker_through_your_stores")
    found = EXERCISE.search(proof.message)
    assert found, proof.message
    ours = {f.split(":")[1] for f in CHAPTER.functions}
    assert found.group(1).rsplit(".", 1)[-1] in ours, proof.message
    assert found.group(2) in MODULES, proof.message
    assert "Traceback" not in proof.message


def test_the_chapters_solution_alone_gets_full_marks(workspace, tmp_path):
    """Only chapter 07's regions filled in (every other exercise still blank): full marks on
    cp07, its proof included -- the stores depend on no other chapter's work."""
    ws = copy_of(workspace, tmp_path)
    solve(ws)
    report = grade(["cp07"], ws, out_dir=tmp_path / "grade", layers=LAYERS, quiet=True)
    chapter = report.chapters["cp07"]
    assert [t.name for t in chapter.tests if t.outcome != "passed"] == [], report.output[-3000:]
    assert chapter.points == chapter.max == CHAPTER.points


@pytest.mark.parametrize("test_name", sorted(MUTATIONS))
def test_seeded_bug_is_caught(test_name, workspace, tmp_path):
    mistake, rel, old, new = MUTATIONS[test_name]
    assert (REFERENCE_PACKAGE / rel).read_text().count(old) == 1, \
        f"the mutation's text must occur once in labkit/{rel}: {old!r}"
    ws = copy_of(workspace, tmp_path)
    solve(ws, (rel, old, new))
    longer = [f"not {other}" for other in MUTATIONS if other != test_name and test_name in other]
    report = grade(["cp07"], ws, out_dir=tmp_path / "grade", layers=LAYERS, quiet=True,
                   pytest_args=["-k", " and ".join([test_name, *longer])])
    outcomes = {t.name: t.outcome for t in report.chapters["cp07"].tests}
    assert outcomes == {test_name: "failed"}, f"{mistake}: {outcomes}\n{report.output[-3000:]}"
