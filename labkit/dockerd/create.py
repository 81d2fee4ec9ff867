"""`docker create`: a container record, its /etc files, its spec and its snapshot (moby's
daemon/create.go).

    container_create  check the request, find the image (404: the CLI pulls), choose the
                      runtime, take the image's command if the request has none, reserve
                      the name
    _create           merge the image's config (imageconfig.py); check NetworkMode and
                      the networks to join at start (network.py: no address before start,
                      as in Docker); write /etc/hostname, hosts, resolv.conf (etcfiles.py);
                      build the OCI spec (oci.py)
    _register         Snapshots.Prepare + Containers.Create on containerd, then save
                      config.v2.json and announce "create"

Nothing runs yet: a created container is a record in dockerd, a container (spec and
runtime) and a prepared snapshot in containerd. `docker start` (start.py) makes the task.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import secrets
import shutil
import sys
from pathlib import Path

from labkit.wire.containerd import api_pb2 as pb
from labkit.distribution.layers import chain_ids
from labkit.dockerd import etcfiles, imageconfig, logdriver, mounts, oci, security
from labkit.dockerd.backend import CreateResult
from labkit.dockerd.container import Container
from labkit.dockerd.core import BUILTIN_RUNTIMES, SHIM, DaemonCore, Live
from labkit.dockerd.errors import Conflict, DaemonError, InvalidParameter
from labkit.dockerd.images import ImageRecord
from labkit.dockerd.jsonlog import rfc3339nano
from labkit.dockerd.names import generate_name
from labkit.dockerd.network import check_ports
from labkit.dockerd.remote import RemoteError, to_daemon_error
from labkit.dockerd.validate import check_config

log = logging.getLogger("labkit.dockerd")


class Create(DaemonCore):
    """The Daemon's `docker create` (mixed into labkit.dockerd.daemon.Daemon)."""

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
        networking = config.pop("NetworkingConfig", None)
        if not isinstance(host_config, dict):
            raise InvalidParameter("invalid HostConfig: expected a JSON object")
        check_config(config, host_config, networking)
        image_name = config["Image"]
        image = self.images.find(image_name)
        runtime = host_config.get("Runtime") or self.config.default_runtime
        binary = self._runtime_binary(runtime)

        # Merge the image's config with the request's, as moby's daemon/create.go does.
        entrypoint, cmd, args = imageconfig.command(config, image.config.get("config") or {})

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
                                entrypoint, cmd, args, networking)
        finally:
            with self._lock:
                self._reserved_names.discard(name)

    def _create(self, cid: str, name: str, config: dict, host_config: dict, image: ImageRecord,
                runtime: str, binary: str, entrypoint: list, cmd: list, args: list,
                networking: dict | None = None) -> CreateResult:
        img = image.config.get("config") or {}
        merged = imageconfig.merge(config, img, entrypoint, cmd,
                                   hostname=config.get("Hostname") or cid[:12])
        host_config = _with_defaults(host_config, runtime)
        network = self._network(host_config["NetworkMode"])
        check_ports(host_config)
        network_settings = self._network_settings(host_config["NetworkMode"], networking)
        if network == "host" and not config.get("Hostname"):
            # the host's network, the host's name (as Docker does)
            merged["Hostname"] = platform.node()
        cdir = Container.dir_for(self.config.root, cid)
        cdir.mkdir(parents=True, exist_ok=True)
        anonymous: list[str] = []  # volumes made for this container: undone on failure
        try:
            files = etcfiles.write(cdir, merged["Hostname"], network, host_config,
                                   self._host_gateway())
            cgroups_path = _cgroups_path(cid, host_config, self.config.cgroup_parent)
            volumes = self._container_volumes(merged, host_config, anonymous)
            spec = _spec(merged, host_config, args, files, volumes, network, cgroups_path)
        except (ValueError, TypeError, DaemonError) as e:
            shutil.rmtree(cdir, ignore_errors=True)
            self._remove_volumes(anonymous)
            if isinstance(e, DaemonError):
                raise
            raise InvalidParameter(str(e)) from None

        c = Container(ID=cid, Name=name, Created=rfc3339nano(), Path=args[0], Args=args[1:],
                      Config=merged, HostConfig=host_config, Image=image.config_digest,
                      ImageRef=image.name, Runtime=runtime,
                      LogPath=str(cdir / f"{cid}-json.log"),
                      HostnamePath=str(files["/etc/hostname"]), HostsPath=str(files["/etc/hosts"]),
                      ResolvConfPath=str(files["/etc/resolv.conf"]),
                      MountPoints=mounts.mount_points(volumes), NetworkSettings=network_settings)
        try:
            self._register(c, image, binary, spec, cdir)
        except DaemonError:
            self._remove_volumes(anonymous)
            raise
        return CreateResult(cid, _warnings(host_config))

    def _container_volumes(self, merged: dict, host_config: dict,
                           anonymous: list[str]) -> list[dict]:
        """The volume mounts: -v and --mount (named volumes made on first use), then an
        anonymous volume for every other path of Config.Volumes (`-v /data`, the image's
        VOLUME). The names of the volumes made here are appended to `anonymous`."""
        def volume_path(name: str) -> str:
            path = self._volume_path(name)
            if not name:
                anonymous.append(os.path.basename(os.path.dirname(path)))
            return path

        volumes = mounts.volume_mounts(host_config.get("Binds"), host_config.get("Mounts"),
                                    volume_path)
        if merged.get("Volumes") is not None and not isinstance(merged["Volumes"], dict):
            raise InvalidParameter("invalid Volumes: expected an object whose keys are paths")
        return mounts.in_mount_order(volumes + mounts.anonymous_volume_mounts(
            merged.get("Volumes"), volumes, volume_path))

    def _register(self, c: Container, image: ImageRecord, binary: str, spec: dict,
                  cdir: Path) -> None:
        """Snapshots.Prepare and Containers.Create, then save the record and announce it.

        On failure nothing is left behind: the snapshot is removed, the directory too."""
        cid, name = c.ID, c.Name
        top = chain_ids(image.diff_ids)[-1] if image.diff_ids else ""
        options = json.dumps({"binary_name": binary, "root": str(self.config.runtime_root)})
        record = pb.Container(id=cid, image=image.name, labels={"labkit.dockerd/name": name},
                              runtime=pb.Container.Runtime(name=SHIM, options=options.encode()),
                              spec=json.dumps(spec).encode(), snapshotter=self.ctr.snapshotter,
                              snapshot_key=cid)
        prepared = False
        try:
            self.ctr.call(self.ctr.snapshots.Prepare, pb.PrepareSnapshotRequest(
                snapshotter=self.ctr.snapshotter, key=cid, parent=top))
            prepared = True
            self.ctr.call(self.ctr.containers.Create, pb.CreateContainerRequest(container=record))
        except RemoteError as e:
            if prepared:
                self._ignore_missing(self.ctr.snapshots.Remove,
                                     pb.RemoveSnapshotRequest(snapshotter=self.ctr.snapshotter,
                                                              key=cid))
            shutil.rmtree(cdir, ignore_errors=True)
            raise to_daemon_error(e) from None
        with self._lock:
            c.save(self.config.root)
            self._containers[cid] = c
            self._live[cid] = Live()
        self._event(c, "create")
        log.info("created container %s (%s) from %s", cid[:12], name, image.name)


