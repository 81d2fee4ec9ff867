"""Checkpoint cp02 -- chapter 02, cgroups: limits you can watch bite (labkit/runc/cgroups.py).

Graded with `labkit grade cp02`. The first group tests one exercise each; the ones that touch
the kernel make their cgroups with labkit's REFERENCE driver (the host's hierarchy, v1 or v2,
as the reference detects it) and read the truth back from the kernel: /proc/<pid>/cgroup,
freezer.state / cgroup.events, the directories themselves. The last one runs the real docker
CLI through a private lab whose `cgroups` layer is the code under test: a memory hog is
OOM-killed, a fork bomb stops at pids.max, `docker pause` freezes the container.

Everything made here is removed, also on failure: processes by pid, cgroups by the
reference's destroy (a cgroup a bug left a process in is emptied first).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from types import ModuleType

import pytest

from labkit import paths, procfs
from labkit.course.grading import checkpoint
from labkit.lab.implementations import resolve_module
from labkit.runc import cgroups as reference

pytestmark = pytest.mark.root

V2 = os.path.exists("/sys/fs/cgroup/cgroup.controllers")      # the truth, read directly


@pytest.fixture
def cg() -> ModuleType:
    """Chapter 02's module as configured: labkit.runc.cgroups, or the workspace's copy."""
    return resolve_module("cgroups", "labkit.runc.cgroups")


@pytest.fixture
def cgroup():
    """A new cgroup on this host's hierarchy, made by the reference driver:
    (paths {hierarchy: directory}, the directories made). Removed afterwards with whatever
    is left in it killed first."""
    top = f"/labkit-cp02-{uuid.uuid4().hex[:8]}"
    paths = reference.paths_for(top + "/c", "c")
    made = reference.create(paths, {})
    try:
        yield paths, made
    finally:
        for pid in reference.pids(paths):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if reference.is_frozen(paths):
            reference.freeze(paths, False)
        reference.destroy(made)


@pytest.fixture
def sleeper():
    """A child process (sleep 60), killed afterwards."""
    p = subprocess.Popen(["sleep", "60"])
    try:
        yield p.pid
    finally:
        p.kill()
        p.wait()


def cgroups_of(pid: int) -> dict[str, str]:
    """/proc/<pid>/cgroup as {hierarchy: path} (man 7 cgroups)."""
    out = {}
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _hid, controllers, path = line.split(":", 2)
        out[controllers] = path
    return out


# --- one exercise at a time ----------------------------------------------------------------

@checkpoint("cp02", points=1, hint="is_v2(): /sys/fs/cgroup is the cgroup v2 hierarchy when it "
            "has a cgroup.controllers file (on a v1 host it is a tmpfs of per-controller "
            "directories); the answer must match what this host mounts")
def test_is_v2(cg):
    mounted = {m.mount_point: m.fstype for m in procfs.mountinfo()}
    assert cg.is_v2() is (mounted.get("/sys/fs/cgroup") == "cgroup2")
    assert cg.is_v2() is V2


@checkpoint("cp02", points=2, hint="memory_limit_file(1, n) is ('memory.limit_in_bytes', 'n'); "
            "memory_limit_file(2, n) is ('memory.max', 'n'); no limit (-1) is '-1' on v1 but "
            "'max' on v2; the text is a str")
def test_memory_limit_file(cg):
    assert cg.memory_limit_file(1, 67108864) == ("memory.limit_in_bytes", "67108864")
    assert cg.memory_limit_file(2, 67108864) == ("memory.max", "67108864")
    assert cg.memory_limit_file(2, -1) == ("memory.max", "max")
    assert cg.memory_limit_file(1, -1) == ("memory.limit_in_bytes", "-1")


@checkpoint("cp02", points=1, hint="pids_max(10) is '10'; a limit of 0 or -1 means no limit: "
            "'max'")
def test_pids_max(cg):
    assert cg.pids_max(10) == "10"
    assert cg.pids_max(1) == "1"
    assert cg.pids_max(0) == "max"
    assert cg.pids_max(-1) == "max"


@checkpoint("cp02", points=1, hint="shares_to_weight: clamp to [2, 262144], then 1 + (shares - "
            "2) * 9999 // 262142: 2 -> 1, 1024 -> 39, 262144 -> 10000, 1 -> 1, 10**6 -> 10000")
def test_shares_to_weight(cg):
    assert [cg.shares_to_weight(s) for s in (2, 1024, 262144, 512)] == [1, 39, 10000, 20]
    assert cg.shares_to_weight(1) == 1 and cg.shares_to_weight(0) == 1
    assert cg.shares_to_weight(10**6) == 10000


@checkpoint("cp02", points=2, hint="join(paths, pid) writes pid to <directory>/cgroup.procs in "
            "EVERY hierarchy of `paths` (v1: one directory per controller; v2: just one); "
            "/proc/<pid>/cgroup must then name the container's cgroup in each",
            depends=["test_is_v2"])
def test_join(cg, cgroup, sleeper):
    paths, _ = cgroup
    cg.join(paths, sleeper)
    mine = cgroups_of(sleeper)
    for name, directory in paths.items():
        inside = directory.removeprefix(reference.v2_root_of(directory) if V2 else
                                        cgroups_mountpoint(name))
        assert mine[name] == inside, f"hierarchy {name or 'v2'}: {mine[name]} != {inside}"
        assert str(sleeper) in Path(directory, "cgroup.procs").read_text().split()
    assert os.getpid() not in reference.pids(paths), "join moved the caller, not pid"


def cgroups_mountpoint(name: str) -> str:
    return reference.v1_hierarchies()[name]


@checkpoint("cp02", points=2, hint="destroy(created): os.rmdir each directory, the DEEPEST "
            "first (a cgroup with a child cannot go); rmdir fails with EBUSY while a process "
            "that was just killed is still leaving: wait a little and try again; a directory "
            "already gone is fine", depends=["test_join"])
def test_destroy(cg, cgroup):
    paths, made = cgroup
    assert len(made) == 2 * len(paths)          # the top and the container's, in each
    # a process that is being killed as destroy starts: its cgroup is busy for a moment
    p = subprocess.Popen(["sleep", "60"])
    reference.join(paths, p.pid)
    p.kill()
    try:
        cg.destroy(list(made))
        assert [d for d in made if os.path.exists(d)] == []
        cg.destroy(list(made))                   # again: nothing left, no error
    finally:
        p.wait()


@checkpoint("cp02", points=3, hint="freeze(paths, True): v2 -- write 1 to cgroup.freeze, then "
            "wait until cgroup.events says 'frozen 1'; v1 -- write FROZEN to the freezer "
            "hierarchy's freezer.state and wait until it reads FROZEN (not FREEZING). "
            "freeze(paths, False) thaws (0 / THAWED) the same way", depends=["test_join"])
def test_freeze(cg, cgroup, tmp_path):
    paths, _ = cgroup
    counter = tmp_path / "n"
    p = subprocess.Popen(["sh", "-c", f"i=0; while :; do i=$((i+1)); echo $i > {counter}; "
                                      "sleep 0.01; done"])
    try:
        reference.join(paths, p.pid)
        deadline = time.monotonic() + 5
        while not (counter.exists() and counter.read_text().strip()):
            assert time.monotonic() < deadline, "the test's counter never started"
            time.sleep(0.02)
        cg.freeze(paths, True)
        assert kernel_says_frozen(paths), "freeze returned before the kernel froze the cgroup"
        seen = counter.read_text()
        time.sleep(0.2)
        assert counter.read_text() == seen, "a process ran while frozen"
        cg.freeze(paths, False)
        assert not kernel_says_frozen(paths), "still frozen after freeze(paths, False)"
        deadline = time.monotonic() + 5
        while counter.read_text() == seen:
            assert time.monotonic() < deadline, "the processes did not run again after the thaw"
            time.sleep(0.02)
    finally:
        if reference.is_frozen(paths):
            reference.freeze(paths, False)
        p.kill()
        p.wait()


def kernel_says_frozen(paths: dict[str, str]) -> bool:
    """The kernel's own answer: cgroup.events "frozen 1" (v2), freezer.state FROZEN (v1)."""
    if V2:
        return "frozen 1" in Path(paths[""], "cgroup.events").read_text().splitlines()
    d = next(d for name, d in paths.items() if "freezer" in name.split(","))
    return Path(d, "freezer.state").read_text().strip() == "FROZEN"


