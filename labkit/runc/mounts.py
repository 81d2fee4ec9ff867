"""Building the container's filesystem view: config.json mounts, /dev, pivot_root, masked and
read-only paths. Chapter 03's exercises (the course's "rootfs" layer: `labkit lab use rootfs
workspace:DIR` makes labkit-runc load a workspace's copy of this module).

Everything here runs inside the container's init, in the container's NEW mount namespace,
so nothing it mounts is visible on the host (init made the whole tree private first). Init
calls, in this order (labkit/runc/init.py says why each step is where it is):

    mount_entry     each of config.json's `mounts`, under the rootfs, while host paths
                    (the sources of bind mounts) still exist
    populate_dev    device nodes and symlinks in the /dev tmpfs just mounted
    enter_root      pivot_root: the rootfs becomes "/", the old root is detached
    readonly_path   linux.readonlyPaths, then
    mask_path       linux.maskedPaths: container paths, hence after pivot_root

Three ideas a student should take away:

* A mount entry's `options` mix two kinds of things: FLAGS the kernel takes as bits
  (ro, nosuid, nodev, noexec, bind, rbind, …) and DATA, a string handed to the
  filesystem itself (mode=755, size=65536k, newinstance, ptmxmode=0666, …). See man 8 mount.
* A bind mount ignores most flags when it is made: `ro` on a bind needs a second call,
  MS_REMOUNT|MS_BIND|MS_RDONLY. Propagation (private, slave, shared) is a third kind of call.
* Paths inside the root filesystem must be resolved AS IF the rootfs were `/`: a symlink
  `rootfs/etc -> /tmp` must lead to `rootfs/tmp`, never to the host's /tmp (`secure_join`).
"""

from __future__ import annotations

import os
import stat

from labkit import mountopts, procfs, syscalls as sc
from labkit.mountopts import MountOptions
from labkit.securejoin import secure_join  # noqa: F401  (mounts.secure_join, as before)
from labkit.syscalls import (MNT_DETACH, MS_BIND, MS_MOVE, MS_NODEV, MS_NOEXEC, MS_NOSUID,
                             MS_RDONLY, MS_REC, MS_REMOUNT, MS_SLAVE)


def parse_options(options: list[str]) -> MountOptions:
    """Sort a mount's options into flags, propagation and data (labkit.mountopts says what
    each option means): ["ro", "nosuid", "rw", "mode=755", "rslave"] -> flags MS_NOSUID,
    propagation [MS_SLAVE|MS_REC], data "mode=755"."""
    return mountopts.parse(options)


def make_mountpoint(target: str, like_file: bool) -> None:
    """Create a missing mount point: a file when a file is mounted on it, else a directory."""
    if os.path.lexists(target):
        return
    if like_file:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "a"):
            pass
    else:
        os.makedirs(target, exist_ok=True)


def current_flags(path: str) -> int:
    """The per-mount flags of the mount holding `path` that a remount must keep.

    A bind remount REPLACES nosuid/nodev/noexec/…, so whoever makes something read-only
    must pass the flags it already has, or it silently loses them."""
    f = os.statvfs(path).f_flag
    keep = 0
    for st_bit, ms_bit in ((os.ST_RDONLY, MS_RDONLY), (os.ST_NOSUID, MS_NOSUID),
                           (os.ST_NODEV, MS_NODEV), (os.ST_NOEXEC, MS_NOEXEC),
                           (os.ST_NOATIME, sc.MS_NOATIME), (os.ST_NODIRATIME, sc.MS_NODIRATIME),
                           (os.ST_RELATIME, sc.MS_RELATIME)):
        if f & st_bit:
            keep |= ms_bit
    return keep


