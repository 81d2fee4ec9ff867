"""L0: the one module through which labkit makes the kernel calls Python 3.11 lacks.

Python's `os` module already wraps most of what a container runtime needs (fork, execve,
setgid/setuid/setgroups, mknod, chroot, sethostname via `socket`, pipes and fifos). Five calls
are missing, and they are the heart of containers (a sixth, openat2, keeps a layer inside
its snapshot):

    unshare(flags)              give the calling process new namespaces     man 2 unshare
    setns(fd, nstype)           join an existing namespace (an nsfs fd)      man 2 setns
    mount(source, target, ...)  attach a filesystem, or change a mount       man 2 mount
    umount2(target, flags)      detach a filesystem (MNT_DETACH: lazily)     man 2 umount2
    pivot_root(new, old)        swap the root mount of this mount namespace  man 2 pivot_root
    prctl(option, ...)          process controls python-prctl lacks         man 2 prctl
    openat2(dirfd, path, ...)   open, resolving every component in a root   man 2 openat2
    bpf(cmd, attr)              load an eBPF program, attach it to a cgroup  man 2 bpf
                                (cgroup v2's device rules: labkit.runc.cgroups)

They are reached through ctypes: libc's wrappers where glibc has one, the raw system call
number for pivot_root and openat2 (glibc 2.36 has no wrapper for either).

Errors: every call raises OSError(errno, "<call> <argument>: <ERRNO NAME>"), for instance
`OSError(1, "mount /proc: EPERM")`, so the message says which call on which path failed.
Nothing swallows errno into a bare RuntimeError.

Testing without root: the module-level functions call through `kernel`, an object with one
method per call. A test (or a notebook) can swap in a recording fake with `use(fake)` and
look at the sequence of calls the container's init would have made:

    class Recorder:
        def __init__(self): self.calls = []
        def __getattr__(self, name):
            return lambda *args, **kw: self.calls.append((name, args, kw))

    previous = syscalls.use(Recorder())
    try: ...run the code under test...
    finally: syscalls.use(previous)
"""

from __future__ import annotations

import ctypes
import errno as _errno
import os

# typing.Protocol only for type checkers (Kernel below): labkit-runc imports this module for
# every `create`, and importing typing (it brings re) would cost it ~4 ms
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Protocol
else:
    Protocol = object

# --- namespace flags (linux/sched.h) ---------------------------------------------------------
CLONE_NEWNS = 0x00020000      # mount namespace
CLONE_NEWCGROUP = 0x02000000  # cgroup namespace
CLONE_NEWUTS = 0x04000000     # hostname and domain name
CLONE_NEWIPC = 0x08000000     # System V IPC and POSIX message queues
CLONE_NEWUSER = 0x10000000    # user and group ids
CLONE_NEWPID = 0x20000000     # process ids (applies to the caller's CHILDREN, not the caller)
CLONE_NEWNET = 0x40000000     # network devices, addresses, routes, firewall
CLONE_NEWTIME = 0x00000080    # CLOCK_MONOTONIC / CLOCK_BOOTTIME offsets

# --- mount flags (linux/mount.h) -------------------------------------------------------------
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_SYNCHRONOUS = 16
MS_REMOUNT = 32
MS_MANDLOCK = 64
MS_DIRSYNC = 128
MS_NOSYMFOLLOW = 256
MS_NOATIME = 1024
MS_NODIRATIME = 2048
MS_BIND = 4096
MS_MOVE = 8192
MS_REC = 16384
MS_SILENT = 32768
MS_UNBINDABLE = 1 << 17
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20
MS_RELATIME = 1 << 21
MS_STRICTATIME = 1 << 24
MS_LAZYTIME = 1 << 25

# --- openat2 resolve flags (linux/openat2.h) --------------------------------------------------
RESOLVE_NO_XDEV = 0x01        # no crossing of mount points
RESOLVE_NO_MAGICLINKS = 0x02  # no /proc/<pid>/fd/N-style "magic" links
RESOLVE_NO_SYMLINKS = 0x04    # no symlinks at all
RESOLVE_BENEATH = 0x08        # fail (EXDEV) on anything that would leave dirfd
RESOLVE_IN_ROOT = 0x10        # treat dirfd as "/": absolute links and ".." stay inside it