# --- the proof: docker run through your cgroup driver ----------------------------------------

@checkpoint("cp02", points=4, hint="labkit-runc makes every container's cgroup with your "
            "cgroups.py (is_v2, memory_limit_file, pids_max, join, destroy; freeze for docker "
            "pause): `docker run -m 64m --pids-limit 10` must show those limits inside, a "
            "memory hog must be OOM-killed (exit 137), a fork bomb must stop at pids.max, "
            "`docker pause` must freeze, and `--rm` must leave no cgroup (the docker error "
            "names the function that is not done yet)")
def test_docker_run_limits_bite_through_your_cgroups(private_lab):
    docker = shutil.which("docker")
    assert docker, "no docker CLI on PATH (vagrant/setup.sh installs Debian's docker.io)"

    def run(env, *args, timeout=120):
        return subprocess.run([docker, *args], env=env, capture_output=True, text=True,
                              timeout=timeout)

    files = ("/sys/fs/cgroup/memory.max /sys/fs/cgroup/pids.max" if V2 else
             "/sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max")
    with private_lab() as env, tempfile.TemporaryDirectory() as cids:
        cidfile = os.path.join(cids, "limits")
        limits = run(env, "run", "--rm", "--cidfile", cidfile, "-m", "64m", "--pids-limit",
                     "10", "busybox", "sh", "-c", "cat " + files)
        succeeded(limits)
        assert limits.stdout.split() == [str(64 << 20), "10"], limits.stdout
        # a memory hog: its string doubles until the kernel's OOM killer stops it (SIGKILL)
        hog = run(env, "run", "--rm", "-m", "16m", "busybox", "sh", "-c",
                  "x=0123456789; while :; do x=$x$x; done")
        if hog.returncode != 137:
            raise AssertionError(f"the memory hog exited {hog.returncode}, not 137 (SIGKILL "
                                 f"by the OOM killer): {_docker_error(hog.stderr)}")
        # a fork bomb, tamed: the shell starts sleeps in the background until fork(2) fails
        # with EAGAIN at pids.max (10 tasks, the shell included); busybox sh then gives up
        bomb = run(env, "run", "--rm", "--pids-limit", "10", "busybox", "sh", "-c",
                   "i=0; while [ $i -lt 30 ]; do sleep 5 & i=$((i+1)); echo $i; done")
        started = bomb.stdout.split()
        if bomb.returncode == 0 or "fork" not in bomb.stderr:
            raise AssertionError(f"the fork bomb was not stopped by pids.max (exit "
                                 f"{bomb.returncode}): {_docker_error(bomb.stderr)}")
        assert 1 <= len(started) < 10, f"{len(started)} sleeps started under pids.max 10"
        # docker pause: your freeze, read back from the kernel
        up = run(env, "run", "-d", "--name", "cp02-pause", "busybox", "sleep", "60")
        succeeded(up)
        ids = [up.stdout.strip(), Path(cidfile).read_text().strip()]
        try:
            paused = run(env, "pause", "cp02-pause")
            succeeded(paused)
            pid = int(run(env, "inspect", "-f", "{{.State.Pid}}", "cp02-pause").stdout)
            assert frozen_cgroup_of(pid), "docker pause returned, the kernel says not frozen"
            unpaused = run(env, "unpause", "cp02-pause")
            succeeded(unpaused)
            assert not frozen_cgroup_of(pid)
        finally:
            run(env, "rm", "-f", "cp02-pause")
        # --rm and rm -f left no cgroup behind (destroy)
        left = [d for cid in ids for d in reference.paths_for(f"{paths.CGROUP_PARENT}/{cid}", cid).values()
                if os.path.exists(d)]
        assert left == [], f"container cgroups left behind: {left}"


def succeeded(result: subprocess.CompletedProcess) -> None:
    """A docker command worked; if not, fail with docker's own error line (only that: the
    grading report shows a checkpoint's message, and it must name the unfinished function)."""
    if result.returncode != 0:
        raise AssertionError(_docker_error(result.stderr))


def frozen_cgroup_of(pid: int) -> bool:
    own = cgroups_of(pid)
    if V2:
        return Path("/sys/fs/cgroup" + own[""], "cgroup.freeze").read_text().strip() == "1"
    key = next(k for k in own if "freezer" in k.split(","))
    state = Path(cgroups_mountpoint(key) + own[key], "freezer.state").read_text().strip()
    return state == "FROZEN"


def _docker_error(stderr: str) -> str:
    """The line of docker's error that says what failed (the rest is the pull's progress)."""
    lines = [line for line in stderr.splitlines() if "Error" in line or "error" in line]
    return (lines[-1] if lines else stderr.strip()[-500:])
