"""reset's choice of mounts, from a mountinfo text (no kernel needed)."""

from __future__ import annotations

from pathlib import Path

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
