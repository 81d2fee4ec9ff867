"""Making images: `docker commit`, and every step of `docker build` (moby's `daemon/commit`).

An image is three kinds of blobs in containerd's content store and a name pointing at one:

    name  ->  manifest  ->  config   (what to run: Env, Cmd …; rootfs.diff_ids; history)
                        ->  layers   (gzip tars: each the changes over the ones before)

So committing is: (1) a layer for the changes, (2) a config that is the parent's plus the new
layer's diff_id and a history line, (3) a manifest listing the parent's layers plus the new
one, (4) the snapshot that layer stack needs to run (so the image runs without a pull), and
(5) a name. Where the changes come from:

    from_snapshot   a container's snapshot: containerd's Diff service compares it with a
                    read-only view of its parent and writes the differences as a gzip layer
                    (deleted files become whiteouts) — `docker commit`, a build's RUN
    from_tar        a layer tar made elsewhere — a build's COPY/ADD (the files themselves)
    config_only     no layer at all (ENV, CMD, …): the history line says "empty_layer"
    from_blobs      a whole image made elsewhere, manifest, config and layers as they are —
                    `docker load` (load.py); `docker import` is from_tar with no parent

Everything is written under a containerd lease, so the garbage collector cannot take a blob
between its write and the name that makes it reachable; then the lease is dropped. Names:
the user's tag, or "moby-dangling@<manifest digest>" for an image without one (`docker images`
shows it as <none>), or "moby-build-cache@<manifest digest>" for a build's intermediate steps
(hidden, kept for the build cache; `docker image prune` and `docker builder prune` remove them).
"""

from __future__ import annotations

import contextlib
import copy
import gzip
import hashlib
import json
import secrets
from typing import Iterator

from google.protobuf import field_mask_pb2

from labkit.distribution import mediatypes
from labkit.distribution.layers import chain_ids
from labkit.distribution.platforms import host_platform
from labkit.distribution.reference import parse_reference
from labkit.dockerd.jsonlog import rfc3339nano
from labkit.dockerd.errors import DaemonError, InvalidParameter
from labkit.dockerd.images import BUILD_CACHE, DANGLING, ImageRecord, ImageService
from labkit.dockerd.remote import Containerd, RemoteError, to_daemon_error
from labkit.wire.containerd import api_pb2 as pb
from labkit.containerd.client import LEASE_KEY

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
UNCOMPRESSED = "containerd.io/uncompressed"