# --- umount2 flags ----------------------------------------------------------------------------
MNT_FORCE = 1
MNT_DETACH = 2
MNT_EXPIRE = 4
UMOUNT_NOFOLLOW = 8

# pivot_root has no glibc wrapper: call it by number (asm/unistd_64.h and friends)
_SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "armv7l": 218, "armv6l": 218,
                   "i686": 217, "i386": 217, "ppc64le": 203, "s390x": 217, "riscv64": 41}

# openat2 is 437 on every architecture (it came after the syscall tables were unified)
_SYS_OPENAT2 = 437
_SYS_BPF = {"x86_64": 321, "aarch64": 280, "armv7l": 386, "armv6l": 386}


class _OpenHow(ctypes.Structure):
    # struct open_how (linux/openat2.h): three u64, extensible by size
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64),
                ("resolve", ctypes.c_uint64)]


def _load_libc() -> ctypes.CDLL:
    # By its soname: ctypes.util.find_library("c") would run `ldconfig -p` in a subprocess,
    # at the start of every program that imports this module (labkit-runc, once per verb).
    try:
        return ctypes.CDLL("libc.so.6", use_errno=True)              # glibc
    except OSError:
        from ctypes.util import find_library   # another C library (musl): ask ldconfig
        return ctypes.CDLL(find_library("c"), use_errno=True)


_libc = _load_libc()
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                        ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.unshare.argtypes = [ctypes.c_int]
_libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]
_libc.syscall.restype = ctypes.c_long
_libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong,
                        ctypes.c_ulong]


def _fail(call: str, argument: str) -> OSError:
    """An OSError for the errno ctypes saved, worded `<call> <argument>: <ERRNO>`."""
    err = ctypes.get_errno()
    name = _errno.errorcode.get(err, str(err))
    return OSError(err, f"{call} {argument}: {name}")


def _flag_names(flags: int) -> str:
    """CLONE_* flags as text for error messages: `CLONE_NEWPID|CLONE_NEWNS`."""
    names = [n for n, v in globals().items() if n.startswith("CLONE_") and flags & v]
    return "|".join(names) or hex(flags)


def _b(s: str | bytes | os.PathLike | None) -> bytes | None:
    return None if s is None else os.fsencode(s)


class Kernel(Protocol):
    """What the runtime needs from the kernel beyond `os`. `LinuxKernel` is the real one."""

    def unshare(self, flags: int) -> None: ...
    def setns(self, fd: int, nstype: int = 0) -> None: ...
    def mount(self, source: str | None, target: str, fstype: str | None = None,
              flags: int = 0, data: str | None = None) -> None: ...
    def umount2(self, target: str, flags: int = 0) -> None: ...
    def pivot_root(self, new_root: str, put_old: str) -> None: ...
    def prctl(self, option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0,
              arg5: int = 0) -> int: ...
    def openat2(self, dirfd: int, path: str, flags: int, resolve: int, mode: int = 0) -> int: ...
    def bpf(self, cmd: int, attr: ctypes.Structure) -> int: ...


