"""Control groups: put the container's processes in their own cgroup and apply its limits.

A cgroup is a directory in a cgroup filesystem; a process joins it by writing its pid to
`cgroup.procs`; limits are files next to it (`memory.limit_in_bytes`, `pids.max`, …).
Two generations exist (man 7 cgroups), and this module has one driver for each:

* `V1`: one mounted hierarchy per controller (/sys/fs/cgroup/memory, …/pids, …); a
  container's cgroup is one directory in EACH hierarchy, with the same relative path.
  Limits are files named after v1's conventions: memory.limit_in_bytes, cpu.cfs_quota_us.
* `V2`: one unified tree (/sys/fs/cgroup is cgroup2); a controller's files appear in a
  cgroup only once its parent lists the controller in `cgroup.subtree_control`. Limits have
  new names and sometimes new units: memory.max, cpu.max "quota period", cpu.weight.

Which driver runs is decided by what the host mounts, not by a setting: /sys/fs/cgroup with
a `cgroup.controllers` file is v2 (`host_driver`). A container's recorded directories tell
which driver made them (`driver_for`): {"": dir} is v2, {"memory": dir, …} is v1.

This development host is "hybrid": v1 hierarchies plus a cgroup2 mount at
/sys/fs/cgroup/unified that holds only hugetlb; like runc we treat it as v1 and leave the
cgroup2 part alone. (The tests also run the V2 driver on that cgroup2 mount: a real v2
hierarchy, with the controllers it has.)

linux.resources: every field is either applied or refused with an error that names it
("linux.resources.memory.swappiness is not supported on cgroup v2") — a runtime that drops
a limit without a word lets a container run unconfined while its owner believes otherwise.
The table of fields, with their v1 and v2 files, is `apply`'s docstring. One exception, as
in runc 1.2: `memory.kernel` (a v1 kernel-memory limit the kernel itself deprecated in 5.4
and stopped honouring) is ignored with a warning on both.

linux.cgroupsPath: "/docker/<id>" is relative to each hierarchy's root; a relative path is
relative to the runtime's own cgroup; systemd's "slice:prefix:name" form is mapped to
"/slice/prefix-name.scope" (we do not talk to systemd over D-Bus).

systemd on v2 (the class VM): systemd owns the root of the tree and the top-level slices;
a program that wants cgroups of its own must be given a *delegated* subtree (a unit with
Delegate=yes; systemd 251+ marks such a cgroup with the extended attribute
`trusted.delegate=1`). `v2_base` looks for that mark on the runtime's own cgroup and its
ancestors and places absolute cgroupsPaths under it; without one it warns and uses the
root as runc's cgroupfs driver does.
"""

from __future__ import annotations

import os
import time

from labkit import procfs
from labkit.runc.log import ContainerError

V2_ROOT = "/sys/fs/cgroup"


# --- which hierarchy ------------------------------------------------------------------------
def is_v2() -> bool:
    """Is /sys/fs/cgroup the unified (v2) hierarchy? Its root has cgroup.controllers.
    (On v1, /sys/fs/cgroup is a tmpfs holding one directory per hierarchy.)"""
    # BEGIN SOLUTION chapter="02" hint="man 7 cgroups, 'Cgroups version 2': every v2 cgroup, the root included, has a cgroup.controllers file"
    # TODO: return True when V2_ROOT is the root of a cgroup v2 hierarchy
    return os.path.exists(os.path.join(V2_ROOT, "cgroup.controllers"))
    # END SOLUTION


def v1_hierarchies() -> dict[str, str]:
    """Mounted v1 hierarchies: {name: mount point}, e.g. {"memory": "/sys/fs/cgroup/memory",
    "name=systemd": "/sys/fs/cgroup/systemd"}, from /proc/self/mountinfo (man 5 proc)."""
    found = {}
    for m in procfs.mountinfo():
        if m.fstype != "cgroup":
            continue
        # a v1 hierarchy's super options name its controllers, among a few general options
        names = [o for o in m.super_options if o not in ("rw", "ro")
                 and not o.startswith(("release_agent=", "clone_children"))
                 and o not in ("noprefix", "xattr", "cpuset_v2_mode")]
        if names:
            found[",".join(names)] = m.mount_point
    return found


def own_cgroups(pid: int | str = "self") -> dict[str, str]:
    """The runtime's own cgroup (or process `pid`'s) in each hierarchy: {"memory": "/a/b",
    "": "/" (v2)}, from /proc/<pid>/cgroup (man 7 cgroups)."""
    result = {}
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f:
            _hid, controllers, path = line.rstrip("\n").split(":", 2)
            result[controllers] = path
    return result


def normalize(cgroups_path: str, container_id: str) -> str:
    if cgroups_path.count(":") == 2 and not cgroups_path.startswith("/"):
        slice_, prefix, name = cgroups_path.split(":")
        return "/" + (slice_ or "system.slice") + "/" + (f"{prefix}-{name or container_id}.scope")
    return cgroups_path


def under_systemd() -> bool:
    """Is PID 1 systemd? (What systemd itself checks: /run/systemd/system exists.)"""
    return os.path.isdir("/run/systemd/system")


def delegated_ancestor(root: str, cgroup: str) -> str | None:
    """The nearest cgroup at or above `cgroup` (a path inside the hierarchy mounted at `root`)
    that systemd delegated to its unit: it carries the xattr trusted.delegate (or, for user
    units, user.delegate) = "1" (systemd.resource-control(5), Delegate=)."""
    d = cgroup
    while d not in ("", "/"):
        for attr in ("trusted.delegate", "user.delegate"):
            try:
                if os.getxattr(root + d, attr) == b"1":
                    return d
            except OSError:
                pass
        d = os.path.dirname(d)
    return None


