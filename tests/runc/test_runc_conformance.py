"""Conformance details found by the OCI runtime-tools validation suite (issue 9), as contract
tests: the base config, one field changed, run against labkit-runc, runc and crun.

Where runc 1.1 differs from the runtime spec (and labkit-runc follows the spec, as crun
does), the test skips runc and says why; labkit/runc/__init__.py lists these differences.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from labkit import procfs, syscalls as sc
from support import cgroup_dirs
from test_runc_contract import created, sh, wait_for

pytestmark = pytest.mark.root


def with_caps(spec: dict, *caps: str) -> None:
    for key in ("bounding", "effective", "permitted"):
        spec["process"]["capabilities"][key] = sorted(set(spec["process"]["capabilities"][key])
                                                      | set(caps))


def mounts_under(path: Path) -> list[str]:
    """Mount points at or below `path` in the host's (our) mount table."""
    prefix = str(path.resolve())
    return [m.mount_point for m in procfs.mountinfo()
            if m.mount_point == prefix or m.mount_point.startswith(prefix + "/")]


# --- linux.rootfsPropagation -----------------------------------------------------------------
# The probe, as runtime-tools' runtimetest does it: bind the root elsewhere (/t), then bind a
# directory onto /m. The root's propagation decides whether /t/m shows that second mount.
PROPAGATION_PROBE = ("mkdir -p /t /m /s && touch /s/f && mount -o rbind / /t || "
                     "{ echo bind-refused; exit 0; }; mount -o bind /s /m && "
                     "if [ -e /t/m/f ]; then echo exposed; else echo hidden; fi")


@pytest.mark.parametrize("propagation, expected", [
    ("shared", "exposed"), ("rshared", "exposed"), ("private", "hidden"),
    ("slave", "hidden"), ("unbindable", "bind-refused")])
def test_rootfs_propagation(rt, propagation, expected):
    if rt.name == "runc" and "shared" in propagation:
        pytest.skip("runc 1.1 accepts a shared root but leaves it private (runtime-tools' "
                    "linux_rootfs_propagation fails for it too)")
    if rt.name == "runc" and propagation == "unbindable":
        pytest.skip("runc 1.1 makes the whole tree unbindable before it binds the rootfs "
                    "onto itself, and that bind fails: EINVAL")

    def edit(spec, _bundle):
        spec["linux"]["rootfsPropagation"] = propagation
        with_caps(spec, "CAP_SYS_ADMIN")
    code, out, err = rt.run(sh(PROPAGATION_PROBE), edit)
    assert code == 0, err
    assert out.split() == [expected]


def test_shared_root_does_not_share_with_the_host(rt):
    marker = f"lkshared{os.getpid()}"

    def edit(spec, _bundle):
        spec["linux"]["rootfsPropagation"] = "rshared"
        with_caps(spec, "CAP_SYS_ADMIN")
    cid, out, _ = created(rt, sh(f"mkdir -p /mnt/x && mount -t tmpfs {marker} /mnt/x "
                                 "&& echo mounted; sleep 30"), edit)
    rt.api.start(cid)
    wait_for(lambda: "mounted" in out.read_text())
    assert marker not in Path("/proc/self/mountinfo").read_text()


# --- namespaces ------------------------------------------------------------------------------
def test_hostname_in_a_joined_uts_namespace(rt):
    """A uts namespace joined by path is private enough for a hostname (runc's check: the
    namespace is listed); the host's name stays."""
    holder, _, holder_pid = created(rt, sh("sleep 30"), hostname="holder")
    host_name = os.uname().nodename

    def edit(spec, _bundle):
        for ns in spec["linux"]["namespaces"]:
            if ns["type"] == "uts":
                ns["path"] = f"/proc/{holder_pid}/ns/uts"
    code, out, err = rt.run(["hostname"], edit, hostname="joined-name")
    assert code == 0, err
    assert out.strip() == "joined-name"
    assert os.uname().nodename == host_name


