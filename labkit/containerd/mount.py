"""Mount descriptions, and turning them into real mounts.

A snapshotter never mounts anything: it *describes* the mounts that would show a snapshot's
filesystem, as a list of `Mount(type, source, options)` — exactly what `mount -t <type>
-o <options> <source> <target>` takes. Whoever needs the filesystem performs them:
containerd itself when it unpacks a layer or prepares a container's rootfs, or a client
(containerd's `ctr snapshot mounts` prints them as shell commands). Keeping the description
separate from the act is what makes a snapshot usable in another mount namespace, by another
process, or by a different machine's kernel entirely.

Two kinds are produced by labkit's overlayfs snapshotter:

    bind     Mount("bind", "/…/snapshots/3/fs", ["rbind", "rw"|"ro"])
             mount(2) with MS_BIND; "ro" needs a second call, a remount, because the kernel
             ignores MS_RDONLY on the first bind (man 2 mount, "Creating a bind mount").
    overlay  Mount("overlay", "overlay", ["workdir=…", "upperdir=…", "lowerdir=a:b"])
             mount(2) with fstype "overlay" and the options joined by commas as `data`.

All kernel calls go through labkit.syscalls.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from labkit import mountopts, procfs, syscalls
from labkit.containerd.errors import InvalidArgument

# The kernel copies mount(2)'s `data` into one page; a longer option string is cut off
# (and overlay then fails with a confusing error). This is why the snapshotter keeps paths short.
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


@dataclass
class Mount:
    type: str
    source: str
    options: list[str] = field(default_factory=list)
    target: str = ""  # relative place under the mount point; "" = the mount point itself


def readonly(mounts: list[Mount]) -> list[Mount]:
    """The same filesystem, read-only (containerd's readonly mounts, for looking at a snapshot
    while it may be mounted elsewhere). A bind gains "ro". An overlay loses its upperdir and
    workdir (the kernel refuses a workdir that another mount uses): the upperdir becomes the
    top lowerdir instead; with a single layer left, a read-only bind of it (overlay wants two
    lowerdirs when it has no upperdir)."""
    out = []
    for m in mounts:
        if m.type == "overlay":
            opts = {o.split("=", 1)[0]: o.split("=", 1)[1] for o in m.options if "=" in o}
            flags = [o for o in m.options if "=" not in o and o not in ("rw", "ro")]
            lowers = ([opts["upperdir"]] if "upperdir" in opts else []) + \
                opts.get("lowerdir", "").split(":")
            lowers = [d for d in lowers if d]
            if len(lowers) == 1:
                out.append(Mount("bind", lowers[0], ["rbind", "ro"], m.target))
            else:
                rest = [f"{k}={v}" for k, v in opts.items()
                        if k not in ("upperdir", "workdir", "lowerdir")]
                out.append(Mount("overlay", m.source, flags + rest + ["ro", "lowerdir=" +
                                                                      ":".join(lowers)],
                                 m.target))
        else:
            opts = [o for o in m.options if o not in ("rw", "ro")]
            out.append(Mount(m.type, m.source, opts + ["ro"], m.target))
    return out


def mount(m: Mount, target: str) -> None:
    """Perform one mount description on `target` (a directory that exists)."""
    opts = mountopts.parse(m.options)           # flags, propagation, data: see labkit.mountopts
    flags = opts.flags
    where = os.path.join(target, m.target.lstrip("/")) if m.target else target
    if m.type == "bind" or flags & syscalls.MS_BIND:
        flags |= syscalls.MS_BIND
        syscalls.mount(m.source, where, None, flags & (syscalls.MS_BIND | syscalls.MS_REC))
        if flags & ~(syscalls.MS_BIND | syscalls.MS_REC):
            # A bind mount takes ro/nosuid/… only on a remount of itself.
            syscalls.mount(None, where, None,
                           (flags & ~syscalls.MS_REC) | syscalls.MS_REMOUNT)
    else:
        if len(opts.data) >= PAGE_SIZE:
            raise InvalidArgument(f"mount {where}: options are {len(opts.data)} bytes, more "
                                  f"than a page ({PAGE_SIZE}); use shorter snapshot paths")
        syscalls.mount(m.source, where, m.type, flags, opts.data or None)
    for propagation in opts.propagation:           # a call of its own, after the mount
        syscalls.mount(None, where, None, propagation)


def mount_all(mounts: list[Mount], target: str) -> None:
    """Perform the mounts in order; on failure undo those already done, then raise."""
    done = 0
    try:
        for m in mounts:
            mount(m, target)
            done += 1
    except BaseException:
        for _ in range(done):
            unmount(target)
        raise


def unmount(target: str) -> None:
    """Unmount `target` once (lazily if busy: MNT_DETACH, so a stray open file cannot wedge us)."""
    syscalls.umount2(target, syscalls.MNT_DETACH)


def unmount_all(target: str) -> None:
    """Unmount everything stacked on `target` (a bind under an overlay, …); no error if none."""
    while is_mountpoint(target):
        unmount(target)


def is_mountpoint(path: str) -> bool:
    """True if something is mounted exactly at `path` (read from /proc/self/mountinfo)."""
    real = os.path.realpath(path)
    return any(m.mount_point == real for m in procfs.mountinfo())
