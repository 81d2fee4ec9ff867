"""Proof that checkpoint cp04 grades: full marks on the reference, nothing on a fresh workspace,
full marks for the chapter's solution (with its prerequisites' solutions) alone, and every
checkpoint caught out by at least one seeded bug.

The runtime is a process layer: the grade takes the WHOLE runtime package from the workspace
(`labkit_student.runc`, run as the workspace's bin/labkit-runc), and with it the exercises of
the chapters whose code lives in that package (cgroups.py: chapter 02, mounts.py and
init.py's pivot_root: chapter 03). So "the chapter's solution alone" is a workspace where
chapter 04's regions and those of every prerequisite chapter (syllabus.toml, followed
transitively) are filled in -- found by their `chapter="NN"` attribute, in whatever file they
are -- and every other exercise is still blank.

A checkpoint that cannot fail is a bug: for each cp04 test there is a mutation below -- one
realistic mistake in one reference file of labkit/runc -- that is put into such a workspace and
graded with only that test selected (a prerequisite outside the run does not block, so the test
itself must notice the bug).
"""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

import pytest

from labkit.course import syllabus
from labkit.course.grading import grade, skeleton_problems
from labkit.course.workspace import (EXCLUDED_DIRS, REFERENCE_PACKAGE, STUDENT_PACKAGE,
                                     _find_regions, generate_workspace, own_package_imports,
                                     strip_solutions)

pytestmark = pytest.mark.root

CHAPTER = syllabus.chapter("cp04")


def with_prerequisites(number: str) -> set[str]:
    """The chapter and every chapter it builds on, transitively."""
    found, todo = set(), [number]
    while todo:
        n = todo.pop()
        if n not in found:
            found.add(n)
            todo += syllabus.chapter(n).prerequisites
    return found


SOLVED = with_prerequisites(CHAPTER.number)

# test -> (the mistake, file under labkit/, text of the reference, what it becomes)
MUTATIONS: dict[str, tuple[str, str, str, str]] = {
    "test_find_executable": (
        "any file on PATH will do, executable or not",
        "runc/process.py", "        if _is_executable(candidate):",
        "        if os.path.exists(candidate):"),
    "test_container_state": (
        "the start time not compared: a reused pid passes for our init",
        "runc/container.py",
        'return state not in ("Z", "X", "x") and start_time == self.start_time',
        'return state not in ("Z", "X", "x")'),
    "test_run_hook": (
        "the hook gets the container's id on stdin, not its state",
        "runc/hooks.py", "                                input=json.dumps(state).encode(),",
        '                                input=json.dumps(state["id"]).encode(),'),
    "test_set_identity": (
        "no PR_SET_KEEPCAPS: setuid drops every permitted capability",
        "runc/process.py",
        "    prctl.set_keepcaps(True)                                        # 2.", "    # 2."),
    "test_start_handshake": (
        "start never gives up waiting for an init that died",
        "runc/start.py",
        "                data = os.read(fifo, 1)\n"
        "                if not data and not c.init_alive():\n"
        "                    break\n"
        "            elif not c.init_alive():\n"
        "                break\n",
        "                data = os.read(fifo, 1)\n"),
    "test_create_through_your_init": (
        "startContainer hooks are told the container is still 'created'",
        "runc/init.py", 'dict(state, status="running"))', "dict(state))"),
    "test_seccomp_and_capabilities_in_a_container": (
        "with no_new_privs the filter is never loaded",
        "runc/init.py", '    if profile and process.get("noNewPrivileges"):\n        seccomp.load',
        "    if False:\n        seccomp.load"),
    "test_bad_config": (
        "process is not checked: args as a string goes on to init",
        "runc/config.py", "    check_process(process, where)\n", ""),
    "test_same_bundle_as_runc": (
        "no HOME from the container's /etc/passwd (runc sets it)",
        "runc/process.py", '    if "HOME" not in env:', "    if False:"),
    "test_docker_through_your_runtime": (
        "only args[0] reaches execve: `sh -c 'exit 3'` becomes a plain `sh`",
        "runc/init.py", '        os.execve(program, process["args"], env)',
        '        os.execve(program, process["args"][:1], env)'),
}


def workspace_text(rel: str, source: str, solved: set[str]) -> str:
    """What the workspace file for labkit/<rel> holds when the student has solved the chapters
    `solved`: their regions kept (only the marker lines go), every other region stripped, the
    package's own imports pointed at the workspace -- as the generator does it."""
    regions = [r for r in _find_regions(source, rel) if r.chapter in solved]
    markers = {r.begin for r in regions} | {r.end for r in regions}
    kept = "".join(line for number, line in enumerate(source.splitlines(keepends=True), 1)
                   if number not in markers)
    target = f"{STUDENT_PACKAGE}/{rel}"
    text, _ = strip_solutions(kept, rel, target)
    if len(Path(rel).parts) > 1:
        text = own_package_imports(text, Path(rel).parts[0], target)
    return text


def solve(ws: Path, solved: set[str], mutation: tuple[str, str, str] | None = None) -> None:
    """Fill in the regions of the chapters `solved` in every file of workspace `ws` that has
    some; `mutation` (file, old, new) changes one reference file first."""
    for path in sorted(REFERENCE_PACKAGE.rglob("*.py")):
        rel = path.relative_to(REFERENCE_PACKAGE)
        if any(part in EXCLUDED_DIRS for part in rel.parts):
            continue
        source = path.read_text()
        if mutation and str(rel) == mutation[0]:
            source = source.replace(mutation[1], mutation[2])
        elif not any(r.chapter in solved for r in _find_regions(source, str(rel))):
            continue
        (ws / STUDENT_PACKAGE / rel).write_text(workspace_text(str(rel), source, solved))