def v2_base(root: str = V2_ROOT, *, systemd: bool | None = None,
            own: str | None = None) -> str:
    """Where absolute cgroupsPaths start on v2: "/" normally; under systemd (PID 1 is
    systemd: /run/systemd/system exists), the delegated subtree the runtime runs in -- its
    own cgroup `own`, or the nearest ancestor, marked trusted.delegate=1 -- or, when there is
    none, "/" with a warning."""
    if not (under_systemd() if systemd is None else systemd):
        return "/"
    delegated = delegated_ancestor(root, own_cgroups().get("", "/") if own is None else own)
    if delegated is None:
        from labkit.runc import log
        log.warning("cgroup v2 under systemd, but the runtime runs in no delegated cgroup "
                    "(Delegate=yes): its containers' cgroups go below the root, which is "
                    "systemd's")
        return "/"
    return delegated


def paths_for(cgroups_path: str, container_id: str) -> dict[str, str]:
    """Where the container's cgroup directories are: {hierarchy name: directory}."""
    return host_driver().paths_for(cgroups_path, container_id)


# --- writing one file -----------------------------------------------------------------------
def _write(directory: str, filename: str, value: str) -> None:
    path = os.path.join(directory, filename)
    try:
        with open(path, "w") as f:
            f.write(value)
    except OSError as e:
        raise ContainerError(f"cgroup: write {value!r} to {path}: {e.strerror}") from None


def _read(directory: str, filename: str) -> str:
    with open(os.path.join(directory, filename)) as f:
        return f.read().strip()


class Refused(ContainerError):
    """A linux.resources field this host or this cgroup version cannot apply."""


def _set(directory: str, filename: str, value: object, field: str) -> None:
    """Write one limit, for the config field `field`: a missing file (the controller is not
    there, or the kernel lacks the feature) is a refusal naming the field."""
    path = os.path.join(directory, filename)
    if not os.path.exists(path):
        raise Refused(f"linux.resources.{field}: {path} does not exist (controller or kernel "
                      f"feature missing on this host)")
    try:
        with open(path, "w") as f:
            f.write(str(value))
    except OSError as e:
        raise ContainerError(f"linux.resources.{field}: cgroup: write {str(value)!r} to "
                             f"{path}: {e.strerror}") from None


def _refuse(field: str, why: str) -> None:
    raise Refused(f"linux.resources.{field} {why}")


# --- the two limits of `docker run -m … --pids-limit …`, and cpu shares ---------------------
def memory_limit_file(version: int, limit: int) -> tuple[str, str]:
    """Where linux.resources.memory.limit goes, and what is written there, as (file, text):

        version 1: ("memory.limit_in_bytes", "67108864")     -1 (no limit): "-1"
        version 2: ("memory.max", "67108864")                -1 (no limit): "max"
    """
    # BEGIN SOLUTION chapter="02" hint="kernel docs: admin-guide/cgroup-v1/memory.rst and admin-guide/cgroup-v2.rst, 'memory.max'"
    # TODO: the file name and text for a memory limit on cgroup `version` (1 or 2)
    if version == 2:
        return "memory.max", "max" if limit < 0 else str(limit)
    return "memory.limit_in_bytes", str(limit)
    # END SOLUTION


def pids_max(limit: int) -> str:
    """The text for pids.max (the same file on v1 and v2): the limit, or "max" when there is
    none -- OCI says a limit of 0 or -1 means "no limit"."""
    # BEGIN SOLUTION chapter="02" hint="kernel docs: admin-guide/cgroup-v1/pids.rst: 'echo max > pids.max'"
    # TODO: "max" for a limit <= 0, else the number as text
    return "max" if limit <= 0 else str(limit)
    # END SOLUTION


def shares_to_weight(shares: int) -> int:
    """v1's cpu.shares (2..262144, default 1024) as v2's cpu.weight (1..10000, default 100):
    the linear map runc uses, 2 -> 1 and 262144 -> 10000 (1024 -> 39: runc's map does not
    keep the defaults equal). A value outside the range is clamped into it first."""
    # BEGIN SOLUTION chapter="02" hint="map [2, 262144] linearly onto [1, 10000]: 1 + (shares - 2) * 9999 // 262142"
    # TODO: clamp shares into [2, 262144], then map it onto [1, 10000]
    shares = min(max(shares, 2), 262144)
    return 1 + ((shares - 2) * 9999) // 262142
    # END SOLUTION


# --- the drivers ----------------------------------------------------------------------------
class Driver:
    """What both drivers do the same way: make directories, join, list, remove."""

    version = 0

    def paths_for(self, cgroups_path: str, container_id: str) -> dict[str, str]:
        raise NotImplementedError

    def create(self, paths: dict[str, str], resources: dict) -> list[str]:
        """mkdir the cgroup directories (and missing parents), apply `linux.resources`.
        Returns the directories created, deepest last, so `destroy` can remove exactly
        those. If anything fails (a limit the kernel refuses, a field this host cannot
        apply), the directories made so far are removed before the error goes on: a failed
        create leaves no cgroup behind."""
        created: list[str] = []
        try:
            for name, directory in paths.items():
                self._mkdirs(name, directory, created)
            self.apply(paths, resources or {})
        except BaseException:
            if created:
                try:
                    destroy(created)
                except Exception as cleanup:       # the first error is the one to report
                    _warn(f"cgroup clean-up after a failed create: {cleanup}")
            raise
        return created

    def _mkdirs(self, name: str, directory: str, created: list[str]) -> None:
        missing = []
        d = directory
        while not os.path.isdir(d):
            missing.append(d)
            d = os.path.dirname(d)
        for d in reversed(missing):
            os.mkdir(d)
            created.append(d)
            self._initialize(name, d)

    def _initialize(self, name: str, directory: str) -> None:
        """A hook for what a new directory needs before a process can join it."""

    def apply(self, paths: dict[str, str], resources: dict) -> None:
        raise NotImplementedError



