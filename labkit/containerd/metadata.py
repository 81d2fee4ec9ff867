"""Metadata: what containerd knows about images, containers, snapshots, content labels and
leases, per namespace.

The content store holds bytes and the snapshotter holds directories; neither knows *names*.
The metadata database is where names live: "docker.io/library/busybox:latest" -> a manifest
digest, container "web" -> its spec and snapshot, snapshot key "web" -> directory 12 whose
parent is "sha256:<chain id>". containerd keeps this in BoltDB (meta.db); labkit uses SQLite,
also in <root>/meta.db, so a student can open it with `sqlite3` and look.

Namespaces
    Every row carries a namespace. dockerd works in "moby", `ctr` in "default", kubelet in
    "k8s.io": the same daemon serves them all and none sees the others' images or containers.
    The namespace is not a kernel namespace; it is only a column here.

The database is shared by every gRPC worker thread, so each method takes one lock and runs in
one transaction: a reader never sees half an update.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from labkit.containerd.errors import AlreadyExists, NotFound

_SCHEMA = """
CREATE TABLE IF NOT EXISTS images (
    namespace TEXT NOT NULL, name TEXT NOT NULL,
    target TEXT NOT NULL,              -- descriptor JSON {mediaType, digest, size, annotations}
    labels TEXT NOT NULL DEFAULT '{}',
    created_at REAL NOT NULL, updated_at REAL NOT NULL,
    PRIMARY KEY (namespace, name));
CREATE TABLE IF NOT EXISTS containers (
    namespace TEXT NOT NULL, id TEXT NOT NULL,
    image TEXT NOT NULL DEFAULT '', labels TEXT NOT NULL DEFAULT '{}',
    runtime_name TEXT NOT NULL DEFAULT '', runtime_options BLOB NOT NULL DEFAULT x'',
    spec BLOB NOT NULL DEFAULT x'',    -- the OCI runtime spec (config.json) as JSON bytes
    snapshotter TEXT NOT NULL DEFAULT '', snapshot_key TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL, updated_at REAL NOT NULL,
    PRIMARY KEY (namespace, id));
CREATE TABLE IF NOT EXISTS snapshots (
    id INTEGER PRIMARY KEY AUTOINCREMENT,  -- names the directory: <root>/snapshots/<id>
    namespace TEXT NOT NULL, snapshotter TEXT NOT NULL, key TEXT NOT NULL,
    parent TEXT NOT NULL DEFAULT '',       -- the parent's key (a committed snapshot), '' = none
    kind TEXT NOT NULL,                    -- active | view | committed
    labels TEXT NOT NULL DEFAULT '{}',
    created_at REAL NOT NULL,
    UNIQUE (namespace, snapshotter, key));
CREATE TABLE IF NOT EXISTS content (
    -- A blob's labels in one namespace (the bytes are shared: content/blobs/sha256/<hex>).
    -- containerd.io/gc.ref.content.* and containerd.io/gc.ref.snapshot.* labels are the
    -- references the garbage collector follows (gc.py).
    namespace TEXT NOT NULL, digest TEXT NOT NULL,
    labels TEXT NOT NULL DEFAULT '{}',
    PRIMARY KEY (namespace, digest));
CREATE TABLE IF NOT EXISTS leases (
    namespace TEXT NOT NULL, id TEXT NOT NULL,
    labels TEXT NOT NULL DEFAULT '{}',     -- containerd.io/gc.expire: an RFC 3339 time
    created_at REAL NOT NULL,
    PRIMARY KEY (namespace, id));
CREATE TABLE IF NOT EXISTS lease_resources (
    namespace TEXT NOT NULL, lease TEXT NOT NULL,
    type TEXT NOT NULL,                    -- content | ingests | snapshots/<snapshotter>
    id TEXT NOT NULL,                      -- a digest, an ingest ref, a snapshot key
    PRIMARY KEY (namespace, lease, type, id));
