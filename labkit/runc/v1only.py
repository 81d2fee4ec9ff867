"""Run a program (crun) in a private mount namespace that shows only the cgroup v1 hierarchies.

    python -m labkit.runc.v1only /usr/bin/crun [crun arguments...]

The OCI runtime client (labkit.wire.runtime) starts crun this way, by command line: the shim
never imports the runtime's code. On a host that is not hybrid it simply execs the program.

Why: this host is cgroup "hybrid": v1 hierarchies under /sys/fs/cgroup/<controller>, plus
a cgroup2 mount at /sys/fs/cgroup/unified that holds no controller (hugetlb at most).
crun 1.8 sees the cgroup2 mount, decides the host is hybrid in a way it refuses, and fails.
runc copes. Rather than change the host, give crun a view without that mount:

  1. unshare(CLONE_NEWNS): our own copy of the mount table (man 7 mount_namespaces);
  2. make it recursively SLAVE: mounts made on the host (a container's rootfs, say) still
     appear here, but nothing we do here propagates back — above all not step 3;
  3. lazily unmount /sys/fs/cgroup/unified (only in our copy);
  4. execvp the program, which inherits the namespace (and so do the containers it starts).
"""

from __future__ import annotations

import os
import sys

from labkit import procfs, syscalls as sc

UNIFIED = "/sys/fs/cgroup/unified"


def is_hybrid() -> bool:
    """cgroup v1 at /sys/fs/cgroup with an extra cgroup2 mount at /sys/fs/cgroup/unified?"""
    if os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
        return False                                  # pure v2
    try:
        return any(m.fstype == "cgroup2" and m.mount_point == UNIFIED for m in procfs.mountinfo())
    except OSError:
        return False


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        sys.stderr.write("usage: python -m labkit.runc.v1only PROGRAM [ARGS...]\n")
        return 2
    try:
        if is_hybrid():
            sc.unshare(sc.CLONE_NEWNS)
            sc.mount(None, "/", None, sc.MS_SLAVE | sc.MS_REC)
            sc.umount2(UNIFIED, sc.MNT_DETACH)
        os.execvp(argv[0], argv)
    except OSError as e:
        sys.stderr.write(f"v1only: {e.strerror or e}\n")
        return 1


if __name__ == "__main__":
    sys.exit(main())
