"""The real backend: Docker's user model on top of labkit-containerd (moby's `daemon`).

Theory of operation
-------------------
dockerd owns the user model: names, Docker-style configs, states and exit codes, logs,
who is attached. Everything else it asks containerd for, over gRPC (remote.py):

    docker run busybox echo hi
      create  parse "busybox" -> docker.io/library/busybox:latest; Images.Get (NOT_FOUND
              -> 404, and the CLI pulls: Transfer.Pull, reported as Docker's progress
              messages); read manifest and config from Content; merge the image's Env, Cmd,
              Entrypoint, WorkingDir, User with the request (imageconfig.py); write
              hostname/hosts/resolv.conf (etcfiles.py); Snapshots.Prepare(key=id,
              parent=chainID of the top layer); Containers.Create(spec, runtime);
              save config.v2.json                                            create.py
      attach  subscribe to the container's output (stdio.Broadcaster) — before start
                                                                             attach.py
      wait    register interest in the next exit — before start              wait.py
      start   mkfifo init-stdout/err; Tasks.Create(fifos) (containerd finds the rootfs from
              the container's snapshot key);
              copy the fifos to the log and the attached clients; Tasks.Start
                                                                             start.py
      exit    a monitor thread per task: Tasks.Wait -> save ExitCode/FinishedAt ->
              Tasks.Delete (the shim drains the output and closes the fifos) -> output EOF
              -> end the attach streams -> wake the waiters -> AutoRemove removes it
                                                                 monitor.py, remove.py

    docker exec c sh   the same dance for one more process in the running task:
              Tasks.Exec(process spec) + Start(exec_id) -> Wait -> DeleteProcess  exec.py

If labkit-dockerd stops, containers keep running (the shims hold them and their output);
the next start reloads config.v2.json, reopens the fifos and takes over (restore.py).

Each step is a room of its own (a class in its module, see core.py); `Daemon` mixes them
together. Images, volumes and exec have services of their own (images.py, volumes.py,
exec.py); the Daemon's methods for them, here, only add events.
"""

from __future__ import annotations

import logging
import os
from typing import Iterator

from labkit.dockerd import diskusage, save
from labkit.dockerd.archive import Archive
from labkit.dockerd.attach import AttachLogs
from labkit.dockerd.builder.backend import Build
from labkit.dockerd.changes import Changes
from labkit.dockerd.commit import Commit
from labkit.dockerd.container import Container
from labkit.dockerd.push import Push
from labkit.dockerd.core import DaemonCore
from labkit.dockerd.create import Create
from labkit.dockerd.errors import DaemonError, NotFound
from labkit.dockerd.info import System
from labkit.dockerd.monitor import Monitor
from labkit.dockerd.network import Networks
from labkit.dockerd.remote import RemoteError
from labkit.dockerd.remove import Remove
from labkit.dockerd.rename import Rename
from labkit.dockerd.restart import Restarts
from labkit.dockerd.restore import Restore
from labkit.dockerd.load import Load
from labkit.dockerd.start import StartStop
from labkit.dockerd.stats import Stats
from labkit.dockerd.update import Update
from labkit.dockerd.views import Views
from labkit.dockerd.volumes import ANONYMOUS
from labkit.dockerd.wait import Wait
from labkit.wire.containerd import api_pb2 as pb

log = logging.getLogger("labkit.dockerd")


