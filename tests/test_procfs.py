"""labkit.procfs: /proc read once, checked against real processes this test starts and a real
mount it makes (and against the kernel's own answers where one exists: os.stat, os.getppid)."""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from labkit import procfs, syscalls

CAT = "/bin/cat"


def wait_for(predicate, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


@pytest.fixture
def reader(tmp_path):
    """A `cat` whose command name is "my) cat x": spaces and a ")" inside the parentheses of
    /proc/<pid>/stat, the case a naive split gets wrong. It has echoed one line back, so its
    exec(2) is complete (until then /proc shows a process half-way through exec); then it
    waits for more input. Ended and reaped afterwards."""
    program = tmp_path / "my) cat x"
    program.symlink_to(CAT)            # the command name is the name the program was run by
    child = subprocess.Popen([str(program)], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        child.stdin.write(b"ready\n")
        child.stdin.flush()
        assert child.stdout.readline() == b"ready\n"
        yield child
    finally:
        if child.poll() is None:
            child.kill()
        child.wait()
        child.stdin.close()
        child.stdout.close()


def test_stat_of_a_running_child(reader):
    st = procfs.stat(reader.pid)
    assert st is not None
    assert (st.pid, st.comm, st.ppid) == (reader.pid, "my) cat x", os.getpid())
    assert wait_for(lambda: procfs.stat(reader.pid).state == "S")   # waiting in read(2)
    # It started after us, and the start time does not change while it lives.
    assert st.start_time >= procfs.stat("self").start_time
    assert procfs.stat(str(reader.pid)).start_time == st.start_time
    assert procfs.alive(reader.pid)


def test_a_zombie_is_not_alive_and_a_reaped_process_has_no_stat(reader):
    reader.send_signal(signal.SIGKILL)
    # Not waited for yet: the kernel keeps a zombie entry until its parent (we) reaps it.
    assert wait_for(lambda: procfs.stat(reader.pid).state == "Z")
    assert not procfs.alive(reader.pid)
    reader.wait()
    assert procfs.stat(reader.pid) is None and not procfs.alive(reader.pid)
    assert procfs.status(reader.pid) is None and procfs.cmdline(reader.pid) == []


def test_self_and_parent():
    me = procfs.stat("self")
    assert me.pid == os.getpid() and me.ppid == os.getppid() and me.state == "R"
    assert procfs.alive(os.getpid()) and procfs.alive("self")


def test_cpu_time_is_what_the_kernel_counts_for_us():
    """Fields 14 + 15 in clock ticks, checked against os.times() (the times(2) call) after
    burning some CPU: both read the same counters, in different units."""
    deadline = time.process_time() + 0.3
    while time.process_time() < deadline:
        pass
    ticks = os.sysconf("SC_CLK_TCK")
    before = os.times()
    me = procfs.stat("self")
    after = os.times()
    low = int((before.user + before.system) * ticks) - 2       # rounding, per counter
    high = int((after.user + after.system) * ticks) + 2
    assert me.cpu_time >= 0.25 * ticks and low <= me.cpu_time <= high, (me, before, after)


def test_status_and_cmdline(reader):
    fields = procfs.status(reader.pid)
    assert fields["Name"] == "my) cat x"
    assert fields["PPid"] == str(os.getpid())
    assert fields["Pid"] == str(reader.pid)
    assert fields["NSpid"] == str(reader.pid)       # one pid namespace: the host's
    assert procfs.cmdline(reader.pid) == reader.args


def test_ns_inode_is_the_inode_of_the_ns_file(reader):
    for name in ("mnt", "uts", "ipc", "pid", "net", "user", "cgroup"):
        expected = os.stat(f"/proc/{reader.pid}/ns/{name}").st_ino
        assert procfs.ns_inode(reader.pid, name) == expected, name
        assert procfs.ns_inode("self", name) == expected, name   # a child shares ours
    assert procfs.ns_inode(reader.pid, "nonsense") is None


def test_parse_stat_rejects_what_is_not_a_stat_line():
    for bad in ("", "42", "42 (x) S"):
        with pytest.raises(ValueError, match="not a /proc/<pid>/stat line"):
            procfs.parse_stat(bad)


def test_pid_namespace_members_outside_a_container():
    # In the host's pid namespace only the process asked about is "ours for sure".
    assert procfs.pid_namespace_members(os.getpid()) == [os.getpid()]
    assert procfs.pid_namespace_members(2 ** 22 + 1) == []      # above pid_max: no such process


@pytest.mark.root
def test_pid_namespace_members_of_a_new_pid_namespace():
    """A middle process unshares a pid namespace and forks its pid 1, which forks two more.
    The middle one tells us init's host pid; init tells us the pid it sees for itself (1)."""
    report_r, report_w = os.pipe()
    middle = os.fork()
    if middle == 0:                                  # the forked side: never returns
        try:
            os.close(report_r)
            os.setpgid(0, 0)                         # one process group: one signal ends all
            syscalls.unshare(syscalls.CLONE_NEWPID)
            init = os.fork()
            if init == 0:
                for _ in range(2):
                    if os.fork() == 0:
                        time.sleep(60)
                        os._exit(0)
                os.write(report_w, b"inside:%d " % os.getpid())
                time.sleep(60)
                os._exit(0)
            os.write(report_w, b"init:%d " % init)
            os.waitpid(init, 0)
        finally:
            os._exit(0)
    os.close(report_w)
    try:
        report = b""
        while report.count(b" ") < 2 and (chunk := os.read(report_r, 64)):
            report += chunk
        facts = dict(item.split(":") for item in report.decode().split())
        init = int(facts["init"])
        assert facts["inside"] == "1"
        members = procfs.pid_namespace_members(init)
        assert len(members) == 3 and init in members and middle not in members
        assert all(procfs.stat(pid).ppid == init for pid in members if pid != init)
        assert procfs.status(init)["NSpid"].split() == [str(init), "1"]
    finally:
        os.close(report_r)
        os.killpg(middle, signal.SIGKILL)
        os.waitpid(middle, 0)


# --- mountinfo -------------------------------------------------------------------------------

SAMPLE = ("36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue\n"
          "37 36 0:41 / /run/a\\040b\\134c rw,nosuid shared:7 master:2 - tmpfs my\\040tmp rw\n"
          "38 36 0:42 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n")


def test_parse_mountinfo_fields_and_escapes():
    first, second, third = procfs.parse_mountinfo(SAMPLE)
    assert (first.mount_id, first.parent_id, first.root, first.mount_point) == \
        (36, 35, "/mnt1", "/mnt2")
    assert first.options == ("rw", "noatime") and first.optional == ("master:1",)
    assert (first.fstype, first.source) == ("ext3", "/dev/root")
    assert first.super_options == ("rw", "errors=continue")
    assert second.mount_point == "/run/a b\\c" and second.source == "my tmp"
    assert second.optional == ("shared:7", "master:2")
    assert third.fstype == "cgroup" and "memory" in third.super_options
    assert procfs.unescape("a\\011b\\012c") == "a\tb\nc"


def test_parse_mountinfo_rejects_other_text():
    with pytest.raises(ValueError, match="not a mountinfo line"):
        procfs.parse_mountinfo("36 35 98:0 /mnt1 /mnt2 rw ext3 /dev/root rw\n")


def test_real_mountinfo_has_the_root_and_proc():
    mounts = procfs.mountinfo()
    assert mounts == procfs.mountinfo(os.getpid())
    ids = {m.mount_id for m in mounts}
    assert any(m.mount_point == "/" for m in mounts)
    assert any(m.mount_point == "/proc" and m.fstype == "proc" for m in mounts)
    # every mount's parent is listed, except the root's (its parent is outside our view)
    assert sum(m.parent_id not in ids for m in mounts) >= 1
    assert all(m.options and m.options[0] in ("rw", "ro") for m in mounts)


@pytest.mark.root
def test_a_mount_we_make_appears_unescaped():
    base = Path(tempfile.mkdtemp(prefix="lk-procfs-", dir="/tmp"))
    target = base / "a b\tc"
    target.mkdir()
    try:
        syscalls.mount("lk proc", str(target), "tmpfs", syscalls.MS_NOSUID | syscalls.MS_NODEV,
                       "size=1m,mode=700")
        try:
            found = [m for m in procfs.mountinfo() if m.mount_point == str(target)]
            assert len(found) == 1
            m = found[0]
            assert (m.fstype, m.source, m.root) == ("tmpfs", "lk proc", "/")
            assert {"nosuid", "nodev"} <= set(m.options)
            assert {"size=1024k", "mode=700"} <= set(m.super_options)
        finally:
            syscalls.umount2(str(target), syscalls.MNT_DETACH)
        assert not any(m.mount_point == str(target) for m in procfs.mountinfo())
    finally:
        target.rmdir()
        base.rmdir()