def _with_defaults(host_config: dict, runtime: str) -> dict:
    """A copy of the request's HostConfig with Docker's defaults filled in: what a client
    reads back in `docker inspect` (docker-py looks at LogConfig.Type, for one)."""
    host_config = dict(host_config)
    host_config["Runtime"] = runtime
    host_config["NetworkMode"] = host_config.get("NetworkMode") or "default"
    try:
        host_config["CgroupnsMode"] = oci.cgroupns_mode(host_config)
    except ValueError as e:
        raise InvalidParameter(str(e)) from None
    host_config["LogConfig"] = logdriver.log_config(host_config.get("LogConfig"))
    host_config["RestartPolicy"] = host_config.get("RestartPolicy") or {"Name": "no",
                                                                      "MaximumRetryCount": 0}
    return host_config


def _spec(merged: dict, host_config: dict, args: list[str], files: dict[str, Path],
          volumes: list[dict], network: str, cgroups_path: str) -> dict:
    """The OCI spec (oci.py) for the merged config: what the runtime will be told to run."""
    hostname, env = merged["Hostname"], merged["Env"]
    spec_env = env + [f"HOSTNAME={hostname}"] if not any(
        e.startswith("HOSTNAME=") for e in env) else env
    if merged.get("Tty") and not any(e.startswith("TERM=") for e in spec_env):
        spec_env = spec_env + ["TERM=xterm"]
    console = host_config.get("ConsoleSize") or [0, 0]
    caps = oci.capabilities(host_config.get("CapAdd"), host_config.get("CapDrop"))
    options = security.parse(host_config.get("SecurityOpt"))
    return oci.container_spec(
        args=args, env=spec_env, cwd=merged["WorkingDir"] or "/", user=merged["User"],
        hostname=hostname, tty=bool(merged.get("Tty")),
        etc_files={k: str(v) for k, v in files.items()},
        read_only_rootfs=bool(host_config.get("ReadonlyRootfs")),
        console_size=(int(console[0]), int(console[1])) if len(console) == 2 else None,
        cgroups_path=cgroups_path,
        limits=oci.resources(host_config), extra_mounts=volumes, network=network, caps=caps,
        seccomp=security.seccomp_for(options, caps, bool(host_config.get("Privileged"))),
        no_new_privileges=options.no_new_privileges,
        cgroupns=host_config.get("CgroupnsMode") == "private",
        additional_gids=oci.group_ids(host_config.get("GroupAdd")))


def _cgroups_path(cid: str, host_config: dict, default_parent: str) -> str:
    """linux.cgroupsPath: "<parent>/<id>", the parent from --cgroup-parent or the daemon's."""
    cgroup_parent = host_config.get("CgroupParent") or default_parent
    if not isinstance(cgroup_parent, str) or not cgroup_parent.startswith("/"):
        raise InvalidParameter(f"invalid cgroup parent {cgroup_parent!r}: expected an "
                               "absolute path such as /labkit")
    return f"{cgroup_parent.rstrip('/')}/{cid}"


def _warnings(host_config: dict) -> list[str]:
    """Settings accepted but not acted upon: the CLI prints each as "WARNING: ..."."""
    out = []
    if (host_config.get("PortBindings") or host_config.get("PublishAllPorts")) and \
            host_config.get("NetworkMode") == "host":
        out.append("Published ports are discarded when using host network mode")
    if host_config.get("Init"):
        out.append("labkit-dockerd has no init process to inject: --init is ignored")
    if host_config.get("Ulimits"):
        out.append("labkit-dockerd does not set rlimits yet: --ulimit is ignored")
    return out