"""


@dataclass
class ImageRecord:
    name: str
    target: dict  # {"mediaType", "digest", "size", "annotations"?}
    labels: dict[str, str] = field(default_factory=dict)
    created_at: float = 0.0
    updated_at: float = 0.0


@dataclass
class ContainerRecord:
    id: str
    image: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    runtime_name: str = ""
    runtime_options: bytes = b""
    spec: bytes = b""
    snapshotter: str = ""
    snapshot_key: str = ""
    created_at: float = 0.0
    updated_at: float = 0.0


@dataclass
class LeaseRecord:
    id: str
    labels: dict[str, str] = field(default_factory=dict)
    created_at: float = 0.0


@dataclass
class GCState:
    """Everything the garbage collector reads, taken in one transaction (gc.py)."""

    images: list[tuple[str, "ImageRecord"]]              # (namespace, image)
    containers: list[tuple[str, "ContainerRecord"]]
    snapshots: list[tuple[str, str, "SnapshotRecord"]]   # (namespace, snapshotter, record)
    content_labels: dict[tuple[str, str], dict[str, str]]  # (namespace, digest) -> labels
    leases: list[tuple[str, "LeaseRecord"]]
    resources: list[tuple[str, str, str, str]]          # (namespace, lease, type, id)


@dataclass
class SnapshotRecord:
    id: int
    key: str
    parent: str
    kind: str  # "active" | "view" | "committed"
    labels: dict[str, str]
    created_at: float


class MetadataStore:
    """SQLite-backed metadata for all namespaces (see the module docstring)."""

    def __init__(self, path: Path) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        # check_same_thread=False: gRPC runs handlers on a thread pool; self._lock serialises.
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._lock = threading.RLock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _tx(self):
        """One transaction under the lock: `with self._tx() as db: ...`."""
        return _Transaction(self._db, self._lock)

    # ------------------------------------------------------------------ images

    def create_image(self, namespace: str, image: ImageRecord) -> ImageRecord:
        now = time.time()
        with self._tx() as db:
            try:
                db.execute("INSERT INTO images VALUES (?,?,?,?,?,?)",
                           (namespace, image.name, json.dumps(image.target),
                            json.dumps(image.labels), now, now))
            except sqlite3.IntegrityError:
                raise AlreadyExists(f"image {image.name!r}: already exists") from None
        return self.get_image(namespace, image.name)

    def update_image(self, namespace: str, image: ImageRecord) -> ImageRecord:
        with self._tx() as db:
            cur = db.execute("UPDATE images SET target=?, labels=?, updated_at=? "
                             "WHERE namespace=? AND name=?",
                             (json.dumps(image.target), json.dumps(image.labels), time.time(),
                              namespace, image.name))
            if cur.rowcount == 0:
                raise NotFound(f"image {image.name!r}: not found")
        return self.get_image(namespace, image.name)

    def get_image(self, namespace: str, name: str) -> ImageRecord:
        with self._tx() as db:
            row = db.execute("SELECT * FROM images WHERE namespace=? AND name=?",
                             (namespace, name)).fetchone()
        if row is None:
            raise NotFound(f"image {name!r}: not found")
        return _image(row)

    def list_images(self, namespace: str) -> list[ImageRecord]:
        with self._tx() as db:
            rows = db.execute("SELECT * FROM images WHERE namespace=? ORDER BY name",
                              (namespace,)).fetchall()
        return [_image(r) for r in rows]

    def delete_image(self, namespace: str, name: str) -> None:
        with self._tx() as db:
            if db.execute("DELETE FROM images WHERE namespace=? AND name=?",
                          (namespace, name)).rowcount == 0:
                raise NotFound(f"image {name!r}: not found")

    # ------------------------------------------------------------------ containers

    def create_container(self, namespace: str, c: ContainerRecord) -> ContainerRecord:
        now = time.time()
        with self._tx() as db:
            try:
                db.execute("INSERT INTO containers VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                           (namespace, c.id, c.image, json.dumps(c.labels), c.runtime_name,
                            c.runtime_options, c.spec, c.snapshotter, c.snapshot_key, now, now))
            except sqlite3.IntegrityError:
                raise AlreadyExists(f"container {c.id!r}: already exists") from None
        return self.get_container(namespace, c.id)

    def get_container(self, namespace: str, id: str) -> ContainerRecord:
        with self._tx() as db:
            row = db.execute("SELECT * FROM containers WHERE namespace=? AND id=?",
                             (namespace, id)).fetchone()
        if row is None:
            raise NotFound(f"container {id!r}: not found")
        return _container(row)

    def list_containers(self, namespace: str) -> list[ContainerRecord]:
        with self._tx() as db:
            rows = db.execute("SELECT * FROM containers WHERE namespace=? ORDER BY created_at",
                              (namespace,)).fetchall()
        return [_container(r) for r in rows]

    def update_container(self, namespace: str, id: str, *, spec: bytes | None = None,
                         labels: dict[str, str] | None = None) -> ContainerRecord:
        """Replace the container's spec and/or labels (None: keep); updated_at moves."""
        with self._tx() as db:
            row = db.execute("SELECT * FROM containers WHERE namespace=? AND id=?",
                             (namespace, id)).fetchone()
            if row is None:
                raise NotFound(f"container {id!r}: not found")
            db.execute("UPDATE containers SET spec=?, labels=?, updated_at=? "
                       "WHERE namespace=? AND id=?",
                       (row["spec"] if spec is None else spec,
                        row["labels"] if labels is None else json.dumps(labels), time.time(),
                        namespace, id))
        return self.get_container(namespace, id)

    def delete_container(self, namespace: str, id: str) -> None:
        with self._tx() as db:
            if db.execute("DELETE FROM containers WHERE namespace=? AND id=?",
                          (namespace, id)).rowcount == 0:
                raise NotFound(f"container {id!r}: not found")

    # ------------------------------------------------------------------ snapshots
    # Used by the snapshotter, which owns the directories these rows describe.

    def insert_snapshot(self, namespace: str, snapshotter: str, key: str, parent: str,
                        kind: str, labels: dict[str, str]) -> SnapshotRecord:
        with self._tx() as db:
            try:
                db.execute("INSERT INTO snapshots (namespace, snapshotter, key, parent, kind, "
                           "labels, created_at) VALUES (?,?,?,?,?,?,?)",
                           (namespace, snapshotter, key, parent, kind, json.dumps(labels),
                            time.time()))
            except sqlite3.IntegrityError:
                raise AlreadyExists(f"snapshot {key!r}: already exists") from None
        return self.get_snapshot(namespace, snapshotter, key)

    def get_snapshot(self, namespace: str, snapshotter: str, key: str) -> SnapshotRecord:
        with self._tx() as db:
            row = db.execute("SELECT * FROM snapshots WHERE namespace=? AND snapshotter=? "
                             "AND key=?", (namespace, snapshotter, key)).fetchone()
        if row is None:
            raise NotFound(f"snapshot {key!r}: not found")
        return _snapshot(row)

    def list_snapshots(self, namespace: str, snapshotter: str) -> list[SnapshotRecord]:
        with self._tx() as db:
            rows = db.execute("SELECT * FROM snapshots WHERE namespace=? AND snapshotter=? "
                              "ORDER BY id", (namespace, snapshotter)).fetchall()
        return [_snapshot(r) for r in rows]

    def snapshot_children(self, namespace: str, snapshotter: str, key: str) -> list[str]:
        with self._tx() as db:
            rows = db.execute("SELECT key FROM snapshots WHERE namespace=? AND snapshotter=? "
                              "AND parent=?", (namespace, snapshotter, key)).fetchall()
        return [r["key"] for r in rows]

    def commit_snapshot(self, namespace: str, snapshotter: str, key: str, name: str,
                        labels: dict[str, str]) -> SnapshotRecord:
        """Rename active snapshot `key` to committed `name` (same row, same directory)."""
        with self._tx() as db:
            try:
                db.execute("UPDATE snapshots SET key=?, kind='committed', labels=? "
                           "WHERE namespace=? AND snapshotter=? AND key=?",
                           (name, json.dumps(labels), namespace, snapshotter, key))
            except sqlite3.IntegrityError:
                raise AlreadyExists(f"snapshot {name!r}: already exists") from None
        return self.get_snapshot(namespace, snapshotter, name)

    def delete_snapshot(self, namespace: str, snapshotter: str, key: str) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM snapshots WHERE namespace=? AND snapshotter=? AND key=?",
                       (namespace, snapshotter, key))

    def snapshot_namespaces(self) -> list[str]:
        with self._tx() as db:
            return [r[0] for r in db.execute("SELECT DISTINCT namespace FROM snapshots")]

    def snapshot_ids(self) -> set[int]:
        """Every snapshot directory in use, across namespaces (to find orphans)."""
        with self._tx() as db:
            return {r[0] for r in db.execute("SELECT id FROM snapshots").fetchall()}


    # ------------------------------------------------------------------ content labels
    # The blobs are files (content.py); what a namespace says about them lives here.

    def content_labels(self, namespace: str, digest: str) -> dict[str, str]:
        with self._tx() as db:
            row = db.execute("SELECT labels FROM content WHERE namespace=? AND digest=?",
                             (namespace, digest)).fetchone()
        return json.loads(row[0]) if row else {}

    def all_content_labels(self, namespace: str) -> dict[str, dict[str, str]]:
        with self._tx() as db:
            rows = db.execute("SELECT digest, labels FROM content WHERE namespace=?",
                              (namespace,)).fetchall()
        return {r[0]: json.loads(r[1]) for r in rows}

    def set_content_labels(self, namespace: str, digest: str, labels: dict[str, str],
                           merge: bool = True) -> dict[str, str]:
        """Set (merge=True: add to) the labels of `digest` in `namespace`; the new labels.
        An empty value removes a label, as containerd's Content.Update does."""
        with self._tx() as db:
            row = db.execute("SELECT labels FROM content WHERE namespace=? AND digest=?",
                             (namespace, digest)).fetchone()
            now = json.loads(row[0]) if (row and merge) else {}
            now.update(labels)
            now = {k: v for k, v in now.items() if v}
            db.execute("INSERT OR REPLACE INTO content VALUES (?,?,?)",
                       (namespace, digest, json.dumps(now, sort_keys=True)))
        return now

    def delete_content_labels(self, namespace: str | None, digest: str) -> None:
        """Forget `digest` in `namespace` (None: in every namespace)."""
        with self._tx() as db:
            if namespace is None:
                db.execute("DELETE FROM content WHERE digest=?", (digest,))
            else:
                db.execute("DELETE FROM content WHERE namespace=? AND digest=?",
                           (namespace, digest))

    # ------------------------------------------------------------------ leases

    def create_lease(self, namespace: str, id: str, labels: dict[str, str]) -> LeaseRecord:
        with self._tx() as db:
            try:
                db.execute("INSERT INTO leases VALUES (?,?,?,?)",
                           (namespace, id, json.dumps(labels), time.time()))
            except sqlite3.IntegrityError:
                raise AlreadyExists(f"lease {id!r}: already exists") from None
        return self.get_lease(namespace, id)

    def get_lease(self, namespace: str, id: str) -> LeaseRecord:
        with self._tx() as db:
            row = db.execute("SELECT * FROM leases WHERE namespace=? AND id=?",
                             (namespace, id)).fetchone()
        if row is None:
            raise NotFound(f"lease {id!r}: not found")
        return _lease(row)

    def list_leases(self, namespace: str) -> list[LeaseRecord]:
        with self._tx() as db:
            rows = db.execute("SELECT * FROM leases WHERE namespace=? ORDER BY created_at",
                              (namespace,)).fetchall()
        return [_lease(r) for r in rows]

    def delete_lease(self, namespace: str, id: str) -> None:
        with self._tx() as db:
            if db.execute("DELETE FROM leases WHERE namespace=? AND id=?",
                          (namespace, id)).rowcount == 0:
                raise NotFound(f"lease {id!r}: not found")
            db.execute("DELETE FROM lease_resources WHERE namespace=? AND lease=?",
                       (namespace, id))

    def add_lease_resource(self, namespace: str, lease: str, type: str, id: str) -> None:
        with self._tx() as db:
            if db.execute("SELECT 1 FROM leases WHERE namespace=? AND id=?",
                          (namespace, lease)).fetchone() is None:
                raise NotFound(f"lease {lease!r}: not found")
            db.execute("INSERT OR IGNORE INTO lease_resources VALUES (?,?,?,?)",
                       (namespace, lease, type, id))

    def delete_lease_resource(self, namespace: str, lease: str, type: str, id: str) -> None:
        with self._tx() as db:
            if db.execute("SELECT 1 FROM leases WHERE namespace=? AND id=?",
                          (namespace, lease)).fetchone() is None:
                raise NotFound(f"lease {lease!r}: not found")
            db.execute("DELETE FROM lease_resources WHERE namespace=? AND lease=? AND type=? "
                       "AND id=?", (namespace, lease, type, id))

    def lease_resources(self, namespace: str, lease: str) -> list[tuple[str, str]]:
        """(type, id) of every resource `lease` holds."""
        self.get_lease(namespace, lease)
        with self._tx() as db:
            rows = db.execute("SELECT type, id FROM lease_resources WHERE namespace=? AND "
                              "lease=? ORDER BY type, id", (namespace, lease)).fetchall()
        return [(r[0], r[1]) for r in rows]

    # ------------------------------------------------------------------ garbage collection

    def gc_state(self) -> GCState:
        """Every root and reference, read in ONE transaction: a pull that creates its image
        and then drops its lease is seen either before (lease) or after (image), never
        between, so the collector cannot miss both."""
        with self._tx() as db:
            return GCState(
                images=[(r["namespace"], _image(r)) for r in db.execute("SELECT * FROM images")],
                containers=[(r["namespace"], _container(r))
                            for r in db.execute("SELECT * FROM containers")],
                snapshots=[(r["namespace"], r["snapshotter"], _snapshot(r))
                           for r in db.execute("SELECT * FROM snapshots ORDER BY id")],
                content_labels={(r[0], r[1]): json.loads(r[2])
                                for r in db.execute("SELECT * FROM content")},
                leases=[(r["namespace"], _lease(r)) for r in db.execute("SELECT * FROM leases")],
                resources=[(r[0], r[1], r[2], r[3])
                           for r in db.execute("SELECT * FROM lease_resources")])