class ImageWriter:
    def __init__(self, ctr: Containerd, images: ImageService) -> None:
        self.ctr, self.images = ctr, images

    # -- the three ways to a new layer -------------------------------------------------------

    def from_snapshot(self, parent: ImageRecord | None, key: str, config: dict,
                      created_by: str, *, name: str = "", comment: str = "",
                      author: str = "", hidden: bool = False) -> ImageRecord:
        """The changes of the container whose snapshot is `key` over `parent`."""
        with self._lease() as md:
            view = f"commit-view-{secrets.token_hex(8)}"
            left = []
            top = self._top(parent)
            try:
                if top:
                    left = self.ctr.call(self.ctr.snapshots.View, pb.ViewSnapshotRequest(
                        snapshotter=self.ctr.snapshotter, key=view, parent=top),
                        metadata=md).mounts
                right = self.ctr.call(self.ctr.snapshots.Mounts, pb.MountsRequest(
                    snapshotter=self.ctr.snapshotter, key=key)).mounts
                layer = self.ctr.call(self.ctr.diff.Diff, pb.DiffRequest(
                    left=left, right=right, media_type=LAYER), metadata=md, timeout=600).diff
            except RemoteError as e:
                raise to_daemon_error(e) from None
            finally:
                if top:
                    with contextlib.suppress(RemoteError):
                        self.ctr.call(self.ctr.snapshots.Remove, pb.RemoveSnapshotRequest(
                            snapshotter=self.ctr.snapshotter, key=view))
            return self._image(parent, layer, config, created_by, md, name, comment, author,
                               hidden)

    def from_tar(self, parent: ImageRecord | None, tar: bytes, config: dict, created_by: str,
                 *, name: str = "", hidden: bool = False, comment: str = "") -> ImageRecord:
        """A layer that is the tar `tar` (e.g. the files a COPY adds, or `docker import`'s
        root filesystem, with no parent)."""
        with self._lease() as md:
            diff_id = "sha256:" + hashlib.sha256(tar).hexdigest()
            layer = self._write(gzip.compress(tar, mtime=0), LAYER, md,
                                {UNCOMPRESSED: diff_id})
            return self._image(parent, layer, config, created_by, md, name, comment, "", hidden)

    def from_blobs(self, manifest: bytes, blobs: dict[str, bytes], names: list[str]) -> str:
        """An image whose blobs were made elsewhere (`docker load`): `manifest` (an image
        manifest's exact bytes) and `blobs` (digest -> bytes: its config and layers) go into
        the content store as they are, so every digest holds; each layer is unpacked into
        its snapshot; each of `names` (or a dangling name) points at the manifest, replacing
        what it pointed at. Returns the manifest's digest."""
        document = json.loads(manifest)
        config_digest = document["config"]["digest"]
        config = json.loads(blobs[config_digest])
        diff_ids = list((config.get("rootfs") or {}).get("diff_ids") or [])
        layers = document.get("layers") or []
        if len(diff_ids) != len(layers):
            raise InvalidParameter(f"image config {config_digest} lists {len(diff_ids)} "
                                   f"layers, its manifest {len(layers)}")
        chain = chain_ids(diff_ids)
        with self._lease() as md:
            descriptors = []
            for layer, diff_id in zip(layers, diff_ids):
                labels = {} if layer["mediaType"] == mediatypes.OCI_LAYER_TAR else {
                    UNCOMPRESSED: diff_id}
                descriptors.append(self._write(blobs[layer["digest"]], layer["mediaType"], md,
                                               labels))
            self._write(blobs[config_digest], document["config"]["mediaType"], md, {
                f"containerd.io/gc.ref.snapshot.{self.ctr.snapshotter}": chain[-1]}
                if chain else {})
            refs = {"containerd.io/gc.ref.content.config": config_digest}
            refs.update({f"containerd.io/gc.ref.content.l.{i}": l["digest"]
                         for i, l in enumerate(layers)})
            target = self._write(manifest, document.get("mediaType") or MANIFEST, md, refs)
            for i, layer in enumerate(descriptors):
                self._unpack(layer, diff_ids[:i + 1], md)
            for name in names or [DANGLING + target.digest]:
                self.images.point(name, target, metadata=md)
        return target.digest

    def config_only(self, parent: ImageRecord | None, config: dict, created_by: str, *,
                    name: str = "", hidden: bool = False) -> ImageRecord:
        with self._lease() as md:
            return self._image(parent, None, config, created_by, md, name, "", "", hidden)

    def filesystem_tar(self, image: ImageRecord) -> bytes:
        """Every file of `image` as one plain tar: Diff of its snapshot against nothing."""
        with self._lease() as md:
            view = f"commit-view-{secrets.token_hex(8)}"
            try:
                mounts = self.ctr.call(self.ctr.snapshots.View, pb.ViewSnapshotRequest(
                    snapshotter=self.ctr.snapshotter, key=view, parent=self._top(image)),
                    metadata=md).mounts
                blob = self.ctr.call(self.ctr.diff.Diff, pb.DiffRequest(
                    left=[], right=mounts, media_type="application/vnd.oci.image.layer.v1.tar"),
                    metadata=md, timeout=600).diff
                return self.ctr.read_blob(blob.digest)
            except RemoteError as e:
                raise to_daemon_error(e) from None
            finally:
                with contextlib.suppress(RemoteError):
                    self.ctr.call(self.ctr.snapshots.Remove, pb.RemoveSnapshotRequest(
                        snapshotter=self.ctr.snapshotter, key=view))

    def tag(self, image: ImageRecord, name: str) -> None:
        """Point `name` (docker.io/library/x:latest) at `image` (`docker tag`'s own code);
        a dangling name for the same image is dropped (it has a tag now)."""
        ref = parse_reference(name)
        self.images.tag(image.config_digest, f"{ref.domain}/{ref.path}", ref.tag or "latest")
        self.images.forget(DANGLING + image.target_digest)

    # -- the blobs -------------------------------------------------------------------------

    @contextlib.contextmanager
    def _lease(self) -> Iterator[list[tuple[str, str]]]:
        try:
            lease = self.ctr.call(self.ctr.leases.Create, pb.CreateLeaseRequest(
                labels={"labkit.dockerd/purpose": "commit"})).lease.id
        except RemoteError as e:
            raise to_daemon_error(e) from None
        try:
            yield [(LEASE_KEY, lease)]
        finally:
            with contextlib.suppress(RemoteError):
                # sync: what the lease alone held (a filesystem tar read, a half-made image)
                # is collected now, not at some later delete
                self.ctr.call(self.ctr.leases.Delete, pb.DeleteLeaseRequest(id=lease, sync=True))

    def _write(self, data: bytes, media_type: str, md, labels: dict[str, str]) -> pb.Descriptor:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        ref = f"dockerd-commit-{digest}"
        requests = iter([pb.WriteContentRequest(
            action=pb.COMMIT, ref=ref, total=len(data), expected=digest, offset=0, data=data,
            labels=labels)])
        try:
            for _ in self.ctr.stream(self.ctr.content.Write, requests, metadata=md):
                pass
        except RemoteError as e:
            if e.code != "ALREADY_EXISTS":
                raise to_daemon_error(e) from None
            if labels:     # it was there: the labels still matter (GC references)
                self.ctr.call(self.ctr.content.Update, pb.UpdateContentRequest(
                    info=pb.ContentInfo(digest=digest, labels=labels),
                    update_mask=field_mask_pb2.FieldMask(paths=[f"labels.{k}" for k in labels])))
        return pb.Descriptor(media_type=media_type, digest=digest, size=len(data))

    def _image(self, parent: ImageRecord | None, layer: pb.Descriptor | None, config: dict,
               created_by: str, md, name: str, comment: str, author: str,
               hidden: bool) -> ImageRecord:
        full = copy.deepcopy(parent.config) if parent else {
            **host_platform(), "rootfs": {"type": "layers", "diff_ids": []}, "history": []}
        now = rfc3339nano()
        full["config"] = config
        full["created"] = now
        full.pop("container_config", None)
        entry = {"created": now, "created_by": created_by}
        if comment:
            entry["comment"] = comment
        if author:
            full["author"] = entry["author"] = author
        layers = list((parent.manifest.get("layers") if parent else None) or [])
        if layer is None:
            entry["empty_layer"] = True
        else:
            diff_id = layer.annotations.get(UNCOMPRESSED) or self._diff_id(layer)
            full["rootfs"]["diff_ids"] = [*full["rootfs"]["diff_ids"], diff_id]
            layers.append({"mediaType": layer.media_type, "digest": layer.digest,
                           "size": layer.size})
            self._unpack(layer, full["rootfs"]["diff_ids"], md)
        full["history"] = [*(full.get("history") or []), entry]
        chain = chain_ids(full["rootfs"]["diff_ids"])
        config_blob = json.dumps(full, separators=(",", ":")).encode()
        config_desc = self._write(config_blob, CONFIG, md, {
            f"containerd.io/gc.ref.snapshot.{self.ctr.snapshotter}": chain[-1]} if chain else {})
        manifest = {"schemaVersion": 2, "mediaType": MANIFEST,
                    "config": {"mediaType": CONFIG, "digest": config_desc.digest,
                               "size": config_desc.size},
                    "layers": layers}
        refs = {"containerd.io/gc.ref.content.config": config_desc.digest}
        refs.update({f"containerd.io/gc.ref.content.l.{i}": l["digest"]
                     for i, l in enumerate(layers)})
        target = self._write(json.dumps(manifest, separators=(",", ":")).encode(), MANIFEST,
                             md, refs)
        if name:       # a name the user gave moves to the new image (commit, import -t)
            self.images.point(name, target, metadata=md)
        else:          # a name made of the digest: if it exists, it is this very image
            try:
                self.ctr.call(self.ctr.images.Create, pb.CreateImageRequest(image=pb.Image(
                    name=(BUILD_CACHE if hidden else DANGLING) + target.digest,
                    target=target)), metadata=md)
            except RemoteError as e:
                if e.code != "ALREADY_EXISTS":
                    raise to_daemon_error(e) from None
        if name:
            record = self.images.find(name)
        else:
            record = self.images.find(config_desc.digest)
        return record

    def _diff_id(self, layer: pb.Descriptor) -> str:
        info = self.ctr.call(self.ctr.content.Info, pb.InfoRequest(digest=layer.digest)).info
        diff_id = info.labels.get(UNCOMPRESSED)
        if not diff_id:
            raise DaemonError(f"layer {layer.digest} has no {UNCOMPRESSED} label")
        return diff_id

    def _unpack(self, layer: pb.Descriptor, diff_ids: list[str], md) -> None:
        """The snapshot of the new layer stack, unless it exists: Prepare on the parent's,
        Diff.Apply the layer into it, Commit it under its chain id (containerd's unpacker)."""
        chain = chain_ids(diff_ids)
        try:
            self.ctr.call(self.ctr.snapshots.Stat, pb.StatSnapshotRequest(
                snapshotter=self.ctr.snapshotter, key=chain[-1]))
            return
        except RemoteError as e:
            if e.code != "NOT_FOUND":
                raise to_daemon_error(e) from None
        key = f"commit-extract-{secrets.token_hex(8)}"
        try:
            mounts = self.ctr.call(self.ctr.snapshots.Prepare, pb.PrepareSnapshotRequest(
                snapshotter=self.ctr.snapshotter, key=key,
                parent=chain[-2] if len(chain) > 1 else ""), metadata=md).mounts
            applied = self.ctr.call(self.ctr.diff.Apply, pb.ApplyRequest(
                diff=layer, mounts=mounts), metadata=md, timeout=600).applied
            if applied.digest and applied.digest != diff_ids[-1]:
                # the tar is not the one the image config names: refuse the image
                raise InvalidParameter(f"layer {layer.digest}: its content is "
                                       f"{applied.digest}, not the diff id {diff_ids[-1]} "
                                       "the image config names")
            self.ctr.call(self.ctr.snapshots.Commit, pb.CommitSnapshotRequest(
                snapshotter=self.ctr.snapshotter, name=chain[-1], key=key), metadata=md)
        except (RemoteError, InvalidParameter) as e:
            with contextlib.suppress(RemoteError):
                self.ctr.call(self.ctr.snapshots.Remove, pb.RemoveSnapshotRequest(
                    snapshotter=self.ctr.snapshotter, key=key))
            if isinstance(e, InvalidParameter):
                raise
            raise to_daemon_error(e) from None

    def _top(self, image: ImageRecord | None) -> str:
        return chain_ids(image.diff_ids)[-1] if image and image.diff_ids else ""


