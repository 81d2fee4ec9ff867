"""Mounting the container's root filesystem from Task.Create's `rootfs` mounts.

containerd does not mount images itself: its snapshotter describes the root filesystem as a
list of mounts (typically one overlay: `{type: overlay, source: overlay, options: [lowerdir=…,
upperdir=…, workdir=…]}`) and the shim performs them on <bundle>/rootfs before running the
runtime, then unmounts it on Delete. (dockerd's graphdriver passes no mounts and points
config.json's root.path at its own overlay instead.)

An option is either a mount flag (ro, nosuid, bind …, see man 8 mount) or data passed to the
filesystem (lowerdir=…); `mount -o` hides this split, mount(2) does not.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol, Sequence

from labkit import syscalls

# option -> (flag to set, True) or (flag to clear, False)
_FLAGS: dict[str, tuple[int, bool]] = {
    "ro": (syscalls.MS_RDONLY, True), "rw": (syscalls.MS_RDONLY, False),
    "nosuid": (syscalls.MS_NOSUID, True), "suid": (syscalls.MS_NOSUID, False),
    "nodev": (syscalls.MS_NODEV, True), "dev": (syscalls.MS_NODEV, False),
    "noexec": (syscalls.MS_NOEXEC, True), "exec": (syscalls.MS_NOEXEC, False),
    "bind": (syscalls.MS_BIND, True), "rbind": (syscalls.MS_BIND | syscalls.MS_REC, True),
    "noatime": (syscalls.MS_NOATIME, True), "relatime": (syscalls.MS_RELATIME, True),
    "strictatime": (syscalls.MS_STRICTATIME, True), "sync": (syscalls.MS_SYNCHRONOUS, True),
    "remount": (syscalls.MS_REMOUNT, True), "defaults": (0, True),
}


class MountSpec(Protocol):
    """containerd.types.Mount, or anything with the same fields."""
    type: str
    source: str
    options: Sequence[str]


def split_options(options: Sequence[str]) -> tuple[int, str]:
    """['ro', 'lowerdir=/a'] -> (MS_RDONLY, 'lowerdir=/a')."""
    flags, data = 0, []
    for option in options:
        if option in _FLAGS:
            flag, set_it = _FLAGS[option]
            flags = flags | flag if set_it else flags & ~flag
        else:
            data.append(option)
    return flags, ",".join(data)


def mount_rootfs(mounts: Sequence[MountSpec], target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for m in mounts:
        flags, data = split_options(list(m.options))
        fstype = None if m.type == "bind" else m.type
        syscalls.mount(m.source, str(target), fstype, flags & ~syscalls.MS_RDONLY if flags & syscalls.MS_BIND else flags,
                       data or None)
        if flags & syscalls.MS_BIND and flags & syscalls.MS_RDONLY:
            # A bind mount ignores MS_RDONLY; read-only takes a second, remounting call.
            syscalls.mount(None, str(target), None, syscalls.MS_REMOUNT | syscalls.MS_BIND | syscalls.MS_RDONLY)


def unmount_rootfs(target: Path) -> None:
    """Unmount everything stacked on `target` (lazily, so a busy mount does not block us)."""
    while os.path.ismount(target):
        try:
            syscalls.umount2(str(target), syscalls.MNT_DETACH)
        except OSError:
            return
