"""`docker rm` and `docker container prune` (moby's daemon/delete.go, prune.go).

Removing a container undoes create in reverse, in containerd first: the task (if one is
left), the container, the snapshot; then dockerd's own files (config.v2.json, the log,
the /etc files, the fifos) and its execs. A running container is refused unless forced
(then killed first). AutoRemove (`docker run --rm`) calls _remove after the exit
(monitor.py) or after a failed start (start.py).
"""

from __future__ import annotations

import logging
import shutil
import signal as signals

from labkit.wire.containerd import api_pb2 as pb
from labkit.dockerd.container import Container
from labkit.dockerd.core import DaemonCore
from labkit.dockerd.errors import Conflict, DaemonError, InvalidParameter, SystemError_
from labkit.dockerd.remote import RemoteError, to_daemon_error
from labkit.dockerd.views import matches

log = logging.getLogger("labkit.dockerd")


class Remove(DaemonCore):
    """The Daemon's `docker rm` (mixed into labkit.dockerd.daemon.Daemon)."""

    def container_remove(self, ref: str, force: bool, volumes: bool) -> None:
        c = self._get(ref)
        if self._live[c.ID].starting:
            raise Conflict(f"container {c.ID[:12]} is starting; try again when it has started")
        if c.State.Restarting and not force:
            raise Conflict(f"You cannot remove a restarting container {c.ID}. Stop the "
                           "container before attempting removal or force remove")
        if c.State.Running:
            if not force:
                raise Conflict(f"You cannot remove a running container {c.ID}. Stop the "
                               "container before attempting removal or force remove")
            self._signal(c, signals.SIGKILL)
            if not self._wait_stopped(c, 15):
                raise SystemError_(f"container {c.ID[:12]} did not exit after SIGKILL")
        self._remove(c, volumes)

    def _remove(self, c: Container, volumes: bool = False) -> None:
        """Remove a container; with `volumes` (`rm -v`, `run --rm`) its anonymous volumes
        too (named ones stay: moby's removeMountPoints)."""
        with self._lock:
            live = self._live.get(c.ID)
            if live is None or live.removed:
                return
            if c.State.Status == "removing":
                # another request (or AutoRemove) is at it: its result is ours
                if not self._changed.wait_for(lambda: live.removed, timeout=15):
                    raise Conflict(f"removal of container {c.ID[:12]} is already in progress")
                return
            self._cancel_restart(c, live)   # a restart waiting for its time (restart.py)
            previous, c.State.Status = c.State.Status, "removing"
        try:
            for method, request in (
                    (self.ctr.tasks.Delete, pb.DeleteTaskRequest(container_id=c.ID)),
                    (self.ctr.containers.Delete, pb.DeleteContainerRequest(id=c.ID)),
                    (self.ctr.snapshots.Remove, pb.RemoveSnapshotRequest(
                        snapshotter=self.ctr.snapshotter, key=c.ID))):
                self._ignore_missing(method, request)
        except RemoteError as e:
            with self._lock:
                c.State.Status = previous
            raise to_daemon_error(e) from None
        self._network_down(c)   # normally done at its exit already; this makes sure
        shutil.rmtree(Container.dir_for(self.config.root, c.ID), ignore_errors=True)
        shutil.rmtree(self.config.exec_root / "containerd" / c.ID, ignore_errors=True)
        self.execs.forget(c.ID)
        with self._lock:
            self._containers.pop(c.ID, None)
            self._live.pop(c.ID, None)
            live.removed = True
            self._changed.notify_all()
        live.broadcaster.close_all()  # clients attached to a container that never ran
        self._event(c, "destroy")
        log.info("removed container %s", c.ID[:12])
        if volumes:
            self._remove_volumes(self._anonymous_volumes(c))

    def container_prune(self, filters: dict[str, list[str]]) -> list[str]:
        unsupported = set(filters) - {"label"}
        if unsupported:
            raise InvalidParameter(f"invalid filter '{sorted(unsupported)[0]}': container prune "
                                   "in labkit-dockerd filters by label only")
        with self._lock:
            candidates = [c for c in self._containers.values()
                          if c.State.Status in ("created", "exited") and matches(c, filters)
                          and not self._live[c.ID].starting]
        removed = []
        for c in candidates:
            try:
                self._remove(c)
                removed.append(c.ID)
            except DaemonError as e:
                log.warning("prune: %s: %s", c.ID[:12], e)
        return removed
