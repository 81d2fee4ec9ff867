"""Proof that checkpoint cp06 grades: full marks on the reference, nothing on a fresh workspace,
and every checkpoint caught out by at least one seeded bug.

The chapter's last checkpoint runs the real docker CLI through a private lab whose distribution
layer (labkit.distribution, loaded into labkit-containerd and labkit-dockerd) is the graded
code: on a fresh workspace `docker pull busybox` must fail with the name of the function that
is not done yet, on the reference it must work.

A checkpoint that cannot fail is a bug. So for each cp06 test there is a mutation below -- one
reference module of labkit/distribution/ with one realistic mistake in it -- that is put into a
workspace as the student's module and graded with only that test selected.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

import labkit.distribution
from labkit.course.grading import grade, skeleton_problems
from labkit.course.workspace import generate_workspace

pytestmark = pytest.mark.root

PACKAGE = Path(labkit.distribution.__file__).parent
# the chapter's modules: each holds at least one chapter-06 exercise
MODULES = ("reference.py", "platforms.py", "layers.py", "client.py")

# test -> (the mistake, module, text of the reference, what it becomes)
MUTATIONS: dict[str, tuple[str, str, str, str]] = {
    "test_split_domain": (
        "localhost is not recognized as a registry host",
        "reference.py", ' and first != "localhost"', ""),
    "test_select_manifest": (
        "attestation entries are not skipped",
        "platforms.py", "if not isinstance(descriptor, dict) or _is_attestation(descriptor):",
        "if not isinstance(descriptor, dict):"),
    "test_chain_ids": (
        "the chain ID hashes the two digests without the space between them",
        "layers.py", 'joined = f"{result[-1]} {diff_id}".encode()',
        'joined = f"{result[-1]}{diff_id}".encode()'),
    "test_resolve": (
        "no Accept header: registry 2.8 answers 404 for OCI content",
        "client.py", 'headers={"Accept": ", ".join(mediatypes.MANIFEST_ACCEPT)})', "headers={})"),
    "test_fetch_blob": (
        "a download cut short is not noticed as such (only as a wrong digest)",
        "client.py", "if size is not None and received < size:\n                raise TruncatedBlob",
        "if False:\n                raise TruncatedBlob"),
    "test_token_dance": (
        "the token is stored under the wrong scope, so it is never sent",
        "client.py", "self._tokens[scope] = auth.parse_token_response(reply.body)",
        'self._tokens["pull"] = auth.parse_token_response(reply.body)'),
    "test_docker_pull_through_your_distribution": (
        "official images lose their library/ prefix: the lab's registry has no /v2/busybox",
        "reference.py", "        path = OFFICIAL_REPO_PREFIX + path\n", "        path = path\n"),
}


@pytest.fixture(scope="module")
def workspace():
    """A freshly generated workspace (short path: it ends up in messages and wrapper scripts)."""
    base = Path(tempfile.mkdtemp(prefix="lk-cp06-", dir="/tmp"))
    try:
        generate_workspace(base / "ws")
        yield base / "ws"
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def reference_env(monkeypatch):
    """Whatever the machine's configuration says, these proofs grade what they are told to."""
    monkeypatch.setenv("LABKIT_IMPL_DISTRIBUTION", "reference")


def _student(ws: Path) -> Path:
    return ws / "labkit_student" / "distribution"


def test_reference_gets_full_marks(tmp_path, reference_env):
    report = grade(["cp06"], out_dir=tmp_path, quiet=True)
    chapter = report.chapters["cp06"]
    assert chapter.status == "graded", chapter.error
    assert [t.name for t in chapter.tests if t.outcome != "passed"] == [], report.output[-3000:]
    assert chapter.max >= 10 and report.full_marks
    assert sorted(t.name for t in chapter.tests) == sorted(MUTATIONS)


def test_fresh_workspace_fails_every_checkpoint(workspace, tmp_path):
    report = grade(["cp06"], workspace, out_dir=tmp_path, layers=["distribution"], quiet=True)
    chapter = report.chapters["cp06"]
    assert skeleton_problems(report) == []
    assert chapter.points == 0 and len(chapter.tests) == len(MUTATIONS)
    assert any(t.outcome == "failed" for t in chapter.tests)
    # the proof: docker pull through the blank workspace fails, naming the function, briefly
    proof = next(t for t in chapter.tests if t.name == "test_docker_pull_through_your_distribution")
    assert proof.outcome == "failed"
    assert "exercise in split_domain() (labkit_student/distribution/reference.py): not done yet" \
        in proof.message, proof.message
    assert "Traceback" not in proof.message


def test_the_chapters_solution_alone_gets_full_marks(workspace, tmp_path):
    """A workspace where only chapter 06 is solved (every other exercise still blank): full
    marks on cp06, its proof included -- the chapter depends on no other chapter's work."""
    solved = tmp_path / "ws"
    shutil.copytree(workspace, solved, symlinks=True)
    for name in MODULES:
        (_student(solved) / name).write_text((PACKAGE / name).read_text())
    report = grade(["cp06"], solved, out_dir=tmp_path / "grade", layers=["distribution"], quiet=True)
    chapter = report.chapters["cp06"]
    assert [t.name for t in chapter.tests if t.outcome != "passed"] == [], report.output[-3000:]
    assert chapter.points == chapter.max == 18


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
    report = grade(["cp06"], mutated, out_dir=tmp_path / "grade", layers=["distribution"],
                   quiet=True, pytest_args=["-k", " and ".join([test_name, *longer])])
    outcomes = {t.name: t.outcome for t in report.chapters["cp06"].tests}
    assert outcomes == {test_name: "failed"}, f"{mistake}: {outcomes}\n{report.output[-3000:]}"
