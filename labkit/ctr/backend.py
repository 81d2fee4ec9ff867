"""One small interface, two dialects: labkit-containerd's wire and containerd's real API.

labkit-containerd serves containerd's shapes under labkit's own gRPC package
(labkit.containerd.v1.Images/List); a real containerd serves them under containerd's
(containerd.services.images.v1.Images/List). The messages are field-for-field the same, so
what differs is small but fatal: the method names, and a few call shapes (a real
containerd streams Content.List and Snapshots.List; its container spec is an Any, labkit's
is JSON bytes; only a real containerd has a Namespaces service, only labkit's a Transfer
service). Each command group (images.py, tasks.py …) talks to a `Backend` and never to a
stub, so every command works against both.

`connect()` tells the dialects apart by asking each one's Version service: a server that
does not know a method answers UNIMPLEMENTED, which is a clean "no".
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Iterator

import grpc
from google.protobuf.empty_pb2 import Empty

from labkit.containerd.client import Client, namespaced_channel, pb
from labkit.ctr.spec import SPEC_TYPE_URL
from labkit.distribution.layers import chain_ids
from labkit.wire.containerd_real import containers_pb2 as rcontainers
from labkit.wire.containerd_real import containers_pb2_grpc as rcontainers_rpc
from labkit.wire.containerd_real import content_pb2 as rcontent
from labkit.wire.containerd_real import content_pb2_grpc as rcontent_rpc
from labkit.wire.containerd_real import diff_pb2 as rdiff
from labkit.wire.containerd_real import diff_pb2_grpc as rdiff_rpc
from labkit.wire.containerd_real import images_pb2 as rimages
from labkit.wire.containerd_real import images_pb2_grpc as rimages_rpc
from labkit.wire.containerd_real import namespaces_pb2 as rnamespaces
from labkit.wire.containerd_real import runc_options_pb2 as rrunc
from labkit.wire.containerd_real import namespaces_pb2_grpc as rnamespaces_rpc
from labkit.wire.containerd_real import snapshots_pb2 as rsnapshots
from labkit.wire.containerd_real import snapshots_pb2_grpc as rsnapshots_rpc
from labkit.wire.containerd_real import tasks_pb2 as rtasks
from labkit.wire.containerd_real import tasks_pb2_grpc as rtasks_rpc
from labkit.wire.containerd_real import types_pb2 as rtypes
from labkit.wire.containerd_real import version_pb2_grpc as rversion_rpc

DIALECTS = ("labkit", "containerd")
# The two enums have the same numbers in both dialects (containerd's).
TASK_STATUS = {0: "UNKNOWN", 1: "CREATED", 2: "RUNNING", 3: "STOPPED", 4: "PAUSED", 5: "PAUSING"}
SNAPSHOT_KIND = {0: "Unknown", 1: "View", 2: "Active", 3: "Committed"}


class CtrError(Exception):
    """What the daemon refused, worded for the user (ctr prints "ctr: <message>")."""


# ---------------------------------------------------------------- what commands see

@dataclass
class Image:
    name: str
    media_type: str
    digest: str
    size: int
    labels: dict[str, str] = field(default_factory=dict)


@dataclass
class Blob:
    digest: str
    size: int
    created: float            # seconds since the epoch (0: unknown)
    labels: dict[str, str] = field(default_factory=dict)


@dataclass
class Container:
    id: str
    image: str
    runtime: str
    snapshotter: str
    snapshot_key: str
    labels: dict[str, str]
    spec: object              # the OCI spec as a dict (labkit) or {"@type": url} (containerd)
    created: float


@dataclass
class Task:
    id: str                   # the container's id (a real containerd sends it in Process.id)
    pid: int
    status: str
    exit_status: int


@dataclass
class Snapshot:
    key: str
    parent: str
    kind: str
    labels: dict[str, str] = field(default_factory=dict)


def _seconds(ts) -> float:
    return ts.seconds + ts.nanos / 1e9


def _task(p) -> Task:
    """A Process of either dialect (a real containerd sends the container's id in .id)."""
    return Task(p.container_id or p.id, p.pid, TASK_STATUS.get(p.status, "UNKNOWN"), p.exit_status)


def _rpc_error(e: grpc.RpcError) -> CtrError:
    """NOT_FOUND "image x: not found" -> CtrError with the daemon's own words."""
    return CtrError(e.details() or str(e.code()))


# ---------------------------------------------------------------- the interface

class Backend:
    """What labkit-ctr needs from a containerd. Subclasses speak one dialect each."""

    dialect = ""
    namespace = ""

    def version(self) -> tuple[str, str]: ...
    def namespaces(self) -> list[tuple[str, dict[str, str]]]: ...
    def images(self) -> list[Image]: ...
    def delete_image(self, name: str) -> None: ...
    def read(self, digest: str) -> bytes: ...
    def blobs(self) -> list[Blob]: ...
    def delete_blob(self, digest: str) -> None: ...
    def containers(self) -> list[Container]: ...
    def container(self, id: str) -> Container: ...
    def delete_container(self, id: str) -> None: ...
    def tasks(self) -> list[Task]: ...
    def kill(self, id: str, signal: int, all: bool = False) -> None: ...
    def delete_task(self, id: str) -> int: ...
    def snapshots(self, snapshotter: str) -> list[Snapshot]: ...
    def remove_snapshot(self, snapshotter: str, key: str) -> None: ...
    def image(self, name: str) -> Image: ...
    def prepare(self, snapshotter: str, key: str, parent: str) -> list: ...
    def create_container(self, id: str, image: str, spec: dict, snapshotter: str, key: str,
                         runc_binary: str = "", runc_root: str = "") -> None: ...
    def create_task(self, id: str, rootfs: list, stdout: str = "", stderr: str = "") -> int: ...
    def start(self, id: str) -> int: ...
    def wait(self, id: str) -> int: ...
    def close(self) -> None: ...

    def image_config(self, name: str, platform: dict | None = None) -> tuple[dict, list[str]]:
        """The image's config (from content) and the chain IDs of its layers: the names of
        its unpacked snapshots, in both containerds (the last one is a container's parent)."""
        from labkit.distribution import mediatypes
        from labkit.distribution.platforms import host_platform, select_manifest

        target = self.image(name)
        doc = json.loads(self.read(target.digest))
        if target.media_type in mediatypes.INDEX_TYPES or "manifests" in doc:
            doc = json.loads(self.read(select_manifest(doc, platform or host_platform())["digest"]))
        config = json.loads(self.read(doc["config"]["digest"]))
        return config, chain_ids(config.get("rootfs", {}).get("diff_ids", []))

    def __enter__(self) -> "Backend":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class LabkitBackend(Backend):
    """labkit-containerd, through its typed client (labkit.containerd.client)."""

    dialect = "labkit"

    def __init__(self, address: str, namespace: str) -> None:
        self.c = Client(address, namespace)
        self.namespace = namespace

    def version(self):
        v = self.c.version.Version(Empty())
        return v.version, v.revision

    def namespaces(self):
        # labkit-containerd has no Namespaces service: the caller's namespace is all it can name.
        raise CtrError("labkit-containerd has no namespaces service "
                       "(every call names its namespace; -n chooses it)")

    def images(self):
        return [Image(i.name, i.target.media_type, i.target.digest, i.target.size, dict(i.labels))
                for i in self.c.images.List(pb.ListImagesRequest()).images]

    def delete_image(self, name):
        self.c.images.Delete(pb.DeleteImageRequest(name=name))

    def read(self, digest):
        return self.c.read_content(digest)

    def blobs(self):
        return [Blob(i.digest, i.size, _seconds(i.created_at), dict(i.labels))
                for i in self.c.content.List(pb.ListContentRequest()).info]

    def delete_blob(self, digest):
        self.c.content.Delete(pb.DeleteContentRequest(digest=digest))

    def _container(self, c) -> Container:
        try:
            spec = json.loads(c.spec) if c.spec else None
        except ValueError:
            spec = None
        return Container(c.id, c.image, c.runtime.name, c.snapshotter, c.snapshot_key,
                         dict(c.labels), spec, _seconds(c.created_at))

    def containers(self):
        return [self._container(c)
                for c in self.c.containers.List(pb.ListContainersRequest()).containers]

    def container(self, id):
        return self._container(self.c.containers.Get(pb.GetContainerRequest(id=id)).container)

    def delete_container(self, id):
        self.c.containers.Delete(pb.DeleteContainerRequest(id=id))

    def tasks(self):
        return [_task(t) for t in self.c.tasks.List(pb.ListTasksRequest()).tasks]

    def kill(self, id, signal, all=False):
        self.c.tasks.Kill(pb.KillRequest(container_id=id, signal=signal, all=all))

    def delete_task(self, id):
        return self.c.tasks.Delete(pb.DeleteTaskRequest(container_id=id)).exit_status

    def snapshots(self, snapshotter):
        infos = self.c.snapshots.List(pb.ListSnapshotsRequest(snapshotter=snapshotter)).info
        return [Snapshot(s.name, s.parent, SNAPSHOT_KIND.get(s.kind, "Unknown"), dict(s.labels))
                for s in infos]

    def remove_snapshot(self, snapshotter, key):
        self.c.snapshots.Remove(pb.RemoveSnapshotRequest(snapshotter=snapshotter, key=key))

    def image(self, name):
        i = self.c.images.Get(pb.GetImageRequest(name=name)).image
        return Image(i.name, i.target.media_type, i.target.digest, i.target.size, dict(i.labels))

    def prepare(self, snapshotter, key, parent):
        return list(self.c.snapshots.Prepare(pb.PrepareSnapshotRequest(
            snapshotter=snapshotter, key=key, parent=parent)).mounts)

    def create_container(self, id, image, spec, snapshotter, key, runc_binary="", runc_root=""):
        # labkit names the shim binary as the runtime; its options are JSON (api.proto)
        options = {"binary_name": runc_binary or "labkit-runc"}
        if runc_root:
            options["root"] = runc_root
        options = json.dumps(options).encode()
        self.c.containers.Create(pb.CreateContainerRequest(container=pb.Container(
            id=id, image=image, spec=json.dumps(spec).encode(),
            runtime=pb.Container.Runtime(name="labkit-shim", options=options),
            snapshotter=snapshotter, snapshot_key=key)))

    def create_task(self, id, rootfs, stdout="", stderr=""):
        return self.c.tasks.Create(pb.CreateTaskRequest(
            container_id=id, rootfs=rootfs, stdout=stdout, stderr=stderr)).pid

    def start(self, id):
        return self.c.tasks.Start(pb.StartRequest(container_id=id)).pid

    def wait(self, id):
        return self.c.tasks.Wait(pb.WaitRequest(container_id=id)).exit_status

    def pull(self, reference: str, platform: str = "", mirrors: list[str] | None = None,
             snapshotter: str = "") -> Iterator[str]:
        """labkit-containerd pulls server-side (Transfer.Pull); yield its progress as lines."""
        request = pb.PullRequest(reference=reference, platform=platform, mirrors=mirrors or [],
                                 snapshotter=snapshotter)
        for p in self.c.transfer.Pull(request):
            if p.event == "resolved":
                yield f"{p.image_name}: resolved {p.image_digest}"
            elif p.event == "done":
                yield f"{p.image_name}: pulled {p.image_digest}"
            elif p.desc.digest and p.event in ("downloaded", "exists", "unpacked"):
                yield f"{p.event}: {p.desc.digest}"

    def close(self):
        self.c.close()


class ContainerdBackend(Backend):
    """A real containerd (1.6), through containerd's own service names
    (labkit.wire.containerd_real)."""

    dialect = "containerd"

    def __init__(self, address: str, namespace: str) -> None:
        self._raw, channel = namespaced_channel(address, namespace)
        self.namespace = namespace
        self.version_stub = rversion_rpc.VersionStub(channel)
        self.ns = rnamespaces_rpc.NamespacesStub(channel)
        self.images_stub = rimages_rpc.ImagesStub(channel)
        self.content = rcontent_rpc.ContentStub(channel)
        self.containers_stub = rcontainers_rpc.ContainersStub(channel)
        self.tasks_stub = rtasks_rpc.TasksStub(channel)
        self.snaps = rsnapshots_rpc.SnapshotsStub(channel)
        self.diff = rdiff_rpc.DiffStub(channel)

    def version(self):
        v = self.version_stub.Version(Empty())
        return v.version, v.revision

    def namespaces(self):
        return [(n.name, dict(n.labels))
                for n in self.ns.List(rnamespaces.ListNamespacesRequest()).namespaces]

    def images(self):
        return [Image(i.name, i.target.media_type, i.target.digest, i.target.size, dict(i.labels))
                for i in self.images_stub.List(rimages.ListImagesRequest()).images]

    def delete_image(self, name):
        self.images_stub.Delete(rimages.DeleteImageRequest(name=name))

    def read(self, digest):
        request = rcontent.ReadContentRequest(digest=digest)
        return b"".join(r.data for r in self.content.Read(request))

    def blobs(self):
        # A stream of batches here (labkit answers one list).
        return [Blob(i.digest, i.size, _seconds(i.created_at), dict(i.labels))
                for batch in self.content.List(rcontent.ListContentRequest()) for i in batch.info]

    def delete_blob(self, digest):
        self.content.Delete(rcontent.DeleteContentRequest(digest=digest))

    @staticmethod
    def _container(c) -> Container:
        spec = {"@type": c.spec.type_url} if c.spec.type_url else None
        return Container(c.id, c.image, c.runtime.name, c.snapshotter, c.snapshot_key,
                         dict(c.labels), spec, _seconds(c.created_at))

    def containers(self):
        return [self._container(c)
                for c in self.containers_stub.List(rcontainers.ListContainersRequest()).containers]

    def container(self, id):
        return self._container(
            self.containers_stub.Get(rcontainers.GetContainerRequest(id=id)).container)

    def delete_container(self, id):
        self.containers_stub.Delete(rcontainers.DeleteContainerRequest(id=id))

    def tasks(self):
        return [_task(t) for t in self.tasks_stub.List(rtasks.ListTasksRequest()).tasks]

    def kill(self, id, signal, all=False):
        self.tasks_stub.Kill(rtasks.KillRequest(container_id=id, signal=signal, all=all))

    def delete_task(self, id):
        return self.tasks_stub.Delete(rtasks.DeleteTaskRequest(container_id=id)).exit_status

    def snapshots(self, snapshotter):
        request = rsnapshots.ListSnapshotsRequest(snapshotter=snapshotter)
        return [Snapshot(s.name, s.parent, SNAPSHOT_KIND.get(s.kind, "Unknown"), dict(s.labels))
                for batch in self.snaps.List(request) for s in batch.info]

    def remove_snapshot(self, snapshotter, key):
        self.snaps.Remove(rsnapshots.RemoveSnapshotRequest(snapshotter=snapshotter, key=key))

    def image(self, name):
        i = self.images_stub.Get(rimages.GetImageRequest(name=name)).image
        return Image(i.name, i.target.media_type, i.target.digest, i.target.size, dict(i.labels))

    def prepare(self, snapshotter, key, parent, labels=None):
        return list(self.snaps.Prepare(rsnapshots.PrepareSnapshotRequest(
            snapshotter=snapshotter, key=key, parent=parent, labels=labels or {})).mounts)

    def create_container(self, id, image, spec, snapshotter, key, runc_binary="", runc_root=""):
        # containerd's runc shim, found as containerd-shim-runc-v2 in PATH; it runs the runc
        # in PATH, with --root /run/containerd/runc, unless its Options (a protobuf of its
        # own, in an Any named by the message's full name) say otherwise.
        from google.protobuf.any_pb2 import Any
        runtime = rcontainers.Container.Runtime(name="io.containerd.runc.v2")
        if runc_binary or runc_root:
            options = rrunc.Options(binary_name=runc_binary, root=runc_root)
            runtime.options.CopyFrom(Any(type_url=options.DESCRIPTOR.full_name,
                                         value=options.SerializeToString()))
        self.containers_stub.Create(rcontainers.CreateContainerRequest(
            container=rcontainers.Container(
                id=id, image=image,
                spec=Any(type_url=SPEC_TYPE_URL, value=json.dumps(spec).encode()),
                runtime=runtime,
                snapshotter=snapshotter, snapshot_key=key)))

    def create_task(self, id, rootfs, stdout="", stderr=""):
        return self.tasks_stub.Create(rtasks.CreateTaskRequest(
            container_id=id, rootfs=rootfs, stdout=stdout, stderr=stderr)).pid

    def start(self, id):
        return self.tasks_stub.Start(rtasks.StartRequest(container_id=id)).pid

    def wait(self, id):
        return self.tasks_stub.Wait(rtasks.WaitRequest(container_id=id)).exit_status

    def snapshot_exists(self, snapshotter: str, key: str) -> bool:
        try:
            self.snaps.Stat(rsnapshots.StatSnapshotRequest(snapshotter=snapshotter, key=key))
            return True
        except grpc.RpcError as e:
            if e.code() == grpc.StatusCode.NOT_FOUND:
                return False
            raise

    def apply_layer(self, snapshotter: str, desc: dict, chain: str, parent: str) -> None:
        """Unpack one layer as containerd's unpacker does: Prepare an active snapshot on the
        parent, Diff.Apply the layer onto its mounts, Commit it under the chain ID."""
        key = f"extract-{time.time_ns()}-{chain}"
        mounts = self.prepare(snapshotter, key, parent,
                              labels={"containerd.io/snapshot.ref": chain})
        try:
            self.diff.Apply(rdiff.ApplyRequest(diff=rtypes.Descriptor(
                media_type=desc["mediaType"], digest=desc["digest"], size=desc["size"]),
                mounts=mounts))
            self.snaps.Commit(rsnapshots.CommitSnapshotRequest(snapshotter=snapshotter,
                                                               name=chain, key=key))
        except BaseException:
            self.snaps.Remove(rsnapshots.RemoveSnapshotRequest(snapshotter=snapshotter, key=key))
            raise

    def pull(self, reference: str, platform: str = "", mirrors: list[str] | None = None,
             snapshotter: str = "") -> Iterator[str]:
        """containerd 1.6 has no Transfer service: the client pulls (see pull.py)."""
        from labkit.ctr.pull import client_side_pull
        yield from client_side_pull(self, reference, platform, mirrors or [],
                                    snapshotter or "overlayfs")

    def write_blob(self, data: bytes, digest: str, media_type: str,
                   labels: dict[str, str] | None = None) -> None:
        """Content.Write in one COMMIT message (small blobs) or WRITE chunks + COMMIT; a blob
        the store already holds answers ALREADY_EXISTS, which is success for a pull."""
        chunk = 1 << 20
        offsets = list(range(0, len(data), chunk)) or [0]

        def requests():
            for offset in offsets:
                last = offset == offsets[-1]
                yield rcontent.WriteContentRequest(
                    action=rcontent.COMMIT if last else rcontent.WRITE, ref=digest,
                    total=len(data), expected=digest, offset=offset,
                    data=data[offset:offset + chunk], labels=(labels or {}) if last else {})

        try:
            for _ in self.content.Write(requests()):
                pass
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.ALREADY_EXISTS:
                raise

    def put_image(self, name: str, target: dict) -> None:
        """Images.Create, or Update's effect by delete + create when the name exists."""
        image = rimages.Image(name=name, target=rtypes.Descriptor(
            media_type=target["mediaType"], digest=target["digest"], size=target["size"]))
        try:
            self.images_stub.Create(rimages.CreateImageRequest(image=image))
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.ALREADY_EXISTS:
                raise
            self.images_stub.Delete(rimages.DeleteImageRequest(name=name))
            self.images_stub.Create(rimages.CreateImageRequest(image=image))

    def close(self):
        self._raw.close()


def _answers_version(stub_call) -> bool:
    try:
        stub_call(Empty(), timeout=5)
        return True
    except grpc.RpcError as e:
        if e.code() == grpc.StatusCode.UNIMPLEMENTED:
            return False
        raise


def connect(address: str, namespace: str, dialect: str = "auto") -> Backend:
    """A backend for the containerd at `address`; dialect "auto" asks which one it speaks."""
    if dialect == "labkit":
        return LabkitBackend(address, namespace)
    if dialect == "containerd":
        return ContainerdBackend(address, namespace)
    real = ContainerdBackend(address, namespace)
    try:
        grpc.channel_ready_future(real._raw).result(timeout=5)
        if _answers_version(real.version_stub.Version):
            return real
    except grpc.FutureTimeoutError:
        real.close()
        raise CtrError(f"failed to dial \"{address}\": connection refused or timed out")
    except grpc.RpcError as e:
        real.close()
        raise _rpc_error(e)
    real.close()
    lab = LabkitBackend(address, namespace)
    if _answers_version(lab.c.version.Version):
        return lab
    lab.close()
    raise CtrError(f"{address} speaks neither containerd's nor labkit-containerd's API")