@pytest.fixture(autouse=True)
def graded_as_told(monkeypatch):
    """Whatever the machine's configuration says, these proofs grade what they are told to:
    every layer the reference, but the one a test hands grade() a workspace for."""
    from labkit.lab.implementations import LAYER_ENV_PREFIX, LAYERS
    for layer in LAYERS:
        monkeypatch.setenv(LAYER_ENV_PREFIX + layer.upper(), "reference")


@pytest.fixture(scope="module")
def workspace():
    """A freshly generated workspace (short path: it ends up in messages and wrapper scripts)."""
    base = Path(tempfile.mkdtemp(prefix="lk-cp04-", dir="/tmp"))
    try:
        generate_workspace(base / "ws")
        yield base / "ws"
    finally:
        shutil.rmtree(base, ignore_errors=True)


def copy_of(workspace: Path, tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    shutil.copytree(workspace, ws, symlinks=True)
    # the wrapper bin/labkit-runc names its workspace: point the copy's at the copy
    for wrapper in (ws / "bin").iterdir():
        wrapper.write_text(wrapper.read_text().replace(str(workspace), str(ws)))
    return ws


EXERCISE = re.compile(r"exercise in (\S+)\(\) \(labkit_student/(\S+\.py)\): not done yet")


def test_reference_gets_full_marks(tmp_path):
    report = grade(["cp04"], out_dir=tmp_path, quiet=True)
    chapter = report.chapters["cp04"]
    assert chapter.status == "graded", chapter.error
    assert [t.name for t in chapter.tests if t.outcome != "passed"] == [], report.output[-3000:]
    assert chapter.max == CHAPTER.points and report.full_marks
    # Every checkpoint of the chapter has its seeded bug below.
    assert sorted(t.name for t in chapter.tests) == sorted(MUTATIONS)


def test_fresh_workspace_fails_every_checkpoint(workspace, tmp_path):
    report = grade(["cp04"], workspace, out_dir=tmp_path, layers=["runtime"], quiet=True)
    chapter = report.chapters["cp04"]
    assert skeleton_problems(report) == []
    assert chapter.points == 0 and len(chapter.tests) == len(MUTATIONS)
    assert any(t.outcome == "failed" for t in chapter.tests)
    # the proof: docker run through the blank runtime fails, naming a function, briefly
    proof = next(t for t in chapter.tests if t.name == "test_docker_through_your_runtime")
    assert proof.outcome == "failed"
    assert "OCI runtime create failed" in proof.message and EXERCISE.search(proof.message), \
        proof.message
    assert "Traceback" not in proof.message


def test_with_the_earlier_chapters_done_docker_names_this_chapters_function(workspace, tmp_path):
    """Chapters 01-03 solved, 04 blank: still 0 points, and `docker run` now fails at one of
    chapter 04's own functions."""
    ws = copy_of(workspace, tmp_path)
    solve(ws, SOLVED - {CHAPTER.number})
    report = grade(["cp04"], ws, out_dir=tmp_path / "grade", layers=["runtime"], quiet=True,
                   pytest_args=["-k", "test_docker_through_your_runtime"])
    proof = report.chapters["cp04"].tests[0]
    assert proof.outcome == "failed", report.output[-3000:]
    found = EXERCISE.search(proof.message)
    assert found, proof.message
    ours = {f.split(":")[1] for f in CHAPTER.functions}          # "container_init", "status" …
    assert found.group(1).rsplit(".", 1)[-1] in ours, proof.message


def test_the_chapters_solution_alone_gets_full_marks(workspace, tmp_path):
    """A workspace where only chapter 04 and the chapters it builds on are solved (every other
    exercise still blank): full marks on cp04, its proof included."""
    ws = copy_of(workspace, tmp_path)
    solve(ws, SOLVED)
    report = grade(["cp04"], ws, out_dir=tmp_path / "grade", layers=["runtime"], quiet=True)
    chapter = report.chapters["cp04"]
    assert [t.name for t in chapter.tests if t.outcome != "passed"] == [], report.output[-3000:]
    assert chapter.points == chapter.max == CHAPTER.points


@pytest.mark.parametrize("test_name", sorted(MUTATIONS))
def test_seeded_bug_is_caught(test_name, workspace, tmp_path):
    mistake, rel, old, new = MUTATIONS[test_name]
    assert (REFERENCE_PACKAGE / rel).read_text().count(old) == 1, \
        f"the mutation's text must occur once in labkit/{rel}: {old!r}"
    ws = copy_of(workspace, tmp_path)
    solve(ws, SOLVED, (rel, old, new))
    # Only the targeted test (pytest -k matches substrings: exclude longer names containing it).
    longer = [f"not {other}" for other in MUTATIONS if other != test_name and test_name in other]
    report = grade(["cp04"], ws, out_dir=tmp_path / "grade", layers=["runtime"],
                   quiet=True, pytest_args=["-k", " and ".join([test_name, *longer])])
    outcomes = {t.name: t.outcome for t in report.chapters["cp04"].tests}
    assert outcomes == {test_name: "failed"}, f"{mistake}: {outcomes}\n{report.output[-3000:]}"
