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
"""

from __future__ import annotations

import errno
import os
import stat

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
