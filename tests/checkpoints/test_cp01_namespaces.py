"""Checkpoint cp01 -- chapter 01, processes and namespaces (labkit/namespaces.py).

Graded with `labkit grade cp01`. The first group tests one exercise each, inside namespaces
made by the checkpoint's own helper (conftest.py); the second runs the student's whole
run_isolated() and checks, from outside, what the kernel did. Every test reads the truth from
the kernel: /proc/<pid>/ns/* links, /proc/self/mountinfo, the interface list.
"""

from __future__ import annotations

import os
import re
import socket
import tempfile
from pathlib import Path

import pytest

from labkit import procfs, syscalls
from labkit.course.grading import checkpoint

pytestmark = pytest.mark.root

HOST = socket.gethostname()
NS_FILES = {"uts": "uts", "pid": "pid", "mount": "mnt", "network": "net", "ipc": "ipc"}
ID = re.compile(r"^[a-z]+:\[\d+\]$")


def host_ns(name: str) -> str:
    return os.readlink(f"/proc/self/ns/{name}")


def numeric(directory: str) -> list[str]:
    return sorted(entry for entry in os.listdir(directory) if entry.isdigit())


def mount_points() -> set[str]:
    """The mount points of the caller's mount namespace (field 5 of mountinfo, man 5 proc)."""
    return {m.mount_point for m in procfs.mountinfo()}


@pytest.fixture
def scratch():
    """An empty directory under /tmp, removed afterwards."""
    path = tempfile.mkdtemp(prefix="lk-cp01-", dir="/tmp")
    try:
        yield path
    finally:
        if os.path.ismount(path):       # a broken exercise leaked a mount onto the host
            syscalls.umount2(path, syscalls.MNT_DETACH)
        for entry in os.listdir(path):
            os.rmdir(os.path.join(path, entry))
        os.rmdir(path)


@pytest.fixture
def shared_mount(scratch):
    """A tmpfs on the host marked MS_SHARED, with an empty directory `inner` in it.

    A mount namespace copied from it keeps the copy in the same peer group: a mount made on
    `inner` in the copy shows up here too -- unless the copy was made private first.
    """
    syscalls.mount("tmpfs", scratch, "tmpfs", syscalls.MS_NOSUID | syscalls.MS_NODEV, "size=1m")
    try:
        syscalls.mount(None, scratch, None, syscalls.MS_SHARED)
        os.mkdir(os.path.join(scratch, "inner"))
        yield scratch
    finally:
        syscalls.umount2(scratch, syscalls.MNT_DETACH)   # with anything that propagated onto it


# --- one exercise at a time ----------------------------------------------------------------

@checkpoint("cp01", points=2, hint="namespace_flags: uts -> CLONE_NEWUTS, pid -> CLONE_NEWPID, "
            "mount -> CLONE_NEWNS, network -> CLONE_NEWNET, ipc -> CLONE_NEWIPC (man 2 unshare), "
            "OR-ed together; no kinds is 0")
def test_namespace_flags(ns):
    expected = {"uts": syscalls.CLONE_NEWUTS, "pid": syscalls.CLONE_NEWPID,
                "mount": syscalls.CLONE_NEWNS, "network": syscalls.CLONE_NEWNET,
                "ipc": syscalls.CLONE_NEWIPC}
    for kind, flag in expected.items():
        assert ns.namespace_flags([kind]) == flag, f"namespace_flags([{kind!r}])"
    assert ns.namespace_flags(["uts", "pid", "mount"]) == \
        syscalls.CLONE_NEWUTS | syscalls.CLONE_NEWPID | syscalls.CLONE_NEWNS
    assert ns.namespace_flags(list(expected)) == sum(expected.values())
    assert ns.namespace_flags([]) == 0


@checkpoint("cp01", points=1, hint="namespace_id(kind, pid) is the target of the symbolic link "
            "/proc/<pid>/ns/<file> (man 7 namespaces), e.g. 'uts:[4026531838]', for the process "
            "`pid` -- not for the caller; mount is the file 'mnt', network is 'net'")
