"""secure_join: a path inside a container's (or a layer's) root, resolved as a process whose
root is that directory would resolve it — never escaping it.

Two layers need this: the runtime, placing mounts and devices inside the rootfs
(`rootfs/etc -> /tmp` must lead to rootfs/tmp, not the host's /tmp), and containerd,
unpacking a layer whose symlinks may point anywhere. In Go both runc and containerd use the same
library for it (filepath-securejoin); labkit has this one module.

The walk, one component at a time:
- `.` is skipped; `..` drops the last resolved component but never goes above `root`;
- a symlink is read and its target spliced in front of what is left (an absolute target
  restarts at `root`), counting links to stop on loops (ELOOP, as the kernel does);
- a component that does not exist (yet) is taken literally: the caller may create it.

`secure_join` returns a *path*: between the walk and the caller's use of it, something else
could swap a component for a symlink. That is fine for the runtime, which places mounts in a
rootfs it alone is setting up. For a hostile tar, where one entry can plant the link that the
next entry walks through, `open_in_root` gives a *file descriptor* instead: the kernel
resolves every component inside the root (openat2 with RESOLVE_IN_ROOT, Linux 5.6+), and the
caller then works relative to that fd (mkdirat, openat, unlinkat, …), naming only one last
component that it never follows.
"""

from __future__ import annotations

import errno
import os
import stat

from labkit import syscalls

MAX_SYMLINKS = 40   # the kernel's own limit on links followed in one lookup (MAXSYMLINKS)


def secure_join(root: str, unsafe: str, max_links: int = MAX_SYMLINKS) -> str:
    """`unsafe` as a host path under `root`; OSError(ELOOP) after `max_links` symlinks."""
    todo = [p for p in unsafe.split("/") if p not in ("", ".")]
    resolved: list[str] = []
    links = 0
    while todo:
        part = todo.pop(0)
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = os.path.join(root, *resolved, part)
        try:
            st = os.lstat(candidate)
        except FileNotFoundError:
            resolved.append(part)
            continue
        if stat.S_ISLNK(st.st_mode):
            links += 1
            if links > max_links:
                raise OSError(errno.ELOOP, f"resolve {unsafe}: ELOOP")
            target = os.readlink(candidate)
            if target.startswith("/"):
                resolved = []
            todo = [p for p in target.split("/") if p not in ("", ".")] + todo
            continue
        resolved.append(part)
    return os.path.join(root, *resolved)


def open_in_root(root_fd: int, unsafe: str, flags: int = os.O_RDONLY | os.O_DIRECTORY) -> int:
    """Open `unsafe` relative to the directory `root_fd` as if `root_fd` were `/` (symlinks and
    `..` never lead out of it; magic /proc links refused). Returns a new O_CLOEXEC fd."""
    path = "/".join(p for p in unsafe.split("/") if p not in ("", ".")) or "."
    return syscalls.openat2(root_fd, path, flags,
                            syscalls.RESOLVE_IN_ROOT | syscalls.RESOLVE_NO_MAGICLINKS)
