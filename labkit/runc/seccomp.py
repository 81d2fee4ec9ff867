"""linux.seccomp: a system-call filter the kernel applies to the container's processes.

Seccomp (man 2 seccomp) lets a process install a small BPF program that the kernel runs on
every system call it makes: allow it, fail it with an errno, kill the process, … The filter
is inherited across fork and execve and can never be removed, only made stricter.

Writing BPF by hand is error-prone, so like runc we let libseccomp (man 3 seccomp_init)
compile the OCI description into BPF:

    {"defaultAction": "SCMP_ACT_ERRNO",                  seccomp_init(default action)
     "architectures": ["SCMP_ARCH_X86_64", …],            seccomp_arch_add(each)
     "syscalls": [{"names": ["read", "write", …],         seccomp_rule_add_array(action,
                   "action": "SCMP_ACT_ALLOW",              syscall number, conditions)
                   "args": [{"index": 0, "value": 8,       conditions on the arguments
                             "op": "SCMP_CMP_EQ"}]}]}
                                                          seccomp_load() installs it

docker's default profile is an ALLOW-list: default ERRNO (EPERM), then ~360 allowed calls
(labkit-dockerd builds it per container: labkit/dockerd/seccomp_default.py).

Three details decide whether a filter behaves as runc's does:

- Architectures. A 64-bit x86 kernel also runs 32-bit (x86) and x32 programs, whose system
  calls have other numbers; the filter checks the architecture first, then the number.
  A name is resolved on the native architecture, and libseccomp translates the rule for
  the others: `chown32` or `socketcall` exist only on 32-bit x86, so natively they resolve
  to a negative "pseudo" number that still means something for x86. Only -1
  (__NR_SCMP_ERROR) means "no such call on any architecture libseccomp knows": runc skips
  those names (profiles list calls newer than this libseccomp), and so do we.
- errno values: SCMP_ACT_ERRNO fails the call with `errnoRet` (defaultErrnoRet for the
  default action), EPERM when absent. Docker answers clone3 with ENOSYS, not EPERM: glibc
  then falls back to clone(2), whose flags the filter can inspect (clone3 passes them in
  memory, out of a filter's reach).
- flags: SECCOMP_FILTER_FLAG_LOG (log what the filter refuses), _SPEC_ALLOW (leave the
  speculative-store-bypass mitigation off), _WAIT_KILLABLE_RECV; _TSYNC is implied (init
  is single-threaded when it loads). Any other flag is refused, by name.

One difference from runc remains: runc prepends to libseccomp's program a stub that answers
ENOSYS (not the default errno) for system-call numbers above the highest one the profile
names, so that a libc probing a call newer than the profile falls back instead of failing
with EPERM. labkit-runc loads libseccomp's program as it is.

Loading a filter is privileged unless no_new_privs is set (otherwise a filter could fool a
setuid program). So init loads it BEFORE dropping capabilities when noNewPrivileges is off,
and as late as possible (just before execve) when it is on. libseccomp is reached through
ctypes; without it, seccomp is skipped with a warning.
"""

from __future__ import annotations

import ctypes
import errno as _errno
import os

from labkit.runc.log import ContainerError

# actions (seccomp.h); ERRNO and TRACE carry a 16-bit value
_ACTIONS = {
    "SCMP_ACT_KILL": 0x00000000, "SCMP_ACT_KILL_THREAD": 0x00000000,
    "SCMP_ACT_KILL_PROCESS": 0x80000000, "SCMP_ACT_TRAP": 0x00030000,
    "SCMP_ACT_ERRNO": 0x00050000, "SCMP_ACT_TRACE": 0x7FF00000,
    "SCMP_ACT_LOG": 0x7FFC0000, "SCMP_ACT_ALLOW": 0x7FFF0000,
}
_COMPARE = {"SCMP_CMP_NE": 1, "SCMP_CMP_LT": 2, "SCMP_CMP_LE": 3, "SCMP_CMP_EQ": 4,
            "SCMP_CMP_GE": 5, "SCMP_CMP_GT": 6, "SCMP_CMP_MASKED_EQ": 7}
_NR_SCMP_ERROR = -1          # seccomp_syscall_resolve_name: unknown on every architecture
# filter attributes (enum scmp_filter_attr)
_FLTATR_CTL_NNP = 3          # libseccomp would set no_new_privs itself; we decide that
_FLTATR_CTL_LOG = 6
_FLTATR_CTL_SSB = 7
_FLTATR_CTL_WAITKILL = 10
_FLAGS = {                   # linux.seccomp.flags -> the attribute that asks for it
    "SECCOMP_FILTER_FLAG_TSYNC": None,
    "SECCOMP_FILTER_FLAG_LOG": _FLTATR_CTL_LOG,
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW": _FLTATR_CTL_SSB,
    "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV": _FLTATR_CTL_WAITKILL,
}


class _ArgCmp(ctypes.Structure):
    """struct scmp_arg_cmp"""
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int),
                ("datum_a", ctypes.c_uint64), ("datum_b", ctypes.c_uint64)]


def _load_library():
    try:    # the soname first: find_library runs ldconfig, a subprocess on every start
        lib = ctypes.CDLL("libseccomp.so.2")
    except OSError:
        from ctypes.util import find_library    # imports subprocess & co: only here
        name = find_library("seccomp")
        if not name:
            return None
        lib = ctypes.CDLL(name)
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_release.argtypes = [ctypes.c_void_p]
    lib.seccomp_arch_resolve_name.restype = ctypes.c_uint32
    lib.seccomp_arch_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_arch_add.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_rule_add_array.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int,
                                           ctypes.c_uint, ctypes.POINTER(_ArgCmp)]
    lib.seccomp_attr_set.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_uint32]
    lib.seccomp_load.argtypes = [ctypes.c_void_p]
    lib.seccomp_export_pfc.argtypes = [ctypes.c_void_p, ctypes.c_int]
    return lib


