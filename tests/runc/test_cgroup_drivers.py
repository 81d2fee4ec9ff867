"""labkit.runc.cgroups' two drivers, field by field.

Three kinds of hierarchy, each test saying which it runs on:

* the real v1 hierarchies of a cgroup v1 host (marked cgroup_v1: skipped on a v2 host);
* a REAL cgroup2 hierarchy: /sys/fs/cgroup on a v2 host, or on a hybrid v1 host like the
  development machine the cgroup2 mount at /sys/fs/cgroup/unified, which has the core files
  (cgroup.procs, cgroup.freeze, cgroup.events, subtree_control) but few controllers
  (hugetlb only, here). Skipped where the host has no cgroup2 mount at all;
* a temporary directory tree SHAPED like a cgroup2 hierarchy (plain files, no kernel behind
  them): it shows which file each linux.resources field is written to, with which value, on
  a host whose v2 hierarchy lacks those controllers. It proves the mapping, not the kernel.
"""

from __future__ import annotations

import os
import re
import subprocess
import uuid
from pathlib import Path

import pytest

from labkit import procfs
from labkit.runc import cgroups
from labkit.runc.log import ContainerError

pytestmark = pytest.mark.root


# --- a tree shaped like cgroup v2 (no kernel behind it) -------------------------------------
V2_FILES = ["cgroup.procs", "cgroup.freeze", "cgroup.events", "memory.max", "memory.low",
            "memory.swap.max", "cpu.weight", "cpu.max", "cpu.max.burst", "cpu.idle",
            "cpuset.cpus", "cpuset.mems", "pids.max", "io.weight", "io.max",
            "hugetlb.2MB.max", "rdma.max", "memory.high"]


@pytest.fixture
def fake_v2(tmp_path):
    """A directory tree shaped like /sys/fs/cgroup on v2, with the container's directory
    made in advance (mkdir in a plain directory would give no files)."""
    root = tmp_path / "cgroup"
    (root / "labkit" / "c1").mkdir(parents=True)
    for d in (root, root / "labkit"):
        (d / "cgroup.controllers").write_text("cpuset cpu io memory hugetlb pids rdma\n")
        (d / "cgroup.subtree_control").write_text("")
    for f in V2_FILES:
        (root / "labkit" / "c1" / f).write_text("")
    return cgroups.V2(str(root)), {"": str(root / "labkit" / "c1")}


def read(paths, name):
    return Path(paths[""], name).read_text()