class _Transaction:
    def __init__(self, db: sqlite3.Connection, lock: threading.RLock) -> None:
        self._db, self._lock = db, lock

    def __enter__(self) -> sqlite3.Connection:
        self._lock.acquire()
        self._db.execute("BEGIN IMMEDIATE")
        return self._db

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            self._db.execute("ROLLBACK" if exc_type else "COMMIT")
        finally:
            self._lock.release()


def _image(row: sqlite3.Row) -> ImageRecord:
    return ImageRecord(name=row["name"], target=json.loads(row["target"]),
                       labels=json.loads(row["labels"]), created_at=row["created_at"],
                       updated_at=row["updated_at"])


def _container(row: sqlite3.Row) -> ContainerRecord:
    return ContainerRecord(id=row["id"], image=row["image"], labels=json.loads(row["labels"]),
                           runtime_name=row["runtime_name"],
                           runtime_options=bytes(row["runtime_options"]), spec=bytes(row["spec"]),
                           snapshotter=row["snapshotter"], snapshot_key=row["snapshot_key"],
                           created_at=row["created_at"], updated_at=row["updated_at"])


def _lease(row: sqlite3.Row) -> LeaseRecord:
    return LeaseRecord(id=row["id"], labels=json.loads(row["labels"]),
                       created_at=row["created_at"])


def _snapshot(row: sqlite3.Row) -> SnapshotRecord:
    return SnapshotRecord(id=row["id"], key=row["key"], parent=row["parent"], kind=row["kind"],
                          labels=json.loads(row["labels"]), created_at=row["created_at"])