def _warn(msg: str) -> None:
    from labkit.runc import log
    log.warning(msg)


def _device_numbers(entry: dict) -> str:
    return f"{entry['major']}:{entry['minor']}"


THROTTLES = (("throttleReadBpsDevice", "read_bps_device", "rbps"),
             ("throttleWriteBpsDevice", "write_bps_device", "wbps"),
             ("throttleReadIOPSDevice", "read_iops_device", "riops"),
             ("throttleWriteIOPSDevice", "write_iops_device", "wiops"))


class V1(Driver):
    """cgroup v1: a directory in every mounted hierarchy, v1 file names."""

    version = 1

    def __init__(self, hierarchies: dict[str, str] | None = None):
        self.hierarchies = hierarchies

    def paths_for(self, cgroups_path: str, container_id: str) -> dict[str, str]:
        cgroups_path = normalize(cgroups_path, container_id)
        own = own_cgroups()
        paths = {}
        for name, mountpoint in (self.hierarchies or v1_hierarchies()).items():
            base = cgroups_path if cgroups_path.startswith("/") else \
                os.path.join(own.get(name, "/"), cgroups_path)
            paths[name] = os.path.normpath(mountpoint + "/" + base)
        return paths

    def _initialize(self, name: str, directory: str) -> None:
        if "cpuset" in name.split(","):
            # a new v1 cpuset cgroup starts with NO cpus and mems: no task could join it
            # (ENOSPC). Inherit the parent's.
            for f in ("cpuset.cpus", "cpuset.mems"):
                _write(directory, f, _read(os.path.dirname(directory), f))

    def apply(self, paths: dict[str, str], resources: dict) -> None:
        """Write linux.resources into the v1 files; see the module's table."""
        by = {c: d for name, d in paths.items() for c in name.split(",")}

        def dir_of(controller: str, field: str) -> str:
            if controller not in by:
                _refuse(field, f"needs the {controller} controller, which is not mounted "
                               f"as a cgroup v1 hierarchy on this host")
            return by[controller]

        memory = resources.get("memory") or {}
        if memory:
            self._memory(memory, lambda field: dir_of("memory", field))
        cpu = resources.get("cpu") or {}
        for key, filename in (("shares", "cpu.shares"), ("period", "cpu.cfs_period_us"),
                              ("quota", "cpu.cfs_quota_us"), ("burst", "cpu.cfs_burst_us"),
                              ("realtimePeriod", "cpu.rt_period_us"),
                              ("realtimeRuntime", "cpu.rt_runtime_us")):
            if cpu.get(key):                      # 0 = unset, as in runc
                _set(dir_of("cpu", "cpu." + key), filename, cpu[key], "cpu." + key)
        if cpu.get("idle"):
            _set(dir_of("cpu", "cpu.idle"), "cpu.idle", cpu["idle"], "cpu.idle")
        for key in ("cpus", "mems"):
            if cpu.get(key):
                _set(dir_of("cpuset", "cpu." + key), "cpuset." + key, cpu[key], "cpu." + key)
        pids = resources.get("pids") or {}
        if pids.get("limit") is not None:
            _set(dir_of("pids", "pids.limit"), "pids.max", pids_max(pids["limit"]), "pids.limit")
        block = resources.get("blockIO") or {}
        if block:
            self._block_io(block, lambda field: dir_of("blkio", field))
        for i, h in enumerate(resources.get("hugepageLimits") or []):
            field = f"hugepageLimits[{i}]"
            _set(dir_of("hugetlb", field), f"hugetlb.{h['pageSize']}.limit_in_bytes",
                 h["limit"], field)
        network = resources.get("network") or {}
        if network.get("classID") is not None:
            _set(dir_of("net_cls", "network.classID"), "net_cls.classid",
                 network["classID"], "network.classID")
        for p in network.get("priorities") or []:
            _set(dir_of("net_prio", "network.priorities"), "net_prio.ifpriomap",
                 f"{p['name']} {p['priority']}", "network.priorities")
        for device, limits in (resources.get("rdma") or {}).items():
            _set(dir_of("rdma", "rdma"), "rdma.max", _rdma_line(device, limits), "rdma")
        if resources.get("unified"):
            _refuse("unified", "is a cgroup v2 map: it cannot be applied on cgroup v1")
        if resources.get("devices"):
            d = dir_of("devices", "devices")
            # The config's rules, then (like runc) the devices every container gets: without
            # them init could not even mknod /dev/full, nor a shell open /dev/pts/0.
            for rule in resources["devices"] + DEFAULT_ALLOWED_DEVICES:
                filename = "devices.allow" if rule.get("allow") else "devices.deny"
                _set(d, filename, _device_rule(rule), "devices")

    def _memory(self, memory: dict, dir_of) -> None:
        limit, swap = memory.get("limit"), memory.get("swap")
        if limit is not None or swap is not None:
            d = dir_of("memory.limit")
            writes = []
            if limit is not None:
                writes.append(("memory.limit", *memory_limit_file(1, limit)))
            if swap is not None:
                writes.append(("memory.swap", "memory.memsw.limit_in_bytes", str(swap)))
                # memory.memsw.limit_in_bytes (memory+swap) may never be below
                # memory.limit_in_bytes: raising both, memsw goes first; lowering, limit first.
                memsw = os.path.join(d, "memory.memsw.limit_in_bytes")
                if limit is not None and os.path.exists(memsw):
                    if swap == -1 or swap > int(_read(d, "memory.memsw.limit_in_bytes")):
                        writes.reverse()
            for field, filename, value in writes:
                _set(d, filename, value, field)
        if memory.get("reservation") is not None:
            _set(dir_of("memory.reservation"), "memory.soft_limit_in_bytes",
                 memory["reservation"], "memory.reservation")
        if memory.get("kernel") is not None:
            _warn("linux.resources.memory.kernel is ignored: kernel memory limits are "
                  "deprecated (Linux 5.4) and not honoured by recent kernels")
        if memory.get("kernelTCP") is not None:
            _set(dir_of("memory.kernelTCP"), "memory.kmem.tcp.limit_in_bytes",
                 memory["kernelTCP"], "memory.kernelTCP")
        swappiness = memory.get("swappiness")
        if swappiness is not None and swappiness != -1:
            if not 0 <= swappiness <= 100:
                _refuse("memory.swappiness", f"must be 0..100, not {swappiness}")
            _set(dir_of("memory.swappiness"), "memory.swappiness", swappiness,
                 "memory.swappiness")
        if memory.get("disableOOMKiller"):
            _set(dir_of("memory.disableOOMKiller"), "memory.oom_control", 1,
                 "memory.disableOOMKiller")
        if memory.get("useHierarchy") is not None:
            _set(dir_of("memory.useHierarchy"), "memory.use_hierarchy",
                 int(memory["useHierarchy"]), "memory.useHierarchy")

    def _block_io(self, block: dict, dir_of) -> None:
        if block.get("weight"):
            d = dir_of("blockIO.weight")
            # CFQ's blkio.weight, or BFQ's blkio.bfq.weight where that scheduler is used
            name = "blkio.weight" if os.path.exists(os.path.join(d, "blkio.weight")) \
                else "blkio.bfq.weight"
            _set(d, name, block["weight"], "blockIO.weight")
        if block.get("leafWeight"):
            _set(dir_of("blockIO.leafWeight"), "blkio.leaf_weight", block["leafWeight"],
                 "blockIO.leafWeight")
        for i, w in enumerate(block.get("weightDevice") or []):
            field = f"blockIO.weightDevice[{i}]"
            if w.get("weight"):
                _set(dir_of(field), "blkio.weight_device",
                     f"{_device_numbers(w)} {w['weight']}", field + ".weight")
            if w.get("leafWeight"):
                _set(dir_of(field), "blkio.leaf_weight_device",
                     f"{_device_numbers(w)} {w['leafWeight']}", field + ".leafWeight")
        for key, suffix, _v2 in THROTTLES:
            for i, t in enumerate(block.get(key) or []):
                field = f"blockIO.{key}[{i}]"
                _set(dir_of(field), "blkio.throttle." + suffix,
                     f"{_device_numbers(t)} {t['rate']}", field)


