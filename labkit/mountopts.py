"""Mount options: what each word of `mount -o …` (and of an OCI or containerd mount's
`options` list) means to mount(2). The one table, for the runtime, the shim and containerd.

`mount -o ro,nosuid,mode=755,rslave` hides that its options are three different things, and
mount(2) does not (man 8 mount, "FILESYSTEM-INDEPENDENT MOUNT OPTIONS"; man 2 mount):

    FLAGS        bits of mount(2)'s `mountflags`, each option setting or clearing one:
                 ro/rw (MS_RDONLY), nosuid/suid, nodev/dev, noexec/exec, noatime/atime …,
                 and bind/rbind (MS_BIND, with MS_REC: the submounts too)
    PROPAGATION  private, shared, slave, unbindable (r…: recursively). Not an option of the
                 mount at all: a SEPARATE mount(2) call, with no source and no type, that
                 changes how mount events spread between namespaces (man 7 mount_namespaces)
    data         everything else (mode=755, size=64m, lowerdir=…): one comma-joined string,
                 mount(2)'s last argument, which the filesystem itself parses

Later options win, as with mount(8): "ro,rw" is read-write. "defaults" means no flag at all;
options a runtime reads for itself (tmpcopyup, idmap …) and user-space "x-*" options never
reach the kernel. Two traps live in the caller, not here: a bind mount ignores every flag but
MS_BIND|MS_REC when it is made, so "ro" on a bind takes a second call, a remount
(MS_REMOUNT|MS_BIND|MS_RDONLY, man 2 mount "Creating a bind mount"); and the kernel copies
`data` into one page, so a longer string is cut off.

Any layer may import this module; it imports only labkit.syscalls (for the MS_* numbers).
"""

from __future__ import annotations

from collections.abc import Iterable

from labkit import syscalls as sc

# option -> (flag, True to set it / False to clear it)
FLAGS: dict[str, tuple[int, bool]] = {
    "ro": (sc.MS_RDONLY, True), "rw": (sc.MS_RDONLY, False),
    "nosuid": (sc.MS_NOSUID, True), "suid": (sc.MS_NOSUID, False),
    "nodev": (sc.MS_NODEV, True), "dev": (sc.MS_NODEV, False),
    "noexec": (sc.MS_NOEXEC, True), "exec": (sc.MS_NOEXEC, False),
    "sync": (sc.MS_SYNCHRONOUS, True), "async": (sc.MS_SYNCHRONOUS, False),
    "dirsync": (sc.MS_DIRSYNC, True),
    "remount": (sc.MS_REMOUNT, True),
    "mand": (sc.MS_MANDLOCK, True), "nomand": (sc.MS_MANDLOCK, False),
    "atime": (sc.MS_NOATIME, False), "noatime": (sc.MS_NOATIME, True),
    "diratime": (sc.MS_NODIRATIME, False), "nodiratime": (sc.MS_NODIRATIME, True),
    "relatime": (sc.MS_RELATIME, True), "norelatime": (sc.MS_RELATIME, False),
    "strictatime": (sc.MS_STRICTATIME, True), "nostrictatime": (sc.MS_STRICTATIME, False),
    "bind": (sc.MS_BIND, True), "rbind": (sc.MS_BIND | sc.MS_REC, True),
    "defaults": (0, True),
}
# option -> the flags of the propagation call
PROPAGATION: dict[str, int] = {
    "private": sc.MS_PRIVATE, "rprivate": sc.MS_PRIVATE | sc.MS_REC,
    "shared": sc.MS_SHARED, "rshared": sc.MS_SHARED | sc.MS_REC,
    "slave": sc.MS_SLAVE, "rslave": sc.MS_SLAVE | sc.MS_REC,
    "unbindable": sc.MS_UNBINDABLE, "runbindable": sc.MS_UNBINDABLE | sc.MS_REC,
}
# Options that are instructions to the runtime itself (runc's), never passed to the kernel.
IGNORED = frozenset({"tmpcopyup", "idmap", "ridmap", "nosymfollow"})


class MountOptions:
    """A mount's options, sorted into what mount(2) takes. (A plain class, not a dataclass:
    importing dataclasses would cost every labkit-runc command ~7 ms; labkit.procfs says more.)"""

    def __init__(self, flags: int = 0, propagation: list[int] | None = None, data: str = ""):
        self.flags = flags                          # mountflags of the mount itself
        self.propagation = propagation or []        # one propagation call each, in order
        self.data = data                            # the filesystem's own options

    def _fields(self) -> tuple[int, list[int], str]:
        return self.flags, self.propagation, self.data

    def __eq__(self, other: object) -> bool:
        return isinstance(other, MountOptions) and self._fields() == other._fields()

    def __repr__(self) -> str:
        return (f"MountOptions(flags={self.flags:#x}, propagation={self.propagation}, "
                f"data={self.data!r})")


def parse(options: Iterable[str]) -> MountOptions:
    """["ro", "nosuid", "rw", "mode=755", "rslave", "tmpcopyup"] ->
    MountOptions(flags=MS_NOSUID, propagation=[MS_SLAVE|MS_REC], data="mode=755")."""
    result = MountOptions()
    data = []
    for opt in options:
        if opt in FLAGS:
            flag, on = FLAGS[opt]
            result.flags = result.flags | flag if on else result.flags & ~flag
        elif opt in PROPAGATION:
            result.propagation.append(PROPAGATION[opt])
        elif opt in IGNORED or opt.startswith("x-"):
            continue
        else:
            data.append(opt)
    result.data = ",".join(data)
    return result


__all__ = ["FLAGS", "PROPAGATION", "IGNORED", "MountOptions", "parse"]
