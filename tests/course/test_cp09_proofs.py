"""Proof that checkpoint cp09 grades: full marks on the reference, nothing on a fresh workspace,
full marks for chapter 09's solution alone (with its prerequisites' solutions), and every
checkpoint caught out by a seeded bug.

Chapter 09's layer is dockerd, a process layer: the last checkpoint runs the real docker CLI
through a private lab whose labkit-dockerd is the workspace's own program (its whole
labkit_student.dockerd package, so chapter 08's network layer inside it must be solved too:
the prerequisite). On a fresh workspace `docker` must fail with the name of the function that
is not done yet -- dispatch, which every request goes through -- on the reference it must work.

A checkpoint that cannot fail is a bug. So for each cp09 test there is a mutation below -- one
file of the solved labkit_student/dockerd/ with one realistic mistake in it -- graded with only
that test selected (a prerequisite outside the run does not block, so the test itself must
notice the bug).
"""

from __future__ import annotations

import pytest

from course.proofs import chapter_proofs

pytestmark = pytest.mark.root

# test -> (the mistake, file under labkit_student/dockerd/, text of the solution, what it becomes)
MUTATIONS: dict[str, tuple[str, str, str, str]] = {
    "test_split_version": (
        "versions compared as strings: 1.9 passes for newer than 1.24", "httputils.py",
        "if _version_tuple(version) < _version_tuple(MIN_API_VERSION):",
        "if version < MIN_API_VERSION:"),
    "test_dispatch": (
        "the method not compared: GET /containers/x/start starts it", "router.py",
        "if m and method == req.method:", "if m:"),
    "test_container_create": (
        "create answers 200 OK instead of 201 Created", "router.py",
        'return json_response({"Id": result.id, "Warnings": result.warnings}, 201)',
        'return json_response({"Id": result.id, "Warnings": result.warnings})'),
    "test_container_wait": (
        "the wait registered only when the body is written: a fast exit is missed", "router.py",
        "        waiter = self.backend.container_wait(req.params[\"name\"], condition)\n\n"
        "        def body() -> Iterator[bytes]:\n",
        "        def body() -> Iterator[bytes]:\n"
        "            waiter = self.backend.container_wait(req.params[\"name\"], condition)\n"),
    "test_resources": (
        "--cpus divided before it is multiplied: 1.5 CPUs become 1", "oci.py",
        'cpu["quota"] = nano * 100000 // 10**9', 'cpu["quota"] = nano // 10**9 * 100000'),
    "test_docker_run_through_your_dockerd": (
        "?name= read but dropped: every container gets a generated name", "router.py",
        'self.backend.container_create(name.lstrip("/") if name else None, config)',
        "self.backend.container_create(None, config)"),
}

globals().update(chapter_proofs(
    "09", layers=["dockerd"], proof="test_docker_run_through_your_dockerd",
    blank_error=["exercise in Router.dispatch() (labkit_student/dockerd/router.py): not done yet"],
    mutations=MUTATIONS, under="dockerd"))