class V2(Driver):
    """cgroup v2: one directory in the unified tree mounted at `root`, v2 file names.

    `root` is /sys/fs/cgroup on a v2 host; the tests also give it this host's hybrid cgroup2
    mount (a real v2 hierarchy with few controllers) or a directory shaped like one."""

    version = 2

    def __init__(self, root: str = V2_ROOT, *, systemd: bool | None = None,
                 own: str | None = None):
        self.root = root
        self.systemd, self.own = systemd, own     # (tests: systemd's presence, our cgroup)
        self._base: str | None = None

    def base(self) -> str:
        """v2_base, asked once per driver (it may warn)."""
        if self._base is None:
            self._base = v2_base(self.root, systemd=self.systemd, own=self.own)
        return self._base

    def paths_for(self, cgroups_path: str, container_id: str) -> dict[str, str]:
        cgroups_path = normalize(cgroups_path, container_id)
        if cgroups_path.startswith("/"):
            base = os.path.join(self.base(), cgroups_path.lstrip("/"))
        else:
            base = os.path.join(own_cgroups().get("", "/"), cgroups_path)
        return {"": os.path.normpath(self.root + "/" + base)}

    def enable_controllers(self, directory: str, controllers: set[str]) -> None:
        """Make `controllers` available in `directory`: each one goes into the
        cgroup.subtree_control of every ancestor from the root down that does not list it
        yet — only those the limits need, as the kernel documentation asks ("Controllers
        should be enabled only where needed": each one enabled costs the kernel work on
        every level). Under systemd, from the delegated cgroup down (v2_base): the cgroups
        above it are systemd's, which enabled in it what the unit delegates; a controller
        that is not there is refused, naming the delegated cgroup."""
        top = os.path.normpath(self.root + "/" + self.base())
        if not directory.startswith(top + "/"):
            top = self.root                        # a relative cgroupsPath: not below the base
        chain = []
        d = directory
        while d != top and d.startswith(top + "/"):
            d = os.path.dirname(d)
            chain.append(d)
        for parent in reversed(chain):
            enabled = set(_read(parent, "cgroup.subtree_control").split())
            available = set(_read(parent, "cgroup.controllers").split())
            for c in sorted(controllers - enabled):
                if c not in available:
                    raise Refused(f"linux.resources: the {c} controller is not available "
                                  f"in {parent} (cgroup.controllers: "
                                  f"{' '.join(sorted(available)) or 'none'})")
                _write(parent, "cgroup.subtree_control", "+" + c)

    def apply(self, paths: dict[str, str], resources: dict) -> None:
        """Write linux.resources into the v2 files; see the module's table."""
        d = paths[""]
        for key in resources.get("unified") or {}:
            if "/" in key or key.startswith(".") or not key:
                _refuse(f"unified[{key!r}]", "is not a cgroup file name")
        self.enable_controllers(d, self.controllers_needed(resources))
        memory = resources.get("memory") or {}
        if memory:
            self._memory(d, memory)
        cpu = resources.get("cpu") or {}
        if cpu.get("shares"):
            _set(d, "cpu.weight", shares_to_weight(cpu["shares"]), "cpu.shares")
        if cpu.get("quota") or cpu.get("period"):
            quota = cpu.get("quota") or -1
            _set(d, "cpu.max", f"{'max' if quota < 0 else quota} {cpu.get('period') or 100000}",
                 "cpu.quota")
        if cpu.get("burst"):
            _set(d, "cpu.max.burst", cpu["burst"], "cpu.burst")
        for key in ("realtimeRuntime", "realtimePeriod"):
            if cpu.get(key):
                _refuse("cpu." + key, "is not supported on cgroup v2 (no real-time groups)")
        if cpu.get("idle"):
            _set(d, "cpu.idle", cpu["idle"], "cpu.idle")
        for key in ("cpus", "mems"):
            if cpu.get(key):
                _set(d, "cpuset." + key, cpu[key], "cpu." + key)
        pids = resources.get("pids") or {}
        if pids.get("limit") is not None:
            _set(d, "pids.max", pids_max(pids["limit"]), "pids.limit")
        block = resources.get("blockIO") or {}
        if block:
            self._io(d, block)
        for i, h in enumerate(resources.get("hugepageLimits") or []):
            _set(d, f"hugetlb.{h['pageSize']}.max", h["limit"], f"hugepageLimits[{i}]")
        network = resources.get("network") or {}
        if network.get("classID") is not None or network.get("priorities"):
            _refuse("network", "is not supported on cgroup v2 (no net_cls/net_prio "
                               "controllers; classify with eBPF or nftables instead)")
        for device, limits in (resources.get("rdma") or {}).items():
            _set(d, "rdma.max", _rdma_line(device, limits), "rdma")
        if resources.get("devices"):
            # v2 has no devices.allow: the kernel asks an eBPF program attached to the
            # cgroup (BPF_CGROUP_DEVICE) about every open and mknod of a device node.
            attach_device_filter(d, resources["devices"] + DEFAULT_ALLOWED_DEVICES)
        for key, value in (resources.get("unified") or {}).items():
            _set(d, key, value, f"unified[{key!r}]")

    @staticmethod
    def controllers_needed(resources: dict) -> set[str]:
        """The controllers whose files the limits in `resources` write."""
        cpu = resources.get("cpu") or {}
        needed = set()
        if resources.get("memory"):
            needed.add("memory")
        if any(cpu.get(k) for k in ("shares", "quota", "period", "burst", "idle")):
            needed.add("cpu")
        if cpu.get("cpus") or cpu.get("mems"):
            needed.add("cpuset")
        if resources.get("pids"):
            needed.add("pids")
        if resources.get("blockIO"):
            needed.add("io")
        if resources.get("hugepageLimits"):
            needed.add("hugetlb")
        if resources.get("rdma"):
            needed.add("rdma")
        for key in resources.get("unified") or {}:
            prefix = key.split(".", 1)[0]
            if prefix not in ("cgroup",):
                needed.add(prefix)
        return needed

    def _memory(self, d: str, memory: dict) -> None:
        limit, swap = memory.get("limit"), memory.get("swap")
        if limit is not None:
            _set(d, *memory_limit_file(2, limit), "memory.limit")
        if swap is not None:
            # OCI's swap is memory+swap (v1's memsw); v2's memory.swap.max is swap alone
            if swap == -1:
                value: object = "max"
            elif swap == 0:
                value = None                       # unset
            elif limit in (None, 0, -1):
                _refuse("memory.swap", "cannot be set without memory.limit on cgroup v2")
            elif swap < limit:
                _refuse("memory.swap", f"({swap}) must be >= memory.limit ({limit})")
            else:
                value = swap - limit
            if value is not None:
                _set(d, "memory.swap.max", value, "memory.swap")
        if memory.get("reservation") is not None:
            reservation = memory["reservation"]
            _set(d, "memory.low", "max" if reservation < 0 else reservation,
                 "memory.reservation")
        if memory.get("kernel") is not None:
            _warn("linux.resources.memory.kernel is ignored: kernel memory is part of "
                  "memory.max on cgroup v2")
        if memory.get("kernelTCP") is not None:
            _refuse("memory.kernelTCP", "is not supported on cgroup v2 (TCP buffers count "
                                        "in memory.max)")
        swappiness = memory.get("swappiness")
        if swappiness is not None and swappiness != -1:
            _refuse("memory.swappiness", "is not supported on cgroup v2")
        if memory.get("disableOOMKiller"):
            _refuse("memory.disableOOMKiller", "is not supported on cgroup v2")
        if memory.get("useHierarchy") is False:
            _refuse("memory.useHierarchy", "cannot be false on cgroup v2 (always hierarchical)")

    def _io(self, d: str, block: dict) -> None:
        bfq = os.path.exists(os.path.join(d, "io.bfq.weight"))
        if block.get("weight"):
            if bfq:            # BFQ's weight keeps v1's range [1, 1000]
                _set(d, "io.bfq.weight", block["weight"], "blockIO.weight")
            else:              # io.weight: [10, 1000] -> [1, 10000], runc's conversion
                _set(d, "io.weight", 1 + (block["weight"] - 10) * 9999 // 990,
                     "blockIO.weight")
        if block.get("leafWeight"):
            _refuse("blockIO.leafWeight", "is not supported on cgroup v2")
        for i, w in enumerate(block.get("weightDevice") or []):
            field = f"blockIO.weightDevice[{i}]"
            if w.get("leafWeight"):
                _refuse(field + ".leafWeight", "is not supported on cgroup v2")
            if w.get("weight"):
                if bfq:
                    _set(d, "io.bfq.weight", f"{_device_numbers(w)} {w['weight']}",
                         field + ".weight")
                else:
                    weight = 1 + (w["weight"] - 10) * 9999 // 990
                    _set(d, "io.weight", f"{_device_numbers(w)} {weight}", field + ".weight")
        for key, _v1, name in THROTTLES:
            for i, t in enumerate(block.get(key) or []):
                _set(d, "io.max", f"{_device_numbers(t)} {name}={t['rate']}",
                     f"blockIO.{key}[{i}]")


