"""Control groups: put the container's processes in their own cgroup and apply its limits.

A cgroup is a directory in a cgroup filesystem; a process joins it by writing its pid to
`cgroup.procs`; limits are files next to it (`memory.limit_in_bytes`, `pids.max`, …).
Two generations exist (man 7 cgroups):

* v1: one mounted hierarchy per controller (/sys/fs/cgroup/memory, …/pids, …); a container's
  cgroup is one directory in EACH hierarchy, with the same relative path.
* v2: one unified tree (/sys/fs/cgroup is cgroup2); controllers are switched on for children
  by writing "+memory +pids" to the parent's `cgroup.subtree_control`.

This host is "hybrid": v1 hierarchies plus a cgroup2 mount at /sys/fs/cgroup/unified that
holds no controller we use; like runc we treat it as v1 and leave the cgroup2 part alone.

linux.cgroupsPath: "/docker/<id>" is relative to each hierarchy's root; a relative path is
relative to the runtime's own cgroup; systemd's "slice:prefix:name" form is mapped to
"/slice/prefix-name.scope" (we do not talk to systemd).
"""

from __future__ import annotations

import os
import time

from labkit import procfs
from labkit.runc.log import ContainerError

V2_ROOT = "/sys/fs/cgroup"


def is_v2() -> bool:
    return os.path.exists(os.path.join(V2_ROOT, "cgroup.controllers"))


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


def own_cgroups() -> dict[str, str]:
    """The runtime's own cgroup in each hierarchy: {"memory": "/a/b", "": "/" (v2)}."""
    result = {}
    with open("/proc/self/cgroup") as f:
        for line in f:
            _hid, controllers, path = line.rstrip("\n").split(":", 2)
            result[controllers] = path
    return result


def normalize(cgroups_path: str, container_id: str) -> str:
    if cgroups_path.count(":") == 2 and not cgroups_path.startswith("/"):
        slice_, prefix, name = cgroups_path.split(":")
        return "/" + (slice_ or "system.slice") + "/" + (f"{prefix}-{name or container_id}.scope")
    return cgroups_path


def paths_for(cgroups_path: str, container_id: str) -> dict[str, str]:
    """Where the container's cgroup directories are: {hierarchy name: directory}."""
    cgroups_path = normalize(cgroups_path, container_id)
    own = own_cgroups()
    if is_v2():
        base = cgroups_path if cgroups_path.startswith("/") else \
            os.path.join(own.get("", "/"), cgroups_path)
        return {"": os.path.normpath(V2_ROOT + "/" + base)}
    paths = {}
    for name, mountpoint in v1_hierarchies().items():
        base = cgroups_path if cgroups_path.startswith("/") else \
            os.path.join(own.get(name, "/"), cgroups_path)
        paths[name] = os.path.normpath(mountpoint + "/" + base)
    return paths


def _write(directory: str, filename: str, value: str) -> None:
    path = os.path.join(directory, filename)
    try:
        with open(path, "w") as f:
            f.write(value)
    except OSError as e:
        raise ContainerError(f"cgroup: write {value!r} to {path}: {e.strerror}") from None


def create(paths: dict[str, str], resources: dict) -> list[str]:
    """mkdir the cgroup directories (and missing parents), apply `linux.resources`.
    Returns the directories created, deepest last, so `destroy` can remove exactly those.
    If anything fails (a limit the kernel refuses, say), the directories made so far are
    removed before the error goes on: a failed create leaves no cgroup behind."""
    created: list[str] = []
    try:
        _create(paths, resources, created)
    except BaseException:
        destroy(created)
        raise
    return created


def _create(paths: dict[str, str], resources: dict, created: list[str]) -> None:
    for name, directory in paths.items():
        missing = []
        d = directory
        while not os.path.isdir(d):
            missing.append(d)
            d = os.path.dirname(d)
        for d in reversed(missing):
            os.mkdir(d)
            created.append(d)
            if "cpuset" in name.split(","):
                # a new v1 cpuset cgroup starts with NO cpus and mems: no task could join it
                # (ENOSPC). Inherit the parent's.
                for f in ("cpuset.cpus", "cpuset.mems"):
                    with open(os.path.join(os.path.dirname(d), f)) as src:
                        _write(d, f, src.read().strip())
    if is_v2():
        _enable_v2_controllers(paths[""])
    apply(paths, resources or {})


def _enable_v2_controllers(directory: str) -> None:
    """v2: a controller's files appear in a cgroup only once its parent delegates it."""
    chain = []
    d = directory
    while d != V2_ROOT and d.startswith(V2_ROOT):
        d = os.path.dirname(d)
        chain.append(d)
    for parent in reversed(chain):
        with open(os.path.join(parent, "cgroup.controllers")) as f:
            available = f.read().split()
        wanted = [c for c in ("cpu", "memory", "pids", "cpuset", "io") if c in available]
        for c in wanted:
            try:
                _write(parent, "cgroup.subtree_control", "+" + c)
            except ContainerError:
                pass    # e.g. the root of a delegated subtree that has processes: go on


