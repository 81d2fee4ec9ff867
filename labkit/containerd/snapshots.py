"""Snapshotters: layered filesystems, described as mounts.

Glossary (containerd's words, which labkit keeps)
    snapshot    a directory tree, identified by a *key*, perhaps stacked on a *parent*.
    active      a writable snapshot, made by Prepare(key, parent). A container's rootfs, or a
                layer being unpacked.
    view        a read-only snapshot, made by View(key, parent): look, don't touch.
    committed   an active snapshot frozen by Commit(name, key) under a new name. Only committed
                snapshots can be parents. Image layers are committed under their *chain id*,
                so two images sharing their first three layers share three snapshots.
    mounts      what a snapshotter hands out: a list of mount descriptions (labkit.containerd.mount)
                that, when performed, show the snapshot's files. The snapshotter never mounts.

Worked lifecycle: unpacking a two-layer image, then running a container on it

    s.prepare("extract-1", "")            -> [bind …/snapshots/1/fs rw]      mount, untar layer 1
    s.commit("sha256:<chain1>", "extract-1")
    s.prepare("extract-2", "sha256:<chain1>")
        -> [overlay lowerdir=…/1/fs,upperdir=…/2/fs,workdir=…/2/work]     mount, untar layer 2
    s.commit("sha256:<chain2>", "extract-2")
    s.prepare("web", "sha256:<chain2>")
        -> [overlay lowerdir=…/2/fs:…/1/fs,upperdir=…/3/fs,workdir=…/3/work]  the container's rootfs
    s.remove("web"); s.remove("sha256:<chain2>") …   children before parents (FAILED_PRECONDITION otherwise)

The overlayfs snapshotter (containerd's "overlayfs", docker's overlay2)
    Each snapshot is a numbered directory <root>/snapshots/<n>/ holding fs/ (the files this
    snapshot adds or changes: overlay's *upperdir*) and work/ (overlay's scratch space, which
    must be on the same filesystem as upperdir). A snapshot's view is its own fs/ over its
    parents' fs/, top first: `lowerdir=<parent>:<grandparent>:…`. A deleted file appears in
    fs/ as a *whiteout* (a 0/0 character device) and a replaced directory as an *opaque*
    directory (xattr trusted.overlay.opaque=y), so the layers below stay untouched.
    Directories are numbered, not named by key, because keys are long (sha256:…) and the
    whole lowerdir list must fit in one page (mount.PAGE_SIZE).

Which snapshots exist, their keys and parents, is metadata: rows in meta.db (per namespace).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from labkit.containerd.errors import FailedPrecondition, InvalidArgument
from labkit.containerd.metadata import MetadataStore, SnapshotRecord
from labkit.containerd.mount import PAGE_SIZE, Mount

ACTIVE, VIEW, COMMITTED = "active", "view", "committed"


@dataclass
class SnapshotInfo:
    name: str
    parent: str
    kind: str  # "active" | "view" | "committed"
    created_at: float
    labels: dict[str, str] = field(default_factory=dict)


class Snapshotter(Protocol):
    """What containerd needs from a snapshotter (containerd: snapshots.Snapshotter).

    tests/containerd/test_snapshotter_contract.py checks any implementation, given a factory.
    """

    def prepare(self, key: str, parent: str = "", labels: dict[str, str] | None = None
                ) -> list[Mount]:
        """A new active (writable) snapshot on committed `parent` ("" = empty)."""
    def view(self, key: str, parent: str = "", labels: dict[str, str] | None = None
             ) -> list[Mount]:
        """A new read-only snapshot of committed `parent`."""
    def mounts(self, key: str) -> list[Mount]:
        """The mounts of an existing snapshot."""
    def commit(self, name: str, key: str, labels: dict[str, str] | None = None) -> None:
        """Freeze active snapshot `key` as committed snapshot `name` (`key` is gone after)."""
    def remove(self, key: str) -> None:
        """Remove a snapshot; FailedPrecondition if other snapshots have it as parent."""
    def stat(self, key: str) -> SnapshotInfo: ...
    def list(self) -> list[SnapshotInfo]: ...


class OverlaySnapshotter:
    """The overlayfs snapshotter for one namespace (cheap: make one per request)."""

    name = "overlayfs"

    def __init__(self, root: Path, meta: MetadataStore, namespace: str) -> None:
        self.dir = Path(root) / "snapshots"
        # 0700, as containerd's: a layer's device nodes (crw-rw-rw- 1:1 …) live in there
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.dir.chmod(0o700)
        self._meta, self._ns = meta, namespace

    # -------------------------------------------------------------- the snapshot verbs

    def prepare(self, key: str, parent: str = "", labels: dict[str, str] | None = None
                ) -> list[Mount]:
        return self._create(ACTIVE, key, parent, labels)

    def view(self, key: str, parent: str = "", labels: dict[str, str] | None = None
             ) -> list[Mount]:
        return self._create(VIEW, key, parent, labels)

    def mounts(self, key: str) -> list[Mount]:
        # BEGIN SOLUTION chapter="07" hint="overlay wants lowerdir=<top>:…:<bottom>,upperdir=…,workdir=…"
        # TODO: describe the mounts that show snapshot `key` (bind or overlay, rw or ro)
        # HINT: self._chain(parent) lists the ancestors top first; self._fs(rec), self._work(rec)
        # HINT: no parents: a bind of fs/; a view of one layer: a read-only bind (man 8 mount)
        rec = self._get(key)
        lowers = [str(self._fs(r)) for r in self._chain(rec.parent)]  # top first
        if rec.kind == COMMITTED:
            # Looking at a committed snapshot is like viewing it: itself over its parents.
            lowers.insert(0, str(self._fs(rec)))
            rec = SnapshotRecord(rec.id, rec.key, rec.parent, VIEW, rec.labels, rec.created_at)
        if rec.kind == ACTIVE:
            if not lowers:
                # Nothing to stack on: the snapshot *is* its directory.
                return [Mount("bind", str(self._fs(rec)), ["rbind", "rw"])]
            return [self._overlay([f"workdir={self._work(rec)}", f"upperdir={self._fs(rec)}",
                                   "lowerdir=" + ":".join(lowers)])]
        # A view: no upper layer, so nothing can be written.
        if not lowers:
            return [Mount("bind", str(self._fs(rec)), ["rbind", "ro"])]
        if len(lowers) == 1:
            # overlay needs at least two lowerdirs when it has no upperdir; a read-only bind
            # of the one layer shows the same thing, more cheaply.
            return [Mount("bind", lowers[0], ["rbind", "ro"])]
        return [self._overlay(["lowerdir=" + ":".join(lowers)])]
        # END SOLUTION

    def commit(self, name: str, key: str, labels: dict[str, str] | None = None) -> None:
        _check_key(name, "name")
        rec = self._get(key)
        if rec.kind != ACTIVE:
            raise FailedPrecondition(f"commit {key!r}: snapshot is {rec.kind}, not active")
        self._meta.commit_snapshot(self._ns, self.name, key, name,
                                   labels if labels is not None else rec.labels)
        # overlay's work/ dir holds nothing a committed snapshot needs.
        shutil.rmtree(self._work(rec), ignore_errors=True)

    def remove(self, key: str) -> None:
        rec = self._get(key)
        children = self._meta.snapshot_children(self._ns, self.name, key)
        if children:
            raise FailedPrecondition(f"remove snapshot {key!r}: it is the parent of "
                                     f"{', '.join(sorted(children))}")
        self._meta.delete_snapshot(self._ns, self.name, key)
        shutil.rmtree(self.dir / str(rec.id), ignore_errors=True)

    def stat(self, key: str) -> SnapshotInfo:
        return _info(self._get(key))

    def list(self) -> list[SnapshotInfo]:
        return [_info(r) for r in self._meta.list_snapshots(self._ns, self.name)]

    # -------------------------------------------------------------- helpers

    def _create(self, kind: str, key: str, parent: str, labels: dict[str, str] | None
                ) -> list[Mount]:
        _check_key(key, "key")
        if parent:
            p = self._get(parent)
            if p.kind != COMMITTED:
                raise FailedPrecondition(f"parent snapshot {parent!r} is {p.kind}, "
                                         "not committed")
        rec = self._meta.insert_snapshot(self._ns, self.name, key, parent, kind, labels or {})
        try:
            self._fs(rec).mkdir(parents=True, exist_ok=True)
            if kind == ACTIVE:
                self._work(rec).mkdir(parents=True, exist_ok=True)
            return self.mounts(key)
        except BaseException:
            self._meta.delete_snapshot(self._ns, self.name, key)
            shutil.rmtree(self.dir / str(rec.id), ignore_errors=True)
            raise

    def _get(self, key: str) -> SnapshotRecord:
        _check_key(key, "key")
        return self._meta.get_snapshot(self._ns, self.name, key)

    def _chain(self, key: str) -> list[SnapshotRecord]:
        """The snapshot `key` and its ancestors, top first ([] for "")."""
        out: list[SnapshotRecord] = []
        while key:
            rec = self._get(key)
            out.append(rec)
            key = rec.parent
        return out

    def _fs(self, rec: SnapshotRecord) -> Path:
        return self.dir / str(rec.id) / "fs"

    def _work(self, rec: SnapshotRecord) -> Path:
        return self.dir / str(rec.id) / "work"

    @staticmethod
    def _overlay(options: list[str]) -> Mount:
        size = len(",".join(options))
        if size >= PAGE_SIZE:
            raise InvalidArgument(f"overlay options are {size} bytes, more than a page "
                                  f"({PAGE_SIZE}): too many layers for this snapshot root")
        return Mount("overlay", "overlay", options)


def _check_key(key: str, what: str) -> None:
    if not key or not isinstance(key, str):
        raise InvalidArgument(f"snapshot {what} must not be empty")


def _info(rec: SnapshotRecord) -> SnapshotInfo:
    return SnapshotInfo(name=rec.key, parent=rec.parent, kind=rec.kind,
                        created_at=rec.created_at, labels=rec.labels)