def test_v2_every_applicable_field_goes_to_its_file(fake_v2):
    """[directory tree shaped like cgroup v2] the v2 names and units of each limit."""
    driver, paths = fake_v2
    driver.apply(paths, {
        "memory": {"limit": 64 << 20, "swap": 96 << 20, "reservation": 32 << 20,
                   "useHierarchy": True, "swappiness": -1},
        "cpu": {"shares": 1024, "quota": 50000, "period": 100000, "burst": 1000, "idle": 1,
                "cpus": "0", "mems": "0"},
        "pids": {"limit": 10},
        "blockIO": {"weight": 500,
                    "throttleReadBpsDevice": [{"major": 254, "minor": 0, "rate": 1048576}]},
        "hugepageLimits": [{"pageSize": "2MB", "limit": 4 << 20}],
        "rdma": {"mlx5_0": {"hcaHandles": 3}},
        "unified": {"memory.high": "50000000"},
    })
    assert read(paths, "memory.max") == str(64 << 20)
    assert read(paths, "memory.swap.max") == str(32 << 20)     # memory+swap - memory
    assert read(paths, "memory.low") == str(32 << 20)
    assert read(paths, "cpu.weight") == "39"                   # runc's shares -> weight
    assert read(paths, "cpu.max") == "50000 100000"
    assert read(paths, "cpu.max.burst") == "1000"
    assert read(paths, "cpu.idle") == "1"
    assert read(paths, "cpuset.cpus") == "0"
    assert read(paths, "pids.max") == "10"
    assert read(paths, "io.weight") == str(1 + (500 - 10) * 9999 // 990)
    assert read(paths, "io.max") == "254:0 rbps=1048576"
    assert read(paths, "hugetlb.2MB.max") == str(4 << 20)
    assert read(paths, "rdma.max") == "mlx5_0 hca_handle=3 hca_object=max"
    assert read(paths, "memory.high") == "50000000"


@pytest.mark.parametrize("resources, field", [
    ({"memory": {"kernelTCP": 1 << 20}}, "memory.kernelTCP is not supported on cgroup v2"),
    ({"memory": {"swappiness": 10}}, "memory.swappiness is not supported on cgroup v2"),
    ({"memory": {"disableOOMKiller": True}}, "memory.disableOOMKiller is not supported"),
    ({"memory": {"useHierarchy": False}}, "memory.useHierarchy cannot be false"),
    ({"memory": {"limit": 64 << 20, "swap": 32 << 20}}, "memory.swap"),
    ({"memory": {"swap": 32 << 20}}, "memory.swap cannot be set without memory.limit"),
    ({"cpu": {"realtimeRuntime": 1000}}, "cpu.realtimeRuntime is not supported on cgroup v2"),
    ({"cpu": {"realtimePeriod": 1000}}, "cpu.realtimePeriod is not supported on cgroup v2"),
    ({"network": {"classID": 7}}, "network is not supported on cgroup v2"),
    ({"blockIO": {"leafWeight": 10}}, "blockIO.leafWeight is not supported on cgroup v2"),
    ({"unified": {"../x": "1"}}, "unified['../x'] is not a cgroup file name"),
    ({"unified": {"memory.nonexistent": "1"}}, "unified['memory.nonexistent']: "),
])
def test_v2_refuses_a_field_it_cannot_apply_naming_it(fake_v2, resources, field):
    """[directory tree shaped like cgroup v2] refusals name the field."""
    driver, paths = fake_v2
    with pytest.raises(cgroups.Refused, match=re.escape("linux.resources." + field)):
        driver.apply(paths, resources)


def test_v2_enables_only_the_controllers_the_limits_need(tmp_path):
    """[directory tree shaped like cgroup v2] +pids only; a missing controller is refused."""
    root = tmp_path / "cg"
    (root / "a" / "c").mkdir(parents=True)
    for d in (root, root / "a"):
        (d / "cgroup.controllers").write_text("cpu memory pids\n")
        (d / "cgroup.subtree_control").write_text("")
    (root / "a" / "c" / "pids.max").write_text("")
    driver = cgroups.V2(str(root))
    driver.apply({"": str(root / "a" / "c")}, {"pids": {"limit": 5}})
    # a real subtree_control would list the controller; our plain file keeps the last write
    assert (root / "cgroup.subtree_control").read_text() == "+pids"
    assert (root / "a" / "cgroup.subtree_control").read_text() == "+pids"
    with pytest.raises(cgroups.Refused, match="the io controller is not available"):
        driver.apply({"": str(root / "a" / "c")}, {"blockIO": {"weight": 100}})


# --- a real cgroup2 hierarchy ---------------------------------------------------------------
def cgroup2_mount() -> str | None:
    for m in procfs.mountinfo():
        if m.fstype == "cgroup2":
            return m.mount_point
    return None


@pytest.fixture
def real_v2():
    """The V2 driver on this host's cgroup2 mount, and a top directory removed afterwards."""
    root = cgroup2_mount()
    if root is None:
        pytest.skip("this host mounts no cgroup2 hierarchy")
    driver = cgroups.V2(root)
    top = f"/labkit-test-{uuid.uuid4().hex[:8]}"
    yield driver, root, top
    left = sorted((d for d, _s, _f in os.walk(root + top)), key=len, reverse=True)
    for d in left:
        os.rmdir(d)


def test_v2_real_hierarchy_create_freeze_cgroupns_destroy(real_v2):
    """[real cgroup2: /sys/fs/cgroup on v2, /sys/fs/cgroup/unified on a hybrid v1 host]
    mkdir, join, freeze/thaw a live process (cgroup.events), a cgroup namespace rooted at
    the container's cgroup, and removal of exactly what create made."""
    driver, root, top = real_v2
    paths = {"": root + top + "/c1"}
    available = Path(root, "cgroup.controllers").read_text().split()
    resources = {}
    if "hugetlb" in available and Path("/sys/kernel/mm/hugepages/hugepages-2048kB").exists():
        resources["hugepageLimits"] = [{"pageSize": "2MB", "limit": 2 << 20}]
    created = driver.create(paths, resources)
    assert created == [root + top, root + top + "/c1"]
    if resources:
        assert "hugetlb" in Path(root + top, "cgroup.subtree_control").read_text().split()
        assert Path(paths[""], "hugetlb.2MB.max").read_text().strip() == str(2 << 20)
    else:       # nothing was needed: nothing was enabled
        assert Path(root + top, "cgroup.subtree_control").read_text().split() == []
    # a real process: joins, is frozen, thawed; in a new cgroup namespace its cgroup is "/"
    p = subprocess.Popen(["/bin/sh", "-c", "read x; cat /proc/self/cgroup"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        cgroups.join(paths, p.pid)
        assert cgroups.pids(paths) == [p.pid]
        cgroups.freeze(paths, True)
        assert cgroups.is_frozen(paths)
        assert "frozen 1" in Path(paths[""], "cgroup.events").read_text().splitlines()
        assert procfs.stat(p.pid).state in ("S", "D")      # frozen: asleep in the kernel
        cgroups.freeze(paths, False)
        assert not cgroups.is_frozen(paths)
        assert "frozen 0" in Path(paths[""], "cgroup.events").read_text().splitlines()
        out, _ = p.communicate("go\n", timeout=10)
    finally:
        if p.poll() is None:
            p.kill()
        p.wait()
    assert f"0::{top}/c1" in out.splitlines()
    q = subprocess.run(["unshare", "--cgroup", "sh", "-c", "cat /proc/self/cgroup"],
                       capture_output=True, text=True, preexec_fn=lambda: cgroups.join(
                           paths, os.getpid()))
    assert "0::/" in q.stdout.splitlines(), q.stdout
    # a controller this hierarchy lacks is refused by name, and create leaves nothing
    missing = next(c for c in ("memory", "pids", "cpu") if c not in available) \
        if set(("memory", "pids", "cpu")) - set(available) else None
    if missing:
        bad = {"memory": {"memory": {"limit": 1 << 30}}, "pids": {"pids": {"limit": 5}},
               "cpu": {"cpu": {"shares": 512}}}[missing]
        with pytest.raises(cgroups.Refused, match=f"the {missing} controller is not available"):
            driver.create({"": root + top + "/c2"}, bad)
        assert not os.path.exists(root + top + "/c2")
    cgroups.destroy(created)
    assert not os.path.exists(root + top)


def test_v2_device_rules_are_an_ebpf_program_the_kernel_enforces(real_v2):
    """[real cgroup2: /sys/fs/cgroup on v2, /sys/fs/cgroup/unified on a hybrid v1 host]
    linux.resources.devices as Docker sends them (deny all, then allow some), plus the
    runtime's defaults (/dev/null …): /dev/kmsg (char 1:11) allowed for reading only."""
    driver, root, top = real_v2
    paths = {"": root + top + "/dev"}
    rules = [{"allow": False, "access": "rwm"},
             {"allow": True, "type": "c", "major": 1, "minor": 11, "access": "r"}]
    created = driver.create(paths, {"devices": rules})
    try:
        probe = ("echo hi > /dev/null && echo null-ok; : < /dev/kmsg && echo kmsg-read-ok; "
                 "(: > /dev/kmsg) 2>/dev/null || echo kmsg-write-denied")
        p = subprocess.run(["/bin/sh", "-c", probe], capture_output=True, text=True,
                           preexec_fn=lambda: cgroups.join(paths, os.getpid()))
        assert p.stdout.split() == ["null-ok", "kmsg-read-ok", "kmsg-write-denied"], p.stderr
        # and outside that cgroup, the same probe may write /dev/kmsg's open: the rule is
        # the cgroup's, not the device's
        q = subprocess.run(["/bin/sh", "-c", "(: > /dev/kmsg) && echo kmsg-write-ok"],
                           capture_output=True, text=True)
        assert q.stdout.split() == ["kmsg-write-ok"]
    finally:
        cgroups.destroy(created)


def test_device_filter_program_shape():
    """The program: 6 instructions read the context; a rule for everything ends it (the
    verifier refuses unreachable code); otherwise a final "allow" follows the rules."""
    deny_all = cgroups.device_filter([{"allow": False, "access": "rwm"}])
    assert len(deny_all) == 8 * (6 + 2)
    one = cgroups.device_filter([{"allow": True, "type": "c", "major": 1, "minor": 3,
                                  "access": "rwm"}])
    assert len(one) == 8 * (6 + 3 + 2 + 2)       # type, major, minor checks; decide; default


def test_v2_under_systemd_containers_go_in_the_delegated_subtree(real_v2):
    """[real cgroup2] under systemd, an absolute cgroupsPath is placed below the nearest
    cgroup at or above the runtime's own that systemd delegated (xattr trusted.delegate=1,
    what Delegate=yes sets); without one, below the root, with a warning. Without systemd,
    below the root."""
    _driver, root, top = real_v2
    service = root + top + "/labkit.service"
    os.makedirs(service + "/supervisor")
    os.setxattr(service, "trusted.delegate", b"1")
    own = top + "/labkit.service/supervisor"
    under = cgroups.V2(root, systemd=True, own=own)
    assert under.paths_for("/labkit/c1", "c1") == {"": service + "/labkit/c1"}
    assert cgroups.V2(root, systemd=False, own=own).paths_for("/labkit/c1", "c1") == \
        {"": root + "/labkit/c1"}
    alone = cgroups.V2(root, systemd=True, own=top)          # nothing delegated above it
    assert alone.paths_for("/labkit/c1", "c1") == {"": root + "/labkit/c1"}


def test_v2_under_systemd_controllers_are_enabled_only_inside_the_delegated_cgroup(real_v2):
    """[real cgroup2] the cgroups above the delegated one are systemd's: the driver writes
    cgroup.subtree_control from the delegated cgroup down, never above it. A controller that
    systemd did not make available there is refused, naming the delegated cgroup; once it is
    (here the test plays systemd, enabling it in the parent), the container gets its limit."""
    _driver, root, top = real_v2
    if "hugetlb" not in Path(root, "cgroup.controllers").read_text().split() \
            or not Path("/sys/kernel/mm/hugepages/hugepages-2048kB").exists():
        pytest.skip("this cgroup2 mount has no hugetlb controller (the one this host's has)")
    service = root + top + "/labkit.service"
    os.makedirs(service + "/supervisor")
    os.setxattr(service, "trusted.delegate", b"1")
    driver = cgroups.V2(root, systemd=True, own=top + "/labkit.service/supervisor")
    paths = driver.paths_for("/labkit/c1", "c1")
    assert paths == {"": service + "/labkit/c1"}
    limits = {"hugepageLimits": [{"pageSize": "2MB", "limit": 2 << 20}]}
    with pytest.raises(ContainerError, match=f"hugetlb controller is not available in {service}"):
        driver.create(paths, limits)
    assert Path(root + top, "cgroup.subtree_control").read_text().split() == []
    Path(root + top, "cgroup.subtree_control").write_text("+hugetlb")     # systemd's part
    created = driver.create(paths, limits)
    assert "hugetlb" in Path(service, "cgroup.subtree_control").read_text().split()
    assert Path(paths[""], "hugetlb.2MB.max").read_text().strip() == str(2 << 20)
    cgroups.destroy(created)


@pytest.mark.cgroup_v2
def test_v2_host_memory_and_pids_limits(real_v2):
    """[real cgroup v2 host] memory.max and pids.max, read back from the kernel."""
    driver, root, top = real_v2
    paths = {"": root + top + "/c"}
    created = driver.create(paths, {"memory": {"limit": 64 << 20}, "pids": {"limit": 10}})
    try:
        assert Path(paths[""], "memory.max").read_text().strip() == str(64 << 20)
        assert Path(paths[""], "pids.max").read_text().strip() == "10"
        controls = Path(root + top, "cgroup.subtree_control").read_text().split()
        assert set(controls) == {"memory", "pids"}
    finally:
        cgroups.destroy(created)


# --- the real v1 hierarchies ----------------------------------------------------------------
@pytest.fixture
def real_v1():
    driver = cgroups.V1()
    top = f"/labkit-test-{uuid.uuid4().hex[:8]}"
    made: list[str] = []
    yield driver, top, made
    cgroups.destroy(made)
    for d in cgroups.V1().paths_for(top, "").values():
        assert not os.path.exists(d), d


def block_device() -> str:
    """major:minor of a real disk (throttling needs a block device that exists)."""
    for dev in sorted(Path("/sys/block").iterdir()):
        if not dev.name.startswith(("loop", "ram", "zram")):
            return (dev / "dev").read_text().strip()
    return "7:0"


@pytest.mark.cgroup_v1
def test_v1_every_applicable_field_goes_to_its_file(real_v1):
    """[real cgroup v1 hierarchies] each field read back from the kernel's file."""
    driver, top, made = real_v1
    paths = driver.paths_for(top + "/c", "c")
    by = {c: d for name, d in paths.items() for c in name.split(",")}
    major, minor = map(int, block_device().split(":"))
    memory = {"limit": 64 << 20, "reservation": 32 << 20, "swappiness": 10,
              "disableOOMKiller": True, "useHierarchy": True}
    if os.path.exists(by["memory"].rsplit("/", 2)[0] + "/memory.memsw.limit_in_bytes"):
        memory["swap"] = 128 << 20
    if os.path.exists(by["memory"].rsplit("/", 2)[0] + "/memory.kmem.tcp.limit_in_bytes"):
        memory["kernelTCP"] = 16 << 20
    resources = {
        "memory": memory,
        "cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": "0", "mems": "0"},
        "pids": {"limit": 10},
        "blockIO": {"throttleReadBpsDevice": [{"major": major, "minor": minor,
                                               "rate": 1048576}],
                    "throttleWriteIOPSDevice": [{"major": major, "minor": minor, "rate": 100}]},
    }
    made += driver.create(paths, resources)

    def r(controller, name):
        return Path(by[controller], name).read_text()
    assert r("memory", "memory.limit_in_bytes").strip() == str(64 << 20)
    assert r("memory", "memory.soft_limit_in_bytes").strip() == str(32 << 20)
    assert r("memory", "memory.swappiness").strip() == "10"
    assert "oom_kill_disable 1" in r("memory", "memory.oom_control")
    if "swap" in memory:
        assert r("memory", "memory.memsw.limit_in_bytes").strip() == str(128 << 20)
    if "kernelTCP" in memory:
        assert r("memory", "memory.kmem.tcp.limit_in_bytes").strip() == str(16 << 20)
    assert r("cpu", "cpu.shares").strip() == "512"
    assert r("cpu", "cpu.cfs_quota_us").strip() == "50000"
    assert r("cpuset", "cpuset.cpus").strip() == "0"
    assert r("pids", "pids.max").strip() == "10"
    assert f"{major}:{minor} 1048576" in r("blkio", "blkio.throttle.read_bps_device")
    assert f"{major}:{minor} 100" in r("blkio", "blkio.throttle.write_iops_device")
    # update: lowering memory+swap below the old limit works in the right order
    if "swap" in memory:
        driver.apply(paths, {"memory": {"limit": 16 << 20, "swap": 32 << 20}})
        assert r("memory", "memory.limit_in_bytes").strip() == str(16 << 20)
        driver.apply(paths, {"memory": {"limit": 256 << 20, "swap": 512 << 20}})
        assert r("memory", "memory.memsw.limit_in_bytes").strip() == str(512 << 20)


@pytest.mark.cgroup_v1
def test_v1_refuses_what_this_host_cannot_apply_and_leaves_nothing(real_v1):
    """[real cgroup v1 hierarchies] unified is v2's; a controller that is not mounted as v1
    (net_cls, hugetlb on the development host) is refused by name; create made nothing."""
    driver, top, made = real_v1
    hierarchies = {c for name in cgroups.v1_hierarchies() for c in name.split(",")}
    cases = [({"unified": {"memory.high": "1"}}, "unified is a cgroup v2 map")]
    if "net_cls" not in hierarchies:
        cases.append(({"network": {"classID": 7}}, "network.classID needs the net_cls"))
    if "hugetlb" not in hierarchies:
        cases.append(({"hugepageLimits": [{"pageSize": "2MB", "limit": 0}]},
                      r"hugepageLimits\[0\] needs the hugetlb"))
    if "rdma" not in hierarchies:
        cases.append(({"rdma": {"mlx5_0": {"hcaHandles": 1}}}, "rdma needs the rdma"))
    for resources, message in cases:
        with pytest.raises(cgroups.Refused, match="linux.resources." + message):
            driver.create(driver.paths_for(top + "/c", "c"), resources)
        for d in driver.paths_for(top, "").values():
            assert not os.path.exists(d), (resources, d)
    # a value the kernel refuses is an error naming the field, and also leaves nothing
    with pytest.raises(ContainerError, match="linux.resources.pids.limit: cgroup: write"):
        driver.create(driver.paths_for(top + "/c", "c"), {"pids": {"limit": 2**70}})
    for d in driver.paths_for(top, "").values():
        assert not os.path.exists(d), d


def test_kernel_memory_is_ignored_with_a_warning(fake_v2, capsys):
    """[directory tree shaped like cgroup v2] memory.kernel: a warning, no file written."""
    driver, paths = fake_v2
    driver.apply(paths, {"memory": {"kernel": 1 << 20}})
    assert "memory.kernel is ignored" in capsys.readouterr().err


def test_the_host_driver_matches_what_is_mounted():
    """is_v2 decides the driver; the paths it gives are under the mounted hierarchies."""
    driver = cgroups.host_driver()
    paths = cgroups.paths_for("/labkit/x", "x")
    if cgroups.is_v2():
        assert isinstance(driver, cgroups.V2) and list(paths) == [""]
    else:
        assert isinstance(driver, cgroups.V1)
        assert set(paths) == set(cgroups.v1_hierarchies())
        assert all(d.endswith("/labkit/x") for d in paths.values())
