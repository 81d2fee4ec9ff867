"""reset's choice of mounts, from a mountinfo text (no kernel needed)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from labkit.lab.reset import mounts_under

MOUNTINFO = """\
22 1 8:1 / / rw - ext4 /dev/vda rw
30 22 0:40 / /run rw - tmpfs tmpfs rw
41 30 0:50 / /run/labkit/netns/c1 rw - nsfs nsfs rw
42 30 0:51 / /run/labkit/containerd/task/moby/abc/rootfs rw - overlay overlay rw
43 42 0:52 / /run/labkit/containerd/task/moby/abc/rootfs/proc rw - proc proc rw
44 22 0:53 / /var/lib/labkit/snap\\040shot rw - tmpfs tmpfs rw
45 44 0:54 / /var/lib/labkit/snap\\040shot rw - tmpfs tmpfs rw
46 30 0:55 / /run/labkitten rw - tmpfs tmpfs rw
"""


def test_deepest_first_upper_first_and_only_ours():
    got = mounts_under([Path("/run/labkit"), Path("/var/lib/labkit")], MOUNTINFO)
    assert got == [
        "/run/labkit/containerd/task/moby/abc/rootfs/proc",
        "/run/labkit/containerd/task/moby/abc/rootfs",
        "/var/lib/labkit/snap shot",   # the later (upper) of two stacked mounts first
        "/var/lib/labkit/snap shot",
        "/run/labkit/netns/c1",
    ]
    assert "/run/labkitten" not in got   # a prefix of the name is not "under"


@pytest.mark.root
def test_remove_cgroups_takes_empty_ones_and_spares_a_busy_one():
    """reset's cgroup sweep: rmdir(2) deepest first; a cgroup holding a process stays."""
    import secrets
    import subprocess

    from labkit.lab.reset import remove_cgroups
    from labkit.runc import cgroups

    parent = f"/labkit-test-{secrets.token_hex(4)}"
    dirs = cgroups.paths_for(parent, "")
    pids_dir = dirs.get("pids") or dirs.get("")
    if pids_dir is None:
        pytest.skip("no pids cgroup controller on this host")
    empty, busy = Path(pids_dir, "empty", "deeper"), Path(pids_dir, "busy")
    empty.mkdir(parents=True)
    busy.mkdir()
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        (busy / "cgroup.procs").write_text(str(sleeper.pid))
        notes: list[str] = []
        remove_cgroups(parent, report=notes.append)
        assert not Path(pids_dir, "empty").exists()
        assert busy.is_dir(), "a cgroup with a live process must not be removed"
        assert any(str(busy) in n for n in notes), notes
    finally:
        sleeper.kill()
        sleeper.wait()
        for _ in range(50):
            remove_cgroups(parent, report=lambda _m: None)
            if not any(os.path.exists(d) for d in dirs.values()):
                break
            time.sleep(0.05)
    assert not any(os.path.exists(d) for d in dirs.values())


@pytest.mark.root
def test_thaw_cgroups_lets_a_paused_containers_process_die():
    """A container `docker pause` left frozen: reset thaws it first, for SIGKILL to work."""
    import secrets
    import signal
    import subprocess

    from labkit.lab.reset import thaw_cgroups
    from labkit.runc import cgroups

    parent = f"/labkit-test-{secrets.token_hex(4)}"
    where = cgroups.paths_for(f"{parent}/c1", "c1")
    made = cgroups.create(where, {})
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        cgroups.join(where, sleeper.pid)
        cgroups.freeze(where, True)
        assert thaw_cgroups(parent, report=lambda _m: None) == 1
        assert not cgroups.is_frozen(where)
        os.kill(sleeper.pid, signal.SIGKILL)
        assert sleeper.wait(timeout=5) == -signal.SIGKILL
        assert thaw_cgroups(parent, report=lambda _m: None, only={"c1"}) == 0
    finally:
        if cgroups.is_frozen(where):
            cgroups.freeze(where, False)
        sleeper.kill()
        sleeper.wait()
        cgroups.destroy(made)
    assert not any(os.path.exists(d) for d in made)
