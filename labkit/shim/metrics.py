"""What a container uses, read from its cgroup: the shim's answer to Task.Stats (`docker stats`).

The flow of one `docker stats` sample, and why it ends here::

    docker stats c1
      -> dockerd      GET /containers/c1/stats        (labkit.dockerd.stats)
      -> containerd   Tasks.Metrics(filters=["id==<c1's id>"])
      -> labkit-shim  Task.Stats(id)                  this module: read the cgroup files
      <- google.protobuf.Any{type_url: "io.containerd.cgroups.v1.Metrics", value: <bytes>}
    containerd passes the Any on unopened; dockerd decodes it, adds the host's CPU time and
    the container's network counters, and writes the Engine API's JSON.

Why the shim: it owns the task — it is the parent of the container's init and knows its pid,
and it lives as long as the container. The kernel keeps every counter in the container's
cgroup, and /proc/<init pid>/cgroup says which cgroup that is, so no runtime command is needed
(containerd's runc shim does the same with its cgroups library).

Which cgroup version: the runtime's test (labkit.runc.cgroups.is_v2), made again here because
the shim knows runtimes only by their command line: /sys/fs/cgroup is the unified (v2)
hierarchy when it has a cgroup.controllers file.

    v1   one hierarchy per controller, each its own mount (mountinfo: fstype "cgroup", the
         controllers in the super options); /proc/<pid>/cgroup has one line per hierarchy,
         "4:memory:/labkit/<id>". Files: memory.usage_in_bytes, memory.stat (cache, rss,
         total_inactive_file …), memory.memsw.* (swap, when accounted), cpuacct.usage,
         cpuacct.stat (user/system in clock ticks), cpu.stat (throttling), pids.current/max,
         blkio.*_recursive ("8:0 Read 4096" lines; the throttle.* files when the I/O scheduler
         keeps none).                                 man 7 cgroups; kernel cgroup-v1/*.rst
    v2   one hierarchy, "0::/labkit/<id>"; memory.current/max, memory.stat (anon, file,
         inactive_file …), memory.swap.current/max, cpu.stat (usage_usec …), pids.current/max,
         io.stat ("8:0 rbytes=… wbytes=… rios=… wios=…"), memory.events.
                                                      kernel admin-guide/cgroup-v2.rst

Units are the kernel's, as in containerd's messages: bytes, nanoseconds (v1), microseconds (v2).
A limit of "max" is 0 for v1 pids and 2^64-1 for v2 (containerd's choices); a file a kernel
lacks (memory.memsw.* without swap accounting, blkio without CONFIG_BLK_CGROUP) is left at zero.
"""

from __future__ import annotations

import os

from labkit import procfs
from labkit.wire.shim import messages
from labkit.wire.shim.protocol import METRICS_V1_URL, METRICS_V2_URL, V1_MEMORY_STAT_FIELDS

V2_ROOT = "/sys/fs/cgroup"
MAX = (1 << 64) - 1          # "max" in a v2 limit file, as containerd reports it


class NoCgroup(LookupError):
    """The process has gone, or its cgroup is not where /proc says."""


def is_v2() -> bool:
    """The runtime's test: the unified hierarchy's root has cgroup.controllers."""
    return os.path.exists(os.path.join(V2_ROOT, "cgroup.controllers"))


def read(pid: int) -> tuple[str, bytes]:
    """The metrics of `pid`'s cgroup(s) as (type URL, serialized message): what Stats answers."""
    if is_v2():
        return METRICS_V2_URL, read_v2(v2_dir(pid)).SerializeToString()
    return METRICS_V1_URL, read_v1(v1_dirs(pid)).SerializeToString()


# --- where the cgroup is ------------------------------------------------------------------------

def _cgroup_lines(pid: int) -> list[tuple[str, str]]:
    """/proc/<pid>/cgroup as [(controllers, path)]: [("memory", "/labkit/c1"), ("", "/…")]."""
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            text = f.read()
    except (FileNotFoundError, ProcessLookupError):
        raise NoCgroup(f"process {pid} has exited") from None
    lines = []
    for line in text.splitlines():
        _hid, controllers, path = line.split(":", 2)
        lines.append((controllers, path))
    return lines


