"""`--security-opt`: the seccomp profile and no_new_privs a container gets (moby's
daemon/seccomp_linux.go, daemon_unix.go parseSecurityOpt, and the profiles/seccomp package).

What the docker CLI sends, in HostConfig.SecurityOpt (a list of strings):

    seccomp=unconfined         no filter at all
    seccomp=builtin            the default profile (what no option gives too)
    seccomp=/path/p.json       the CLI reads the file and sends its content instead,
                               compacted: "seccomp={"defaultAction":…}" (CLI 20.10 and 28
                               alike; 28 also passes "builtin" through unread). The daemon
                               never reads a client's file: an API client sends the JSON.
    no-new-privileges[=true]   set no_new_privs: setuid programs gain nothing
    apparmor=…, label=…        accepted and ignored, as Docker does on a host without
                               AppArmor or SELinux (labkit-runc supports neither)

`key:value` is the pre-17.04 spelling, still accepted. Anything else is a 400 naming the
option. `--privileged` means unconfined, unless a profile was given explicitly.

A profile, Docker's default (seccomp_default.py) or a user's, is in Docker's profile format;
`resolve` turns it into the OCI spec's linux.seccomp for one container, as moby's
setupSeccomp does: the architectures of this machine from "archMap", and each rule kept or
dropped by its "includes"/"excludes" (capabilities in the container's bounding set, the
architecture, the kernel version). The runtime (labkit/runc/seccomp.py) compiles the result.
"""

from __future__ import annotations

import json
import os
import platform
from dataclasses import dataclass

from labkit.dockerd import seccomp_default

UNCONFINED, BUILTIN = "unconfined", "builtin"

# platform.machine() -> (Go's name, used by "arches" filters; the SCMP arch of "archMap")
MACHINES = {"x86_64": ("amd64", "SCMP_ARCH_X86_64"), "aarch64": ("arm64", "SCMP_ARCH_AARCH64")}

# The OCI runtime spec's names (config-linux.md#seccomp): checked here so that a typo in a
# profile is a 400 at `docker create`, not a failure of the runtime at `docker start`.
ACTIONS = {"SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_TRAP",
           "SCMP_ACT_ERRNO", "SCMP_ACT_TRACE", "SCMP_ACT_ALLOW", "SCMP_ACT_LOG",
           "SCMP_ACT_NOTIFY"}
OPERATORS = {"SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ", "SCMP_CMP_GE",
             "SCMP_CMP_GT", "SCMP_CMP_MASKED_EQ"}


@dataclass
class SecurityOptions:
    seccomp: str = ""               # "", "unconfined", "builtin", or a profile's JSON text
    no_new_privileges: bool = False


def parse(security_opt: list[str] | None) -> SecurityOptions:
    """HostConfig.SecurityOpt -> SecurityOptions; ValueError names the bad option."""
    out = SecurityOptions()
    for opt in security_opt or []:
        if opt == "no-new-privileges":
            out.no_new_privileges = True
            continue
        if opt == "disable":              # SELinux's "label=disable" in its short form
            continue
        sep = "=" if "=" in opt else ":"
        key, found, value = opt.partition(sep)
        if not found:
            raise ValueError(f"invalid --security-opt {opt!r}: expected KEY=VALUE "
                             "(seccomp=, no-new-privileges, apparmor=, label=)")
        if key == "seccomp":
            if not value:
                raise ValueError("invalid --security-opt seccomp=: give unconfined, builtin "
                                 "or a profile file")
            out.seccomp = value
        elif key == "no-new-privileges":
            if value.lower() not in ("true", "false", "1", "0"):
                raise ValueError(f"invalid --security-opt {opt!r}: expected true or false")
            out.no_new_privileges = value.lower() in ("true", "1")
        elif key in ("apparmor", "label"):
            pass        # no AppArmor, no SELinux: ignored, as by Docker on such a host
        else:
            raise ValueError(f"invalid --security-opt {opt!r}: unknown option {key!r} "
                             "(labkit-dockerd knows seccomp, no-new-privileges, apparmor, label)")
    return out


def seccomp_for(options: SecurityOptions, bounding: list[str], privileged: bool = False,
                machine: str | None = None, kernel: str | None = None) -> dict | None:
    """linux.seccomp for a container: None means no filter (unconfined)."""
    choice = options.seccomp
    if choice == UNCONFINED or (privileged and choice in ("", BUILTIN)):
        return None
    if choice in ("", BUILTIN):
        profile = seccomp_default.PROFILE
    else:
        try:
            profile = json.loads(choice)
        except ValueError as e:
            hint = "" if choice.lstrip().startswith("{") else (
                " (the docker CLI reads a profile file and sends its content; an API client "
                "must send the JSON itself)")
            raise ValueError(f"invalid --security-opt seccomp: the profile is not JSON: {e}"
                             f"{hint}") from None
    return resolve(profile, bounding, machine, kernel)


