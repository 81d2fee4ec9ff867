"""/proc, read once: the one home for /proc parsing, below every layer.

Any layer (the runtime, the shim, the lab) may import it; it imports no layer.
"""

from __future__ import annotations

import os


def pid_namespace_members(init_pid: int) -> list[int]:
    """Host pids of the processes in `init_pid`'s pid namespace (man 7 pid_namespaces):
    the ones whose /proc/<pid>/ns/pid is the same namespace."""
    try:
        init_ns = os.readlink(f"/proc/{init_pid}/ns/pid")
    except OSError:
        return []
    if init_ns == os.readlink("/proc/self/ns/pid"):
        return [init_pid]              # the host's pid namespace: only init is ours for sure
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.readlink(f"/proc/{entry}/ns/pid") == init_ns:
                    found.append(int(entry))
            except OSError:
                continue               # exited while we looked
    return found
