"""The last steps before execve, shared by a container's init and `exec`: the environment,
finding the executable, rlimits, user and group ids, capabilities and no_new_privs.

The ORDER of the identity steps matters, and is the classic one (man 7 capabilities):

  1. drop from the bounding set what the container must never regain (needs CAP_SETPCAP,
     so it must happen while we are still fully privileged);
  2. ask the kernel to KEEP permitted capabilities across setuid (PR_SET_KEEPCAPS), or
     changing from uid 0 to another uid would wipe them all;
  3. setgroups, setgid, then setuid (setgid first: after setuid we may no longer be allowed);
  4. set the effective/permitted/inheritable sets, then raise the ambient ones;
  5. PR_SET_NO_NEW_PRIVS last: it only affects execve, and must not stop steps above.

Errors use runc's wording where the layers above look for it, e.g.
`exec: "nosuchcmd": executable file not found in $PATH` (docker maps it to exit code 127).
"""

from __future__ import annotations

import os
import resource
import stat
from collections.abc import Callable

import prctl

from labkit import capabilities, syscalls
from labkit.runc.log import ContainerError

Warn = Callable[[str], None]

PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE = 47, 2


def environment(process: dict) -> dict[str, str]:
    env = {}
    for entry in process.get("env") or []:
        key, _, value = entry.partition("=")
        env[key] = value
    if "HOME" not in env:
        env["HOME"] = home_of((process.get("user") or {}).get("uid", 0))
    return env


def home_of(uid: int) -> str:
    """The user's home from the CONTAINER's /etc/passwd (we are already inside), else "/"."""
    try:
        with open("/etc/passwd") as f:
            for line in f:
                fields = line.rstrip("\n").split(":")
                if len(fields) >= 6 and fields[2] == str(uid):
                    return fields[5] or "/"
    except OSError:
        pass
    return "/"


def _is_executable(path: str) -> bool:
    try:
        st = os.stat(path)
    except OSError:
        return False
    return stat.S_ISREG(st.st_mode) and bool(st.st_mode & 0o111)


def find_executable(name: str, env: dict[str, str]) -> str:
    """Resolve args[0] like Go's exec.LookPath (which runc uses), with the container's PATH."""
    if "/" in name:
        try:
            os.stat(name)
        except OSError as e:
            raise ContainerError(f'exec: "{name}": stat {name}: {e.strerror.lower()}') from None
        if not _is_executable(name):
            raise ContainerError(f'exec: "{name}": permission denied')
        return name
    # BEGIN SOLUTION chapter="04" hint="man 3 execvp: search each directory of PATH in order"
    # TODO: return the first PATH directory's `name` that is an executable regular file
    # HINT: _is_executable(path); an empty PATH entry means the current directory
    for directory in env.get("PATH", "").split(":"):
        candidate = os.path.join(directory or ".", name)
        if _is_executable(candidate):
            return candidate
    # END SOLUTION
    raise ContainerError(f'exec: "{name}": executable file not found in $PATH')


def prepare_cwd(cwd: str) -> None:
    """runc creates a missing working directory (mkdir -p), then changes into it."""
    if os.path.exists(cwd) and not os.path.isdir(cwd):
        raise ContainerError(f"mkdir {cwd}: not a directory")
    try:
        os.makedirs(cwd, exist_ok=True)
    except OSError as e:
        raise ContainerError(f"mkdir {cwd}: {(e.strerror or str(e)).lower()}") from None


def apply_rlimits(rlimits: list[dict], warn: Warn) -> None:
    """process.rlimits. Raising a HARD limit needs CAP_SYS_RESOURCE, which this host does not
    give: such a limit is clamped to the current hard limit, with a warning in the log."""
    for rl in rlimits or []:
        name = rl.get("type", "")
        which = getattr(resource, name, None)
        if not name.startswith("RLIMIT_") or which is None:
            raise ContainerError(f"rlimit: unknown type {name!r}")
        soft, hard = (_rlim(rl.get("soft", 0)), _rlim(rl.get("hard", 0)))
        if _at_most(soft, hard) != soft:
            raise ContainerError(f"rlimit {name}: soft limit {rl.get('soft')} is above the hard "
                                 f"limit {rl.get('hard')}")
        try:
            resource.setrlimit(which, (soft, hard))
        except (ValueError, OSError):
            _cur_soft, cur_hard = resource.getrlimit(which)
            warn(f"rlimit {name}: cannot raise the hard limit to {rl.get('hard')} "
                 f"(needs CAP_SYS_RESOURCE); keeping {cur_hard}")
            resource.setrlimit(which, (_at_most(soft, cur_hard), cur_hard))