def test_namespace_id(ns, process_in):
    for kind, name in NS_FILES.items():
        assert ns.namespace_id(kind) == host_ns(name), f"namespace_id({kind!r})"
        assert ID.match(ns.namespace_id(kind))
    assert ns.namespace_id("uts", os.getpid()) == host_ns("uts")
    # A process in a new UTS and network namespace: its ids are not ours.
    with process_in(syscalls.CLONE_NEWUTS | syscalls.CLONE_NEWNET) as pid:
        for kind, name in (("uts", "uts"), ("network", "net"), ("mount", "mnt")):
            assert ns.namespace_id(kind, pid) == os.readlink(f"/proc/{pid}/ns/{name}"), \
                f"namespace_id({kind!r}, {pid})"
        assert ns.namespace_id("uts", pid) != host_ns("uts")
        assert ns.namespace_id("mount", str(pid)) == host_ns("mnt")


@checkpoint("cp01", points=1, hint="exit_status: a child that called exit(n) gives n "
            "(WIFEXITED/WEXITSTATUS); one killed by signal s gives 128 + s, as a shell reports it "
            "(WIFSIGNALED/WTERMSIG, man 2 waitpid)")
def test_exit_status(ns):
    def status_of(action) -> int:
        pid = os.fork()
        if pid == 0:
            try:
                action()
            finally:
                os._exit(99)
        return os.waitpid(pid, 0)[1]

    assert ns.exit_status(status_of(lambda: os._exit(0))) == 0
    assert ns.exit_status(status_of(lambda: os._exit(7))) == 7
    assert ns.exit_status(status_of(lambda: os._exit(255))) == 255
    assert ns.exit_status(status_of(lambda: os.kill(os.getpid(), 9))) == 128 + 9
    assert ns.exit_status(status_of(lambda: os.kill(os.getpid(), 15))) == 128 + 15


@checkpoint("cp01", points=2, hint=f"in a new UTS namespace sethostname(2) changes only that "
            f"namespace: set_hostname('cp01-box') must make gethostname() return 'cp01-box' there, "
            f"and the host's hostname must stay {HOST!r}")
def test_set_hostname(ns, in_child):
    inside = in_child(lambda: (ns.set_hostname("cp01-box"), socket.gethostname())[1],
                      syscalls.CLONE_NEWUTS)
    assert inside == "cp01-box"
    assert socket.gethostname() == HOST
    with pytest.raises(ValueError):
        ns.set_hostname("")


@checkpoint("cp01", points=2, hint="a new mount namespace starts with its mounts still SHARED with "
            "the host's peers (man 7 mount_namespaces): make_mounts_private() must change '/' and "
            "every mount below it (MS_REC) to MS_PRIVATE, so a mount made inside stays inside")
def test_make_mounts_private(ns, in_child, shared_mount):
    inner = os.path.join(shared_mount, "inner")

    def inside():
        ns.make_mounts_private()
        still_shared = [m.mount_point for m in procfs.mountinfo()
                        if any(tag.startswith("shared:") for tag in m.optional)]
        syscalls.mount("tmpfs", inner, "tmpfs", 0, "size=1m")
        return still_shared, os.path.ismount(inner)

    still_shared, mounted = in_child(inside, syscalls.CLONE_NEWNS, private_mounts=False)
    assert mounted, "the tmpfs mount inside the new mount namespace did not happen"
    assert not still_shared, f"mounts still shared inside: {still_shared}"
    assert inner not in mount_points(), "the mount made inside propagated to the host"


@checkpoint("cp01", points=2, hint="mount_proc(target) mounts a procfs (type 'proc', man 5 proc) "
            "at target; mounted by pid 1 of a new pid namespace it lists only that namespace: "
            "/proc/self -> '1'")
def test_mount_proc(ns, in_child, scratch):
    def inside():
        ns.mount_proc(scratch)
        at_target = (os.readlink(os.path.join(scratch, "self")), numeric(scratch))
        ns.mount_proc()
        return at_target, (os.readlink("/proc/self"), numeric("/proc"))

    at_target, at_proc = in_child(inside, syscalls.CLONE_NEWPID | syscalls.CLONE_NEWNS)
    assert at_target == ("1", ["1"]), f"{scratch}/self and its pids: {at_target}"
    assert at_proc == ("1", ["1"]), f"/proc/self and its pids: {at_proc}"
    # The host's view did not change.
    assert not os.path.ismount(scratch) and os.listdir(scratch) == []
    assert os.readlink("/proc/self") == str(os.getpid())


@checkpoint("cp01", points=1, hint="network_interfaces() lists the links of the CALLER's network "
            "namespace (if_nameindex(3), netlink underneath), names sorted: on the host "
            "what `ip link` shows, in a new network namespace only ['lo']")
