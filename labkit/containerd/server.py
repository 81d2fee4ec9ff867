"""The gRPC face of labkit-containerd: api.proto's services over the modules below them.

Handlers are thin, as in containerd's `services/*/service.go`: take the namespace from the
call's metadata, decode the request into plain Python values, call the module that does the
work (content, snapshots, metadata, pull, tasks, events), encode the answer. Errors raised by
those modules (labkit.containerd.errors) become the gRPC status code of the same name, with
their message unchanged; anything else is a bug, logged with its traceback, and INTERNAL.

    every call ──▶ namespace(context)  "containerd-namespace" metadata, required
               ──▶ Daemon: content | meta | snapshotter(ns) | puller | tasks | exchange

The server is grpcio's synchronous one with a thread pool: Wait and Events.Subscribe hold a
worker each while they block, so the pool is sized for many of them.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import shutil
import traceback
import uuid
from concurrent import futures
from pathlib import Path

import grpc
from google.protobuf import any_pb2, empty_pb2, timestamp_pb2

from labkit import __version__
from labkit.wire.containerd import api_pb2 as pb
from labkit.wire.containerd import api_pb2_grpc as rpc
from labkit.containerd.content import LocalContentStore, check_digest
from labkit.containerd.errors import (AlreadyExists, ContainerdError, FailedPrecondition,
                                      InvalidArgument, NotFound)
from labkit.containerd import diff as difflib
from labkit.containerd import filters
from labkit.containerd.events import Exchange
from labkit.containerd.gc import (LABEL_UNCOMPRESSED, RESOURCE_CONTENT, Collector,
                                  snapshot_resource)
from labkit.containerd.metadata import ContainerRecord, ImageRecord, MetadataStore
from labkit.containerd.mount import Mount, unmount_all
from labkit.containerd.pull import Puller
from labkit.containerd.snapshots import SNAPSHOTTERS, Snapshotter
from labkit.containerd.tasks import TaskManager

log = logging.getLogger("labkit.containerd")

NAMESPACE_KEY = "containerd-namespace"
LEASE_KEY = "containerd-lease"   # a call made under a lease (api.proto's header)
# containerd's rule for namespace and container names (identifiers.Validate); they become
# directory names, so this is also what keeps "../" out of our paths.
_IDENTIFIER = re.compile(r"^[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*$")
_MAX_IDENTIFIER = 76
READ_CHUNK = 1 << 20


def check_identifier(value: str, what: str) -> str:
    if not value or len(value) > _MAX_IDENTIFIER or not _IDENTIFIER.match(value):
        raise InvalidArgument(f"invalid {what} {value!r}: use letters, digits and . _ - "
                              f"between them (at most {_MAX_IDENTIFIER} characters)")
    return value


class Daemon:
    """Everything one labkit-containerd holds, shared by the gRPC services."""

    def __init__(self, root: Path, state: Path, address: str,
                 shim_binary: str = "labkit-shim", snapshotter: str = "overlayfs") -> None:
        self.root, self.state = Path(root), Path(state)
        # Both private to root: the state directory holds the mount points where layers are
        # unpacked and the bundles whose rootfs is mounted, both showing an image's device
        # nodes, which no other user of the host may reach (the snapshots are 0700 too).
        for d in (self.root, self.state):
            d.mkdir(parents=True, exist_ok=True)
            d.chmod(0o700)
        self.content = LocalContentStore(self.root)
        self.meta = MetadataStore(self.root / "meta.db")
        self.exchange = Exchange()
        if snapshotter not in SNAPSHOTTERS:
            raise ValueError(f"snapshotter {snapshotter!r} is not known: "
                             f"available: {', '.join(SNAPSHOTTERS)}")
        # The one a request gets when it names none (containerd: the client's default,
        # `[plugins."io.containerd.grpc.v1.cri".containerd] snapshotter` for the CRI).
        self.default_snapshotter = snapshotter
        self.gc = Collector(self.content, self.meta, self.snapshotter, self.default_snapshotter)
        self.puller = Puller(self.content, self.meta, self.snapshotter, self.exchange,
                             tmp_dir=self.state / "tmpmounts", gc=self.gc,
                             default_snapshotter=self.default_snapshotter)
        self.differ = difflib.Differ(self.content, self.state / "tmpmounts")
        self.tasks = TaskManager(self.state, self.meta, self.exchange, shim_binary, address,
                                 self.snapshotter)

    def cleanup(self) -> None:
        """Undo what a crash in the middle of a pull can leave behind (run at boot).

        A blob is downloaded into an ingest (content/ingest/…/data), which nobody can
        finish once its daemon is gone (content.py says why they are not resumed). A layer
        is unpacked on a temporary mount (<state>/tmpmounts/x…) into an active snapshot
        named "extract-…"; if the daemon died there, both are garbage now. Last, a garbage
        collection.
        """
        for name in self.content.remove_ingests():
            log.info("removed the ingest %s of an interrupted download", name)
        tmp = self.state / "tmpmounts"
        if tmp.is_dir():
            for d in tmp.iterdir():
                unmount_all(str(d))
                try:
                    d.rmdir()
                except OSError as e:
                    log.warning("stale unpack directory %s: %s", d, e)
        for ns in self.meta.snapshot_namespaces():
            for name in SNAPSHOTTERS:
                snap = self.snapshotter(ns, name)
                for info in snap.list():
                    if info.kind == "active" and info.name.startswith("extract-"):
                        log.info("removing %s snapshot %r of an interrupted pull", name,
                                 info.name)
                        snap.remove(info.name)
        # Snapshot directories no row refers to (a crash between rmtree and commit).
        used = {str(i) for i in self.meta.snapshot_ids()}
        snapshots = self.root / "snapshots"
        for d in snapshots.iterdir() if snapshots.is_dir() else ():
            if d.name.isdigit() and d.name not in used:
                log.info("removing orphaned snapshot directory %s", d)
                shutil.rmtree(d, ignore_errors=True)
        # Garbage a crash kept from being collected (an image deleted just before it), and
        # what expired leases held. A pull's lease is kept until it expires, so that a pull
        # tried again soon reuses the blobs its interrupted predecessor finished.
        self.gc.collect()

    def snapshotter(self, namespace: str, name: str = "") -> Snapshotter:
        name = name or self.default_snapshotter
        if name not in SNAPSHOTTERS:
            raise InvalidArgument(f"snapshotter {name!r} is not known: "
                                  f"available: {', '.join(SNAPSHOTTERS)}")
        return SNAPSHOTTERS[name](self.root, self.meta, namespace)

    def close(self) -> None:
        self.exchange.close()
        self.meta.close()


# ---------------------------------------------------------------- plumbing


def namespace(context: grpc.ServicerContext) -> str:
    ns = dict(context.invocation_metadata()).get(NAMESPACE_KEY, "")
    if not ns:
        raise InvalidArgument("namespace is required")
    return check_identifier(ns, "namespace")


def lease(context: grpc.ServicerContext) -> str:
    """The lease the call is made under ("" = none)."""
    return dict(context.invocation_metadata()).get(LEASE_KEY, "")


def _abort(context: grpc.ServicerContext, e: BaseException, method: str):
    if isinstance(e, ContainerdError):
        code = getattr(grpc.StatusCode, e.code, grpc.StatusCode.UNKNOWN)
        context.abort(code, str(e))
    log.error("%s: unexpected error\n%s", method, traceback.format_exc())
    context.abort(grpc.StatusCode.INTERNAL, f"{method}: {type(e).__name__}: {e}")


def unary(fn):
    """Error translation for a unary handler."""
    @functools.wraps(fn)
    def wrapper(self, request, context):
        try:
            return fn(self, request, context)
        except Exception as e:  # noqa: BLE001 - every error must become a status, not a crash
            _abort(context, e, fn.__qualname__)
    return wrapper


def streaming(fn):
    """Error translation for a server-streaming handler (a generator)."""
    @functools.wraps(fn)
    def wrapper(self, request, context):
        try:
            yield from fn(self, request, context)
        except Exception as e:  # noqa: BLE001
            _abort(context, e, fn.__qualname__)
    return wrapper


def ts(seconds: float | None) -> timestamp_pb2.Timestamp:
    t = timestamp_pb2.Timestamp()
    if seconds:
        t.FromNanoseconds(int(seconds * 1e9))
    return t


def desc_pb(d: dict) -> pb.Descriptor:
    return pb.Descriptor(media_type=d.get("mediaType", ""), digest=d.get("digest", ""),
                         size=int(d.get("size", 0)), annotations=d.get("annotations") or {})


def desc_dict(d: pb.Descriptor) -> dict:
    out = {"mediaType": d.media_type, "digest": d.digest, "size": d.size}
    if d.annotations:
        out["annotations"] = dict(d.annotations)
    return out


def mounts_pb(mounts: list[Mount]) -> list[pb.Mount]:
    return [pb.Mount(type=m.type, source=m.source, target=m.target, options=m.options)
            for m in mounts]


def mounts_of(mounts) -> list[Mount]:
    """Mounts from the wire, as labkit.containerd.mount describes them."""
    return [Mount(m.type, m.source, list(m.options), m.target) for m in mounts]


def image_pb(i: ImageRecord) -> pb.Image:
    return pb.Image(name=i.name, labels=i.labels, target=desc_pb(i.target),
                    created_at=ts(i.created_at), updated_at=ts(i.updated_at))


def container_pb(c: ContainerRecord) -> pb.Container:
    return pb.Container(id=c.id, labels=c.labels, image=c.image,
                        runtime=pb.Container.Runtime(name=c.runtime_name,
                                                     options=c.runtime_options),
                        spec=c.spec, snapshotter=c.snapshotter, snapshot_key=c.snapshot_key,
                        created_at=ts(c.created_at), updated_at=ts(c.updated_at))


_KINDS = {"view": pb.VIEW, "active": pb.ACTIVE, "committed": pb.COMMITTED}
_STATUS = {"created": pb.CREATED, "running": pb.RUNNING, "stopped": pb.STOPPED,
           "paused": pb.PAUSED}


# ---------------------------------------------------------------- services


class VersionService(rpc.VersionServicer):
    @unary
    def Version(self, request, context):
        return pb.VersionResponse(version=__version__, revision="labkit")


class ContentService(rpc.ContentServicer):
    def __init__(self, d: Daemon) -> None:
        self.d = d

    @staticmethod
    def _info(i, labels: dict[str, str]) -> pb.ContentInfo:
        return pb.ContentInfo(digest=i.digest, size=i.size, created_at=ts(i.created_at),
                              labels=labels)

    @unary
    def Info(self, request, context):
        ns = namespace(context)
        info = self.d.content.info(request.digest)
        return pb.InfoResponse(info=self._info(info, self.d.meta.content_labels(ns, info.digest)))

    @unary
    def List(self, request, context):
        ns = namespace(context)
        labels = self.d.meta.all_content_labels(ns)
        infos = filters.matching(request.filters, self.d.content.list(), lambda i: filters.fields_of(
            {"digest": i.digest, "size": str(i.size)}, labels.get(i.digest)))
        return pb.ListContentResponse(info=[self._info(i, labels.get(i.digest, {}))
                                            for i in infos])

    @unary
    def Update(self, request, context):
        ns = namespace(context)
        info = self.d.content.info(request.info.digest)
        new = dict(request.info.labels)
        paths = list(request.update_mask.paths)
        if not paths or "labels" in paths:
            labels = self.d.meta.set_content_labels(ns, info.digest, new, merge=False)
        else:
            changes = {}
            for path in paths:
                if not path.startswith("labels."):
                    raise InvalidArgument(f"cannot update {path!r} of content {info.digest}: "
                                          "only labels")
                key = path[len("labels."):]
                changes[key] = new.get(key, "")   # absent: remove the label
            labels = self.d.meta.set_content_labels(ns, info.digest, changes)
        return pb.UpdateContentResponse(info=self._info(info, labels))

    @streaming
    def Read(self, request, context):
        namespace(context)
        if request.offset < 0 or request.size < 0:
            raise InvalidArgument("offset and size must not be negative")
        with self.d.content.open(request.digest) as f:
            f.seek(request.offset)
            left = request.size or None  # 0 = to the end
            offset = request.offset
            while left is None or left > 0:
                chunk = f.read(READ_CHUNK if left is None else min(READ_CHUNK, left))
                if not chunk:
                    break
                yield pb.ReadContentResponse(offset=offset, data=chunk)
                offset += len(chunk)
                if left is not None:
                    left -= len(chunk)

    # -------------------------------------------------------------- ingests (Write)

    @staticmethod
    def _status(st) -> pb.ContentStatus:
        return pb.ContentStatus(ref=st.ref, offset=st.offset, total=st.total,
                                expected=st.expected, started_at=ts(st.started_at),
                                updated_at=ts(st.updated_at))

    @streaming
    def Write(self, requests, context):
        """containerd's Content.Write, request by request (module docstring of content.py):
        the first request names the ingest (ref); STAT answers where it stands; WRITE appends
        at `offset` (0 on a non-empty ingest starts over); COMMIT verifies and publishes."""
        ns, held = namespace(context), lease(context)
        first = next(requests, None)
        if first is None:
            return
        if not first.ref:
            raise InvalidArgument("first message of a write must carry a ref")
        if held:
            self.d.gc.lease_resource(ns, held, "ingests", first.ref)
        ingest = self.d.content.ingest(first.ref, first.total, first.expected)
        try:
            req = first
            while req is not None:
                if req.ref and req.ref != first.ref:
                    raise InvalidArgument(f"a write stream is for one ref ({first.ref!r}), "
                                          f"not {req.ref!r}")
                if req.total:
                    ingest.total = req.total
                if req.expected:
                    check_digest(req.expected)
                    ingest.expected = req.expected
                if ingest.expected and self.d.content.exists(ingest.expected):
                    ingest.abort()
                    raise AlreadyExists(f"content {ingest.expected}: already exists")
                answer = pb.WriteContentResponse(action=req.action)
                if req.action in (pb.WRITE, pb.COMMIT):
                    if req.offset == 0 and ingest.offset > 0 and req.data:
                        ingest.restart()
                    if req.data:
                        ingest.write(req.data, req.offset)
                if req.action == pb.COMMIT:
                    def hold(digest: str) -> None:
                        if held:
                            self.d.gc.lease_resource(ns, held, RESOURCE_CONTENT, digest)
                    info = ingest.commit(req.total, req.expected, before_publish=hold)
                    if req.labels:
                        self.d.meta.set_content_labels(ns, info.digest, dict(req.labels))
                    answer.digest, answer.offset, answer.total = info.digest, info.size, info.size
                    answer.started_at.CopyFrom(ts(info.created_at))
                    answer.updated_at.CopyFrom(ts(info.created_at))
                    yield answer
                    return
                st = ingest.status()
                answer.offset, answer.total = st.offset, ingest.total
                answer.started_at.CopyFrom(ts(st.started_at))
                answer.updated_at.CopyFrom(ts(st.updated_at))
                yield answer
                req = next(requests, None)
        finally:
            ingest.close()   # the bytes stay for a resume, unless committed or aborted

    @unary
    def Status(self, request, context):
        namespace(context)
        return pb.ContentStatusResponse(status=self._status(
            self.d.content.ingest_status(request.ref)))

    @unary
    def ListStatuses(self, request, context):
        namespace(context)
        statuses = filters.matching(request.filters, self.d.content.ingest_statuses(),
                                    lambda st: filters.fields_of({"ref": st.ref}))
        return pb.ListContentStatusesResponse(statuses=[self._status(s) for s in statuses])

    @unary
    def Abort(self, request, context):
        namespace(context)
        self.d.content.abort_ingest(request.ref)
        return empty_pb2.Empty()

    @unary
    def Delete(self, request, context):
        namespace(context)
        self.d.content.delete(request.digest)
        self.d.meta.delete_content_labels(None, request.digest)
        return empty_pb2.Empty()


class ImagesService(rpc.ImagesServicer):
    def __init__(self, d: Daemon) -> None:
        self.d = d

    @unary
    def Get(self, request, context):
        return pb.GetImageResponse(image=image_pb(self.d.meta.get_image(namespace(context),
                                                                          request.name)))

    @unary
    def List(self, request, context):
        images = filters.matching(request.filters, self.d.meta.list_images(namespace(context)),
                                  lambda i: filters.fields_of(
                                      {"name": i.name, "target.digest": i.target.get("digest", ""),
                                       "target.mediatype": i.target.get("mediaType", "")},
                                      i.labels))
        return pb.ListImagesResponse(images=[image_pb(i) for i in images])

    @unary
    def Create(self, request, context):
        ns = namespace(context)
        i = request.image
        if not i.name:
            raise InvalidArgument("image name must not be empty")
        if not i.target.digest:
            raise InvalidArgument(f"image {i.name!r}: target descriptor has no digest")
        rec = self.d.meta.create_image(ns, ImageRecord(i.name, desc_dict(i.target),
                                                       dict(i.labels)))
        self.d.exchange.publish(ns, "/images/create", {"name": rec.name})
        return pb.CreateImageResponse(image=image_pb(rec))

    @unary
    def Delete(self, request, context):
        ns = namespace(context)
        self.d.meta.delete_image(ns, request.name)
        self.d.exchange.publish(ns, "/images/delete", {"name": request.name})
        # What only this image kept is garbage now. containerd collects right away when the
        # client asks (sync) and soon after otherwise; labkit always does it before answering,
        # so `docker rmi` has freed the space when it returns.
        self.d.gc.collect()
        return empty_pb2.Empty()


class TransferService(rpc.TransferServicer):
    def __init__(self, d: Daemon) -> None:
        self.d = d

    @streaming
    def Pull(self, request, context):
        ns = namespace(context)
        for p in self.d.puller.pull(ns, request.reference, platform=request.platform,
                                    mirrors=list(request.mirrors),
                                    snapshotter=request.snapshotter):
            yield pb.PullProgress(event=p.event, desc=desc_pb(p.desc) if p.desc else None,
                                  current=p.current, total=p.total, image_name=p.image_name,
                                  image_digest=p.image_digest)


class SnapshotsService(rpc.SnapshotsServicer):
    def __init__(self, d: Daemon) -> None:
        self.d = d

    def _s(self, request, context) -> Snapshotter:
        return self.d.snapshotter(namespace(context), request.snapshotter)

    def _hold(self, request, context, key: str) -> None:
        """Under a lease, the snapshot about to be made is the lease's (before it exists)."""
        held = lease(context)
        if held:
            self.d.gc.lease_resource(namespace(context), held, snapshot_resource(
                request.snapshotter or self.d.default_snapshotter), key)

    @unary
    def Prepare(self, request, context):
        snap = self._s(request, context)
        self._hold(request, context, request.key)
        mounts = snap.prepare(request.key, request.parent, dict(request.labels))
        return pb.PrepareSnapshotResponse(mounts=mounts_pb(mounts))

    @unary
    def View(self, request, context):
        snap = self._s(request, context)
        self._hold(request, context, request.key)
        mounts = snap.view(request.key, request.parent, dict(request.labels))
        return pb.ViewSnapshotResponse(mounts=mounts_pb(mounts))

    @unary
    def Mounts(self, request, context):
        return pb.MountsResponse(mounts=mounts_pb(self._s(request, context).mounts(request.key)))

    @unary
    def Commit(self, request, context):
        self._hold(request, context, request.name)
        self._s(request, context).commit(request.name, request.key,
                                         dict(request.labels) or None)
        return empty_pb2.Empty()

    @unary
    def Remove(self, request, context):
        self._s(request, context).remove(request.key)
        # Its parents may be garbage now (an image removed while a container used it).
        self.d.gc.collect()
        return empty_pb2.Empty()

    @staticmethod
    def _info(i) -> pb.SnapshotInfo:
        return pb.SnapshotInfo(name=i.name, parent=i.parent, kind=_KINDS.get(i.kind, pb.UNKNOWN),
                               created_at=ts(i.created_at), labels=i.labels)

    @unary
    def Stat(self, request, context):
        return pb.StatSnapshotResponse(info=self._info(self._s(request, context).stat(request.key)))

    @unary
    def Usage(self, request, context):
        u = self._s(request, context).usage(request.key)
        return pb.SnapshotUsageResponse(size=u.size, inodes=u.inodes)

    @unary
    def List(self, request, context):
        infos = filters.matching(request.filters, self._s(request, context).list(),
                                 lambda i: filters.fields_of(
                                     {"name": i.name, "parent": i.parent, "kind": i.kind},
                                     i.labels))
        return pb.ListSnapshotsResponse(info=[self._info(i) for i in infos])