def apply(paths: dict[str, str], resources: dict) -> None:
    """Write linux.resources (memory, pids, cpu, cpuset, devices) into the cgroup files."""
    memory = resources.get("memory") or {}
    pids = resources.get("pids") or {}
    cpu = resources.get("cpu") or {}
    if "" in paths:                                    # cgroup v2
        d = paths[""]
        if memory.get("limit") is not None:
            _write(d, "memory.max", "max" if memory["limit"] < 0 else str(memory["limit"]))
        if pids.get("limit") is not None:
            _write(d, "pids.max", "max" if pids["limit"] <= 0 else str(pids["limit"]))
        if cpu.get("quota") or cpu.get("period"):
            quota = cpu.get("quota") or -1
            _write(d, "cpu.max", f"{'max' if quota < 0 else quota} {cpu.get('period') or 100000}")
        if cpu.get("shares"):
            # the conversion runc and the kernel documentation use: [2, 262144] -> [1, 10000]
            weight = 1 + ((cpu["shares"] - 2) * 9999) // 262142
            _write(d, "cpu.weight", str(weight))
        return
    by_controller = {c: d for name, d in paths.items() for c in name.split(",")}
    if memory.get("limit") is not None and "memory" in by_controller:
        _write(by_controller["memory"], "memory.limit_in_bytes", str(memory["limit"]))
    if pids.get("limit") is not None and "pids" in by_controller:
        limit = "max" if pids["limit"] <= 0 else str(pids["limit"])
        _write(by_controller["pids"], "pids.max", limit)
    if "cpu" in by_controller:
        for key, filename in (("shares", "cpu.shares"), ("period", "cpu.cfs_period_us"),
                              ("quota", "cpu.cfs_quota_us")):
            if cpu.get(key):
                _write(by_controller["cpu"], filename, str(cpu[key]))
    if "cpuset" in by_controller:
        for key, filename in (("cpus", "cpuset.cpus"), ("mems", "cpuset.mems")):
            if cpu.get(key):
                _write(by_controller["cpuset"], filename, cpu[key])
    if resources.get("devices") and "devices" in by_controller:
        # The config's rules, then (like runc) the devices every container gets: without
        # them init could not even mknod /dev/full, nor a shell open /dev/pts/0.
        for rule in resources["devices"] + DEFAULT_ALLOWED_DEVICES:
            filename = "devices.allow" if rule.get("allow") else "devices.deny"
            _write(by_controller["devices"], filename, _device_rule(rule))


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
            with open(os.path.join(directory, "cgroup.procs")) as f:
                return [int(p) for p in f.read().split()]
        except FileNotFoundError:
            continue
    return []


def destroy(created: list[str]) -> None:
    """rmdir the directories `create` made, deepest first. A cgroup can be removed once it has
    no processes; a process that has just been killed may need a moment to leave."""
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
            with open(os.path.join(d, "cgroup.freeze")) as f:
                return f.read().strip() == "1"
        with open(os.path.join(d, "freezer.state")) as f:
            return f.read().strip() in ("FROZEN", "FREEZING")
    except OSError:
        return False


def freeze(paths: dict[str, str], frozen: bool) -> None:
    """Stop (or let run again) every process of the cgroup at once: `pause` and `resume`.
    v1: freezer.state FROZEN/THAWED; v2: cgroup.freeze 1/0. Freezing takes a moment: wait."""
    d = _freezer_dir(paths)
    if d is None:
        raise ContainerError("the container has no freezer cgroup (linux.cgroupsPath unset)")
    if "" in paths:
        _write(d, "cgroup.freeze", "1" if frozen else "0")
        want, events = ("frozen 1" if frozen else "frozen 0"), os.path.join(d, "cgroup.events")
        for _ in range(500):
            with open(events) as f:
                if want in f.read():
                    return
            time.sleep(0.01)
        raise ContainerError(f"cgroup {d}: timed out waiting for {want!r}")
    _write(d, "freezer.state", "FROZEN" if frozen else "THAWED")
    for _ in range(500):
        with open(os.path.join(d, "freezer.state")) as f:
            state = f.read().strip()
        if state == ("FROZEN" if frozen else "THAWED"):
            return
        if frozen and state == "THAWED":            # a task escaped freezing: ask again
            _write(d, "freezer.state", "FROZEN")
        time.sleep(0.01)
    raise ContainerError(f"cgroup {d}: timed out waiting for the freezer")
