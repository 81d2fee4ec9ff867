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

import pytest

from course.proofs import EXERCISE, chapter_proofs, copy_of, with_prerequisites
from labkit.course import syllabus
from labkit.course.grading import grade
from labkit.course.workspace import solve_chapters

pytestmark = pytest.mark.root

# test -> (the mistake, file under labkit/, text of the solved file, what it becomes)
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

globals().update(chapter_proofs(
    "04", layers=["runtime"], proof="test_docker_through_your_runtime",
    blank_error=["OCI runtime create failed", EXERCISE], mutations=MUTATIONS))


def test_with_the_earlier_chapters_done_docker_names_this_chapters_function(workspaces, tmp_path):
    """Chapters 01-03 solved, 04 blank: still 0 points, and `docker run` now fails at one of
    chapter 04's own functions."""
    ws = copy_of(workspaces[0], tmp_path / "ws")
    solve_chapters(ws, with_prerequisites("04") - {"04"})
    report = grade(["cp04"], ws, out_dir=tmp_path / "grade", layers=["runtime"], quiet=True,
                   pytest_args=["-k", "test_docker_through_your_runtime"])
    proof = report.chapters["cp04"].tests[0]
    assert proof.outcome == "failed", report.output[-3000:]
    found = EXERCISE.search(proof.message)
    assert found, proof.message
    ours = {f.split(":")[1] for f in syllabus.chapter("04").functions}   # "container_init", …
    assert found.group(1).rsplit(".", 1)[-1] in ours, proof.message