class LinuxKernel:
    """The real system calls, through libc."""

    def unshare(self, flags: int) -> None:
        if _libc.unshare(flags) != 0:
            raise _fail("unshare", _flag_names(flags))

    def setns(self, fd: int, nstype: int = 0) -> None:
        # nstype 0 = "any type": the kernel takes it from the fd; a non-zero value makes the
        # kernel check that the fd really is a namespace of that type.
        if _libc.setns(fd, nstype) != 0:
            raise _fail("setns", _flag_names(nstype) if nstype else f"fd {fd}")

    def mount(self, source: str | None, target: str, fstype: str | None = None,
              flags: int = 0, data: str | None = None) -> None:
        if _libc.mount(_b(source), _b(target), _b(fstype), flags, _b(data)) != 0:
            raise _fail("mount", os.fsdecode(target))

    def umount2(self, target: str, flags: int = 0) -> None:
        if _libc.umount2(_b(target), flags) != 0:
            raise _fail("umount2", os.fsdecode(target))

    def pivot_root(self, new_root: str, put_old: str) -> None:
        number = _SYS_PIVOT_ROOT.get(os.uname().machine)
        if number is None:
            raise OSError(_errno.ENOSYS, f"pivot_root {new_root}: no syscall number for "
                                         f"{os.uname().machine}")
        if _libc.syscall(ctypes.c_long(number), _b(new_root), _b(put_old)) != 0:
            raise _fail("pivot_root", os.fsdecode(new_root))

    def prctl(self, option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0,
              arg5: int = 0) -> int:
        # python-prctl covers most options; this raw form is for the ones it lacks
        # (PR_CAP_AMBIENT, for instance).
        result = _libc.prctl(option, arg2, arg3, arg4, arg5)
        if result < 0:
            raise _fail("prctl", f"option {option}")
        return result

    def openat2(self, dirfd: int, path: str, flags: int, resolve: int, mode: int = 0) -> int:
        how = _OpenHow(flags | os.O_CLOEXEC, mode, resolve)
        fd = _libc.syscall(ctypes.c_long(_SYS_OPENAT2), ctypes.c_int(dirfd), _b(path),
                           ctypes.byref(how), ctypes.c_size_t(ctypes.sizeof(how)))
        if fd < 0:
            raise _fail("openat2", os.fsdecode(path))
        return fd


    def bpf(self, cmd: int, attr: ctypes.Structure) -> int:
        number = _SYS_BPF.get(os.uname().machine)
        if number is None:
            raise OSError(_errno.ENOSYS, f"bpf: no system call number known for "
                                         f"{os.uname().machine}")
        result = _libc.syscall(ctypes.c_long(number), ctypes.c_int(cmd), ctypes.byref(attr),
                               ctypes.c_uint(ctypes.sizeof(attr)))
        if result < 0:
            raise _fail("bpf", str(cmd))
        return result


#: The implementation the module-level functions call. Swap it with `use()`.
kernel: Kernel = LinuxKernel()


def use(implementation: Kernel) -> Kernel:
    """Make the module-level functions call `implementation`; return the previous one."""
    global kernel
    previous, kernel = kernel, implementation
    return previous


def unshare(flags: int) -> None:
    """Move the caller into new namespaces (CLONE_NEW* flags). man 2 unshare"""
    kernel.unshare(flags)


def setns(fd: int, nstype: int = 0) -> None:
    """Join the namespace `fd` refers to (an open /proc/<pid>/ns/<type>). man 2 setns"""
    kernel.setns(fd, nstype)


def mount(source: str | None, target: str, fstype: str | None = None, flags: int = 0,
          data: str | None = None) -> None:
    """mount(2): attach `source` (of type `fstype`) at `target`, or change a mount's flags."""
    kernel.mount(source, target, fstype, flags, data)


def umount2(target: str, flags: int = 0) -> None:
    """Detach the filesystem at `target` (MNT_DETACH: lazily, once no longer busy). man 2 umount2"""
    kernel.umount2(target, flags)


def pivot_root(new_root: str, put_old: str) -> None:
    """Make `new_root` the root mount; the old root moves to `put_old`. man 2 pivot_root"""
    kernel.pivot_root(new_root, put_old)


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    """prctl(2) for options python-prctl lacks (e.g. PR_CAP_AMBIENT). man 2 prctl"""
    return kernel.prctl(option, arg2, arg3, arg4, arg5)


def openat2(dirfd: int, path: str, flags: int, resolve: int, mode: int = 0) -> int:
    """openat(2) with `resolve` rules for every component (RESOLVE_IN_ROOT: as if dirfd were
    the root directory). Returns the new fd (always O_CLOEXEC). ENOSYS before Linux 5.6.
    man 2 openat2"""
    return kernel.openat2(dirfd, path, flags, resolve, mode)


def bpf(cmd: int, attr: ctypes.Structure) -> int:
    """bpf(2): `cmd` (BPF_PROG_LOAD, BPF_PROG_ATTACH …) with its `union bpf_attr` member as
    a ctypes structure. Returns the call's result (a new fd for BPF_PROG_LOAD). man 2 bpf"""
    return kernel.bpf(cmd, attr)


__all__ = [n for n in list(globals())
           if n.startswith(("CLONE_", "MS_", "MNT_", "UMOUNT_", "RESOLVE_"))] + [
    "Kernel", "LinuxKernel", "kernel", "use", "unshare", "setns", "mount", "umount2", "pivot_root",
    "prctl", "openat2", "bpf"]