# The parts of a container's Config that an image config keeps (moby: containertypes.Config
# minus what only a container has: Hostname, Image, Attach*, Tty, OpenStdin …).
IMAGE_CONFIG_KEYS = ("User", "ExposedPorts", "Env", "Cmd", "Healthcheck", "Volumes",
                     "WorkingDir", "Entrypoint", "OnBuild", "Labels", "StopSignal", "Shell")


def apply_changes(image_config: dict, changes: list[str]) -> None:
    """`--change 'CMD ["sh"]'` (commit, import): Dockerfile instructions that only set the
    config (CMD, ENV, WORKDIR …), applied in order to `image_config` as a build would."""
    from labkit.dockerd.builder.config import config_change
    from labkit.dockerd.builder.dockerfile import DockerfileError, parse
    from labkit.dockerd.builder.steps import DEFAULT_SHELL
    try:
        for ins in parse("FROM scratch\n" + "\n".join(changes)).instructions[1:]:
            env = dict(e.partition("=")[::2] for e in image_config.get("Env") or [])
            update, _ = config_change(image_config, image_config.get("Shell") or DEFAULT_SHELL,
                                      ins, env)
            image_config.update(update)
    except DockerfileError as e:
        raise InvalidParameter(f"invalid --change: {e}") from None


class Commit:
    """The Daemon's `docker commit` (mixed into labkit.dockerd.daemon.Daemon)."""

    def container_commit(self, query: dict[str, str], changes: list[str],
                         config: object) -> str:
        """POST /commit?container=&repo=&tag=&comment=&author=&changes=…, body: a config."""
        ref, repo, tag = (query.get(k, "") for k in ("container", "repo", "tag"))
        comment, author = query.get("comment", ""), query.get("author", "")
        if not ref:
            raise InvalidParameter("missing parameter: container")
        if config is not None and not isinstance(config, dict):
            raise InvalidParameter("invalid commit config: expected a JSON object")
        c = self._get(ref)
        name = ""
        if repo:
            try:
                name = str(parse_reference(f"{repo}:{tag}" if tag else repo))
            except ValueError as e:
                raise InvalidParameter(str(e)) from None
        image_config = {k: c.Config[k] for k in IMAGE_CONFIG_KEYS if c.Config.get(k)}
        image_config.update({k: v for k, v in (config or {}).items() if k in IMAGE_CONFIG_KEYS})
        apply_changes(image_config, changes)
        parent = self.images.find(c.Image)
        created_by = " ".join([c.Path, *c.Args])
        record = ImageWriter(self.ctr, self.images).from_snapshot(
            parent, c.ID, image_config, created_by, name=name, comment=comment,
            author=author)
        self.event_bus.publish("container", "commit", c.ID, {"comment": comment,
                                                            "imageID": record.config_digest})
        return record.config_digest
