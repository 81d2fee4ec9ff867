"""/proc, read once: the one home for /proc parsing, below every layer.

Any layer (the runtime, the shim, containerd, dockerd, the lab, the course) may import it; it
imports only the standard library. Everything here reads what the KERNEL says about processes
and mounts (man 5 proc), never what labkit believes.

    stat(pid)          /proc/<pid>/stat: state letter, parent, start time, CPU time
    alive(pid)         runs and is not a zombie
    status(pid)        /proc/<pid>/status as {"Name": "sleep", "NSpid": "30925 1", …}
    cmdline(pid)       /proc/<pid>/cmdline as an argv list
    ns_inode(pid, f)   the inode of /proc/<pid>/ns/<f>: the namespace's identity
    pid_namespace_members(init_pid)
                       every process in the pid namespace of a container's init
    mountinfo(pid)     /proc/<pid>/mountinfo as a list of Mount
    net_dev(pid)       /proc/<pid>/net/dev: the counters of every interface in pid's netns
    system_cpu_ns()    /proc/stat's first line: CPU time of the whole host, in nanoseconds

Two traps these functions take care of, so that no caller has to:

* The command name in /proc/<pid>/stat (field 2) is in parentheses and may itself contain
  spaces and ")" -- a program may call itself "a) b". The only safe split is after the LAST
  ")"; what follows starts at field 3.
* mountinfo writes space, tab, newline and backslash in paths as octal escapes ("\\040"): a
  mount point "/tmp/a b" reads "/tmp/a\\040b". Compare paths only after unescaping them.

A process may exit between two reads: a function about one process returns None (or False,
or an empty list) when the process has gone, rather than raising.
"""

from __future__ import annotations

import os

Pid = int | str          # a process id, or "self"

# Process states (field 3, man 5 proc) that mean "exited": Z zombie (not yet reaped by its
# parent), X dead, x dead (Linux 2.6.33 to 3.13).
EXITED_STATES = frozenset("ZXx")


class Record(tuple):
    """A tuple whose items have names, as collections.namedtuple makes them: Stat(pid=1, …),
    stat.pid or stat[0], unpacking, ==, repr. Written out here, because labkit-runc's `start`
    and `delete` read /proc and nothing else needs collections: importing it would cost each
    of them ~1.5 ms, and runc takes ~7 ms for a whole `start`. (Dataclasses and
    typing.NamedTuple cost more: dataclasses imports inspect, ast …; typing imports re.)"""

    __slots__ = ()
    _fields: tuple[str, ...] = ()

    def __new__(cls, *values, **named):
        missing = [name for name in cls._fields[len(values):] if name not in named]
        if missing or len(values) + len(named) != len(cls._fields):
            raise TypeError(f"{cls.__name__} takes {', '.join(cls._fields)}; "
                            f"got {len(values)} values and {sorted(named)}")
        return tuple.__new__(cls, values + tuple(named[n] for n in cls._fields[len(values):]))

    def __init_subclass__(cls) -> None:
        for index, name in enumerate(cls._fields):             # stat.pid is stat[0] …
            setattr(cls, name, property(lambda self, i=index: self[i]))

    def __getnewargs__(self) -> tuple:                         # pickle: Stat(*values)
        return tuple(self)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(" + \
            ", ".join(f"{name}={value!r}" for name, value in zip(self._fields, self)) + ")"


class Stat(Record):
    """The fields of /proc/<pid>/stat labkit uses (numbered as in man 5 proc):

        pid         (1)
        comm        (2) the command name, without its parentheses
        state       (3) R running, S sleeping, D disk sleep, T stopped, Z zombie, …
        ppid        (4) the parent's pid
        start_time  (22) when the process started, in clock ticks since boot: a pid that
                    is reused gets a new start time, so (pid, start_time) is unique
        cpu_time    (14 + 15) utime + stime: the CPU time it has used, in clock ticks
                    (os.sysconf("SC_CLK_TCK") a second, 100 on Linux)
    """

    __slots__ = ()
    _fields = ("pid", "comm", "state", "ppid", "start_time", "cpu_time")


def parse_stat(text: str) -> Stat:
    """One /proc/<pid>/stat line as a Stat (ValueError if it is not one)."""
    open_paren, close_paren = text.find("("), text.rfind(")")
    rest = text[close_paren + 1:].split()       # field 3 onwards
    if open_paren < 0 or close_paren < open_paren or len(rest) < 20:
        raise ValueError(f"not a /proc/<pid>/stat line: {text[:80]!r}")
    return Stat(pid=int(text[:open_paren]), comm=text[open_paren + 1:close_paren],
                state=rest[0], ppid=int(rest[1]), start_time=int(rest[19]),
                cpu_time=int(rest[11]) + int(rest[12]))


def stat(pid: Pid) -> Stat | None:
    """/proc/<pid>/stat, or None if there is no such process (any more)."""
    text = _read(f"/proc/{pid}/stat")
    return parse_stat(text) if text is not None else None


def alive(pid: Pid) -> bool:
    """True if `pid` runs and is not a zombie (a zombie has exited; only its entry is left
    until its parent reaps it, so signalling or waiting for it is pointless)."""
    st = stat(pid)
    return st is not None and st.state not in EXITED_STATES


def status(pid: Pid) -> dict[str, str] | None:
    """/proc/<pid>/status as {"Name": "sleep", "State": "S (sleeping)", "PPid": "1",
    "Uid": "0\\t0\\t0\\t0", "NSpid": "30925\\t1", …} (values stripped), or None if gone."""
    text = _read(f"/proc/{pid}/status")
    if text is None:
        return None
    fields = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields[key] = value.strip()
    return fields


