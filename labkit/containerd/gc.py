"""Garbage collection: remove the blobs and snapshots nothing refers to any more.

Nobody deletes a layer by hand. `docker rmi busybox` deletes one *image record* (a name ->
a manifest digest); whatever that leaves unreachable is garbage, and the collector finds it
the way containerd's does (metadata/gc.go): mark everything reachable from the roots, then
sweep the rest.

Roots (per namespace)
    images       each image's target (an index or a manifest)
    containers   each container's snapshot (snapshotter, snapshot_key)
    leases       every resource a lease holds: content, snapshots/<snapshotter>; a lease
                 whose label containerd.io/gc.expire (RFC 3339) has passed is deleted first
    gc.root      any blob or snapshot labelled containerd.io/gc.root
    (labkit)     active and view snapshots: a client holds them by key. containerd collects
                 them too unless a lease or a container holds them, which is why its clients
                 always work under a lease; labkit-dockerd's Prepare-then-Create does not, so
                 labkit keeps them and only ever collects committed snapshots.

References (edges), read from labels, never from parsing blobs: the puller writes them
    index     containerd.io/gc.ref.content.m.<i>        -> a manifest
    manifest  containerd.io/gc.ref.content.config       -> its config
              containerd.io/gc.ref.content.l.<i>        -> each layer
    config    containerd.io/gc.ref.snapshot.<snapshotter> -> the chain id of the top layer
    snapshot  its parent (and labels like the above, if any)

So: image -> index -> manifest -> config + layers; config -> top snapshot -> parents.
Leases with containerd.io/gc.flat hold their resources but do not follow references.

Why labels and not the manifests' JSON: the collector never needs to understand a media type,
and any client (a builder writing its own blobs) can say what keeps what.

    removed = Collector(content, meta, snapshotter).collect()
    removed.content, removed.snapshots, removed.leases

Safety against concurrent writers, which is what leases are for:
    * a writer puts a blob or snapshot in its lease (Collector.lease_resource) BEFORE it looks
      whether it exists, and that takes the collector's lock: the addition happens wholly
      before a collection (which then sees it) or after it (the thing is then either kept or
      gone, and the writer, looking after, makes it again);
    * all metadata is read in one transaction (MetadataStore.gc_state);
    * a snapshot that gained a child since is refused by the snapshotter, and kept.
"""

from __future__ import annotations

import datetime
import logging
import threading
from dataclasses import dataclass, field
from typing import Callable

from labkit.containerd.content import LocalContentStore
from labkit.containerd.errors import ContainerdError, FailedPrecondition, NotFound
from labkit.containerd.metadata import MetadataStore
from labkit.containerd.snapshots import Snapshotter

log = logging.getLogger("labkit.containerd.gc")

LABEL_ROOT = "containerd.io/gc.root"
LABEL_REF_CONTENT = "containerd.io/gc.ref.content"
LABEL_REF_SNAPSHOT = "containerd.io/gc.ref.snapshot."
LABEL_EXPIRE = "containerd.io/gc.expire"
LABEL_FLAT = "containerd.io/gc.flat"
LABEL_UNCOMPRESSED = "containerd.io/uncompressed"

RESOURCE_CONTENT = "content"
RESOURCE_INGEST = "ingests"
RESOURCE_SNAPSHOTS = "snapshots/"   # + snapshotter name


def snapshot_resource(snapshotter: str) -> str:
    return RESOURCE_SNAPSHOTS + snapshotter


@dataclass
class Removed:
    content: list[str] = field(default_factory=list)             # digests
    snapshots: list[tuple[str, str, str]] = field(default_factory=list)  # (ns, snapshotter, key)
    leases: list[tuple[str, str]] = field(default_factory=list)   # (ns, id)


def references(labels: dict[str, str]) -> list[tuple]:
    """The nodes a blob's or snapshot's labels point at: ("content", digest) and
    ("snapshot", snapshotter, key)."""
    out: list[tuple] = []
    for key, value in labels.items():
        if key.startswith(LABEL_REF_CONTENT):
            out.append(("content", value))
        elif key.startswith(LABEL_REF_SNAPSHOT):
            # containerd.io/gc.ref.snapshot.overlayfs, or …overlayfs/<anything> for several
            snapshotter = key[len(LABEL_REF_SNAPSHOT):].split("/", 1)[0]
            out.append(("snapshot", snapshotter, value))
    return out


def expired(labels: dict[str, str], now: datetime.datetime) -> bool:
    value = labels.get(LABEL_EXPIRE)
    if not value:
        return False
    try:
        when = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        log.warning("lease label %s=%r is not an RFC 3339 time; ignored", LABEL_EXPIRE, value)
        return False
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.timezone.utc)
    return when <= now


def expiry_label(seconds: float) -> dict[str, str]:
    """{containerd.io/gc.expire: now + seconds}, for a lease that must not outlive a crash."""
    when = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=seconds)
    return {LABEL_EXPIRE: when.strftime("%Y-%m-%dT%H:%M:%SZ")}