def test_hostname_in_the_hosts_uts_namespace_is_refused(rt):
    if rt.name != "labkit-runc":
        pytest.skip(f"{rt.name} only checks that a uts namespace is listed: joining the "
                    "runtime's own would rename this host")

    def edit(spec, _bundle):
        for ns in spec["linux"]["namespaces"]:
            if ns["type"] == "uts":
                ns["path"] = "/proc/self/ns/uts"      # resolved by the runtime: its own
    code, _, _ = rt.run(["hostname"], edit, hostname="must-not-happen")
    assert code != 0
    assert "unable to set hostname without a private UTS namespace" in rt.last_error()
    assert os.uname().nodename != "must-not-happen"


def no_mount_namespace(spec, bundle):
    spec["linux"]["namespaces"] = [ns for ns in spec["linux"]["namespaces"]
                                   if ns["type"] != "mount"]
    spec["linux"]["maskedPaths"] = []
    spec["linux"]["readonlyPaths"] = []
    spec["mounts"] = [m for m in spec["mounts"] if m["destination"] == "/proc"]
    (bundle / "rootfs" / "in-rootfs").write_text("")


def test_no_mount_namespace_runs_in_the_rootfs(rt):
    """No mount namespace listed: the container shares the runtime's, and still runs in its
    root filesystem (chroot). labkit-runc detaches what it mounted there at delete; runc 1.1
    leaves its mounts on the host."""
    cid, out, pid = created(rt, sh("ls /in-rootfs; ls /proc/1/ns/mnt"), no_mount_namespace)
    bundle = out.parent
    try:
        if rt.name != "crun":      # crun runs in v1only's mount namespace (a hybrid host)
            assert os.readlink(f"/proc/{pid}/ns/mnt") == os.readlink("/proc/self/ns/mnt")
        rt.api.start(cid)
        wait_for(lambda: rt.api.state(cid)["status"] == "stopped")
        assert out.read_text().split() == ["/in-rootfs", "/proc/1/ns/mnt"]
        rt.api.delete(cid)
        if rt.name == "labkit-runc":
            assert mounts_under(bundle) == []
    finally:
        for _ in range(8):                   # what a runtime left on the host, deepest first
            left = mounts_under(bundle)
            if not left:
                break
            for m in sorted(left, key=len, reverse=True):
                try:
                    sc.umount2(m, sc.MNT_DETACH)
                except OSError:
                    pass


def test_masked_paths_without_a_mount_namespace_are_refused(rt):
    if rt.name == "crun":
        pytest.skip("crun 1.8 accepts masked paths without a mount namespace of its own")
    def edit(spec, bundle):
        no_mount_namespace(spec, bundle)
        spec["linux"]["maskedPaths"] = ["/proc/kcore"]
    bundle = rt.bundle(["true"], edit)
    cid = rt.new_id()
    p = rt.cli("create", "--bundle", str(bundle), cid)
    assert p.returncode != 0
    assert "unable to restrict sys entries without a private MNT namespace" in rt.last_error()
    assert mounts_under(bundle) == []


def test_loopback_is_up_in_a_new_network_namespace(rt):
    def edit(spec, _bundle):
        with_caps(spec, "CAP_NET_RAW")
    code, out, err = rt.run(sh("ping -c 1 -W 5 127.0.0.1 >/dev/null && echo reachable"), edit)
    assert code == 0, out + err
    assert out.strip() == "reachable"


# --- hooks -----------------------------------------------------------------------------------
def recording_hook(bundle: Path, name: str, status: int = 0) -> dict:
    """A hook that saves its stdin (the state) to <bundle>/<name>.json, then exits `status`."""
    script = bundle / f"{name}.sh"
    script.write_text(f"#!/bin/sh\ncat > {bundle}/{name}.json\nexit {status}\n")
    script.chmod(0o755)
    return {"path": str(script)}


def test_hook_states(rt):
    """prestart sees "created" (runtime-spec 1.0's lifecycle: it runs for `start`), poststart
    "running" even when the program has exited already, poststop a status at all."""
    if rt.name == "runc":
        pytest.skip('runc 1.1 passes "creating" to prestart hooks and runs poststart at create')

    def edit(spec, bundle):
        spec["hooks"] = {name: [recording_hook(bundle, name)]
                         for name in ("prestart", "poststart", "poststop")}
    cid, out, pid = created(rt, ["true"], edit)
    bundle = out.parent
    assert json.loads((bundle / "prestart.json").read_text())["status"] == "created"
    rt.api.start(cid)
    wait_for(lambda: (bundle / "poststart.json").exists()
             and (bundle / "poststart.json").read_text())
    poststart = json.loads((bundle / "poststart.json").read_text())
    assert poststart["status"] == "running" and poststart["pid"] == pid
    wait_for(lambda: rt.api.state(cid)["status"] == "stopped")
    rt.api.delete(cid)
    wait_for(lambda: (bundle / "poststop.json").exists())
    assert json.loads((bundle / "poststop.json").read_text())["status"]