def test_network_interfaces(ns, in_child):
    host = sorted(name for _, name in socket.if_nameindex())
    assert ns.network_interfaces() == host
    assert in_child(ns.network_interfaces, syscalls.CLONE_NEWNET) == ["lo"]


@checkpoint("cp01", points=2, hint="join_namespace(kind, fd) is setns(2) on the open ns file, "
            "with the kind's CLONE_NEW* flag as nstype: the caller then shares that namespace "
            "(its /proc/self/ns link equals the other process's), and a fd of another kind is "
            "refused by the kernel (EINVAL)", depends=["test_namespace_flags"])
def test_join_namespace(ns, in_child, process_in):
    with process_in(syscalls.CLONE_NEWUTS) as pid:
        theirs = os.readlink(f"/proc/{pid}/ns/uts")
        assert theirs != host_ns("uts")

        def join():
            fd = os.open(f"/proc/{pid}/ns/uts", os.O_RDONLY)
            try:
                try:
                    ns.join_namespace("network", fd)     # a uts fd is no network namespace
                    wrong_kind = "accepted"
                except OSError:
                    wrong_kind = "refused"
                ns.join_namespace("uts", fd)
            finally:
                os.close(fd)
            return wrong_kind, host_ns("uts"), host_ns("net")

        wrong_kind, mine, net = in_child(join)
    assert mine == theirs, "after join_namespace('uts', fd) the caller is not in that namespace"
    assert wrong_kind == "refused", "setns was not told the kind: a uts fd joined as 'network'"
    assert net == host_ns("net") and host_ns("uts") != theirs


# --- run_isolated: everything together -----------------------------------------------------

@checkpoint("cp01", points=1, hint="bad input is a ValueError naming it: namespace_flags(['bogus']) "
            "and run_isolated(fn, ['bogus']) must say 'bogus'; a hostname without a new uts "
            "namespace would rename the host and must be refused",
            depends=["test_namespace_flags", "test_namespace_id"])
def test_bad_input(ns):
    with pytest.raises(ValueError, match="bogus"):
        ns.namespace_flags(["uts", "bogus"])
    with pytest.raises(ValueError):
        ns.namespace_flags("uts")           # a string, not a list of kinds
    with pytest.raises(ValueError, match="bogus"):
        ns.run_isolated(lambda: 0, ["bogus"])
    with pytest.raises(ValueError, match="uts"):
        ns.run_isolated(lambda: 0, ["pid"], hostname="cp01-box")
    with pytest.raises(ValueError, match="bogus"):
        ns.namespace_id("bogus")
    assert socket.gethostname() == HOST


@checkpoint("cp01", points=2, hint=f"run_isolated(fn, ['uts'], hostname='cp01-box'): the child "
            f"unshares CLONE_NEWUTS, then sets the hostname; inside, gethostname() is 'cp01-box' "
            f"and /proc/self/ns/uts differs from the host's; the host's hostname stays {HOST!r}",
            depends=["test_namespace_flags", "test_set_hostname", "test_exit_status"])
def test_isolated_uts(ns):
    name, uts = ns.isolated_output(lambda: (socket.gethostname(), host_ns("uts")), ["uts"],
                                   hostname="cp01-box")
    assert name == "cp01-box"
    assert uts != host_ns("uts")
    assert socket.gethostname() == HOST


@checkpoint("cp01", points=2, hint="unshare(CLONE_NEWPID) moves the caller's CHILDREN only "
            "(man 7 pid_namespaces): fork once more after it, and that child is pid 1; with a new "
            "mount namespace too it mounts its own /proc, which lists only pid 1",
            depends=["test_namespace_flags", "test_mount_proc", "test_make_mounts_private",
                     "test_exit_status"])
def test_isolated_pid(ns):
    def inside():
        return os.getpid(), os.readlink("/proc/self"), numeric("/proc"), host_ns("pid")

    pid, proc_self, pids, pid_ns = ns.isolated_output(inside, ["pid", "mount"])
    assert pid == 1, "the isolated function is not pid 1 of a new pid namespace"
    assert pid_ns != host_ns("pid")
    assert proc_self == "1", "/proc inside is not a fresh procfs of the new pid namespace"
    assert pids == ["1"], f"/proc inside lists {pids}"
    assert os.readlink("/proc/self") == str(os.getpid()), "the host's /proc changed"


