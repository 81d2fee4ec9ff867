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

import pytest

from course.proofs import chapter_proofs

pytestmark = pytest.mark.root

# test -> (the mistake, text of the solved file, what it becomes)
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

globals().update(chapter_proofs(
    "01", layers=["namespaces"], proof="test_docker_run_through_your_namespaces",
    blank_error=["OCI runtime create failed",
                 "exercise in namespace_flags() (labkit_student/namespaces.py): not done yet"],
    mutations=MUTATIONS, file="namespaces.py"))