def _rdma_line(device: str, limits: dict) -> str:
    """rdma.max line: "mlx4_0 hca_handle=2 hca_object=2000" (max where a limit is unset)."""
    def value(v):
        return "max" if v is None else str(v)
    return (f"{device} hca_handle={value(limits.get('hcaHandles'))} "
            f"hca_object={value(limits.get('hcaObjects'))}")


def host_driver() -> Driver:
    """The driver for what this host mounts at /sys/fs/cgroup."""
    return V2() if is_v2() else V1()


def v2_root_of(directory: str) -> str:
    """The mount point of the cgroup2 filesystem that holds `directory`."""
    mounts = [m.mount_point for m in procfs.mountinfo() if m.fstype == "cgroup2"
              and (directory + "/").startswith(m.mount_point.rstrip("/") + "/")]
    return max(mounts, key=len) if mounts else V2_ROOT


def driver_for(paths: dict[str, str]) -> Driver:
    """The driver that made a container's directories: {"": dir} is v2."""
    return V2(v2_root_of(paths[""])) if "" in paths else V1()


# --- what the rest of labkit-runc calls -----------------------------------------------------
def create(paths: dict[str, str], resources: dict) -> list[str]:
    """mkdir the container's cgroup directories and apply its limits (Driver.create)."""
    return driver_for(paths).create(paths, resources)