def _at_most(value: int, ceiling: int) -> int:
    inf = resource.RLIM_INFINITY
    if ceiling == inf:
        return value
    return ceiling if value == inf or value > ceiling else value


def _rlim(value: int) -> int:
    # the spec's "unlimited" is 2**64-1; Python spells it RLIM_INFINITY
    return resource.RLIM_INFINITY if value < 0 or value >= 2 ** 63 else value


def _cap_numbers(names: list[str] | None, warn: Warn) -> set[int]:
    """Capability names as numbers. A name Linux does not have at all (a typo, "CAP_TEST")
    is refused: the spec wants an error for a value that maps to no kernel interface. One
    Linux has but this (older) kernel does not know is skipped with a warning, as runc does."""
    numbers = set()
    last = capabilities.last_cap()
    for name in names or []:
        number = capabilities.number(name) if name.upper().startswith("CAP_") else None
        if number is None:
            raise ContainerError(f"unknown capability {name!r}")
        if number > last:
            warn(f"capability {name!r} is not known to this kernel (cap_last_cap is {last}): "
                 "skipped")
            continue
        numbers.add(number)
    return numbers


def set_identity(process: dict, warn: Warn) -> None:
    """Steps 1-5 of the module docstring: bounding set, ids, capability sets, no_new_privs."""
    user = process.get("user") or {}
    uid, gid = user.get("uid", 0), user.get("gid", 0)
    caps = process.get("capabilities")

    # BEGIN SOLUTION chapter="04" hint="man 7 capabilities, 'Effect of user ID changes on capabilities'; man 2 prctl"
    # TODO: steps 1-5 of this module's docstring, in that order: bounding set, keep-caps,
    # TODO: ids, the three capability sets and the ambient ones, no_new_privs last
    # HINT: _cap_numbers(names, warn) gives the numbers; prctl.capbset_drop(cap) each one not kept;
    # HINT: prctl.set_keepcaps(True) around os.setgroups/os.setgid/os.setuid (a failure names uid:gid);
    # HINT: prctl.set_caps((list, prctl.CAP_EFFECTIVE, True), (list, flag, False), …) for each set;
    # HINT: ambient: syscalls.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap), a failure only warns;
    # HINT: prctl.set_no_new_privs(1) when process["noNewPrivileges"]
    every_cap = range(capabilities.last_cap() + 1)
    if caps is not None:                                            # 1. bounding set
        keep = _cap_numbers(caps.get("bounding"), warn)
        for cap in every_cap:
            if cap not in keep:
                prctl.capbset_drop(cap)
    prctl.set_keepcaps(True)                                        # 2. keep caps over setuid
    try:                                                            # 3. ids
        os.setgroups(list(user.get("additionalGids") or []))
        os.setgid(gid)
        os.setuid(uid)
    except OSError as e:
        raise ContainerError(f"set user {uid}:{gid}: {e.strerror.lower()}") from None
    prctl.set_keepcaps(False)
    if caps is not None:                                            # 4. the capability sets
        sets = {flag: _cap_numbers(caps.get(key), warn) for key, flag in
                (("effective", prctl.CAP_EFFECTIVE), ("permitted", prctl.CAP_PERMITTED),
                 ("inheritable", prctl.CAP_INHERITABLE))}
        args = []
        for flag, on in sets.items():
            args.append((list(on), flag, True))
            args.append(([c for c in every_cap if c not in on], flag, False))
        try:
            prctl.set_caps(*args)
        except OSError as e:
            raise ContainerError(f"capset: {e.strerror.lower()}") from None
        # The kernel raises an ambient capability only if it is both permitted and
        # inheritable. `runc spec` lists the ambient ones without listing them inheritable:
        # like runc, warn about each one that cannot be raised and go on without it.
        for cap in sorted(_cap_numbers(caps.get("ambient"), warn)):
            try:
                syscalls.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap)
            except OSError as e:
                warn(f"can't raise ambient capability {capabilities.NAMES[cap]}: "
                     f"{os.strerror(e.errno).lower() if e.errno else e}")
    if process.get("noNewPrivileges"):                              # 5. no_new_privs
        prctl.set_no_new_privs(1)
    # END SOLUTION