def mount_entry(rootfs: str, bundle: str, m: dict, cgroup_paths: dict[str, str]) -> None:
    """Perform one entry of config.json's `mounts` under `rootfs`, e.g.

        {"destination": "/data", "type": "bind", "source": "/srv/data",
         "options": ["rbind", "ro", "nosuid", "rprivate"]}

    takes three mount(2) calls: the bind (MS_BIND|MS_REC: the kernel ignores ro and nosuid
    here), a remount of that bind that applies them (MS_BIND|MS_REMOUNT|MS_RDONLY|MS_NOSUID,
    plus the flags the mount already has: a remount replaces them all), and the propagation
    call (MS_PRIVATE|MS_REC). A filesystem entry (proc, tmpfs, devpts, mqueue …) is one call
    with its flags and its data ("mode=755,size=65536k"), then its propagation.

    The destination is resolved inside the rootfs (secure_join): a symlink in the image
    cannot send a mount onto the host."""
    dest = m["destination"]
    fstype = m.get("type") or ""
    opts = parse_options(m.get("options") or [])
    source = m.get("source") or fstype or "none"
    target = secure_join(rootfs, dest)
    # BEGIN SOLUTION chapter="03" hint="man 2 mount: 'Creating a bind mount', 'Changing the propagation type of an existing mount'"
    # TODO: mount `source` on `target` as the entry says, then set its propagation
    # HINT: a bind (type "bind", or MS_BIND in opts.flags): the source is relative to `bundle`
    # HINT: (os.path.join keeps an absolute one); missing -> OSError(ENOENT) naming it; the mount
    # HINT: point is a file for a file source: make_mountpoint(target, like_file=…)
    # HINT: bind with MS_BIND|(opts.flags & MS_REC), then, if other flags are asked for, remount:
    # HINT: MS_BIND|MS_REMOUNT|those flags|current_flags(target)
    # HINT: type "cgroup": mount_cgroup_v1_view(); "sysfs": mount_sysfs(); any other type:
    # HINT: make_mountpoint, then mount(source, target, fstype, opts.flags, opts.data or None)
    # HINT: last, each of opts.propagation is one more call: mount(None, target, None, it)
    if fstype == "bind" or opts.flags & MS_BIND:
        # A bind source is a host path; a relative one is relative to the bundle.
        source = os.path.join(bundle, source)
        if not os.path.exists(source):
            raise OSError(2, f"mount {dest}: bind source {source}: ENOENT")
        make_mountpoint(target, like_file=not os.path.isdir(source))
        sc.mount(source, target, None, MS_BIND | (opts.flags & MS_REC))
        # The first call ignored ro/nosuid/…: apply them with a bind remount.
        extra = opts.flags & ~(MS_BIND | MS_REC)
        if extra:
            sc.mount(None, target, None, MS_BIND | MS_REMOUNT | extra | current_flags(target))
    elif fstype == "cgroup":
        mount_cgroup_v1_view(target, opts, cgroup_paths)
    elif fstype == "sysfs":
        mount_sysfs(source, target, opts)
    else:
        make_mountpoint(target, like_file=False)
        sc.mount(source, target, fstype, opts.flags, opts.data or None)
    # Propagation is no option of the mount: a call of its own, on the mount just made.
    for propagation in opts.propagation or []:
        sc.mount(None, target, None, propagation)
    # END SOLUTION


def mount_sysfs(source: str, target: str, opts: MountOptions) -> None:
    """A fresh sysfs at `target`. The kernel allows one only when the caller's network
    namespace belongs to the caller's user namespace; when it does not (a user namespace
    sharing the host's network), show the host's /sys instead, as runc does."""
    make_mountpoint(target, like_file=False)
    try:
        sc.mount(source, target, "sysfs", opts.flags, opts.data or None)
    except PermissionError:
        sc.mount("/sys", target, None, MS_BIND | MS_REC)
        sc.mount(None, target, None, MS_BIND | MS_REMOUNT | opts.flags | current_flags(target))


