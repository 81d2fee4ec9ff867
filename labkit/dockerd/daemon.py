"""The real backend: Docker's user model on top of labkit-containerd (moby's `daemon`).

Theory of operation
-------------------
dockerd owns the user model: names, Docker-style configs, states and exit codes, logs,
who is attached. Everything else it asks containerd for, over gRPC (remote.py):

    docker run busybox echo hi
      create  parse "busybox" -> docker.io/library/busybox:latest; Images.Get (NOT_FOUND
              -> 404, and the CLI pulls: Transfer.Pull, reported as Docker's progress
              messages); read manifest and config from Content; merge the image's Env, Cmd,
              Entrypoint, WorkingDir, User with the request; write hostname/hosts/resolv.conf;
              Snapshots.Prepare(key=id, parent=chainID of the top layer);
              Containers.Create(spec, runtime); save config.v2.json
      attach  subscribe to the container's output (stdio.Broadcaster) — before start
      wait    register interest in the next exit — before start
      start   mkfifo init-stdout/err; Snapshots.Mounts; Tasks.Create(rootfs, fifos);
              copy the fifos to the log and the attached clients; Tasks.Start
      exit    a monitor thread per task: Tasks.Wait -> save ExitCode/FinishedAt ->
              Tasks.Delete (the shim drains the output and closes the fifos) -> output EOF
              -> end the attach streams -> wake the waiters -> AutoRemove removes it

    docker exec c sh   the same dance for one more process in the running task:
              Tasks.Exec(process spec) + Start(exec_id) -> Wait -> DeleteProcess

If labkit-dockerd stops, containers keep running (the shims hold them and their output);
the next start reloads config.v2.json, reopens the fifos and takes over (`restore`).

Concurrency: one lock guards the container table and every container's state; one
condition variable on it (`_changed`) is notified on every state change, and waiters
(/wait, stop, logs --follow) wait on it. gRPC calls are made outside the lock.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import secrets
import shutil
import signal as signals
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from labkit import __version__, paths
from labkit.containerd import api_pb2 as pb
from labkit.distribution.layers import chain_ids
from labkit.dockerd import oci
from labkit.dockerd.backend import CreateResult, Logs, WaitResult, Waiter
from labkit.dockerd.container import Container, State, parse_time
from labkit.dockerd.errors import (Conflict, DaemonError, InvalidParameter, NotFound,
                                   NotModified, SystemError_)
from labkit.dockerd.events import EventBus
from labkit.dockerd.exec import ExecService
from labkit.dockerd.images import ImageRecord, ImageService
from labkit.dockerd.names import generate_name
from labkit.dockerd.remote import SNAPSHOTTER, Containerd, RemoteError, to_daemon_error
from labkit.dockerd.router import API_VERSION, MIN_API_VERSION
from labkit.dockerd.jsonlog import ZERO_TIME, LogEntry, read_log, rfc3339nano
from labkit.stdcopy import STDERR, STDOUT
from labkit.dockerd.stdio import Attachment, Broadcaster, TaskIO
from labkit.dockerd.volumes import VolumeStore

log = logging.getLogger("labkit.dockerd")

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


@dataclass
class _Live:
    """What dockerd knows about a container only while it runs (not persisted)."""

    broadcaster: Broadcaster = field(default_factory=Broadcaster)
    io: TaskIO | None = None
    starting: bool = False
    exits: int = 0            # exits seen so far: a next-exit waiter waits for one more
    removed: bool = False
    stdin_pending: bytearray = field(default_factory=bytearray)
    stdin_closed: bool = False


class Daemon:
    """labkit-dockerd's Backend (see backend.Backend for the contract)."""

    def __init__(self, config: DaemonConfig, containerd: Containerd | None = None) -> None:
        self.config = config
        self.ctr = containerd or Containerd(config.containerd, config.namespace)
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._containers: dict[str, Container] = {}
        self._live: dict[str, _Live] = {}
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
        self.event_bus.publish("container", action, c.ID, {
            "image": c.Config.get("Image") or c.Image, "name": c.Name, **extra})

    def events(self, since: float | None, until: float,
               filters: dict[str, list[str]]) -> Iterator[dict]:
        return self.event_bus.stream(since, until, filters)

    def _name_in_use(self, name: str) -> bool:
        return name in self._reserved_names or any(c.Name == name for c in self._containers.values())

    # ================================================================ networks

    # What NetworkMode can name. labkit has no bridge (veths, IPAM, NAT) yet: "bridge", the
    # default, is a network namespace of the container's own with only loopback, like "none".
    NETWORKS = {"bridge": "a namespace of its own with loopback only (no bridge yet)",
                "host": "the host's network namespace", "none": "loopback only"}

    def network_list(self) -> list[dict]:
        return [self.network_inspect(name) for name in self.NETWORKS]

    def network_inspect(self, name: str) -> dict:
        wanted = name if name in self.NETWORKS else next(
            (n for n in self.NETWORKS if _network_id(n).startswith(name) and len(name) >= 3), None)
        if wanted is None:
            raise NotFound(f"network {name} not found")
        return {"Name": wanted, "Id": _network_id(wanted), "Created": ZERO_TIME,
                "Scope": "local", "Driver": "null" if wanted == "none" else wanted,
                "EnableIPv6": False, "IPAM": {"Driver": "default", "Options": None, "Config": []},
                "Internal": False, "Attachable": False, "Ingress": False, "Containers": {},
                "Options": {}, "Labels": {"labkit.note": self.NETWORKS[wanted]}}

    # ================================================================ volumes (volumes.py)

    def _volume_path(self, name: str) -> str:
        try:
            return self.volumes.path(name)
        except DaemonError as e:  # volume_mounts reports ValueErrors as 400s
            raise ValueError(e.message) from None

    def _volume_users(self, name: str) -> list[str]:
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
        self.volumes.remove(name, force, self._volume_users)
        self.event_bus.publish("volume", "destroy", name, {"driver": "local"})

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

    def image_list(self, filters: dict[str, list[str]]) -> list[dict]:
        return self.images.list(filters)

    def image_inspect(self, name: str) -> dict:
        return self.images.inspect(name)

    def image_history(self, name: str) -> list[dict]:
        return self.images.history(name)

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

    # ================================================================ create

    def _runtime_binary(self, name: str) -> str:
        table = {**BUILTIN_RUNTIMES, **self.config.runtimes}
        if name in table:
            binary = table[name]
        elif "/" in name:
            binary = name
        else:
            raise InvalidParameter(f"unknown or invalid runtime name: {name}")
        if not os.path.isabs(binary):
            # containerd may run with another PATH: hand down an absolute path when we can
            beside_python = Path(sys.executable).parent / binary
            found = shutil.which(binary) or (str(beside_python) if beside_python.exists() else None)
            binary = found or binary
        return binary

    def container_create(self, name: str | None, config: dict) -> CreateResult:
        host_config = config.pop("HostConfig", None) or {}
        config.pop("NetworkingConfig", None)
        if not isinstance(host_config, dict):
            raise InvalidParameter("invalid HostConfig: expected a JSON object")
        _check_config(config, host_config)
        image_name = config["Image"]
        image = self.images.find(image_name)
        runtime = host_config.get("Runtime") or self.config.default_runtime
        binary = self._runtime_binary(runtime)

        # Merge the image's config with the request's, as moby's daemon/create.go does.
        img = image.config.get("config") or {}
        entrypoint = config.get("Entrypoint")
        cmd = config.get("Cmd")
        if entrypoint is None:
            entrypoint = img.get("Entrypoint") or []
            if not cmd:
                cmd = img.get("Cmd") or []
        elif not cmd:
            cmd = []  # a new entrypoint drops the image's Cmd
        args = list(entrypoint or []) + list(cmd or [])
        if not args:
            raise InvalidParameter("no command specified")

        with self._lock:
            if name:
                if self._name_in_use(name):
                    other = next((c.ID for c in self._containers.values() if c.Name == name), "")
                    raise Conflict(f'Conflict. The container name "/{name}" is already in use by '
                                   f'container "{other}". You have to remove (or rename) that '
                                   "container to be able to reuse that name.")
            else:
                name = generate_name(self._name_in_use)
            self._reserved_names.add(name)
        cid = secrets.token_hex(32)
        try:
            return self._create(cid, name, config, host_config, image, runtime, binary,
                                entrypoint, cmd, args)
        finally:
            with self._lock:
                self._reserved_names.discard(name)

    def _create(self, cid: str, name: str, config: dict, host_config: dict, image: ImageRecord,
                runtime: str, binary: str, entrypoint: list, cmd: list, args: list) -> CreateResult:
        img = image.config.get("config") or {}
        hostname = config.get("Hostname") or cid[:12]
        env = oci.merge_env(img.get("Env") or [], config.get("Env") or [])
        if not any(e.startswith("PATH=") for e in env):
            env.insert(0, oci.DEFAULT_PATH)
        merged = dict(config)
        merged.update({
            "Hostname": hostname,
            "Env": env,
            "Cmd": cmd or None,
            "Entrypoint": entrypoint or None,
            "WorkingDir": config.get("WorkingDir") or img.get("WorkingDir") or "",
            "User": config.get("User") or img.get("User") or "",
            "Labels": {**(img.get("Labels") or {}), **(config.get("Labels") or {})},
            "StopSignal": config.get("StopSignal") or img.get("StopSignal") or "SIGTERM",
        })
        host_config = dict(host_config)
        host_config["Runtime"] = runtime
        host_config["NetworkMode"] = host_config.get("NetworkMode") or "default"
        # what a client may read back (docker-py looks at LogConfig.Type): Docker's defaults
        log_config = host_config.get("LogConfig") or {}
        if log_config.get("Type") not in (None, "", "json-file"):
            raise InvalidParameter(f"logging driver {log_config['Type']!r} is not supported: "
                                   "labkit-dockerd writes json-file logs only")
        host_config["LogConfig"] = {"Type": "json-file", "Config": log_config.get("Config") or {}}
        host_config["RestartPolicy"] = host_config.get("RestartPolicy") or {"Name": "no",
                                                                          "MaximumRetryCount": 0}

        network = self._network(host_config["NetworkMode"])
        if network == "host" and not config.get("Hostname"):
            hostname = platform.node()  # the host's network, the host's name (as Docker does)
        cdir = Container.dir_for(self.config.root, cid)
        cdir.mkdir(parents=True, exist_ok=True)
        files = {"/etc/hostname": cdir / "hostname", "/etc/hosts": cdir / "hosts",
                 "/etc/resolv.conf": cdir / "resolv.conf"}
        files["/etc/hostname"].write_text(hostname + "\n")
        try:
            if network == "host":
                shutil.copyfile("/etc/hosts", files["/etc/hosts"])
            else:
                files["/etc/hosts"].write_text(
                    oci.hosts_file(hostname, host_config.get("ExtraHosts")))
            try:
                host_resolv = Path("/etc/resolv.conf").read_text()
            except OSError:
                host_resolv = ""
            files["/etc/resolv.conf"].write_text(oci.resolv_conf(
                host_resolv, host_config.get("Dns"), host_config.get("DnsSearch"),
                host_config.get("DnsOptions")))
        except (ValueError, TypeError) as e:
            shutil.rmtree(cdir, ignore_errors=True)
            raise InvalidParameter(str(e)) from None

        spec_env = env + [f"HOSTNAME={hostname}"] if not any(
            e.startswith("HOSTNAME=") for e in env) else env
        merged["Hostname"] = hostname
        if merged.get("Tty") and not any(e.startswith("TERM=") for e in spec_env):
            spec_env = spec_env + ["TERM=xterm"]
        console = host_config.get("ConsoleSize") or [0, 0]
        cgroup_parent = host_config.get("CgroupParent") or self.config.cgroup_parent
        if not isinstance(cgroup_parent, str) or not cgroup_parent.startswith("/"):
            shutil.rmtree(cdir, ignore_errors=True)
            raise InvalidParameter(f"invalid cgroup parent {cgroup_parent!r}: expected an "
                                   "absolute path such as /labkit")
        try:
            volumes = oci.volume_mounts(host_config.get("Binds"), host_config.get("Mounts"),
                                        self._volume_path)
            spec = oci.container_spec(
                args=args, env=spec_env, cwd=merged["WorkingDir"] or "/", user=merged["User"],
                hostname=hostname, tty=bool(merged.get("Tty")),
                etc_files={k: str(v) for k, v in files.items()},
                read_only_rootfs=bool(host_config.get("ReadonlyRootfs")),
                console_size=(int(console[0]), int(console[1])) if len(console) == 2 else None,
                cgroups_path=f"{cgroup_parent.rstrip('/')}/{cid}",
                limits=oci.resources(host_config), extra_mounts=volumes, network=network,
                caps=oci.capabilities(host_config.get("CapAdd"), host_config.get("CapDrop")))
        except (ValueError, TypeError) as e:
            shutil.rmtree(cdir, ignore_errors=True)
            raise InvalidParameter(str(e)) from None

        c = Container(ID=cid, Name=name, Created=rfc3339nano(), Path=args[0], Args=args[1:],
                      Config=merged, HostConfig=host_config, Image=image.config_digest,
                      ImageRef=image.name, Runtime=runtime,
                      LogPath=str(cdir / f"{cid}-json.log"),
                      HostnamePath=str(files["/etc/hostname"]), HostsPath=str(files["/etc/hosts"]),
                      ResolvConfPath=str(files["/etc/resolv.conf"]),
                      MountPoints=oci.mount_points(volumes))

        top = chain_ids(image.diff_ids)[-1] if image.diff_ids else ""
        options = json.dumps({"binary_name": binary, "root": str(self.config.runtime_root)})
        record = pb.Container(id=cid, image=image.name, labels={"labkit.dockerd/name": name},
                              runtime=pb.Container.Runtime(name=SHIM, options=options.encode()),
                              spec=json.dumps(spec).encode(), snapshotter=SNAPSHOTTER,
                              snapshot_key=cid)
        prepared = False
        try:
            self.ctr.call(self.ctr.snapshots.Prepare, pb.PrepareSnapshotRequest(
                snapshotter=SNAPSHOTTER, key=cid, parent=top))
            prepared = True
            self.ctr.call(self.ctr.containers.Create, pb.CreateContainerRequest(container=record))
        except RemoteError as e:
            if prepared:
                self._ignore_missing(self.ctr.snapshots.Remove,
                                     pb.RemoveSnapshotRequest(snapshotter=SNAPSHOTTER, key=cid))
            shutil.rmtree(cdir, ignore_errors=True)
            raise to_daemon_error(e) from None
        with self._lock:
            c.save(self.config.root)
            self._containers[cid] = c
            self._live[cid] = _Live()
        self._event(c, "create")
        log.info("created container %s (%s) from %s", cid[:12], name, image.name)
        return CreateResult(cid, _warnings(host_config))

    def _network(self, mode: str) -> str:
        """HostConfig.NetworkMode -> oci.container_spec's `network`.

        labkit has no bridge network (yet): "default", "bridge" and "none" all give the
        container a network namespace of its own with only a loopback interface. "host"
        shares the host's; "container:<name>" joins a running container's (its namespace
        is looked up now, at create)."""
        if mode in ("default", "bridge", "none"):
            return "private"
        if mode == "host":
            return "host"
        if mode.startswith("container:"):
            other = self._get(mode.split(":", 1)[1])
            if not other.State.Running or not other.State.Pid:
                raise Conflict(f"cannot join network of a non running container: {other.ID}")
            return f"/proc/{other.State.Pid}/ns/net"
        # 400, not 404: a 404 on create makes the CLI think the IMAGE is missing and pull it
        raise InvalidParameter(f"network {mode} not found (labkit-dockerd knows default, "
                               "bridge, none, host and container:<name>)")

    def _ignore_missing(self, method, request) -> None:
        try:
            self.ctr.call(method, request)
        except RemoteError as e:
            if e.code != "NOT_FOUND":
                raise

    # ================================================================ start and exit

    def container_start(self, ref: str) -> None:
        with self._lock:
            c = self._get(ref)
            live = self._live[c.ID]
            if c.State.Running or live.starting:
                raise NotModified("container already started")
            if c.State.Status == "removing":
                raise Conflict(f"container {c.ID} is marked for removal and cannot be started")
            live.starting = True
        try:
            self._start(c, live)
        finally:
            with self._lock:
                live.starting = False
                self._changed.notify_all()

    def _start(self, c: Container, live: _Live) -> None:
        io = TaskIO(self.config.exec_root / "containerd" / c.ID, Path(c.LogPath), c.tty,
                    bool(c.Config.get("OpenStdin")), live.broadcaster, end_clients_at_eof=False)
        io.create()
        try:
            mounts = self.ctr.call(self.ctr.snapshots.Mounts, pb.MountsRequest(
                snapshotter=SNAPSHOTTER, key=c.ID)).mounts
            self.ctr.call(self.ctr.tasks.Create, pb.CreateTaskRequest(
                container_id=c.ID, rootfs=mounts, stdin=io.stdin_path, stdout=io.stdout_path,
                stderr=io.stderr_path, terminal=c.tty), timeout=120)
        except RemoteError as e:
            io.abort()
            io.cleanup()
            self._start_failed(c, live, e)
        io.start()
        try:
            pid = self.ctr.call(self.ctr.tasks.Start, pb.StartRequest(container_id=c.ID),
                                timeout=120).pid
        except RemoteError as e:
            try:
                self.ctr.call(self.ctr.tasks.Delete, pb.DeleteTaskRequest(container_id=c.ID))
            except RemoteError:
                pass
            io.abort()
            io.done.wait(5)
            io.cleanup()
            self._start_failed(c, live, e)
        with self._lock:
            live.io = io
            pending, live.stdin_pending = bytes(live.stdin_pending), bytearray()
            close_stdin = live.stdin_closed
            c.State = State(Status="running", Running=True, Pid=pid, StartedAt=rfc3339nano(),
                            FinishedAt=c.State.FinishedAt)
            c.save(self.config.root)
            self._changed.notify_all()
        if pending:
            io.write_stdin(pending)
        if close_stdin:
            io.close_stdin()
        threading.Thread(target=self._monitor, args=(c, live, io), daemon=True,
                         name=f"monitor-{c.ID[:12]}").start()
        self._event(c, "start")
        log.info("started container %s, pid %d", c.ID[:12], pid)

    def _start_failed(self, c: Container, live: _Live, e: RemoteError) -> None:
        """Record a failed start as Docker does, then raise the error for the client."""
        message = e.message
        lowered = message.lower()
        if "executable file not found" in lowered or "no such file or directory" in lowered:
            code = 127
        elif "permission denied" in lowered:
            code = 126
        else:
            code = 128
        with self._lock:
            c.State.Error = message
            c.State.ExitCode = code
            c.save(self.config.root)
            live.exits += 1
            self._changed.notify_all()
        live.broadcaster.close_all()
        if c.HostConfig.get("AutoRemove"):
            try:
                self._remove(c)
            except DaemonError as err:
                log.warning("auto-remove of %s after a failed start: %s", c.ID[:12], err)
        if e.code == "UNAVAILABLE":
            raise SystemError_(message)
        raise InvalidParameter(message)

    def _monitor(self, c: Container, live: _Live, io: TaskIO | None) -> None:
        """Wait for the task to exit, record the exit, clean up the task, wake the waiters."""
        exit_code, finished = 255, None
        while True:
            try:
                resp = self.ctr.call(self.ctr.tasks.Wait, pb.WaitRequest(container_id=c.ID),
                                     timeout=None)
                exit_code = resp.exit_status
                if resp.exited_at.seconds:
                    finished = rfc3339nano(resp.exited_at.seconds * 10**9 + resp.exited_at.nanos)
                break
            except RemoteError as e:
                if self._closing.is_set():
                    return  # dockerd is stopping, not the container: the next start takes over
                if e.code == "UNAVAILABLE":  # containerd restarting: the task lives on; retry
                    time.sleep(1)
                    continue
                log.warning("waiting for %s failed: %s", c.ID[:12], e)
                break
        with self._lock:
            if self._closing.is_set():
                return  # the next start finds the stopped task and finishes the job
            self._exiting.add(c.ID)  # close() lets this finish: the output must reach the log
        try:
            self._record_exit(c, live, io, exit_code, finished)
        finally:
            with self._lock:
                self._exiting.discard(c.ID)
                self._changed.notify_all()
        if c.HostConfig.get("AutoRemove") and not live.removed and not self._closing.is_set():
            try:
                self._remove(c)
            except DaemonError as e:
                log.warning("auto-remove of %s failed: %s", c.ID[:12], e)

    def _record_exit(self, c: Container, live: _Live, io: TaskIO | None, exit_code: int,
                     finished: str | None) -> None:
        # Save the exit BEFORE deleting the task: were dockerd killed in between, its next
        # start would find no task and could only guess the exit code.
        with self._lock:
            if c.State.Status == "running":
                c.State = State(Status="exited", ExitCode=exit_code, StartedAt=c.State.StartedAt,
                                FinishedAt=finished or rfc3339nano())
            if not live.removed:
                c.save(self.config.root)
        # Deleting the task makes the shim drain the output and close the fifos: that EOF
        # is what ends the attach streams (before the exit is announced, as Docker does).
        try:
            self.ctr.call(self.ctr.tasks.Delete, pb.DeleteTaskRequest(container_id=c.ID))
        except RemoteError as e:
            if e.code != "NOT_FOUND":
                log.warning("deleting task %s: %s", c.ID[:12], e)
        if io is not None:
            if not io.done.wait(5):
                io.abort()
                io.done.wait(2)
            io.cleanup()
        live.broadcaster.close_all()  # attached clients see EOF before waiters get the exit
        self._event(c, "die", exitCode=str(exit_code))
        with self._lock:
            live.io = None
            live.exits += 1
            self._changed.notify_all()
        log.info("container %s exited with %d", c.ID[:12], exit_code)

    # ================================================================ stop, kill, remove

    def _signal(self, c: Container, sig: int) -> None:
        try:
            self.ctr.call(self.ctr.tasks.Kill, pb.KillRequest(container_id=c.ID, signal=sig))
        except RemoteError as e:
            if e.code == "NOT_FOUND":  # it exited meanwhile
                return
            raise to_daemon_error(e) from None

    def _wait_stopped(self, c: Container, timeout: float | None) -> bool:
        """Wait until the exit is fully processed: recorded, and the output in the log."""
        with self._changed:
            live = self._live.get(c.ID)
            return self._changed.wait_for(
                lambda: not c.State.Running and (live is None or live.io is None),
                timeout=timeout)

    def container_stop(self, ref: str, timeout: int | None, signal: str | None) -> None:
        c = self._get(ref)
        if not c.State.Running:
            raise NotModified("container already stopped")
        sig = parse_signal(signal or c.Config.get("StopSignal") or "SIGTERM")
        if timeout is None:
            timeout = c.Config.get("StopTimeout") or 10
        self._signal(c, sig)
        self._event(c, "kill", signal=str(sig))
        if self._wait_stopped(c, None if timeout < 0 else timeout):
            self._event(c, "stop")
            return
        log.info("container %s did not stop after %ss: killing it", c.ID[:12], timeout)
        self._signal(c, signals.SIGKILL)
        if not self._wait_stopped(c, 10):
            raise SystemError_(f"container {c.ID[:12]} did not exit after SIGKILL")
        self._event(c, "stop")

    def container_kill(self, ref: str, signal: str | None) -> None:
        c = self._get(ref)
        sig = parse_signal(signal or "SIGKILL")
        if not c.State.Running:
            raise Conflict(f"Container {c.ID} is not running")
        self._signal(c, sig)
        self._event(c, "kill", signal=str(sig))

    def container_remove(self, ref: str, force: bool, volumes: bool) -> None:
        c = self._get(ref)
        if self._live[c.ID].starting:
            raise Conflict(f"container {c.ID[:12]} is starting; try again when it has started")
        if c.State.Running:
            if not force:
                raise Conflict(f"You cannot remove a running container {c.ID}. Stop the "
                               "container before attempting removal or force remove")
            self._signal(c, signals.SIGKILL)
            if not self._wait_stopped(c, 15):
                raise SystemError_(f"container {c.ID[:12]} did not exit after SIGKILL")
        self._remove(c)

    def _remove(self, c: Container) -> None:
        with self._lock:
            live = self._live.get(c.ID)
            if live is None or live.removed:
                return
            if c.State.Status == "removing":
                # another request (or AutoRemove) is at it: its result is ours
                if not self._changed.wait_for(lambda: live.removed, timeout=15):
                    raise Conflict(f"removal of container {c.ID[:12]} is already in progress")
                return
            previous, c.State.Status = c.State.Status, "removing"
        try:
            for method, request in (
                    (self.ctr.tasks.Delete, pb.DeleteTaskRequest(container_id=c.ID)),
                    (self.ctr.containers.Delete, pb.DeleteContainerRequest(id=c.ID)),
                    (self.ctr.snapshots.Remove, pb.RemoveSnapshotRequest(
                        snapshotter=SNAPSHOTTER, key=c.ID))):
                self._ignore_missing(method, request)
        except RemoteError as e:
            with self._lock:
                c.State.Status = previous
            raise to_daemon_error(e) from None
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

    # ================================================================ wait, attach, logs

    def container_wait(self, ref: str, condition: str) -> Waiter:
        with self._lock:
            c = self._get(ref)
            live = self._live[c.ID]
            seen = live.exits

        if condition == "removed":
            done = lambda: live.removed  # noqa: E731
        elif condition == "next-exit":
            done = lambda: live.exits > seen or live.removed  # noqa: E731
        else:
            # not running, and its output drained (live.io is dropped last)
            done = lambda: (not c.State.Running and live.io is None  # noqa: E731
                            and not live.starting) or live.removed

        def waiter() -> WaitResult:
            # The answer carries no Error: a failed start was already reported by /start
            # (the CLI would print it twice, as "Error waiting for container: ...").
            with self._changed:
                self._changed.wait_for(done)
                return WaitResult(c.State.ExitCode)
        return waiter

    def _stdin(self, c: Container, live: _Live, data: bytes | None) -> None:
        """Bytes from an attached client for the container's stdin (None: the client closed)."""
        with self._lock:
            io = live.io
            if io is None:  # not started yet: `docker run -i` sends stdin before /start
                if data is None:
                    live.stdin_closed = bool(c.Config.get("StdinOnce"))
                else:
                    live.stdin_pending += data
                return
        if data is None:
            if c.Config.get("StdinOnce"):
                io.close_stdin()
                self._close_io(c)
        else:
            io.write_stdin(data)

    def _close_io(self, c: Container) -> None:
        """Tell the shim that stdin ended (Tasks.CloseIO): it holds the stdin fifo open
        itself, so closing our end alone is no EOF for the container."""
        try:
            self.ctr.call(self.ctr.tasks.CloseIO, pb.CloseIORequest(container_id=c.ID, stdin=True))
        except RemoteError as e:
            log.info("closing stdin of %s: %s", c.ID[:12], e)

    def container_attach(self, ref: str, stdin: bool, stdout: bool, stderr: bool, logs: bool,
                         stream: bool):
        with self._lock:
            c = self._get(ref)
            live = self._live[c.ID]
        feed = None
        if stdin and c.Config.get("OpenStdin"):
            feed = lambda data: self._stdin(c, live, data)  # noqa: E731
        entries: list[LogEntry] = []
        if logs:
            wanted = {s for s, on in ((STDOUT, stdout), (STDERR, stderr)) if on}
            entries = [e for e in read_log(c.LogPath)[0] if e.stream in wanted]
        inner = live.broadcaster.subscribe(c.tty, stdout, stderr, feed) if stream else None
        self._event(c, "attach")
        return _AttachWithLogs(c.tty, entries, inner)

    def container_logs(self, ref: str, follow: bool, stdout: bool, stderr: bool,
                       tail: int | None, since: float, until: float) -> Logs:
        with self._lock:
            c = self._get(ref)
            live = self._live[c.ID]
        wanted = {s for s, on in ((STDOUT, stdout), (STDERR, stderr)) if on}

        def keep(e: LogEntry) -> bool:
            if e.stream not in wanted:
                return False
            t = parse_time(e.time)
            return (not since or t >= since) and (not until or t <= until)

        def entries() -> Iterator[LogEntry]:
            items, offset = read_log(c.LogPath)
            items = [e for e in items if keep(e)]
            if tail is not None:
                items = items[-tail:] if tail > 0 else []
            yield from items
            while follow:
                with self._lock:
                    # sampled BEFORE reading: once the copiers are done, one last read is complete
                    active = (live.io is not None or live.starting) and not live.removed
                new, offset = read_log(c.LogPath, offset)
                yield from (e for e in new if keep(e))
                if not active:
                    return
                time.sleep(0.1)
        return Logs(c.tty, entries())

    def container_resize(self, ref: str, height: int, width: int) -> None:
        c = self._get(ref)
        if not c.State.Running:
            raise Conflict(f"Container {c.ID} is not running")
        if height < 0 or width < 0:
            raise InvalidParameter("invalid size: height and width must not be negative")
        if c.tty:  # the shim sets the pty's size (TIOCSWINSZ); the program gets SIGWINCH
            try:
                self.ctr.call(self.ctr.tasks.ResizePty, pb.ResizePtyRequest(
                    container_id=c.ID, width=width, height=height))
            except RemoteError as e:
                raise to_daemon_error(e) from None

    # ================================================================ exec (exec.py)

    def exec_create(self, ref: str, config: dict) -> str:
        return self.execs.create(ref, config)

    def exec_start(self, exec_id: str, detach: bool):
        return self.execs.start(exec_id, detach)

    def exec_resize(self, exec_id: str, height: int, width: int) -> None:
        self.execs.resize(exec_id, height, width)

    def exec_inspect(self, exec_id: str) -> dict:
        return self.execs.inspect(exec_id)

    # ================================================================ views

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
            try:
                status = Path(f"/proc/{pid}/status").read_text()
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue  # exited meanwhile
            fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
            rows.append([fields.get("Uid", "").split()[0] if fields.get("Uid") else "",
                         str(pid), fields.get("PPid", "").strip(),
                         fields.get("State", "").split()[0] if fields.get("State") else "",
                         cmdline.replace(b"\0", b" ").decode(errors="replace").strip()])
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
                if not (all or c.State.Running or filters):
                    continue
                if not _matches(c, filters):
                    continue
                out.append(c.summary(c.Config.get("Image") or c.Image, now))
        return out[:limit] if limit and limit > 0 else out

    def container_prune(self, filters: dict[str, list[str]]) -> list[str]:
        unsupported = set(filters) - {"label"}
        if unsupported:
            raise InvalidParameter(f"invalid filter '{sorted(unsupported)[0]}': container prune "
                                   "in labkit-dockerd filters by label only")
        with self._lock:
            candidates = [c for c in self._containers.values()
                          if c.State.Status in ("created", "exited") and _matches(c, filters)
                          and not self._live[c.ID].starting]
        removed = []
        for c in candidates:
            try:
                self._remove(c)
                removed.append(c.ID)
            except DaemonError as e:
                log.warning("prune: %s: %s", c.ID[:12], e)
        return removed

    def version(self) -> dict:
        try:
            containerd_version = self.ctr.version()
        except RemoteError as e:
            containerd_version = f"unreachable ({e.code})"
        runtime = self.config.default_runtime
        kernel = platform.release()
        return {
            "Platform": {"Name": "labkit"},
            "Components": [
                {"Name": "Engine", "Version": VERSION,
                 "Details": {"ApiVersion": API_VERSION, "MinAPIVersion": MIN_API_VERSION,
                             "Arch": _arch(), "Os": "linux", "KernelVersion": kernel,
                             "GitCommit": "labkit", "GoVersion": _python()}},
                {"Name": "labkit-containerd", "Version": containerd_version,
                 "Details": {"Address": self.config.containerd}},
                {"Name": runtime, "Version": VERSION if runtime == "labkit-runc" else "",
                 "Details": {"Binary": self._safe_binary(runtime)}},
            ],
            "Version": VERSION,
            "ApiVersion": API_VERSION,
            "MinAPIVersion": MIN_API_VERSION,
            "GitCommit": "labkit",
            "GoVersion": _python(),
            "Os": "linux",
            "Arch": _arch(),
            "KernelVersion": kernel,
            "BuildTime": "",
        }

    def _safe_binary(self, name: str) -> str:
        try:
            return self._runtime_binary(name)
        except DaemonError:
            return name

    def info(self) -> dict:
        with self._lock:
            states = [c.State.Status for c in self._containers.values()]
        try:
            images = len({r.config_digest for r in self.images.all()})
        except DaemonError:
            images = 0
        runtimes = {n: {"path": self._safe_binary(n)}
                    for n in {**BUILTIN_RUNTIMES, **self.config.runtimes}}
        return {
            "ID": "labkit", "Name": platform.node(),
            "Containers": len(states),
            "ContainersRunning": states.count("running"),
            "ContainersPaused": 0,
            "ContainersStopped": len(states) - states.count("running"),
            "Images": images,
            "Driver": SNAPSHOTTER, "DriverStatus": [],
            "Plugins": {"Volume": [], "Network": ["none"], "Authorization": None,
                        "Log": ["json-file"]},
            "MemoryLimit": False, "SwapLimit": False, "CpuCfsPeriod": False, "CpuCfsQuota": False,
            "IPv4Forwarding": False, "Debug": log.isEnabledFor(logging.DEBUG),
            "NFd": len(os.listdir("/proc/self/fd")), "NGoroutines": threading.active_count(),
            "SystemTime": rfc3339nano(), "LoggingDriver": "json-file",
            "CgroupDriver": "cgroupfs", "CgroupVersion": _cgroup_version(),
            "KernelVersion": platform.release(), "OperatingSystem": _os_name(),
            "OSVersion": "", "OSType": "linux", "Architecture": platform.machine(),
            "NCPU": os.cpu_count() or 1, "MemTotal": _mem_total(),
            "IndexServerAddress": "https://index.docker.io/v1/",
            "RegistryConfig": {"Mirrors": list(self.config.mirrors), "IndexConfigs": {},
                               "InsecureRegistryCIDRs": ["127.0.0.0/8"]},
            "DockerRootDir": str(self.config.root), "HttpProxy": "", "HttpsProxy": "",
            "NoProxy": "", "Labels": [], "ExperimentalBuild": False,
            "ServerVersion": VERSION, "Runtimes": runtimes,
            "DefaultRuntime": self.config.default_runtime,
            "Swarm": {"LocalNodeState": "inactive", "ControlAvailable": False, "NodeID": "",
                      "NodeAddr": "", "RemoteManagers": None},
            "LiveRestoreEnabled": True, "Isolation": "", "InitBinary": "",
            "ContainerdCommit": {"ID": ""}, "RuncCommit": {"ID": ""}, "InitCommit": {"ID": ""},
            "SecurityOptions": [], "Warnings": [],
        }

    # ================================================================ restart of the daemon

    def restore(self) -> None:
        """Reload the containers saved under <root>/containers after a daemon restart.

        Containers that were running are checked against containerd: a task that still
        runs gets a new monitor (and its fifos reopened), one that is gone is marked exited.
        """
        for cfg in sorted((self.config.root / "containers").glob("*/config.v2.json")):
            try:
                c = Container.load(cfg.parent)
            except (OSError, ValueError, TypeError) as e:
                log.warning("skipping %s: %s", cfg.parent, e)
                continue
            live = _Live()
            with self._lock:
                self._containers[c.ID] = c
                self._live[c.ID] = live
            if not c.State.Running:
                # dockerd may have stopped between saving an exit and deleting the task
                try:
                    self._ignore_missing(self.ctr.tasks.Delete,
                                         pb.DeleteTaskRequest(container_id=c.ID))
                except RemoteError as e:
                    log.debug("container %s: deleting a stale task: %s", c.ID[:12], e)
                continue
            try:
                self.ctr.call(self.ctr.tasks.Get, pb.GetRequest(container_id=c.ID))
            except RemoteError as e:
                if e.code == "UNAVAILABLE":
                    # containerd is not up (yet): the monitor below retries until it is
                    log.warning("container %s: %s", c.ID[:12], e)
                else:
                    log.warning("container %s was running, but its task is gone (%s)",
                                c.ID[:12], e)
                    c.State = State(Status="exited", ExitCode=255, StartedAt=c.State.StartedAt,
                                    FinishedAt=rfc3339nano(),
                                    Error="the task was gone when labkit-dockerd restarted")
                    c.save(self.config.root)
                    continue
            # Running, or exited while we were away: either way the monitor takes over (Wait
            # answers at once for an exited task), after the fifos are reopened — the shim
            # kept the output that came meanwhile in them.
            io: TaskIO | None = TaskIO(self.config.exec_root / "containerd" / c.ID,
                                       Path(c.LogPath), c.tty, False, live.broadcaster,
                                       end_clients_at_eof=False)
            try:
                io.reopen()
                io.start()
            except OSError as e:
                log.warning("container %s: cannot reopen its output: %s", c.ID[:12], e)
                io = None
            live.io = io
            threading.Thread(target=self._monitor, args=(c, live, io), daemon=True,
                             name=f"monitor-{c.ID[:12]}").start()

    def close(self) -> None:
        """Stop talking to containerd; containers keep running (their shims hold them).

        Exits already being recorded are finished first (their last output is on its way
        to the log); later ones are left to the next start, which finds the stopped task."""
        with self._changed:
            self._closing.set()
            self._changed.wait_for(lambda: not self._exiting, timeout=10)
        self.ctr.close()