def poststart_echo(line: str):
    """An edit: a poststart hook appending `line` to the rootfs's /output, as runtime-tools'
    poststart validation program does (its container appends another line first)."""
    def edit(spec, bundle):
        rootfs = bundle / "rootfs"
        spec["hooks"] = {"poststart": [{"path": str(rootfs / "bin" / "sh"),
                                        "args": ["sh", "-c", f"echo {line} >> {rootfs}/output"]}]}
    return edit


def count_for_cpu(seconds: float) -> int:
    """How far busybox sh counts (`i=$((i + 1))` in a while loop) in about `seconds` of CPU
    on this machine: measured, since a class VM under software emulation is 5-8 times
    slower than the lab's host, where 20000 takes ~30 ms."""
    import resource
    busybox = shutil.which("busybox") or "/bin/busybox"
    probe = 2000
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([busybox, "sh", "-c", f"i=0; while [ $i -lt {probe} ]; do i=$((i + 1)); done"],
                   check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    used = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return max(500, int(probe * seconds / max(used, 1e-4)))


def test_poststart_hooks_run_after_the_program_has_run(rt):
    """runtime-tools' poststart program: the container appends "process called" to /output,
    its poststart hook "post-start called", and the validation wants them in that order. A
    hook started as soon as execve begins races with the program (about one run in three on
    a busy machine): labkit-runc lets the program have its first go (start._first_go), here
    until it has exited. Here the program counts to 20000 first (~30 ms of CPU on the lab's
    machine, a third of the 0.1 s it may use before the hooks run anyway; measured, as a VM
    under emulation counts slower), so that a runtime that does not wait loses the race every
    time, not once in a while: without _first_go this test fails, where the validation's own
    program failed one run in three to twelve."""
    if rt.name == "runc":
        pytest.skip("runc 1.1 runs poststart hooks at the end of create")
    if rt.name == "crun":
        pytest.skip("crun runs poststart hooks as soon as execve begins: the order is a race")
    program = sh(f"i=0; while [ $i -lt {count_for_cpu(0.03)} ]; do i=$((i + 1)); done; "
                 "echo process called >> /output")
    for _ in range(3):
        cid, out, _ = created(rt, program, poststart_echo("post-start called"))
        rt.api.start(cid)                         # returns after the hooks ran
        output = out.parent / "rootfs" / "output"
        assert output.read_text() == "process called\npost-start called\n"
        rt.api.delete(cid, force=True)


def test_poststart_hooks_do_not_wait_for_a_program_that_only_computes(rt):
    """A program that neither waits nor ends (a busy loop from its first instruction) has had
    its first go after 0.1 s of its CPU time (start.FIRST_GO_CPU_TICKS): `start` returns, the
    hook has run, the program still runs."""
    if rt.name == "runc":
        pytest.skip("runc 1.1 runs poststart hooks at the end of create")
    cid, out, _ = created(rt, sh("while :; do :; done"), poststart_echo("hook"))
    p = rt.cli("start", cid, timeout=30)
    assert p.returncode == 0, p.stderr
    assert (out.parent / "rootfs" / "output").read_text() == "hook\n"
    assert rt.api.state(cid)["status"] == "running"
    rt.api.delete(cid, force=True)


def test_failing_poststart_hook_warns_and_goes_on(rt):
    if rt.name == "runc":
        pytest.skip("runc 1.1 fails `start` (and kills the container) on a failing poststart "
                    "hook; the spec says: warn and go on")

    def edit(spec, bundle):
        spec["hooks"] = {"poststart": [recording_hook(bundle, "first", 1),
                                       recording_hook(bundle, "second")]}
    cid, out, _ = created(rt, sh("echo ran; sleep 30"), edit)
    p = rt.cli("start", cid)
    assert p.returncode == 0, p.stderr
    bundle = out.parent
    assert (bundle / "second.json").exists()                  # the next hook still ran
    wait_for(lambda: out.read_text() == "ran\n")
    assert rt.api.state(cid)["status"] == "running"


def test_failing_poststop_hook_does_not_stop_the_next_ones(rt):
    if rt.name == "runc":
        pytest.skip("runc 1.1 stops at the first failing poststop hook")

    def edit(spec, bundle):
        spec["hooks"] = {"poststop": [recording_hook(bundle, "first", 1),
                                      recording_hook(bundle, "second")]}
    cid, out, _ = created(rt, ["true"], edit)
    rt.api.start(cid)
    wait_for(lambda: rt.api.state(cid)["status"] == "stopped")
    rt.cli("delete", cid)
    bundle = out.parent
    assert (bundle / "first.json").exists() and (bundle / "second.json").exists()
    assert not os.path.exists(os.path.join(rt.root, cid))


# --- capabilities ----------------------------------------------------------------------------
def test_runc_spec_bundle_runs(rt, tmp_path):
    """The first thing every runc tutorial does: `runc spec`, then run it. Its ambient
    capabilities are not inheritable, so the kernel refuses to raise them: a warning each,
    and the container runs without them (as runc does)."""
    runc = shutil.which("runc")
    if runc is None:
        pytest.skip("runc is not installed: no `runc spec` to take the bundle from")
    bundle = rt.bundle(["true"])
    (bundle / "config.json").unlink()
    subprocess.run([runc, "spec"], cwd=bundle, check=True)
    spec = json.loads((bundle / "config.json").read_text())
    assert spec["process"]["capabilities"]["ambient"]
    assert "inheritable" not in spec["process"]["capabilities"]
    spec["process"].update(terminal=False, args=["sh", "-c", "grep CapAmb /proc/self/status"])
    (bundle / "config.json").write_text(json.dumps(spec))
    cid = rt.new_id()
    p = rt.cli("run", "--bundle", str(bundle), cid)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["CapAmb:", "0000000000000000"]


def test_checkpoint_restore_capability(rt):
    """Capability 40 (Linux 5.9): known to this kernel (cap_last_cap), so granted quietly."""
    if int(Path("/proc/sys/kernel/cap_last_cap").read_text()) < 40:
        pytest.skip("this kernel does not know CAP_CHECKPOINT_RESTORE")

    def edit(spec, _bundle):
        with_caps(spec, "CAP_CHECKPOINT_RESTORE")
    code, out, err = rt.run(sh("grep CapEff /proc/self/status"), edit)
    assert code == 0, err
    assert int(out.split()[1], 16) & (1 << 40)
    assert "not known" not in err


def test_unknown_capability_is_refused(rt):
    if rt.name != "labkit-runc":
        pytest.skip(f"{rt.name} warns about an unknown capability name and runs without it; "
                    "the spec wants an error")

    def edit(spec, _bundle):
        with_caps(spec, "CAP_TEST")
    code, _, _ = rt.run(["true"], edit)
    assert code != 0
    assert "unknown capability 'CAP_TEST'" in rt.last_error()


# --- cgroups ---------------------------------------------------------------------------------
def test_failed_create_leaves_no_cgroup(rt):
    """A limit the kernel refuses (pids.max above 2^63) fails create: every cgroup directory
    made for the container goes too. (runc and crun refuse the number before making any.)"""
    cid = rt.new_id()
    cgroups_path = rt.cgroup_path(cid)

    def edit(spec, _bundle):
        spec["linux"]["cgroupsPath"] = cgroups_path
        spec["linux"]["resources"] = {"pids": {"limit": 1180591620717411303424}}
    bundle = rt.bundle(["true"], edit)
    p = rt.cli("create", "--bundle", str(bundle), cid)
    assert p.returncode != 0
    parent = cgroups_path.rsplit("/", 1)[0]
    dirs = cgroup_dirs(parent, every_cgroup2=True)      # the hierarchies this host has
    assert dirs
    left = [str(d) for d in dirs if d.exists()]
    assert left == []