def mount_cgroup_v1_view(target: str, opts: MountOptions, cgroup_paths: dict[str, str]) -> None:
    """docker's `/sys/fs/cgroup` entry (type cgroup). On cgroup v2 it is a fresh cgroup2 mount;
    on v1 there is one hierarchy per controller, so (like runc) build a tmpfs holding one bind
    mount per hierarchy, each showing only the container's own cgroup directory."""
    make_mountpoint(target, like_file=False)
    if os.path.exists("/sys/fs/cgroup/cgroup.controllers"):           # pure cgroup v2
        sc.mount("cgroup2", target, "cgroup2", opts.flags)
        return
    sc.mount("tmpfs", target, "tmpfs", opts.flags & ~MS_RDONLY, "mode=755")
    for name, host_dir in cgroup_paths.items():
        sub = os.path.join(target, name.removeprefix("name="))   # "name=systemd" -> systemd
        os.makedirs(sub, exist_ok=True)
        sc.mount(host_dir, sub, None, MS_BIND | MS_REC)
        sc.mount(None, sub, None, MS_BIND | MS_REMOUNT | (opts.flags & ~MS_REC))
    if opts.flags & MS_RDONLY:
        sc.mount(None, target, None, MS_REMOUNT | opts.flags, "mode=755")


# --- /dev ------------------------------------------------------------------------------------
# The devices every container gets (runc's list): name, major, minor.    man 4 null, man 4 random
DEFAULT_DEVICES = [("null", 1, 3), ("zero", 1, 5), ("full", 1, 7),
                   ("random", 1, 8), ("urandom", 1, 9), ("tty", 5, 0)]
DEV_SYMLINKS = [("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2"),
                ("ptmx", "pts/ptmx")]   # the ptmx of the container's own devpts instance


def make_device(path: str, kind: str, major: int, minor: int, mode: int = 0o666,
                uid: int = 0, gid: int = 0, host_path: str | None = None) -> None:
    """mknod the device; where that is not allowed (in a user namespace the kernel refuses
    mknod of devices), bind-mount the host's node `host_path` onto an empty file instead."""
    if os.path.lexists(path):
        os.unlink(path)
    type_bit = {"c": stat.S_IFCHR, "u": stat.S_IFCHR, "b": stat.S_IFBLK, "p": stat.S_IFIFO}[kind]
    try:
        os.mknod(path, type_bit | (mode & 0o7777), os.makedev(major, minor))
    except PermissionError:
        if host_path is None or not os.path.exists(host_path):
            raise OSError(1, f"mknod {path}: operation not permitted (and no {host_path} "
                             "on the host to bind)") from None
        make_mountpoint(path, like_file=True)
        sc.mount(host_path, path, None, MS_BIND)
        return
    except OSError as e:
        raise OSError(e.errno, f"mknod {path}: {e.strerror.lower()}") from None
    os.chmod(path, mode & 0o7777)        # mknod's mode is filtered by the umask
    os.chown(path, uid, gid)


def populate_dev(rootfs: str, extra_devices: list[dict]) -> None:
    """A minimal /dev: the default character devices, linux.devices, and the usual symlinks.

    We are real root in the host's user namespace, so mknod works (inside a user namespace
    runc bind-mounts the host's nodes instead)."""
    dev = secure_join(rootfs, "/dev")
    os.makedirs(dev, exist_ok=True)
    # BEGIN SOLUTION chapter="03" hint="man 2 mknod; man 4 null"
    # TODO: create the DEFAULT_DEVICES (character devices, mode 0666) in `dev`
    # HINT: make_device(path, "c", major, minor) does the mknod, chmod and chown
    for name, major, minor in DEFAULT_DEVICES:
        make_device(os.path.join(dev, name), "c", major, minor, host_path=f"/dev/{name}")
    # END SOLUTION
    for d in extra_devices:
        path = secure_join(rootfs, d["path"])
        os.makedirs(os.path.dirname(path), exist_ok=True)
        make_device(path, d.get("type", "c"), d.get("major", 0), d.get("minor", 0),
                    d.get("fileMode", 0o666), d.get("uid", 0), d.get("gid", 0),
                    host_path=d["path"])
    # and runc's /dev/core, on a kernel that has /proc/kcore (CONFIG_PROC_KCORE)
    core = [("core", "/proc/kcore")] if os.path.exists("/proc/kcore") else []
    for name, target in DEV_SYMLINKS + core:
        link = os.path.join(dev, name)
        if not os.path.lexists(link):
            os.symlink(target, link)