def cmdline(pid: Pid) -> list[str]:
    """/proc/<pid>/cmdline as an argv list; [] if gone (or a kernel thread, which has none)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except (FileNotFoundError, ProcessLookupError):
        return []


def ns_inode(pid: Pid, file: str) -> int | None:
    """The inode number of /proc/<pid>/ns/<file> ("net", "mnt", …), or None if there is none.

    The link reads "net:[4026531833]"; the number is the namespace's identity: two processes
    are in the same namespace exactly when the numbers are equal (man 7 namespaces)."""
    try:
        link = os.readlink(f"/proc/{pid}/ns/{file}")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return int(link.partition("[")[2].rstrip("]"))


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


# --- counters: network interfaces, host CPU time --------------------------------------------

NET_DEV_FIELDS = ("rx_bytes", "rx_packets", "rx_errors", "rx_dropped", "rx_fifo", "rx_frame",
                  "rx_compressed", "rx_multicast", "tx_bytes", "tx_packets", "tx_errors",
                  "tx_dropped", "tx_fifo", "tx_colls", "tx_carrier", "tx_compressed")


def parse_net_dev(text: str) -> dict[str, dict[str, int]]:
    """/proc/net/dev's text as {interface: {"rx_bytes": …, "tx_packets": …}}.

        Inter-|   Receive                            …|  Transmit
         face |bytes    packets errs drop fifo frame …|bytes    packets errs drop …
          eth0:    1296      16    0    0    0     0 …     656       8    0    0 …

    Two header lines, then one line per interface: its name, a colon (with or without a
    space after it), 8 receive counters and 8 transmit counters (NET_DEV_FIELDS)."""
    out = {}
    for line in text.splitlines()[2:]:
        name, sep, numbers = line.partition(":")
        values = numbers.split()
        if sep and len(values) == len(NET_DEV_FIELDS):
            out[name.strip()] = dict(zip(NET_DEV_FIELDS, map(int, values)))
    return out


def net_dev(pid: Pid) -> dict[str, dict[str, int]]:
    """The interfaces of `pid`'s network namespace and their counters ({} if pid has gone).
    /proc/<pid>/net is the view of that process's netns: no setns(2) needed to read it."""
    text = _read(f"/proc/{pid}/net/dev")
    return parse_net_dev(text) if text is not None else {}


def system_cpu_ns() -> int:
    """The CPU time of the whole host since boot, in nanoseconds: the sum of /proc/stat's
    "cpu" line (user nice system idle iowait irq softirq steal, in clock ticks). `docker
    stats` divides a container's CPU time by the growth of this number."""
    with open("/proc/stat") as f:
        first = f.readline().split()
    if not first or first[0] != "cpu":
        raise ValueError("/proc/stat does not start with the cpu line")
    ticks = sum(int(v) for v in first[1:9])
    return ticks * 10**9 // os.sysconf("SC_CLK_TCK")


# --- mountinfo -------------------------------------------------------------------------------

class Mount(Record):
    """One line of /proc/<pid>/mountinfo (man 5 proc), paths unescaped:

        36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
        (1)(2) (3)  (4)   (5)      (6)      (7)    (8) (9)   (10)         (11)

        mount_id       (1)
        parent_id      (2)
        root           (4) the directory of the filesystem that is mounted here
        mount_point    (5) where, relative to the process's root
        options        (6) per-mount options, a tuple: rw, nosuid, relatime …
        optional       (7) propagation, a tuple: shared:N, master:N, propagate_from:N, unbindable
        fstype         (9) ext4, overlay, cgroup, cgroup2, proc …
        source         (10) the device, or a label for pseudo filesystems
        super_options  (11) the filesystem's own, a tuple: a cgroup v1 mount's controllers
    """

    __slots__ = ()
    _fields = ("mount_id", "parent_id", "root", "mount_point", "options", "optional", "fstype",
               "source", "super_options")


def unescape(field: str) -> str:
    """Undo mountinfo's octal escapes: "/tmp/a\\040b" -> "/tmp/a b"."""
    if "\\" not in field:
        return field        # nearly always: re (~5 ms to import, with enum) only when needed
    import re
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def parse_mountinfo(text: str) -> list[Mount]:
    """The lines of a mountinfo text as Mounts, in the kernel's order (a mount comes after
    the mount it sits on). Raises ValueError on a line that is not mountinfo."""
    mounts = []
    for line in text.splitlines():
        if not line.strip():
            continue
        before, sep, after = line.partition(" - ")
        fields, tail = before.split(), after.split()
        if not sep or len(fields) < 6 or len(tail) < 2:
            raise ValueError(f"not a mountinfo line: {line!r}")
        mounts.append(Mount(
            mount_id=int(fields[0]), parent_id=int(fields[1]), root=unescape(fields[3]),
            mount_point=unescape(fields[4]), options=tuple(fields[5].split(",")),
            optional=tuple(fields[6:]), fstype=tail[0], source=unescape(tail[1]),
            super_options=tuple(tail[2].split(",")) if len(tail) > 2 else ()))
    return mounts


def mountinfo(pid: Pid = "self") -> list[Mount]:
    """The mounts of `pid`'s mount namespace (the caller's by default), in the kernel's order."""
    with open(f"/proc/{pid}/mountinfo") as f:
        return parse_mountinfo(f.read())


def _read(path: str) -> str | None:
    """A /proc file's text, or None if the process it describes has gone."""
    try:
        with open(path) as f:
            return f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None


__all__ = ["EXITED_STATES", "Stat", "parse_stat", "stat", "alive", "status", "cmdline", "ns_inode",
           "pid_namespace_members", "Mount", "unescape", "parse_mountinfo", "mountinfo"]