class Daemon(Create, StartStop, Monitor, Restarts, Wait, AttachLogs, Remove, Restore, Views,
             Networks, System, Rename, Archive, Changes, Build, Commit, Push, Stats, Update,
             Load, DaemonCore):
    """labkit-dockerd's Backend (see backend.Backend for the contract)."""

    # ================================================================ volumes (volumes.py)

    def _volume_path(self, name: str) -> str:
        """The directory of volume `name`, made if need be; "" makes an anonymous one."""
        try:
            if name:
                try:
                    return self.volumes.get(name)["Mountpoint"]
                except NotFound:   # `-v name:/path` makes it on first use
                    pass
            volume = self.volumes.create(name or None,
                                         labels=None if name else {ANONYMOUS: ""})
            self.event_bus.publish("volume", "create", volume["Name"], {"driver": "local"})
            return volume["Mountpoint"]
        except DaemonError as e:  # volume_mounts reports ValueErrors as 400s
            raise ValueError(e.message) from None

    def _remove_volumes(self, names: list[str]) -> None:
        """Remove volumes no container uses any more (a failed create's, `rm -v`'s)."""
        for name in names:
            try:
                self.volume_remove(name, False)
            except DaemonError as e:
                log.info("volume %s stays: %s", name[:12], e.message)

    def _anonymous_volumes(self, c: Container) -> list[str]:
        """The volumes made for `c` alone: what `docker rm -v` and `--rm` remove."""
        return [m["Name"] for m in c.MountPoints
                if m.get("Name") and self.volumes.is_anonymous(m["Name"])]

    def volume_users(self, name: str) -> list[str]:
        with self._lock:
            return [c.ID for c in self._containers.values()
                    if any(m.get("Name") == name for m in c.MountPoints)]

    def volume_create(self, name: str | None, driver: str, labels: dict | None,
                      options: dict | None) -> dict:
        volume = self.volumes.create(name, driver, labels, options)
        self.event_bus.publish("volume", "create", volume["Name"], {"driver": "local"})
        return volume

    def volume_list(self) -> list[dict]:
        return self.volumes.list()

    def volume_inspect(self, name: str) -> dict:
        return self.volumes.get(name)

    def volume_remove(self, name: str, force: bool) -> None:
        self.volumes.remove(name, force, self.volume_users)
        self.event_bus.publish("volume", "destroy", name, {"driver": "local"})

    def volume_prune(self, filters: dict[str, list[str]]) -> tuple[list[str], int]:
        removed, freed = self.volumes.prune(filters, self.volume_users)
        for name in removed:
            self.event_bus.publish("volume", "destroy", name, {"driver": "local"})
        return removed, freed

    # ================================================================ images (images.py)

    def image_pull(self, from_image: str, tag: str, platform_: str) -> Iterator[dict]:
        messages = self.images.pull(from_image, tag, platform_)

        def with_event() -> Iterator[dict]:
            for message in messages:
                yield message
                status = message.get("status", "")
                if status.startswith("Status: "):  # the last message names the image
                    name = status.rsplit(" ", 1)[-1]
                    self.event_bus.publish("image", "pull", name, {"name": name})
        return with_event()

    def image_list(self, filters: dict[str, list[str]], all_: bool = False) -> list[dict]:
        return self.images.list(filters, all_)

    def image_inspect(self, name: str) -> dict:
        return self.images.inspect(name)

    def image_save(self, names: list[str]) -> Iterator[bytes]:
        chunks = save.save(self.images, names)
        for name in names:
            self.event_bus.publish("image", "save", self.images.find(name).config_digest,
                                   {"name": name})
        return chunks

    def image_tag(self, source: str, repo: str, tag: str) -> None:
        name = self.images.tag(source, repo, tag)
        self.event_bus.publish("image", "tag", self.images.find(name).config_digest,
                               {"name": name})

    def image_history(self, name: str) -> list[dict]:
        return self.images.history(name)

    def _image_users(self, image_id: str) -> list[str]:
        with self._lock:
            return [c.ID for c in self._containers.values() if c.Image == image_id]

    def image_prune(self, filters: dict[str, list[str]]) -> dict:
        result = diskusage.prune(self.images, filters, self._image_users)
        for item in result["ImagesDeleted"] or []:
            for action, key in (("untag", "Untagged"), ("delete", "Deleted")):
                if key in item:
                    self.event_bus.publish("image", action, item[key], {"name": item[key]})
        self.event_bus.publish("image", "prune", "", {"reclaimed": str(result["SpaceReclaimed"])})
        return result

    def system_df(self) -> dict:
        """`docker system df`: what images, containers and volumes take on disk."""
        layers_size, images = diskusage.disk_usage(self.images,
                                                  lambda i: len(self._image_users(i)))
        sizes = {i["Id"]: i["Size"] for i in images}
        containers = []
        for c in self.container_list(True, {}, -1):
            try:
                rw = self.ctr.call(self.ctr.snapshots.Usage, pb.SnapshotUsageRequest(
                    snapshotter=self.ctr.snapshotter, key=c["Id"])).size
            except RemoteError:
                rw = 0
            containers.append({**c, "SizeRw": rw, "SizeRootFs": rw + sizes.get(c["ImageID"], 0)})
        volumes = []
        for v in self.volumes.list():
            used = len(self.volume_users(v["Name"]))
            volumes.append({**v, "UsageData": {"Size": _du(v["Mountpoint"]),
                                               "RefCount": used}})
        return {"LayersSize": layers_size, "Images": images, "Containers": containers,
                "Volumes": volumes, "BuildCache": []}

    def image_remove(self, name: str, force: bool) -> list[dict]:
        def users(image_id: str) -> list[str]:
            with self._lock:
                return [c.ID for c in self._containers.values() if c.Image == image_id]
        result = self.images.remove(name, force, users)
        for item in result:
            for action, key in (("untag", "Untagged"), ("delete", "Deleted")):
                if key in item:
                    self.event_bus.publish("image", action, item[key], {"name": item[key]})
        return result

    # ================================================================ exec (exec.py)

    def exec_create(self, ref: str, config: dict) -> str:
        return self.execs.create(ref, config)

    def exec_start(self, exec_id: str, detach: bool):
        return self.execs.start(exec_id, detach)

    def exec_resize(self, exec_id: str, height: int, width: int) -> None:
        self.execs.resize(exec_id, height, width)

    def exec_inspect(self, exec_id: str) -> dict:
        return self.execs.inspect(exec_id)

    # ================================================================ stopping the daemon

    def close(self) -> None:
        """Stop talking to containerd; containers keep running (their shims hold them).

        Exits already being recorded are finished first (their last output is on its way
        to the log); later ones are left to the next start, which finds the stopped task."""
        with self._changed:
            self._closing.set()
            self._changed.wait_for(lambda: not self._exiting, timeout=10)
        self._networks_close()
        self.ctr.close()


def _du(top: str) -> int:
    """Bytes in the blocks under `top` (a volume's data), each inode once, links not followed."""
    seen, total = set(), 0
    for dirpath, dirnames, filenames in os.walk(top):
        for name in [*dirnames, *filenames, ""]:
            try:
                st = os.lstat(os.path.join(dirpath, name) if name else dirpath)
            except OSError:
                continue
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_blocks * 512
    return total
