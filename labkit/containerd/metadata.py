"""Metadata: what containerd knows about images, containers and snapshots, per namespace.

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


def _snapshot(row: sqlite3.Row) -> SnapshotRecord:
    return SnapshotRecord(id=row["id"], key=row["key"], parent=row["parent"], kind=row["kind"],
                          labels=json.loads(row["labels"]), created_at=row["created_at"])