def resolve(profile: dict, bounding: list[str], machine: str | None = None,
            kernel: str | None = None) -> dict | None:
    """A profile in Docker's format -> the OCI linux.seccomp for a container whose bounding
    set is `bounding`, on `machine` (platform.machine()) running `kernel` (its release)."""
    if not isinstance(profile, dict):
        raise _bad("a profile is a JSON object")
    syscalls = profile.get("syscalls") or []
    if not profile.get("defaultAction") and not syscalls:
        return None                 # Docker's rule: an empty profile means no filter
    if profile.get("architectures") and profile.get("archMap"):
        raise _bad("both 'architectures' and 'archMap' are given: use one")
    goarch, native = MACHINES.get(machine or platform.machine(), (machine, None))
    release = kernel or os.uname().release

    out: dict = {"defaultAction": _action(profile.get("defaultAction"))}
    for key in ("defaultErrnoRet", "listenerPath", "listenerMetadata", "flags"):
        if profile.get(key) is not None:
            out[key] = profile[key]
    arches = list(_strings(profile.get("architectures"), "architectures"))
    for entry in profile.get("archMap") or []:
        if isinstance(entry, dict) and entry.get("architecture") == native:
            arches += [native, *_strings(entry.get("subArchitectures"), "subArchitectures")]
            break
    if arches:
        out["architectures"] = arches

    rules = []
    if not isinstance(syscalls, list):
        raise _bad("'syscalls' must be a list")
    for call in syscalls:
        if not isinstance(call, dict):
            raise _bad("each entry of 'syscalls' must be an object")
        if call.get("name") and call.get("names"):
            raise _bad("both 'name' and 'names' are given in one rule: use one")
        names = [call["name"]] if call.get("name") else _strings(call.get("names"), "names")
        if not _applies(call, bounding, goarch, release):
            continue
        rule: dict = {"names": list(names), "action": _action(call.get("action"))}
        if call.get("errnoRet") is not None:
            rule["errnoRet"] = _uint(call["errnoRet"], "errnoRet")
        if call.get("args"):
            rule["args"] = [_arg(a) for a in call["args"]]
        rules.append(rule)
    out["syscalls"] = rules
    return out


def _applies(call: dict, bounding: list[str], goarch: str | None, release: str) -> bool:
    """A rule's "includes" must all hold, and none of its "excludes" (moby's setupSeccomp)."""
    inc, exc = call.get("includes") or {}, call.get("excludes") or {}
    if not isinstance(inc, dict) or not isinstance(exc, dict):
        raise _bad("'includes' and 'excludes' must be objects")
    if goarch in _strings(exc.get("arches"), "arches"):
        return False
    if any(cap in bounding for cap in _strings(exc.get("caps"), "caps")):
        return False
    if exc.get("minKernel") and _kernel_at_least(release, exc["minKernel"]):
        return False
    if inc.get("arches") and goarch not in _strings(inc["arches"], "arches"):
        return False
    if not all(cap in bounding for cap in _strings(inc.get("caps"), "caps")):
        return False
    if inc.get("minKernel") and not _kernel_at_least(release, inc["minKernel"]):
        return False
    return True


def _kernel_at_least(release: str, wanted: str) -> bool:
    """"6.1.0-18-amd64" >= "4.8"? (minKernel is "<kernel>.<major>")"""
    try:
        want = tuple(int(n) for n in str(wanted).split("."))
        if len(want) != 2:
            raise ValueError
    except ValueError:
        raise _bad(f"invalid minKernel {wanted!r}: expected \"<kernel>.<major>\"") from None
    have = []
    for part in release.split(".")[:2]:
        digits = "".join(c for c in part if c.isdigit()) or "0"   # "18-amd64" -> 18
        have.append(int(digits))
    return tuple(have) >= want


def _arg(a) -> dict:
    if not isinstance(a, dict):
        raise _bad("each entry of 'args' must be an object")
    index = _uint(a.get("index", 0), "args.index")
    if index > 5:
        raise _bad(f"args.index {index}: a system call has 6 arguments (0-5)")
    op = a.get("op")
    if op not in OPERATORS:
        raise _bad(f"unknown comparison op {op!r} (one of {', '.join(sorted(OPERATORS))})")
    out = {"index": index, "value": _uint(a.get("value", 0), "args.value"), "op": op}
    if a.get("valueTwo"):
        out["valueTwo"] = _uint(a["valueTwo"], "args.valueTwo")
    return out


def _action(name) -> str:
    if name not in ACTIONS:
        raise _bad(f"unknown action {name!r} (one of {', '.join(sorted(ACTIONS))})")
    return name


def _uint(value, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise _bad(f"{what} must be a non-negative integer, not {value!r}")
    return value


def _strings(value, what: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _bad(f"'{what}' must be a list of strings")
    return value


def _bad(detail: str) -> ValueError:
    return ValueError(f"invalid --security-opt seccomp profile: {detail}")