_lib = None                 # libseccomp, once available() has loaded it
_looked_for_lib = False


def available() -> bool:
    """Whether libseccomp is installed. The first call loads it: not at import, since most
    configs have no filter and loading costs every `create` a millisecond or two. Init calls
    this before pivot_root, for a config with a filter: afterwards the library file is out of
    reach."""
    global _lib, _looked_for_lib
    if not _looked_for_lib:
        _lib, _looked_for_lib = _load_library(), True
    return _lib is not None


def _action(name: str | None, errno_ret: int | None) -> int:
    if name == "SCMP_ACT_NOTIFY":
        raise ContainerError("seccomp: SCMP_ACT_NOTIFY needs a seccomp agent (listenerPath), "
                             "which labkit-runc does not support")
    if name not in _ACTIONS:
        raise ContainerError(f"seccomp: unknown action {name!r}")
    value = _ACTIONS[name]
    if name == "SCMP_ACT_ERRNO":
        value |= (_errno.EPERM if errno_ret is None else errno_ret) & 0xFFFF
    elif name == "SCMP_ACT_TRACE":
        value |= (errno_ret or 0) & 0xFFFF
    return value


def _conditions(args: list[dict]) -> list[list[_ArgCmp]]:
    """The conditions of one rule. libseccomp refuses two conditions on the same argument
    in one rule, so then (as runc does) each condition becomes a rule of its own."""
    cmps = []
    for a in args:
        if a.get("op") not in _COMPARE:
            raise ContainerError(f"seccomp: unknown comparison {a.get('op')!r}")
        cmps.append(_ArgCmp(a.get("index", 0), _COMPARE[a["op"]], a.get("value", 0),
                            a.get("valueTwo", 0)))
    indexes = [c.arg for c in cmps]
    if len(set(indexes)) != len(indexes):
        return [[c] for c in cmps]
    return [cmps]


def load(profile: dict) -> None:
    """Compile `profile` (config.json's linux.seccomp) and install it on this process."""
    ctx = _compile(profile)
    try:
        rc = _lib.seccomp_load(ctx)
        if rc < 0:
            raise ContainerError(f"seccomp: load: {_errno.errorcode.get(-rc, rc)}")
    finally:
        _lib.seccomp_release(ctx)


def export_pfc(profile: dict) -> str:
    """The filter libseccomp would load for `profile`, as its "pseudo filter code": readable
    C-like text, one block per architecture (what the kernel will check, in order)."""
    ctx = _compile(profile)
    fd = os.memfd_create("seccomp-pfc")
    try:
        rc = _lib.seccomp_export_pfc(ctx, fd)
        if rc < 0:
            raise ContainerError(f"seccomp: export: {_errno.errorcode.get(-rc, rc)}")
        os.lseek(fd, 0, os.SEEK_SET)
        with os.fdopen(os.dup(fd), "r") as f:
            return f.read()
    finally:
        os.close(fd)
        _lib.seccomp_release(ctx)


def _compile(profile: dict) -> int:
    """A libseccomp filter context for `profile` (the caller releases it)."""
    if not available():
        raise ContainerError("seccomp: libseccomp is not installed")
    default = _action(profile.get("defaultAction"), profile.get("defaultErrnoRet"))
    ctx = _lib.seccomp_init(default)
    if not ctx:
        raise ContainerError("seccomp: seccomp_init failed")
    try:
        _lib.seccomp_attr_set(ctx, _FLTATR_CTL_NNP, 0)
        for flag in profile.get("flags") or []:
            if flag not in _FLAGS:
                raise ContainerError(f"seccomp: flag {flag!r} is not supported")
            if _FLAGS[flag] is not None and _lib.seccomp_attr_set(ctx, _FLAGS[flag], 1) < 0:
                raise ContainerError(f"seccomp: flag {flag}: not supported by this libseccomp")
        for arch in profile.get("architectures") or []:
            token = _lib.seccomp_arch_resolve_name(arch.removeprefix("SCMP_ARCH_").lower().encode())
            if token == 0:
                continue                       # an architecture this libseccomp does not know
            rc = _lib.seccomp_arch_add(ctx, token)
            if rc < 0 and -rc != _errno.EEXIST:           # EEXIST: the native one
                raise ContainerError(f"seccomp: add architecture {arch}: "
                                     f"{_errno.errorcode.get(-rc, rc)}")
        for rule in profile.get("syscalls") or []:
            action = _action(rule.get("action"), rule.get("errnoRet"))
            if action == default:
                continue                       # libseccomp refuses rules that change nothing
            for name in rule.get("names") or []:
                number = _lib.seccomp_syscall_resolve_name(name.encode())
                if number == _NR_SCMP_ERROR:
                    continue                   # unknown to this libseccomp: runc skips it too
                for cmps in _conditions(rule.get("args") or []):
                    array = (_ArgCmp * len(cmps))(*cmps) if cmps else None
                    rc = _lib.seccomp_rule_add_array(ctx, action, number, len(cmps), array)
                    if rc < 0:
                        raise ContainerError(f"seccomp: rule for {name}: "
                                             f"{_errno.errorcode.get(-rc, rc)}")
    except BaseException:
        _lib.seccomp_release(ctx)
        raise
    return ctx
