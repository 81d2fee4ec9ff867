"""Proof that checkpoint cp08 grades: full marks on the reference, nothing on a fresh workspace,
and every checkpoint caught out by at least one seeded bug.

The chapter's last checkpoint runs the real docker CLI through a private lab whose network
layer (labkit.dockerd.net, loaded into labkit-dockerd) is the graded code: on a fresh
workspace `docker run` must fail with the name of the function that is not done yet, on the
reference it must get its address, reach a container by name and publish a port.

A checkpoint that cannot fail is a bug. So for each cp08 test there is a mutation below -- one
module of labkit/dockerd/net/ with one realistic mistake in it -- that is put into a workspace
as the student's module and graded with only that test selected.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

import labkit.dockerd.net
from labkit.course.grading import grade, skeleton_problems
from labkit.course.workspace import generate_workspace

pytestmark = pytest.mark.root

PACKAGE = Path(labkit.dockerd.net.__file__).parent
MODULES = ("ipam.py", "bridge.py")      # each holds chapter-08 exercises

# test -> (the mistake, module, text of the reference, what it becomes)
MUTATIONS: dict[str, tuple[str, str, str, str]] = {
    "test_choose_subnet": (
        "the default route counts as a subnet in use: every candidate overlaps it",
        "ipam.py", "taken = [n for n in in_use if n.prefixlen > 0]", "taken = list(in_use)"),
    "test_allocate": (
        "a wanted address may be the network's or the broadcast address",
        "ipam.py", "if address not in subnet or address in (subnet.network_address,\n"
                   "                                                subnet.broadcast_address):",
        "if address not in subnet:"),
    "test_ensure_bridge": (
        "the bridge carries no alias: a restarted daemon cannot tell it is its own",
        "bridge.py", '            ipr.link("set", index=found[0], ifalias=alias)\n', ""),
    "test_in_netns": (
        "the netlink socket is opened before setns: it talks to the host's namespace",
        "bridge.py", "            sc.setns(ns, sc.CLONE_NEWNET)\n"
                     "            with IPRoute() as ipr:   # its socket is made here, in the "
                     "container's namespace\n",
        "            ipr = IPRoute()\n            sc.setns(ns, sc.CLONE_NEWNET)\n"
        "            with ipr:\n"),
    "test_plug": (
        "the host end of the veth is never made a port of the bridge",
        "bridge.py", 'ipr.link("set", index=index, master=master[0], state="up")',
        'ipr.link("set", index=index, state="up")'),
    "test_docker_run_gets_its_network_from_you": (
        "the bridge is left down: containers have addresses but nothing crosses the bridge",
        "bridge.py", 'address=gateway, prefixlen=prefixlen)\n'
                     '        ipr.link("set", index=index, state="up")\n',
        'address=gateway, prefixlen=prefixlen)\n'),
}


@pytest.fixture(scope="module")
def workspace():
    """A freshly generated workspace (short path: it ends up in messages and wrapper scripts)."""
    base = Path(tempfile.mkdtemp(prefix="lk-cp08-", dir="/tmp"))
    try:
        generate_workspace(base / "ws")
        yield base / "ws"
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def reference_env(monkeypatch):
    """Whatever the machine's configuration says, these proofs grade what they are told to."""
    monkeypatch.setenv("LABKIT_IMPL_NETWORK", "reference")


def _student(ws: Path) -> Path:
    return ws / "labkit_student" / "dockerd" / "net"


def test_reference_gets_full_marks(tmp_path, reference_env):
    report = grade(["cp08"], out_dir=tmp_path, quiet=True)
    chapter = report.chapters["cp08"]
    assert chapter.status == "graded", chapter.error
    assert [t.name for t in chapter.tests if t.outcome != "passed"] == [], report.output[-3000:]
    assert chapter.max >= 10 and report.full_marks
    assert sorted(t.name for t in chapter.tests) == sorted(MUTATIONS)


def test_fresh_workspace_fails_every_checkpoint(workspace, tmp_path):
    report = grade(["cp08"], workspace, out_dir=tmp_path, layers=["network"], quiet=True)
    chapter = report.chapters["cp08"]
    assert skeleton_problems(report) == []
    assert chapter.points == 0 and len(chapter.tests) == len(MUTATIONS)
    assert all(t.outcome == "failed" for t in chapter.tests), \
        {t.name: t.outcome for t in chapter.tests}
    # the proof: docker run through the blank workspace fails, naming the function, briefly
    proof = next(t for t in chapter.tests if t.name == "test_docker_run_gets_its_network_from_you")
    assert "exercise in choose_subnet() (labkit_student/dockerd/net/ipam.py): not done yet" \
        in proof.message, proof.message
    assert "Traceback" not in proof.message


def test_the_chapters_solution_alone_gets_full_marks(workspace, tmp_path):
    """A workspace where only chapter 08 is solved (every other exercise still blank): full
    marks on cp08, its proof included -- the network layer is the only one swapped."""
    solved = tmp_path / "ws"
    shutil.copytree(workspace, solved, symlinks=True)
    for name in MODULES:
        (_student(solved) / name).write_text((PACKAGE / name).read_text())
    report = grade(["cp08"], solved, out_dir=tmp_path / "grade", layers=["network"], quiet=True)
    chapter = report.chapters["cp08"]
    assert [t.name for t in chapter.tests if t.outcome != "passed"] == [], report.output[-3000:]
    assert chapter.points == chapter.max == 20


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
    report = grade(["cp08"], mutated, out_dir=tmp_path / "grade", layers=["network"],
                   quiet=True, pytest_args=["-k", " and ".join([test_name, *longer])])
    outcomes = {t.name: t.outcome for t in report.chapters["cp08"].tests}
    assert outcomes == {test_name: "failed"}, f"{mistake}: {outcomes}\n{report.output[-3000:]}"
