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

import pytest

from course.proofs import chapter_proofs

pytestmark = pytest.mark.root

# test -> (the mistake, text of the solved file, what it becomes)
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

globals().update(chapter_proofs(
    "03", layers=["rootfs"], solved_layers=["rootfs", "namespaces"],
    proof="test_docker_run_through_your_rootfs",
    blank_error=["OCI runtime create failed",
                 "exercise in mount_entry() (labkit_student/runc/mounts.py): not done yet"],
    mutations=MUTATIONS, file="runc/mounts.py"))