class _AttachWithLogs:
    """An attach stream: the saved log first (logs=1), then live output (stream=1)."""

    def __init__(self, tty: bool, entries: list[LogEntry], inner: Attachment | None) -> None:
        self.tty = tty
        self._entries = entries
        self._inner = inner

    def output(self) -> Iterator[tuple[int, bytes]]:
        for e in self._entries:
            yield e.stream, e.data
        if self._inner is not None:
            yield from self._inner.output()

    def write_stdin(self, data: bytes) -> None:
        if self._inner is not None:
            self._inner.write_stdin(data)

    def close_stdin(self) -> None:
        if self._inner is not None:
            self._inner.close_stdin()

    def close(self) -> None:
        if self._inner is not None:
            self._inner.close()


# ================================================================ helpers

def parse_signal(value: str | int) -> int:
    """"SIGTERM", "TERM", "15" -> 15; anything else is a 400."""
    text = str(value).strip().upper()
    if text.isdigit():
        number = int(text)
        if 0 < number < 65:
            return number
    else:
        name = text if text.startswith("SIG") else "SIG" + text
        try:
            return int(signals.Signals[name])
        except KeyError:
            pass
    raise InvalidParameter(f"Invalid signal: {value}")


def _warnings(host_config: dict) -> list[str]:
    """Settings accepted but not acted upon: the CLI prints each as "WARNING: ..."."""
    out = []
    if host_config.get("PortBindings") or host_config.get("PublishAllPorts"):
        out.append("labkit-dockerd has no bridge network yet: published ports (-p, -P) "
                   "are ignored")
    if host_config.get("Init"):
        out.append("labkit-dockerd has no init process to inject: --init is ignored")
    if host_config.get("Ulimits"):
        out.append("labkit-dockerd does not set rlimits yet: --ulimit is ignored")
    return out