def apply(paths: dict[str, str], resources: dict) -> None:
    """Write linux.resources into the cgroup files: at create, and at `update`.

    field                 v1 file                              v2 file
    memory.limit          memory.limit_in_bytes                memory.max
    memory.reservation    memory.soft_limit_in_bytes           memory.low
    memory.swap           memory.memsw.limit_in_bytes          memory.swap.max (swap - limit)
    memory.kernel         ignored, with a warning              ignored, with a warning
    memory.kernelTCP      memory.kmem.tcp.limit_in_bytes       refused
    memory.swappiness     memory.swappiness                    refused
    memory.disableOOMKiller memory.oom_control                 refused
    memory.useHierarchy   memory.use_hierarchy                 refused if false
    cpu.shares            cpu.shares                           cpu.weight (converted)
    cpu.quota, period     cpu.cfs_quota_us, cpu.cfs_period_us  cpu.max "quota period"
    cpu.burst             cpu.cfs_burst_us                     cpu.max.burst
    cpu.realtime*         cpu.rt_runtime_us, cpu.rt_period_us  refused
    cpu.idle              cpu.idle                             cpu.idle
    cpu.cpus, mems        cpuset.cpus, cpuset.mems             cpuset.cpus, cpuset.mems
    pids.limit            pids.max                             pids.max
    blockIO.weight        blkio.weight (blkio.bfq.weight)      io.bfq.weight or io.weight
    blockIO.leafWeight    blkio.leaf_weight                    refused
    blockIO.weightDevice  blkio.weight_device, leaf_weight_device  io.(bfq.)weight "M:m w"
    blockIO.throttle*     blkio.throttle.{read,write}_{bps,iops}_device  io.max "M:m rbps=…"
    hugepageLimits        hugetlb.<size>.limit_in_bytes        hugetlb.<size>.max
    network.classID       net_cls.classid                      refused
    network.priorities    net_prio.ifpriomap                   refused
    devices               devices.allow / devices.deny         an eBPF program (device_filter)
    rdma                  rdma.max                             rdma.max
    unified               refused                              each file written as given

    A field whose file does not exist on this host (a controller not mounted, a kernel
    built without the feature) is refused too, naming the field and the file."""
    driver_for(paths).apply(paths, resources or {})


def join(paths: dict[str, str], pid: int) -> None:
    # BEGIN SOLUTION chapter="02" hint="man 7 cgroups, 'Creating cgroups and moving processes'"
    # TODO: move process `pid` into the container's cgroup in every hierarchy
    # HINT: one write of the pid to <directory>/cgroup.procs each; _write() reports errors well
    for directory in paths.values():
        _write(directory, "cgroup.procs", str(pid))
    # END SOLUTION


def pids(paths: dict[str, str]) -> list[int]:
    """Every process in the container's cgroup (any one hierarchy lists them all)."""
    for name, directory in paths.items():
        if name.startswith("name=") and len(paths) > 1:
            continue
        try:
            return [int(p) for p in _read(directory, "cgroup.procs").split()]
        except FileNotFoundError:
            continue
    return []