class ContainersService(rpc.ContainersServicer):
    def __init__(self, d: Daemon) -> None:
        self.d = d

    @unary
    def Get(self, request, context):
        return pb.GetContainerResponse(
            container=container_pb(self.d.meta.get_container(namespace(context), request.id)))

    @unary
    def List(self, request, context):
        containers = filters.matching(
            request.filters, self.d.meta.list_containers(namespace(context)),
            lambda c: filters.fields_of({"id": c.id, "image": c.image,
                                         "runtime.name": c.runtime_name,
                                         "snapshotter": c.snapshotter,
                                         "snapshot_key": c.snapshot_key}, c.labels))
        return pb.ListContainersResponse(containers=[container_pb(c) for c in containers])

    @unary
    def Create(self, request, context):
        ns = namespace(context)
        c = request.container
        check_identifier(c.id, "container id")
        if c.spec:
            # Parsed here, once, to refuse a bad spec early; Tasks.Create writes the bytes as
            # they are to config.json.
            try:
                spec = json.loads(c.spec)
            except ValueError as e:
                raise InvalidArgument(f"container {c.id}: spec is not valid JSON: {e}") from None
            if not isinstance(spec, dict):
                raise InvalidArgument(f"container {c.id}: spec must be a JSON object")
        if c.runtime.options:
            try:
                json.loads(c.runtime.options)
            except ValueError as e:
                raise InvalidArgument(f"container {c.id}: runtime options are not valid "
                                      f"JSON: {e}") from None
        rec = self.d.meta.create_container(ns, ContainerRecord(
            id=c.id, image=c.image, labels=dict(c.labels), runtime_name=c.runtime.name,
            runtime_options=c.runtime.options, spec=c.spec, snapshotter=c.snapshotter,
            snapshot_key=c.snapshot_key))
        self.d.exchange.publish(ns, "/containers/create", {
            "id": rec.id, "image": rec.image, "runtime": {"name": rec.runtime_name}})
        return pb.CreateContainerResponse(container=container_pb(rec))

    @unary
    def Update(self, request, context):
        """containerd's field-mask update, for the fields labkit lets change: the spec (a
        running task keeps the one it was created with: Tasks.Update changes its limits) and
        the labels, whole ("labels") or one key at a time ("labels.<key>")."""
        ns = namespace(context)
        c = request.container
        paths = list(request.update_mask.paths) or ["spec", "labels"]
        current = self.d.meta.get_container(ns, c.id)
        spec, labels = None, None
        for path in paths:
            if path == "spec":
                try:
                    if not isinstance(json.loads(c.spec), dict):
                        raise ValueError("not a JSON object")
                except ValueError as e:
                    raise InvalidArgument(f"container {c.id}: spec: {e}") from None
                spec = c.spec
            elif path == "labels":
                labels = dict(c.labels)
            elif path.startswith("labels."):
                labels = dict(current.labels) if labels is None else labels
                key = path[len("labels."):]
                if key in c.labels:
                    labels[key] = c.labels[key]
                else:
                    labels.pop(key, None)
            else:
                raise InvalidArgument(f"container {c.id}: cannot update field {path!r}")
        rec = self.d.meta.update_container(ns, c.id, spec=spec, labels=labels)
        self.d.exchange.publish(ns, "/containers/update", {"id": rec.id, "image": rec.image})
        return pb.UpdateContainerResponse(container=container_pb(rec))

    @unary
    def Delete(self, request, context):
        ns = namespace(context)
        if self.d.tasks.has_task(ns, request.id):
            raise FailedPrecondition(f"container {request.id!r} has a task: delete the task "
                                     "first")
        self.d.meta.delete_container(ns, request.id)
        self.d.exchange.publish(ns, "/containers/delete", {"id": request.id})
        self.d.gc.collect()   # a snapshot only the container held is garbage now
        return empty_pb2.Empty()


