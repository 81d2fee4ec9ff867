"""What every room of the daemon shares: its configuration, the container table, one lock.

labkit-dockerd's backend (`labkit.dockerd.daemon.Daemon`) is built moby-style, from small
rooms, one module each, all working on the same state:

    create.py   `docker create`            start.py    start, stop, kill, restart
    monitor.py  the exit of a task         wait.py     `docker wait` (and run's wait)
    attach.py   attach, logs, resize       remove.py   `docker rm`, container prune
    restore.py  live restore (restart)     views.py    inspect, ps, top
    network.py  networks, NetworkMode, -p  info.py     `docker version`, `docker info`
    stats.py    `docker stats`              update.py   `docker update`

Each room is a class whose methods are the Daemon's own (as moby's daemon/create.go,
start.go, … are all methods of one `Daemon`); `Daemon` mixes them together with
`DaemonCore`, below, which holds what they share. A room reaches another room's methods
through `self`: `self._remove` (remove.py), `self._monitor` (monitor.py), `self._network`
(network.py), `self._runtime_binary` (create.py).

Concurrency: one lock guards the container table and every container's state; one
condition variable on it (`_changed`) is notified on every state change, and waiters
(/wait, stop, logs --follow) wait on it. gRPC calls are made outside the lock.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from labkit import __version__, paths
from labkit.dockerd.container import Container
from labkit.dockerd.errors import InvalidParameter, NotFound
from labkit.dockerd.events import EventBus
from labkit.dockerd.exec import ExecService
from labkit.dockerd.images import ImageService
from labkit.dockerd.remote import Containerd, RemoteError
from labkit.dockerd.stdio import Broadcaster, TaskIO
from labkit.dockerd.volumes import VolumeStore

VERSION = f"{__version__}-labkit"
SHIM = "labkit-shim"  # containerd's runtime name for our containers (cf. io.containerd.runc.v2)
BUILTIN_RUNTIMES = {"labkit-runc": "labkit-runc", "runc": "runc", "crun": "crun"}
DEFAULT_MIRROR = "http://127.0.0.1:5000"


@dataclass
class DaemonConfig:
    root: Path = paths.DOCKERD_ROOT
    exec_root: Path = paths.DOCKERD_EXEC_ROOT
    containerd: str = str(paths.CONTAINERD_SOCK)
    namespace: str = paths.NAMESPACE
    mirrors: list[str] = field(default_factory=lambda: [DEFAULT_MIRROR])
    default_runtime: str = "labkit-runc"
    runtimes: dict[str, str] = field(default_factory=dict)  # --add-runtime NAME=PATH
    runtime_root: Path = paths.RUNTIME_ROOT / paths.NAMESPACE
    cgroup_parent: str = paths.CGROUP_PARENT  # containers' cgroups: <parent>/<id> (dockerd: /docker)
    # containerd's snapshotter for images and containers: "overlayfs" or "native" (dockerd
    # with the containerd image store takes snapshotter names for --storage-driver too)
    storage_driver: str = "overlayfs"


@dataclass
class Live:
    """What dockerd knows about a container only while it runs (not persisted)."""

    broadcaster: Broadcaster = field(default_factory=Broadcaster)
    io: TaskIO | None = None
    starting: bool = False
    settling: bool = False    # restore waits for containerd to say what became of its task
    exits: int = 0            # exits seen so far: a next-exit waiter waits for one more
    removed: bool = False
    stdin_pending: bytearray = field(default_factory=bytearray)
    stdin_closed: bool = False
    exit_on_next: bool = False   # the next exit was asked for (stop, kill): no restart
    backoff: float = 0.0         # seconds before the last restart (restart.py doubles it)
    restart_cancel: threading.Event | None = None  # set: a waiting restart is called off


class DaemonCore:
    """The state every room works on, and the lookups they all need."""

    def __init__(self, config: DaemonConfig, containerd: Containerd | None = None) -> None:
        self.config = config
        self.ctr = containerd or Containerd(config.containerd, config.namespace,
                                              config.storage_driver)
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._containers: dict[str, Container] = {}
        self._live: dict[str, Live] = {}
        self._reserved_names: set[str] = set()
        self.images = ImageService(self.ctr, config.mirrors)
        self.event_bus = EventBus()
        self.volumes = VolumeStore(config.root)
        self.execs = ExecService(self.ctr, config.exec_root / "containerd", self._get)
        self._closing = threading.Event()
        self._exiting: set[str] = set()  # containers whose exit is being recorded
        (config.root / "containers").mkdir(parents=True, exist_ok=True)
        (config.exec_root / "containerd").mkdir(parents=True, exist_ok=True)

    # ================================================================ lookups

    def _get(self, ref: str) -> Container:
        """Full id, name (with or without "/"), or a unique id prefix."""
        with self._lock:
            key = ref.lstrip("/")
            if key in self._containers:
                return self._containers[key]
            for c in self._containers.values():
                if c.Name == key:
                    return c
            matches = [c for c in self._containers.values() if key and c.ID.startswith(key)]
            if len(matches) > 1:
                raise InvalidParameter(f"multiple IDs found with provided prefix: {key}")
            if matches:
                return matches[0]
        raise NotFound(f"No such container: {ref}")

    def _event(self, c: Container, action: str, **extra: str) -> None:
        # the container's labels are attributes too (`docker events -f label=k=v`)
        self.event_bus.publish("container", action, c.ID, {
            **(c.Config.get("Labels") or {}),
            "image": c.Config.get("Image") or c.Image, "name": c.Name, **extra})

    def events(self, since: float | None, until: float,
               filters: dict[str, list[str]]) -> Iterator[dict]:
        return self.event_bus.stream(since, until, filters)

    def _name_in_use(self, name: str) -> bool:
        return name in self._reserved_names or any(c.Name == name for c in self._containers.values())

    def _ignore_missing(self, method, request) -> None:
        try:
            self.ctr.call(method, request)
        except RemoteError as e:
            if e.code != "NOT_FOUND":
                raise