def destroy(created: list[str]) -> None:
    """rmdir the directories `create` made, deepest first. A cgroup can be removed once it has
    no processes; a process that has just been killed may need a moment to leave: rmdir
    fails with EBUSY until then, so try again for up to a second. A directory already gone
    is fine; one that keeps a child we did not make (ENOTEMPTY) or stays busy is left."""
    # BEGIN SOLUTION chapter="02" hint="man 7 cgroups, 'Removing cgroups': rmdir(2) of a cgroup with no child cgroups and no processes"
    # TODO: os.rmdir each directory, the deepest (longest path) first
    # HINT: errno.EBUSY (16): wait 0.02 s and retry, 50 times at most; FileNotFoundError: done
    for d in sorted(created, key=len, reverse=True):
        for attempt in range(50):
            try:
                os.rmdir(d)
                break
            except FileNotFoundError:
                break
            except OSError as e:
                if e.errno == 16 and attempt < 49:      # EBUSY: tasks still leaving
                    time.sleep(0.02)
                    continue
                if e.errno in (16, 39):                   # still busy / a child we did not make
                    break
                raise
    # END SOLUTION


# --- the freezer: pause and resume ----------------------------------------------------------
def _freezer_dir(paths: dict[str, str]) -> str | None:
    if "" in paths:
        return paths[""]
    for name, directory in paths.items():
        if "freezer" in name.split(","):
            return directory
    return None


def is_frozen(paths: dict[str, str]) -> bool:
    d = _freezer_dir(paths)
    if d is None:
        return False
    try:
        if "" in paths:
            return _read(d, "cgroup.freeze") == "1"
        return _read(d, "freezer.state") in ("FROZEN", "FREEZING")
    except OSError:
        return False


def freeze(paths: dict[str, str], frozen: bool) -> None:
    """Stop (or let run again) every process of the cgroup at once: `pause` and `resume`.
    v1: write FROZEN/THAWED to freezer.state and wait until it reads back so (FREEZING
    means some task has not stopped yet). v2: write 1/0 to cgroup.freeze, then wait for
    cgroup.events to say "frozen 1" (or 0): the write only asks, the kernel freezes each
    task at its next safe point."""
    # BEGIN SOLUTION chapter="02" hint="kernel docs: admin-guide/cgroup-v2.rst 'cgroup.freeze', cgroup-v1/freezer-subsystem.rst"
    # TODO: find the directory (_freezer_dir), write the request, wait until the kernel is done
    # HINT: v2 ("" in paths): cgroup.freeze 1|0, then poll cgroup.events for "frozen 1"|"frozen 0"
    # HINT: v1: freezer.state FROZEN|THAWED, then poll freezer.state until it reads the same
    d = _freezer_dir(paths)
    if d is None:
        raise ContainerError("the container has no freezer cgroup (linux.cgroupsPath unset)")
    if "" in paths:
        _write(d, "cgroup.freeze", "1" if frozen else "0")
        want, events = ("frozen 1" if frozen else "frozen 0"), os.path.join(d, "cgroup.events")
        for _ in range(500):
            with open(events) as f:
                if want in f.read().splitlines():
                    return
            time.sleep(0.01)
        raise ContainerError(f"cgroup {d}: timed out waiting for {want!r}")
    _write(d, "freezer.state", "FROZEN" if frozen else "THAWED")
    for _ in range(500):
        state = _read(d, "freezer.state")
        if state == ("FROZEN" if frozen else "THAWED"):
            return
        if frozen and state == "THAWED":            # a task escaped freezing: ask again
            _write(d, "freezer.state", "FROZEN")
        time.sleep(0.01)
    raise ContainerError(f"cgroup {d}: timed out waiting for the freezer")
    # END SOLUTION


# runc's list (libcontainer/specconv AllowedDevices): mknod of anything, then the nodes
# of a minimal /dev, the ptys, and /dev/net/tun.
DEFAULT_ALLOWED_DEVICES = [
    {"allow": True, "type": "c", "access": "m"},
    {"allow": True, "type": "b", "access": "m"},
    *({"allow": True, "type": "c", "major": major, "minor": minor, "access": "rwm"}
      for major, minor in ((1, 3), (1, 8), (1, 7), (5, 0), (1, 5), (1, 9), (5, 1), (5, 2),
                           (10, 200))),
    {"allow": True, "type": "c", "major": 136, "access": "rwm"},
]


def _device_rule(rule: dict) -> str:
    """A linux.resources.devices entry as a v1 devices.allow/deny line: "c 1:3 rwm"."""
    kind = rule.get("type") or "a"
    if kind == "a":
        return "a"

    def num(v):
        return "*" if v is None or v < 0 else str(v)
    return f"{kind} {num(rule.get('major'))}:{num(rule.get('minor'))} {rule.get('access') or 'rwm'}"


# --- cgroup v2 device rules: an eBPF program ------------------------------------------------
# cgroup v2 has no devices controller. Instead, an eBPF program of type
# BPF_PROG_TYPE_CGROUP_DEVICE attached to the cgroup is run by the kernel at every open or
# mknod of a device node by a process in it; it returns 1 (allow) or 0 (EPERM). Its input,
# in register r1, is `struct bpf_cgroup_dev_ctx` (linux/bpf.h):
#
#     u32 access_type   (access << 16) | type    access: 1 mknod, 2 read, 4 write
#                                                type:   1 block, 2 char
#     u32 major, minor
#
# The rules of linux.resources.devices behave as v1's devices.allow/deny writes do: the LAST
# rule that matches decides. So the program checks them from the last to the first and
# returns at the first match; when none matches, the device is allowed (a v1 cgroup starts
# as "a *:* rwm"; Docker's first rule, deny all, is what turns that around).
BPF_PROG_LOAD, BPF_PROG_ATTACH = 5, 8
BPF_PROG_TYPE_CGROUP_DEVICE, BPF_CGROUP_DEVICE, BPF_F_ALLOW_MULTI = 15, 6, 2
_ACCESS = {"m": 1, "r": 2, "w": 4}
_DEV_TYPE = {"b": 1, "c": 2}