class TasksService(rpc.TasksServicer):
    def __init__(self, d: Daemon) -> None:
        self.d = d

    @staticmethod
    def _process(p) -> pb.Process:
        return pb.Process(container_id=p.container_id, id=p.exec_id or p.container_id, pid=p.pid,
                          status=_STATUS.get(p.status, pb.UNKNOWN_STATUS), stdin=p.stdin,
                          stdout=p.stdout, stderr=p.stderr, terminal=p.terminal,
                          exit_status=p.exit_status, exited_at=ts(p.exited_at))

    @unary
    def Create(self, request, context):
        rootfs = mounts_of(request.rootfs)
        pid = self.d.tasks.create(namespace(context), request.container_id, rootfs,
                                  request.stdin, request.stdout, request.stderr,
                                  request.terminal)
        return pb.CreateTaskResponse(container_id=request.container_id, pid=pid)

    @unary
    def Start(self, request, context):
        return pb.StartResponse(pid=self.d.tasks.start(namespace(context), request.container_id,
                                                       request.exec_id))

    @unary
    def Delete(self, request, context):
        pid, status, when = self.d.tasks.delete(namespace(context), request.container_id)
        return pb.DeleteResponse(id=request.container_id, pid=pid, exit_status=status,
                                 exited_at=ts(when))

    @unary
    def Get(self, request, context):
        return pb.GetResponse(process=self._process(
            self.d.tasks.get(namespace(context), request.container_id, request.exec_id)))

    @unary
    def List(self, request, context):
        # containerd's Tasks.List takes one filter string (fields: id, container_id, pid,
        # status); "" lists every task of the namespace.
        tasks = filters.matching([request.filter] if request.filter else [],
                                 self.d.tasks.list(namespace(context)),
                                 lambda p: filters.fields_of({
                                     "id": p.exec_id or p.container_id,
                                     "container_id": p.container_id, "pid": str(p.pid),
                                     "status": p.status}))
        return pb.ListTasksResponse(tasks=[self._process(p) for p in tasks])

    @unary
    def Kill(self, request, context):
        self.d.tasks.kill(namespace(context), request.container_id, request.signal, request.all,
                          request.exec_id)
        return empty_pb2.Empty()

    @unary
    def Pause(self, request, context):
        self.d.tasks.pause(namespace(context), request.container_id)
        return empty_pb2.Empty()

    @unary
    def Resume(self, request, context):
        self.d.tasks.resume(namespace(context), request.container_id)
        return empty_pb2.Empty()

    @unary
    def Update(self, request, context):
        try:
            resources = json.loads(request.resources or b"{}")
        except ValueError as e:
            raise InvalidArgument(f"update {request.container_id}: resources are not valid "
                                  f"JSON: {e}") from None
        if not isinstance(resources, dict):
            raise InvalidArgument(f"update {request.container_id}: resources must be a JSON "
                                  "object (linux.resources)")
        self.d.tasks.update(namespace(context), request.container_id, resources)
        return empty_pb2.Empty()

    @unary
    def Metrics(self, request, context):
        # containerd's filters select tasks by their fields; a task that stops meanwhile is
        # left out, as containerd leaves out what it cannot read
        ns = namespace(context)
        tasks = filters.matching(request.filters, self.d.tasks.list(ns),
                                 lambda p: filters.fields_of({"id": p.container_id,
                                                              "container_id": p.container_id}))
        metrics = []
        for p in tasks:
            try:
                type_url, value, when = self.d.tasks.metrics(ns, p.container_id)
            except (NotFound, FailedPrecondition):
                continue
            metrics.append(pb.Metric(timestamp=ts(when), id=p.container_id,
                                     data=any_pb2.Any(type_url=type_url, value=value)))
        return pb.MetricsResponse(metrics=metrics)

    @unary
    def Wait(self, request, context):
        status, when = self.d.tasks.wait(namespace(context), request.container_id,
                                         request.exec_id, context.is_active)
        return pb.WaitResponse(exit_status=status, exited_at=ts(when))

    @unary
    def Exec(self, request, context):
        ns = namespace(context)
        check_identifier(request.exec_id, "exec id")
        try:
            process = json.loads(request.spec or b"null")
        except ValueError as e:
            raise InvalidArgument(f"exec {request.exec_id}: process spec is not valid JSON: "
                                  f"{e}") from None
        self.d.tasks.exec(ns, request.container_id, request.exec_id, process, request.stdin,
                          request.stdout, request.stderr, request.terminal)
        return empty_pb2.Empty()

    @unary
    def DeleteProcess(self, request, context):
        pid, status, when = self.d.tasks.delete_process(namespace(context),
                                                        request.container_id, request.exec_id)
        return pb.DeleteResponse(id=request.exec_id, pid=pid, exit_status=status,
                                 exited_at=ts(when))

    @unary
    def ResizePty(self, request, context):
        self.d.tasks.resize_pty(namespace(context), request.container_id, request.width,
                                request.height, request.exec_id)
        return empty_pb2.Empty()

    @unary
    def CloseIO(self, request, context):
        self.d.tasks.close_io(namespace(context), request.container_id, request.stdin,
                              request.exec_id)
        return empty_pb2.Empty()

    @unary
    def ListPids(self, request, context):
        pids = self.d.tasks.pids(namespace(context), request.container_id)
        return pb.ListPidsResponse(processes=[pb.ProcessInfo(pid=p) for p in pids])


