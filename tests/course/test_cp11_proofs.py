"""Proof that checkpoint cp11 grades: full marks on the reference, nothing on a fresh workspace,
and every checkpoint caught out by at least one seeded bug.

The chapter's last checkpoint runs the real docker CLI through a private lab whose builder
(labkit.dockerd.builder, loaded into labkit-dockerd by labkit.lab.launch) is the graded code:
on a fresh workspace `docker build` must fail with the name of the function that is not done
yet, on the reference it must build, run and rebuild from the cache.

A checkpoint that cannot fail is a bug. So for each cp11 test there is a mutation below -- one
reference module of labkit/dockerd/builder/ with one realistic mistake in it -- that is put
into a workspace as the student's module and graded with only that test selected.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import re

import pytest

import labkit.dockerd.builder
from labkit.course.grading import grade, skeleton_problems
from labkit.course.workspace import generate_workspace

pytestmark = pytest.mark.root

PACKAGE = Path(labkit.dockerd.builder.__file__).parent
# the chapter's modules: each holds at least one chapter-11 exercise
MODULES = ("steps.py", "backend.py", "context.py")

# test -> (the mistake, module, text of the reference, what it becomes)
MUTATIONS: dict[str, tuple[str, str, str, str]] = {
    "test_cache_key": (
        "the config's keys are hashed in the order they came: the same config, another key",
        "steps.py", '"files": extra}, sort_keys=True)', '"files": extra})'),
    "test_cache_lookup": (
        "--no-cache is ignored",
        "steps.py", "    if not enabled or not parent.id:\n        return None\n",
        "    if not parent.id:\n        return None\n"),
    "test_run_step": (
        "the build args of the RUN (run_config) end up in the image's config",
        "steps.py", "return backend.commit_container(container, parent, image_config, created_by)",
        "return backend.commit_container(container, parent, run_config, created_by)"),
    "test_layer_tar": (
        "the members keep the leading '/' of their absolute paths",
        "backend.py", '            path = f.path.lstrip("/")\n', "            path = f.path\n"),
    "test_docker_build_through_your_builder": (
        "the cache is looked up on the image being built instead of its parent: never a hit",
        "steps.py", "    return backend.cache_get(parent.id, key)\n",
        "    return backend.cache_get(key, parent.id)\n"),
}


@pytest.fixture(scope="module")
def workspace():
    """A freshly generated workspace (short path: it ends up in messages and wrapper scripts)."""
    base = Path(tempfile.mkdtemp(prefix="lk-cp11-", dir="/tmp"))
    try:
        generate_workspace(base / "ws")
        yield base / "ws"
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def reference_env(monkeypatch):
    """Whatever the machine's configuration says, these proofs grade what they are told to."""
    monkeypatch.setenv("LABKIT_IMPL_BUILDER", "reference")


def _student(ws: Path) -> Path:
    return ws / "labkit_student" / "dockerd" / "builder"


def test_reference_gets_full_marks(tmp_path, reference_env):
    report = grade(["cp11"], out_dir=tmp_path, quiet=True)
    chapter = report.chapters["cp11"]
    assert chapter.status == "graded", chapter.error
    assert [t.name for t in chapter.tests if t.outcome != "passed"] == [], report.output[-3000:]
    assert chapter.max >= 10 and report.full_marks
    assert sorted(t.name for t in chapter.tests) == sorted(MUTATIONS)


def test_fresh_workspace_fails_every_checkpoint(workspace, tmp_path):
    report = grade(["cp11"], workspace, out_dir=tmp_path, layers=["builder"], quiet=True)
    chapter = report.chapters["cp11"]
    assert skeleton_problems(report) == []
    assert chapter.points == 0 and len(chapter.tests) == len(MUTATIONS)
    assert any(t.outcome == "failed" for t in chapter.tests)
    # the proof: docker build through the blank workspace fails, naming the function, briefly
    proof = next(t for t in chapter.tests if t.name == "test_docker_build_through_your_builder")
    assert proof.outcome == "failed"
    assert re.search(r"exercise in \w+\(\) \(labkit_student/dockerd/builder/\w+\.py\): not "
                     r"done yet", proof.message), proof.message
    assert "Traceback" not in proof.message


def test_the_chapters_solution_alone_gets_full_marks(workspace, tmp_path):
    """A workspace where only chapter 11 is solved (every other exercise still blank): full
    marks on cp11, its proof included -- the builder runs in the reference dockerd, on the
    reference containerd and runtime."""
    solved = tmp_path / "ws"
    shutil.copytree(workspace, solved, symlinks=True)
    for name in MODULES:
        (_student(solved) / name).write_text((PACKAGE / name).read_text())
    report = grade(["cp11"], solved, out_dir=tmp_path / "grade", layers=["builder"], quiet=True)
    chapter = report.chapters["cp11"]
    assert [t.name for t in chapter.tests if t.outcome != "passed"] == [], report.output[-3000:]
    assert chapter.points == chapter.max == 16


@pytest.mark.parametrize("test_name", sorted(MUTATIONS))
def test_seeded_bug_is_caught(test_name, workspace, tmp_path):
    mistake, name, old, new = MUTATIONS[test_name]
    reference = (PACKAGE / name).read_text()
    assert reference.count(old) == 1, f"the mutation's text must occur once in {name}: {old!r}"
    mutated = tmp_path / "ws"
    shutil.copytree(workspace, mutated, symlinks=True)
    for other in MODULES:                       # the chapter solved, but for this one mistake
        text = (PACKAGE / other).read_text()
        (_student(mutated) / other).write_text(text.replace(old, new) if other == name else text)
    longer = [f"not {other}" for other in MUTATIONS if other != test_name and test_name in other]
    report = grade(["cp11"], mutated, out_dir=tmp_path / "grade", layers=["builder"],
                   quiet=True, pytest_args=["-k", " and ".join([test_name, *longer])])
    outcomes = {t.name: t.outcome for t in report.chapters["cp11"].tests}
    assert outcomes == {test_name: "failed"}, f"{mistake}: {outcomes}\n{report.output[-3000:]}"