def v2_dir(pid: int) -> str:
    for controllers, path in _cgroup_lines(pid):
        if controllers == "":
            return os.path.join(V2_ROOT, path.lstrip("/"))
    raise NoCgroup(f"process {pid} has no cgroup v2 line in /proc/{pid}/cgroup")


def v1_dirs(pid: int) -> dict[str, str]:
    """{controller: directory} for every v1 controller of `pid`: {"memory":
    "/sys/fs/cgroup/memory/labkit/c1", "cpuacct": …}. A hierarchy holding several controllers
    ("cpu,cpuacct") gives each of them the same directory."""
    mounts = {}
    for m in procfs.mountinfo():
        if m.fstype == "cgroup":
            for option in m.super_options:
                mounts.setdefault(option, m)
    dirs = {}
    for controllers, path in _cgroup_lines(pid):
        for controller in controllers.split(","):
            m = mounts.get(controller)
            if m is None:
                continue
            # the mount shows the hierarchy from m.root down (usually "/", the whole of it)
            relative = path[len(m.root):] if m.root != "/" and path.startswith(m.root) else path
            dirs[controller] = os.path.join(m.mount_point, relative.lstrip("/"))
    if not dirs:
        raise NoCgroup(f"process {pid}: no mounted cgroup v1 hierarchy holds it")
    return dirs


# --- reading files --------------------------------------------------------------------------

def _text(directory: str | None, name: str) -> str | None:
    if directory is None:
        return None
    try:
        with open(os.path.join(directory, name)) as f:
            return f.read()
    except OSError:          # not on this kernel (or the cgroup went away meanwhile)
        return None


def _number(directory: str | None, name: str, max_value: int = 0) -> int:
    text = (_text(directory, name) or "").strip()
    if text == "max":
        return max_value
    try:
        return max(int(text), 0)
    except ValueError:
        return 0


def _pairs(text: str | None) -> dict[str, int]:
    """"name value" lines (memory.stat, cpu.stat, memory.events) as a dict."""
    out = {}
    for line in (text or "").splitlines():
        name, _, value = line.partition(" ")
        try:
            out[name] = int(value)
        except ValueError:
            pass
    return out


def _fill(message, values: dict[str, int], renames: dict[str, str] = {}) -> None:
    """Set the message's fields that `values` names (some under another name: `renames`)."""
    fields = {f.name for f in message.FIELDS if f.kind == "uint64"}
    for name, value in values.items():
        name = renames.get(name, name)
        if name in fields:
            setattr(message, name, max(value, 0))


def _device_name(major: int, minor: int) -> str:
    """/dev/<DEVNAME> of a block device, from sysfs (as containerd names blkio entries)."""
    for line in (_text(f"/sys/dev/block/{major}:{minor}", "uevent") or "").splitlines():
        if line.startswith("DEVNAME="):
            return "/dev/" + line.partition("=")[2]
    return ""


# --- cgroup v1 --------------------------------------------------------------------------------

_BLKIO_FILES = ("io_service_bytes_recursive", "io_serviced_recursive", "io_queued_recursive",
                "io_service_time_recursive", "io_wait_time_recursive", "io_merged_recursive",
                "io_time_recursive", "sectors_recursive")