def _check_config(config: dict, host_config: dict) -> None:
    """Type-check what create uses, so bad input is a 400 naming the field, never a 500."""
    image = config.get("Image")
    if not isinstance(image, str) or not image:
        raise InvalidParameter("no image given: the config's \"Image\" is empty")
    for key in ("Cmd", "Entrypoint", "Env"):
        value = config.get(key)
        if isinstance(value, str) and key != "Env":
            config[key] = [value]  # the API accepts a string for Cmd/Entrypoint (StrSlice)
        elif value is not None and not (isinstance(value, list)
                                        and all(isinstance(v, str) for v in value)):
            raise InvalidParameter(f"invalid {key}: expected a list of strings")
    for key in ("Hostname", "Domainname", "User", "WorkingDir", "StopSignal"):
        if config.get(key) is not None and not isinstance(config[key], str):
            raise InvalidParameter(f"invalid {key}: expected a string")
    workdir = config.get("WorkingDir") or ""
    if workdir and not workdir.startswith("/"):
        raise InvalidParameter(f"the working directory '{workdir}' is invalid, it needs to be "
                               "an absolute path")
    labels = config.get("Labels")
    if labels is not None and not (isinstance(labels, dict) and all(
            isinstance(k, str) and isinstance(v, str) for k, v in labels.items())):
        raise InvalidParameter("invalid Labels: expected an object of strings")
    timeout = config.get("StopTimeout")
    if timeout is not None and (not isinstance(timeout, int) or isinstance(timeout, bool)):
        raise InvalidParameter("invalid StopTimeout: expected an integer (seconds)")
    if config.get("StopSignal"):
        parse_signal(config["StopSignal"])
    console = host_config.get("ConsoleSize")
    if console is not None and not (isinstance(console, list) and len(console) == 2 and all(
            isinstance(n, int) and n >= 0 for n in console)):
        raise InvalidParameter("invalid HostConfig.ConsoleSize: expected [height, width]")
    for key, kind in (("LogConfig", dict), ("RestartPolicy", dict), ("Runtime", str),
                      ("NetworkMode", str), ("CgroupParent", str)):
        if host_config.get(key) is not None and not isinstance(host_config[key], kind):
            raise InvalidParameter(f"invalid HostConfig.{key}: expected a JSON "
                                   f"{'object' if kind is dict else 'string'}")
    for key in ("Binds", "Dns", "DnsSearch", "DnsOptions", "ExtraHosts", "CapAdd", "CapDrop"):
        value = host_config.get(key)
        if value is not None and not (isinstance(value, list)
                                      and all(isinstance(v, str) for v in value)):
            raise InvalidParameter(f"invalid HostConfig.{key}: expected a list of strings")
    mounts = host_config.get("Mounts")
    if mounts is not None and not (isinstance(mounts, list)
                                   and all(isinstance(m, dict) for m in mounts)):
        raise InvalidParameter("invalid HostConfig.Mounts: expected a list of objects")
    if host_config.get("Privileged"):
        raise InvalidParameter("privileged containers are not supported by labkit-dockerd "
                               "(use --cap-add for the capabilities you need)")
    policy = (host_config.get("RestartPolicy") or {}).get("Name") or "no"
    if policy != "no":
        raise InvalidParameter(f"restart policy {policy!r} is not supported by labkit-dockerd")


def _matches(c: Container, filters: dict[str, list[str]]) -> bool:
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


def _network_id(name: str) -> str:
    """A stable 64-hex id per built-in network (Docker's are random, made at first start)."""
    return hashlib.sha256(f"labkit-network-{name}".encode()).hexdigest()


def _arch() -> str:
    machine = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm"}.get(machine, machine)


def _python() -> str:
    return "python" + platform.python_version()


def _os_name() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return "Linux"


def _mem_total() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


def _cgroup_version() -> str:
    return "2" if Path("/sys/fs/cgroup/cgroup.controllers").exists() else "1"
