"""Mounting the container's root filesystem from Task.Create's `rootfs` mounts.

containerd does not mount images itself: its snapshotter describes the root filesystem as a
list of mounts (typically one overlay: `{type: overlay, source: overlay, options: [lowerdir=…,
upperdir=…, workdir=…]}`) and the shim performs them on <bundle>/rootfs before running the
runtime, then unmounts it on Delete. (dockerd's graphdriver passes no mounts and points
config.json's root.path at its own overlay instead.)

An option is either a mount flag (ro, nosuid, bind …, see man 8 mount) or data passed to the
filesystem (lowerdir=…); `mount -o` hides this split, mount(2) does not (labkit.mountopts
has the one table of what each option means).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

# labkit.mountopts and labkit.syscalls (ctypes, ~2 MB) are imported by the functions: a shim
# whose Create brings no mounts (dockerd's containers, `ctr run --rootfs`) never loads them.


TYPE_CHECKING = False      # (typing for type checkers only: see labkit.wire.runtime)
if TYPE_CHECKING:
    from typing import Protocol

    class MountSpec(Protocol):
        """containerd.types.Mount, or anything with the same fields."""
        type: str
        source: str
        options: Sequence[str]


def mount_rootfs(mounts: Sequence[MountSpec], target: str) -> None:
    from labkit import mountopts, syscalls

    os.makedirs(target, exist_ok=True)
    for m in mounts:
        opts = mountopts.parse(m.options)
        flags = opts.flags
        fstype = None if m.type == "bind" else m.type
        syscalls.mount(m.source, str(target), fstype,
                       flags & ~syscalls.MS_RDONLY if flags & syscalls.MS_BIND else flags,
                       opts.data or None)
        if flags & syscalls.MS_BIND and flags & syscalls.MS_RDONLY:
            # A bind mount ignores MS_RDONLY; read-only takes a second, remounting call.
            syscalls.mount(None, str(target), None,
                           syscalls.MS_REMOUNT | syscalls.MS_BIND | syscalls.MS_RDONLY)
        for propagation in opts.propagation:        # a call of its own (labkit.mountopts)
            syscalls.mount(None, str(target), None, propagation)


def unmount_rootfs(target: str) -> None:
    """Unmount everything stacked on `target` (lazily, so a busy mount does not block us)."""
    if not os.path.ismount(target):
        return
    from labkit import syscalls

    while os.path.ismount(target):
        try:
            syscalls.umount2(str(target), syscalls.MNT_DETACH)
        except OSError:
            return