def read_v1(dirs: dict[str, str]) -> "messages.V1Metrics":
    m = messages.V1Metrics()
    memory = dirs.get("memory")
    if memory:
        _fill(m.memory, _pairs(_text(memory, "memory.stat")), V1_MEMORY_STAT_FIELDS)
        for entry, prefix in ((m.memory.usage, "memory."), (m.memory.swap, "memory.memsw."),
                              (m.memory.kernel, "memory.kmem."),
                              (m.memory.kernel_tcp, "memory.kmem.tcp.")):
            entry.usage = _number(memory, prefix + "usage_in_bytes")
            entry.limit = _number(memory, prefix + "limit_in_bytes")
            entry.max = _number(memory, prefix + "max_usage_in_bytes")
            entry.failcnt = _number(memory, prefix + "failcnt")
        _fill(m.memory_oom_control, _pairs(_text(memory, "memory.oom_control")))
    cpuacct = dirs.get("cpuacct")
    if cpuacct:
        m.cpu.usage.total = _number(cpuacct, "cpuacct.usage")
        # cpuacct.stat counts clock ticks (USER_HZ): nanoseconds, as the message wants
        ticks = _pairs(_text(cpuacct, "cpuacct.stat"))
        per_tick = 10**9 // os.sysconf("SC_CLK_TCK")
        m.cpu.usage.user = ticks.get("user", 0) * per_tick
        m.cpu.usage.kernel = ticks.get("system", 0) * per_tick
    if dirs.get("cpu"):
        _fill(m.cpu.throttling, _pairs(_text(dirs["cpu"], "cpu.stat")),
              {"nr_periods": "periods", "nr_throttled": "throttled_periods"})
    if dirs.get("pids"):
        m.pids.current = _number(dirs["pids"], "pids.current")
        m.pids.limit = _number(dirs["pids"], "pids.max")          # "max" -> 0: no limit
    blkio = dirs.get("blkio")
    if blkio:
        for name in _BLKIO_FILES:
            entries = parse_blkio(_text(blkio, "blkio." + name))
            if not entries and name in _BLKIO_FILES[:2]:
                # no CFQ scheduler keeps these (newer kernels): the throttle layer counts too
                entries = parse_blkio(_text(blkio, "blkio.throttle." + name))
            getattr(m.blkio, name).extend(entries)
    return m


def parse_blkio(text: str | None) -> list:
    """"8:0 Read 4096" lines as BlkIOEntry messages (the "Total" line is a sum: skipped)."""
    entries = []
    for line in (text or "").splitlines():
        fields = line.split()
        if len(fields) != 3 or ":" not in fields[0]:
            continue
        major, _, minor = fields[0].partition(":")
        try:
            entries.append(messages.V1BlkIOEntry(
                op=fields[1], major=int(major), minor=int(minor), value=int(fields[2]),
                device=_device_name(int(major), int(minor))))
        except ValueError:
            continue
    return entries


# --- cgroup v2 --------------------------------------------------------------------------------

def read_v2(directory: str) -> "messages.V2Metrics":
    if not os.path.isdir(directory):
        raise NoCgroup(f"cgroup {directory} does not exist")
    m = messages.V2Metrics()
    m.pids.current = _number(directory, "pids.current")
    m.pids.limit = _number(directory, "pids.max", MAX)
    _fill(m.cpu, _pairs(_text(directory, "cpu.stat")))
    _fill(m.memory, _pairs(_text(directory, "memory.stat")))
    m.memory.usage = _number(directory, "memory.current")
    m.memory.usage_limit = _number(directory, "memory.max", MAX)
    m.memory.swap_usage = _number(directory, "memory.swap.current")
    m.memory.swap_limit = _number(directory, "memory.swap.max", MAX)
    _fill(m.memory_events, _pairs(_text(directory, "memory.events")))
    m.io.usage.extend(parse_io_stat(_text(directory, "io.stat")))
    return m


def parse_io_stat(text: str | None) -> list:
    """io.stat's "8:0 rbytes=1 wbytes=2 rios=3 wios=4 dbytes=0 dios=0" lines as IOEntry."""
    entries = []
    for line in (text or "").splitlines():
        device, *counters = line.split()
        major, _, minor = device.partition(":")
        try:
            entry = messages.V2IOEntry(major=int(major), minor=int(minor))
        except ValueError:
            continue
        _fill(entry, {k: int(v) for k, _, v in (c.partition("=") for c in counters)
                      if v.isdigit()})
        entries.append(entry)
    return entries