class DiffService(rpc.DiffServicer):
    def __init__(self, d: Daemon) -> None:
        self.d = d

    @unary
    def Apply(self, request, context):
        namespace(context)
        desc = difflib.Descriptor(request.diff.media_type, request.diff.digest,
                                  request.diff.size)
        applied = self.d.differ.apply(desc, mounts_of(request.mounts))
        return pb.ApplyResponse(applied=pb.Descriptor(
            media_type=applied.media_type, digest=applied.digest, size=applied.size))

    @unary
    def Diff(self, request, context):
        ns, held = namespace(context), lease(context)

        def hold(digest: str) -> None:
            if held:
                self.d.gc.lease_resource(ns, held, RESOURCE_CONTENT, digest)
        if held and request.ref:
            self.d.gc.lease_resource(ns, held, "ingests", request.ref)
        desc = self.d.differ.diff(mounts_of(request.left), mounts_of(request.right),
                                  request.media_type, request.ref, hold)
        self.d.meta.set_content_labels(ns, desc.digest, {**dict(request.labels),
                                                         LABEL_UNCOMPRESSED: desc.diff_id})
        return pb.DiffResponse(diff=pb.Descriptor(media_type=desc.media_type,
                                                  digest=desc.digest, size=desc.size))


class LeasesService(rpc.LeasesServicer):
    def __init__(self, d: Daemon) -> None:
        self.d = d

    @staticmethod
    def _lease(rec) -> pb.Lease:
        return pb.Lease(id=rec.id, created_at=ts(rec.created_at), labels=rec.labels)

    @unary
    def Create(self, request, context):
        id_ = request.id or uuid.uuid4().hex
        check_identifier(id_, "lease id")
        rec = self.d.meta.create_lease(namespace(context), id_, dict(request.labels))
        return pb.CreateLeaseResponse(lease=self._lease(rec))

    @unary
    def Delete(self, request, context):
        self.d.meta.delete_lease(namespace(context), request.id)
        if request.sync:
            self.d.gc.collect()
        return empty_pb2.Empty()

    @unary
    def List(self, request, context):
        leases = filters.matching(request.filters, self.d.meta.list_leases(namespace(context)),
                                  lambda l: filters.fields_of({"id": l.id}, l.labels))
        return pb.ListLeasesResponse(leases=[self._lease(l) for l in leases])

    @staticmethod
    def _resource(r) -> tuple[str, str]:
        if not r.id or not (r.type in ("content", "ingests") or r.type.startswith("snapshots/")):
            raise InvalidArgument(f"invalid resource {r.type!r}/{r.id!r}: type is content, "
                                  "ingests or snapshots/<snapshotter>, and id is required")
        return r.type, r.id

    @unary
    def AddResource(self, request, context):
        self.d.gc.lease_resource(namespace(context), request.id,
                                 *self._resource(request.resource))
        return empty_pb2.Empty()

    @unary
    def DeleteResource(self, request, context):
        self.d.meta.delete_lease_resource(namespace(context), request.id,
                                          *self._resource(request.resource))
        return empty_pb2.Empty()

    @unary
    def ListResources(self, request, context):
        return pb.ListResourcesResponse(resources=[
            pb.Resource(type=t, id=i)
            for t, i in self.d.meta.lease_resources(namespace(context), request.id)])


