"""A container's filesystem, seen from the host, for `docker cp` (moby's daemon/archive.go).

Two ways in, both through what the layer below says, never its internals:

    running   /proc/<pid>/root: the container's own mount namespace, as its init sees it,
              volumes and /etc files included (the pid is the task's, from containerd)
    stopped   the snapshot's mounts, as containerd gives them (Snapshots.Mounts: an overlay
              of the image's layers and the container's writable layer), mounted for the
              moment on a private directory — only the image and what the container wrote

Every path a client names is resolved INSIDE that root (labkit.securejoin): a symlink in the
container pointing at /etc/shadow means the container's /etc/shadow, never the host's.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from typing import Iterator

from labkit import mountopts, syscalls
from labkit.dockerd.container import Container
from labkit.dockerd.errors import DaemonError
from labkit.dockerd.remote import SNAPSHOTTER, Containerd, RemoteError, to_daemon_error
from labkit.securejoin import secure_join
from labkit.wire.containerd import api_pb2 as pb


def snapshotter_of(ctr: Containerd) -> str:
    """The snapshotter dockerd's containers are made with (the connection's, where it says)."""
    return getattr(ctr, "snapshotter", SNAPSHOTTER)


@contextlib.contextmanager
def container_root(ctr: Containerd, c: Container, scratch: str,
                   snapshot: bool = False) -> Iterator[str]:
    """The host path of `c`'s root directory while the block runs. `scratch` is a
    directory of dockerd's own where a stopped container's snapshot is mounted, and a
    running one's too with `snapshot` (read-only then: the container writes to it)."""
    if c.State.Running and c.State.Pid and not snapshot:
        yield f"/proc/{c.State.Pid}/root"
        return
    read_only = syscalls.MS_RDONLY if c.State.Running else 0
    try:
        mounts = ctr.call(ctr.snapshots.Mounts, pb.MountsRequest(
            snapshotter=snapshotter_of(ctr), key=c.ID)).mounts
    except RemoteError as e:
        raise to_daemon_error(e) from None
    os.makedirs(scratch, exist_ok=True)
    target = tempfile.mkdtemp(prefix=f"{c.ID[:12]}-", dir=scratch)
    mounted = []
    try:
        for m in mounts:
            options = mountopts.parse(m.options)
            flags = options.flags | (syscalls.MS_BIND | syscalls.MS_REC if m.type == "bind" else 0)
            syscalls.mount(m.source, target, m.type, flags | read_only, options.data or None)
            mounted.append(target)
        yield target
    except OSError as e:
        raise DaemonError(f"cannot mount the filesystem of container {c.ID[:12]}: {e}") from None
    finally:
        for point in reversed(mounted):
            syscalls.umount2(point, syscalls.MNT_DETACH)
        shutil.rmtree(target, ignore_errors=True)


def resolve(root: str, path: str, follow_last: bool = False) -> str:
    """The host path of `path` in the container: every component but the last resolved
    within `root` (the last too with `follow_last`: a path ending in "/" or "/.")."""
    if follow_last:
        return secure_join(root, path)
    parent, _, last = path.rstrip("/").rpartition("/")
    if last in ("", ".", ".."):
        return secure_join(root, path)
    return os.path.join(secure_join(root, parent or "/"), last)