def _insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    """One eBPF instruction (struct bpf_insn): opcode, dst|src<<4, 16-bit offset, 32-bit imm."""
    return code.to_bytes(1, "little") + (dst | src << 4).to_bytes(1, "little") + \
        off.to_bytes(2, "little", signed=True) + imm.to_bytes(4, "little", signed=True)


LDX_W, AND_K, RSH_K, MOV_X, MOV_K, JNE_K, JEQ_K, EXIT = (0x61, 0x57, 0x77, 0xbf, 0xb7, 0x55,
                                                         0x15, 0x95)


def device_filter(rules: list[dict]) -> bytes:
    """The eBPF program (instructions, 8 bytes each) enforcing `rules`."""
    program = [_insn(LDX_W, 2, 1, 0), _insn(AND_K, 2, imm=0xffff),     # r2 = type
               _insn(LDX_W, 3, 1, 0), _insn(RSH_K, 3, imm=16),         # r3 = access
               _insn(LDX_W, 4, 1, 4),                                  # r4 = major
               _insn(LDX_W, 5, 1, 8)]                                  # r5 = minor
    for rule in reversed(rules):
        allow = bool(rule.get("allow"))
        skip_if = []           # instructions that jump past this rule when it does not match
        kind = rule.get("type") or "a"
        if kind != "a":
            skip_if.append([_insn(JNE_K, 2, imm=_DEV_TYPE[kind])])
            for reg, key in ((4, "major"), (5, "minor")):
                if rule.get(key) is not None and rule[key] >= 0:
                    skip_if.append([_insn(JNE_K, reg, imm=rule[key])])
        access = sum(_ACCESS[c] for c in set(rule.get("access") or "rwm"))
        if access != 7:
            # allow: every access asked for must be in the rule; deny: any one of them is
            mask = (~access & 7) if allow else access
            skip_if.append([_insn(MOV_X, 6, 3), _insn(AND_K, 6, imm=mask),
                            _insn(JNE_K if allow else JEQ_K, 6, imm=0)])
        decide = [_insn(MOV_K, 0, imm=int(allow)), _insn(EXIT)]
        length = sum(len(group) for group in skip_if) + len(decide)
        done = 0
        for group in skip_if:
            done += len(group)
            # the group's last instruction is the jump: past the rest of the block
            jump = group[-1][:2] + (length - done).to_bytes(2, "little", signed=True) + \
                group[-1][4:]
            program += group[:-1] + [jump]
        program += decide
        if not skip_if:
            # a rule for every device and access: whatever comes after it is never reached
            # (the kernel's verifier refuses unreachable instructions)
            return b"".join(program)
    program += [_insn(MOV_K, 0, imm=1), _insn(EXIT)]                     # no rule matched
    return b"".join(program)


def attach_device_filter(directory: str, rules: list[dict]) -> None:
    """Load `device_filter(rules)` and attach it to the cgroup `directory` (bpf(2))."""
    import ctypes
    from labkit import syscalls

    class ProgLoad(ctypes.Structure):             # union bpf_attr, BPF_PROG_LOAD's member
        _fields_ = [("prog_type", ctypes.c_uint32), ("insn_cnt", ctypes.c_uint32),
                    ("insns", ctypes.c_uint64), ("license", ctypes.c_uint64),
                    ("log_level", ctypes.c_uint32), ("log_size", ctypes.c_uint32),
                    ("log_buf", ctypes.c_uint64), ("kern_version", ctypes.c_uint32),
                    ("prog_flags", ctypes.c_uint32)]

    class ProgAttach(ctypes.Structure):           # union bpf_attr, BPF_PROG_ATTACH's member
        _fields_ = [("target_fd", ctypes.c_uint32), ("attach_bpf_fd", ctypes.c_uint32),
                    ("attach_type", ctypes.c_uint32), ("attach_flags", ctypes.c_uint32)]

    code = ctypes.create_string_buffer(device_filter(rules))
    license = ctypes.create_string_buffer(b"Apache")
    log = ctypes.create_string_buffer(65536)
    attr = ProgLoad(BPF_PROG_TYPE_CGROUP_DEVICE, len(code.raw) // 8, ctypes.addressof(code),
                    ctypes.addressof(license), 1, len(log), ctypes.addressof(log), 0, 0)
    try:
        prog = syscalls.bpf(BPF_PROG_LOAD, attr)
    except OSError as e:
        verifier = log.value.decode(errors="replace").strip().splitlines()[:3] or [""]
        raise ContainerError(f"linux.resources.devices: load the cgroup v2 device filter: "
                             f"{e.strerror} {verifier[0]}".strip()) from None
    cgroup = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        syscalls.bpf(BPF_PROG_ATTACH, ProgAttach(cgroup, prog, BPF_CGROUP_DEVICE,
                                                 BPF_F_ALLOW_MULTI))
    except OSError as e:
        raise ContainerError(f"linux.resources.devices: attach the device filter to "
                             f"{directory}: {e.strerror}") from None
    finally:
        os.close(cgroup)
        os.close(prog)            # the attachment keeps the program alive