# --- the swap: the rootfs becomes "/" --------------------------------------------------------
def enter_root(rootfs: str, no_pivot: bool = False) -> None:
    """Make `rootfs` the root of this mount namespace, with the old root gone.

    chroot(2) is not enough: it changes only the CALLING process's idea of "/", and every
    host mount stays in the namespace beneath it. A root process can leave a chroot (chroot
    into a subdirectory, then `cd ..` past the new root, which nothing stops, and chroot
    ".": it is back on the host's root). pivot_root(2) changes the root MOUNT of the whole
    namespace; unmounting the old root afterwards leaves nothing of the host to escape to.

    `rootfs` must be a mount point (init bound it onto itself) and not a shared mount.
    man 2 pivot_root, NOTES: "pivot_root(".", ".")" needs no directory for the old root."""
    if no_pivot:
        # For roots pivot_root refuses (e.g. on a ramfs): move the mount over / and chroot.
        # Weaker: the old root stays reachable to a process that escapes the chroot.
        os.chdir(rootfs)
        sc.mount(rootfs, "/", None, MS_MOVE)
        os.chroot(".")
        os.chdir("/")
        return
    # BEGIN SOLUTION chapter="03" hint="man 2 pivot_root, NOTES: new_root and put_old may be the same directory"
    # TODO: make rootfs the root mount and detach the old root entirely
    # HINT: fds of "/" and rootfs; fchdir(new); pivot_root(".", "."); fchdir(old);
    # HINT: make "." rslave (MS_SLAVE|MS_REC), umount2(".", MNT_DETACH), chdir("/")
    old_root = os.open("/", os.O_DIRECTORY | os.O_RDONLY)
    new_root = os.open(rootfs, os.O_DIRECTORY | os.O_RDONLY)
    os.fchdir(new_root)
    # new and old root are the same directory: the old root ends up mounted on top of the
    # new one, where we can detach it without needing a directory to put it in.
    sc.pivot_root(".", ".")
    os.fchdir(old_root)
    # rslave: the unmount below must not propagate anywhere (to the host, say).
    sc.mount(None, ".", None, MS_SLAVE | MS_REC)
    sc.umount2(".", MNT_DETACH)
    os.chdir("/")
    os.close(old_root)
    os.close(new_root)
    # END SOLUTION


# --- after pivot_root: paths are the container's own -----------------------------------------
def readonly_path(path: str) -> None:
    """linux.readonlyPaths: bind the path onto itself, then remount that bind read-only."""
    # BEGIN SOLUTION chapter="03" hint="man 8 mount, 'bind mount operation' (the ro remount)"
    # TODO: bind `path` onto itself, then remount that bind read-only
    # HINT: a missing path (FileNotFoundError) is skipped; keep current_flags(path) on the remount
    try:
        sc.mount(path, path, None, MS_BIND | MS_REC)
    except FileNotFoundError:
        return                           # a path the kernel does not have: nothing to protect
    sc.mount(None, path, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_REC | current_flags(path))
    # END SOLUTION


def mask_path(path: str) -> None:
    """linux.maskedPaths: hide a file under /dev/null, a directory under an empty ro tmpfs."""
    # BEGIN SOLUTION chapter="03" hint="runtime-spec config-linux.md, 'Masked Paths'"
    # TODO: hide `path`: a read-only tmpfs over a directory, a bind of /dev/null over a file
    # HINT: a path that does not exist needs no hiding
    if not os.path.lexists(path):
        return
    if os.path.isdir(path):
        sc.mount("tmpfs", path, "tmpfs", MS_RDONLY)
    else:
        sc.mount("/dev/null", path, None, MS_BIND)
    # END SOLUTION


def mount_ids_at(path: str) -> list[int]:
    """The ids of the mounts stacked at `path` in our mount table (/proc/self/mountinfo),
    bottom first."""
    path = os.path.realpath(path)                    # mountinfo shows paths resolved
    return [m.mount_id for m in procfs.mountinfo() if m.mount_point == path]


def detach_added(path: str, before: list[int]) -> None:
    """Lazily unmount what was mounted at `path` (with everything below it) since
    mount_ids_at(path) gave `before`: the topmost mount first, until only those are left."""
    for _ in range(16):
        added = [i for i in mount_ids_at(path) if i not in before]
        if not added:
            return
        sc.umount2(path, MNT_DETACH)      # the topmost mount at `path`, and its submounts