class EventsService(rpc.EventsServicer):
    def __init__(self, d: Daemon) -> None:
        self.d = d

    @streaming
    def Subscribe(self, request, context):
        # A subscriber sees the events of its own namespace (the one in its metadata).
        sub = self.d.exchange.subscribe(list(request.filters), namespace(context))
        context.add_callback(sub.close)  # the client went away: end the loop below
        try:
            while context.is_active():
                env = sub.get(timeout=0.5)
                if env is None:
                    if sub.closed:
                        return
                    continue
                yield pb.Envelope(timestamp=ts(env.timestamp), namespace=env.namespace,
                                  topic=env.topic, event=json.dumps(env.event).encode())
        finally:
            sub.close()


class _LogCalls(grpc.ServerInterceptor):
    """Logs every call at debug level ("Tasks/Create ns=moby"): run the daemon with
    --log-level debug to watch what dockerd asks of containerd, call by call."""

    def intercept_service(self, continuation, handler_call_details):
        if log.isEnabledFor(logging.DEBUG):
            md = dict(handler_call_details.invocation_metadata or ())
            method = handler_call_details.method.rsplit(".", 1)[-1]  # "Tasks/Create"
            log.debug("%s ns=%s", method, md.get(NAMESPACE_KEY, "-"))
        return continuation(handler_call_details)


def make_server(daemon: Daemon, address: str, max_workers: int = 64) -> grpc.Server:
    """A gRPC server with every service, listening on unix socket `address` (not started)."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_workers,
                                                    thread_name_prefix="grpc"),
                         interceptors=[_LogCalls()])
    rpc.add_VersionServicer_to_server(VersionService(), server)
    rpc.add_ContentServicer_to_server(ContentService(daemon), server)
    rpc.add_ImagesServicer_to_server(ImagesService(daemon), server)
    rpc.add_TransferServicer_to_server(TransferService(daemon), server)
    rpc.add_SnapshotsServicer_to_server(SnapshotsService(daemon), server)
    rpc.add_ContainersServicer_to_server(ContainersService(daemon), server)
    rpc.add_TasksServicer_to_server(TasksService(daemon), server)
    rpc.add_EventsServicer_to_server(EventsService(daemon), server)
    rpc.add_LeasesServicer_to_server(LeasesService(daemon), server)
    rpc.add_DiffServicer_to_server(DiffService(daemon), server)
    target = address if address.startswith("unix:") else "unix:" + address
    if server.add_insecure_port(target) == 0:
        raise OSError(f"cannot listen on {address}")
    return server