class Collector:
    """Mark and sweep over one daemon's metadata, content store and snapshotters."""

    def __init__(self, content: LocalContentStore, meta: MetadataStore,
                 snapshotter: Callable[[str, str], Snapshotter], default_snapshotter: str
                 ) -> None:
        self.content, self.meta = content, meta
        self.snapshotter, self.default_snapshotter = snapshotter, default_snapshotter
        self._lock = threading.Lock()   # one collection at a time

    def lease_resource(self, namespace: str, lease: str, type: str, id: str) -> None:
        """Add a resource to a lease, never in the middle of a collection (see "Safety")."""
        with self._lock:
            self.meta.add_lease_resource(namespace, lease, type, id)

    def collect(self) -> Removed:
        with self._lock:
            removed = Removed()
            now = datetime.datetime.now(datetime.timezone.utc)
            blobs = [i.digest for i in self.content.list()]
            state = self.meta.gc_state()
            for ns, lease in state.leases:
                if expired(lease.labels, now):
                    try:
                        self.meta.delete_lease(ns, lease.id)
                        removed.leases.append((ns, lease.id))
                    except NotFound:
                        pass
            if removed.leases:
                state = self.meta.gc_state()
            marked = self._mark(state, now)
            self._sweep_snapshots(state, marked, removed)
            self._sweep_content(state, blobs, marked, removed)
            if removed.content or removed.snapshots or removed.leases:
                log.info("gc: removed %d blobs, %d snapshots, %d expired leases",
                         len(removed.content), len(removed.snapshots), len(removed.leases))
            return removed

    # -------------------------------------------------------------- mark

    def _mark(self, state, now) -> set[tuple]:
        """Every reachable node, as (namespace, "content", digest) or
        (namespace, "snapshot", snapshotter, key)."""
        snapshots = {(ns, sn, rec.key): rec for ns, sn, rec in state.snapshots}
        roots: list[tuple] = []
        flat: set[tuple] = set()
        for ns, image in state.images:
            if image.target.get("digest"):
                roots.append((ns, "content", image.target["digest"]))
        for ns, c in state.containers:
            if c.snapshot_key:
                roots.append((ns, "snapshot", c.snapshotter or self.default_snapshotter,
                              c.snapshot_key))
        flat_leases = {(ns, lease.id) for ns, lease in state.leases
                       if LABEL_FLAT in lease.labels}
        for ns, lease, type_, id_ in state.resources:
            if type_ == RESOURCE_CONTENT:
                node = (ns, "content", id_)
            elif type_.startswith(RESOURCE_SNAPSHOTS):
                node = (ns, "snapshot", type_[len(RESOURCE_SNAPSHOTS):], id_)
            else:
                continue   # ingests: not collected here (content.py owns them)
            if (ns, lease) in flat_leases:
                flat.add(node)
            else:
                roots.append(node)
        for (ns, digest), labels in state.content_labels.items():
            if LABEL_ROOT in labels:
                roots.append((ns, "content", digest))
        for (ns, sn, key), rec in snapshots.items():
            if LABEL_ROOT in rec.labels or rec.kind != "committed":
                roots.append((ns, "snapshot", sn, key))

        marked: set[tuple] = set(flat)
        todo = list(roots)
        while todo:
            node = todo.pop()
            if node in marked:
                continue
            marked.add(node)
            ns = node[0]
            if node[1] == "content":
                labels = state.content_labels.get((ns, node[2]), {})
            else:
                rec = snapshots.get((ns, node[2], node[3]))
                if rec is None:
                    continue
                labels = rec.labels
                if rec.parent:
                    todo.append((ns, "snapshot", node[2], rec.parent))
            todo.extend((ns, *ref) for ref in references(labels))
        return marked

    # -------------------------------------------------------------- sweep

    def _sweep_snapshots(self, state, marked: set[tuple], removed: Removed) -> None:
        # Children before parents: a parent always exists before its child, so a child's row
        # id is the larger one.
        for ns, sn, rec in sorted(state.snapshots, key=lambda t: -t[2].id):
            if (ns, "snapshot", sn, rec.key) in marked:
                continue
            try:
                self.snapshotter(ns, sn).remove(rec.key)
                removed.snapshots.append((ns, sn, rec.key))
            except (NotFound, FailedPrecondition):
                pass   # gone already, or it gained a child since: kept
            except ContainerdError as e:
                log.warning("gc: snapshot %s/%s/%s: %s", ns, sn, rec.key, e)

    def _sweep_content(self, state, blobs: list[str], marked: set[tuple],
                       removed: Removed) -> None:
        live = {node[2] for node in marked if node[1] == "content"}
        for (ns, digest) in state.content_labels:
            if (ns, "content", digest) not in marked:
                self.meta.delete_content_labels(ns, digest)
        for digest in blobs:
            if digest in live:
                continue
            try:
                self.content.delete(digest)
                removed.content.append(digest)
            except NotFound:
                pass
