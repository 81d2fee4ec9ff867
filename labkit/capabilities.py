"""Linux capability names and numbers (man 7 capabilities), for every layer that reads them.

A capability is a bit number; its name, "CAP_" + the constant in <linux/capability.h>, is what
config.json (process.capabilities) and `docker run --cap-add` use. NAMES[n] is capability n.
The list is the kernel's (up to 40, CAP_CHECKPOINT_RESTORE, Linux 5.9); the RUNNING kernel may
know fewer: /proc/sys/kernel/cap_last_cap says how many (last_cap()).
"""

from __future__ import annotations

import functools

NAMES: tuple[str, ...] = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
    "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK",
    "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG",
    "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
)

NUMBERS: dict[str, int] = {name: number for number, name in enumerate(NAMES)}


@functools.cache
def last_cap() -> int:
    """The highest capability number the running kernel knows (man 7 capabilities,
    /proc/sys/kernel/cap_last_cap, since Linux 3.2)."""
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return int(f.read())
    except (OSError, ValueError):
        return len(NAMES) - 1


def number(name: str) -> int | None:
    """The number of a capability name ("CAP_KILL" or "kill", any case); None if Linux has no
    capability of that name."""
    name = name.upper()
    return NUMBERS.get(name if name.startswith("CAP_") else "CAP_" + name)
