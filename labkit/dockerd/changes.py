"""`docker diff` and `docker export` (moby's daemon/changes.go, export.go).

Both read the container's snapshot as containerd describes it (Snapshots.Mounts), not the
running mount namespace: what the container wrote, and the image below it.

    diff    an overlay snapshot keeps the container's writes in its upperdir: every path
            there is a change — A(dded, Kind 1) if no lower layer has it, C(hanged, Kind 0)
            if one does, D(eleted, Kind 2) for a whiteout (a 0:0 character device, the mark
            overlayfs leaves for a removed file). A snapshot without layers below is all A.
            The mount points the runtime creates for the container's own mounts (/proc,
            /etc/hosts …) are not the user's changes and are left out, as Docker's init
            layer keeps them out of its diff.
    export  a tar of the whole filesystem: the snapshot mounted (read-only) and archived
            with tarfile; no /proc, no volumes, as `docker export` does
"""

from __future__ import annotations

import os
import stat
import tarfile
import tempfile
from typing import Iterator

from labkit.dockerd.archive import _chunks
from labkit.dockerd.core import DaemonCore
from labkit.dockerd.remote import RemoteError, to_daemon_error
from labkit.dockerd.rootfs import container_root, snapshotter_of
from labkit.wire.containerd import api_pb2 as pb

CHANGED, ADDED, DELETED = 0, 1, 2
RUNTIME_MOUNT_POINTS = {"/proc", "/dev", "/sys", "/etc/hosts", "/etc/hostname",
                        "/etc/resolv.conf", "/dev/pts", "/dev/shm", "/dev/mqueue",
                        "/sys/fs/cgroup", "/dev/console"}


class Changes(DaemonCore):
    """The Daemon's diff and export (mixed into labkit.dockerd.daemon.Daemon)."""

    def container_changes(self, ref: str) -> list[dict]:
        c = self._get(ref)
        try:
            mounts = self.ctr.call(self.ctr.snapshots.Mounts, pb.MountsRequest(
                snapshotter=snapshotter_of(self.ctr), key=c.ID)).mounts
        except RemoteError as e:
            raise to_daemon_error(e) from None
        options = dict(o.split("=", 1) for m in mounts for o in m.options if "=" in o)
        upper = options.get("upperdir") or (mounts[0].source if mounts else "")
        lowers = [d for d in options.get("lowerdir", "").split(":") if d]
        skip = RUNTIME_MOUNT_POINTS | {m.get("Destination", "") for m in c.MountPoints}
        changes = sorted(_walk(upper, lowers, skip), key=lambda ch: ch["Path"]) if upper else []
        # a directory copied up only to hold the runtime's mount points is no change
        return [ch for ch in changes if ch["Kind"] != CHANGED or not os.path.isdir(
            os.path.join(upper, ch["Path"][1:])) or any(
            other["Path"].startswith(ch["Path"] + "/") for other in changes)]

    def container_export(self, ref: str) -> Iterator[bytes]:
        c = self._get(ref)
        spool = tempfile.TemporaryFile()
        with container_root(self.ctr, c, str(self.config.exec_root / "archive"),
                            snapshot=True) as root:
            with tarfile.open(fileobj=spool, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                for name in sorted(os.listdir(root)):
                    tar.add(os.path.join(root, name), arcname=name, recursive=True)
        spool.seek(0)
        self._event(c, "export")
        return _chunks(spool)


def _walk(upper: str, lowers: list[str], skip: set[str]) -> Iterator[dict]:
    for directory, dirs, files in os.walk(upper):
        for name in dirs + files:
            host = os.path.join(directory, name)
            path = "/" + os.path.relpath(host, upper)
            if path in skip:
                continue
            st = os.lstat(host)
            if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                kind = DELETED
            elif any(os.path.lexists(os.path.join(lower, path[1:])) for lower in lowers):
                kind = CHANGED
            else:
                kind = ADDED
            yield {"Path": path, "Kind": kind}