@checkpoint("cp01", points=2, hint="run_isolated(fn, ['mount']): a mount made by fn must stay in "
            "the new mount namespace -- invisible in the host's /proc/self/mountinfo even below a "
            "shared mount, so the child makes its mounts private (MS_REC|MS_PRIVATE) first",
            depends=["test_namespace_flags", "test_make_mounts_private", "test_exit_status"])
def test_isolated_mount(ns, shared_mount):
    inner = os.path.join(shared_mount, "inner")

    def inside():
        syscalls.mount("tmpfs", inner, "tmpfs", 0, "size=1m")
        Path(inner, "only-inside").write_text("hello\n")
        return host_ns("mnt"), inner in mount_points(), os.listdir(inner)

    mnt, mounted, files = ns.isolated_output(inside, ["mount"])
    assert mnt != host_ns("mnt")
    assert mounted and files == ["only-inside"]
    assert inner not in mount_points(), "the mount made inside propagated to the host"
    assert os.listdir(inner) == []


@checkpoint("cp01", points=1, hint="a new network namespace has only the loopback device 'lo' "
            "(man 7 network_namespaces), and its own /proc/self/ns/net",
            depends=["test_namespace_flags", "test_network_interfaces", "test_exit_status"])
def test_isolated_network(ns):
    links, net = ns.isolated_output(
        lambda: (sorted(name for _, name in socket.if_nameindex()), host_ns("net")), ["network"])
    assert links == ["lo"]
    assert net != host_ns("net")
    assert "lo" in ns.network_interfaces() and len(socket.if_nameindex()) >= 1


@checkpoint("cp01", points=1, hint="run_isolated creates exactly the namespaces asked for: with "
            "['ipc'] the ipc namespace differs from the host's and uts, pid, mnt and net are the "
            "host's", depends=["test_namespace_flags", "test_exit_status"])
def test_isolated_only_requested(ns):
    inside = ns.isolated_output(lambda: {n: host_ns(n) for n in NS_FILES.values()}, ["ipc"])
    assert inside["ipc"] != host_ns("ipc")
    for name in ("uts", "pid", "mnt", "net"):
        assert inside[name] == host_ns(name), f"a new {name} namespace was made too"


@checkpoint("cp01", points=1, hint="run_isolated returns the exit status of fn's process: fn's "
            "return value (7), also through the extra fork of a pid namespace -- the middle "
            "process exits with its child's status; an exception in fn is status 1",
            depends=["test_namespace_flags", "test_exit_status", "test_mount_proc",
                     "test_make_mounts_private"])
def test_exit_status_propagates(ns):
    assert ns.run_isolated(lambda: 7, ["pid"]) == 7
    assert ns.run_isolated(lambda: 3, ["uts"]) == 3
    assert ns.run_isolated(lambda: None, ["pid", "mount"]) == 0

    def fails():
        raise RuntimeError("expected (run_isolated prints this traceback)")
    assert ns.run_isolated(fails, ["pid"]) == 1



# --- the proof: docker run through your namespace code --------------------------------------

@checkpoint("cp01", points=3, hint="labkit-runc creates every container's namespaces with your "
            "namespace_flags and join_namespace, makes its mounts private with your "
            "make_mounts_private and sets its hostname with your set_hostname: `docker run "
            "--rm hello-world` and `docker run --rm busybox echo …` must work through a lab "
            "whose namespaces layer is your workspace (the docker error names the function "
            "that is not done yet)")
def test_docker_run_through_your_namespaces(private_lab):
    import shutil
    import subprocess

    docker = shutil.which("docker")
    assert docker, "no docker CLI on PATH (vagrant/setup.sh installs Debian's docker.io)"
    with private_lab() as env:
        hello = subprocess.run([docker, "run", "--rm", "hello-world"], env=env,
                               capture_output=True, text=True, timeout=120)
        assert hello.returncode == 0 and "Hello from labkit!" in hello.stdout, \
            _docker_error(hello.stderr)
        echo = subprocess.run([docker, "run", "--rm", "--hostname", "cp01-proof", "busybox",
                               "sh", "-c", "hostname; exit 3"], env=env,
                              capture_output=True, text=True, timeout=120)
        assert (echo.returncode, echo.stdout) == (3, "cp01-proof\n"), _docker_error(echo.stderr)


def _docker_error(stderr: str) -> str:
    """The line of docker's error that says what failed (the rest is the pull's progress)."""
    lines = [line for line in stderr.splitlines() if "Error" in line or "error" in line]
    return (lines[-1] if lines else stderr.strip()[-500:])
