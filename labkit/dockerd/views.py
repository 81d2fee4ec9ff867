"""What `docker inspect`, `docker ps` and `docker top` show (moby's daemon/inspect.go,
list.go, top_unix.go). Read-only: a view of the container table, or of the kernel.
"""

from __future__ import annotations

import time

from labkit import procfs
from labkit.wire.containerd import api_pb2 as pb
from labkit.dockerd.container import Container
from labkit.dockerd.core import DaemonCore
from labkit.dockerd.errors import Conflict, InvalidParameter
from labkit.dockerd.remote import RemoteError, to_daemon_error


class Views(DaemonCore):
    """The Daemon's inspect, list and top (mixed into labkit.dockerd.daemon.Daemon)."""

    def container_top(self, ref: str) -> dict:
        """`docker top`: the container's processes as the host sees them (host pids)."""
        c = self._get(ref)
        if not c.State.Running:
            raise Conflict(f"Container {c.ID} is not running")
        try:
            pids = [p.pid for p in self.ctr.call(self.ctr.tasks.ListPids, pb.ListPidsRequest(
                container_id=c.ID)).processes]
        except RemoteError as e:
            raise to_daemon_error(e) from None
        titles = ["UID", "PID", "PPID", "STAT", "CMD"]
        rows = []
        for pid in sorted(pids):
            fields = procfs.status(pid)
            if fields is None:
                continue  # exited meanwhile
            uid, state = fields.get("Uid", "").split(), fields.get("State", "").split()
            rows.append([uid[0] if uid else "", str(pid), fields.get("PPid", ""),
                         state[0] if state else "", " ".join(procfs.cmdline(pid))])
        return {"Titles": titles, "Processes": rows}

    def container_inspect(self, ref: str) -> dict:
        with self._lock:
            return self._get(ref).inspect()

    def container_list(self, all: bool, filters: dict[str, list[str]], limit: int) -> list[dict]:
        with self._lock:
            containers = sorted(self._containers.values(), key=lambda c: c.Created, reverse=True)
            now = time.time()
            out = []
            for c in containers:
                if not (all or c.State.Running or c.State.Restarting or filters):
                    continue
                if not matches(c, filters):
                    continue
                out.append(c.summary(c.Config.get("Image") or c.Image, now))
        return out[:limit] if limit and limit > 0 else out


def matches(c: Container, filters: dict[str, list[str]]) -> bool:
    """`docker ps --filter`: status, name, id, label, ancestor (any value of a key matches)."""
    for key, values in filters.items():
        if not values:
            continue
        if key == "status":
            ok = c.State.Status in values
        elif key == "name":
            ok = any(v.lstrip("/") in c.Name for v in values)
        elif key == "id":
            ok = any(c.ID.startswith(v) for v in values)
        elif key == "label":
            labels = c.Config.get("Labels") or {}
            ok = all((labels.get(v.partition("=")[0]) == v.partition("=")[2]) if "=" in v
                     else v in labels for v in values)
        elif key == "ancestor":
            ok = any(v in (c.Config.get("Image"), c.ImageRef, c.Image) for v in values)
        else:
            raise InvalidParameter(f"invalid filter '{key}'")
        if not ok:
            return False
    return True
