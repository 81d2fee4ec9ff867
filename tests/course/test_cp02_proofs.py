"""Proof that checkpoint cp02 grades: full marks on the reference, nothing on a fresh workspace,
full marks for the chapter's solution alone, and every checkpoint caught out by a seeded bug.

The chapter's last checkpoint runs the real docker CLI through a private lab whose cgroups
layer (labkit/runc/cgroups.py, loaded into labkit-runc by labkit.lab.launch) is the graded
code: on a fresh workspace `docker run` must fail naming the function that is not done yet.

Each mutation below is the reference source of labkit/runc/cgroups.py with one realistic
mistake, put into a workspace as the student's file and graded with only its test selected.
"""

from __future__ import annotations

import pytest

from course.proofs import chapter_proofs

pytestmark = pytest.mark.root

# test -> (the mistake, text of the solved file, what it becomes)
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

globals().update(chapter_proofs(
    "02", layers=["cgroups"], proof="test_docker_run_limits_bite_through_your_cgroups",
    blank_error=["OCI runtime create failed",
                 "exercise in is_v2() (labkit_student/runc/cgroups.py): not done yet"],
    mutations=MUTATIONS, file="runc/cgroups.py"))
