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

The native snapshotter (containerd's "native", docker's vfs)
    The same numbered directories, but no overlay: Prepare on a parent *copies* the parent's
    whole tree into the new snapshot's fs/ (owners, modes, times, xattrs, links, device
    nodes, hardlinks kept), and the snapshot is a bind mount of that copy. A view of a
    committed snapshot is a read-only bind of the parent itself: nothing can change it,
    so no copy is needed. Deleting a file is just deleting it: no whiteouts on disk.
    Slow and greedy (every container costs a full copy) but it works on any filesystem,
    including where overlay cannot (inside some containers, on top of overlay itself), and
    it shows plainly what overlay saves.

Which snapshots exist, their keys and parents, is metadata: rows in meta.db (per namespace).
Both snapshotters share that code (_MetadataSnapshotter) and differ only in what a snapshot's
directory holds and in how it is described as mounts.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat as statmod
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
    def walk(self, match=None) -> list[SnapshotInfo]:
        """The snapshots `match(info)` accepts (all if None)."""
    def usage(self, key: str) -> "Usage":
        """The disk space and inodes this snapshot itself takes (not its parents')."""


@dataclass
class Usage:
    size: int = 0     # bytes (allocated blocks, as du counts them)
    inodes: int = 0


class _MetadataSnapshotter:
    """What every labkit snapshotter shares: the rows in meta.db and the numbered
    directories <root>/snapshots/<n>/ (subclasses decide what is in them and their mounts)."""

    name = ""

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
        raise NotImplementedError   # each snapshotter's own

    def commit(self, name: str, key: str, labels: dict[str, str] | None = None) -> None:
        _check_key(name, "name")
        # BEGIN SOLUTION chapter="07" hint="only an active snapshot can be committed (FailedPrecondition otherwise)"
        # TODO: freeze active snapshot `key` as committed snapshot `name`
        # HINT: self._get(key) is its row; self._meta.commit_snapshot(self._ns, self.name, key,
        # HINT: name, labels) renames it (keep the row's labels when `labels` is None);
        # HINT: overlay's work/ (self._work(rec)) is of no use to a snapshot nobody writes again
        rec = self._get(key)
        if rec.kind != ACTIVE:
            raise FailedPrecondition(f"commit {key!r}: snapshot is {rec.kind}, not active")
        self._meta.commit_snapshot(self._ns, self.name, key, name,
                                   labels if labels is not None else rec.labels)
        # overlay's work/ dir holds nothing a committed snapshot needs.
        shutil.rmtree(self._work(rec), ignore_errors=True)
        # END SOLUTION

    def remove(self, key: str) -> None:
        # BEGIN SOLUTION chapter="07" hint="children before parents: a parent still in use is FailedPrecondition"
        # TODO: remove snapshot `key`: its row in meta.db, then its numbered directory
        # HINT: self._meta.snapshot_children(self._ns, self.name, key) lists the snapshots
        # HINT: stacked on it: their overlay mounts name its fs/ as a lowerdir
        rec = self._get(key)
        children = self._meta.snapshot_children(self._ns, self.name, key)
        if children:
            raise FailedPrecondition(f"remove snapshot {key!r}: it is the parent of "
                                     f"{', '.join(sorted(children))}")
        self._meta.delete_snapshot(self._ns, self.name, key)
        shutil.rmtree(self.dir / str(rec.id), ignore_errors=True)
        # END SOLUTION

    def stat(self, key: str) -> SnapshotInfo:
        return _info(self._get(key))

    def list(self) -> list[SnapshotInfo]:
        return [_info(r) for r in self._meta.list_snapshots(self._ns, self.name)]

    def walk(self, match=None) -> list[SnapshotInfo]:
        """containerd's Walk: the snapshots `match(info)` accepts (all if None)."""
        return [i for i in self.list() if match is None or match(i)]

    def usage(self, key: str) -> Usage:
        return disk_usage(self._fs(self._get(key)))

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
            self._make(rec)
            return self.mounts(key)
        except BaseException:
            self._meta.delete_snapshot(self._ns, self.name, key)
            shutil.rmtree(self.dir / str(rec.id), ignore_errors=True)
            raise

    def _make(self, rec: SnapshotRecord) -> None:
        """Fill the new snapshot's directory (overlay: an empty fs/, and work/ if active)."""
        self._fs(rec).mkdir(parents=True, exist_ok=True)
        if rec.kind == ACTIVE:
            self._work(rec).mkdir(parents=True, exist_ok=True)

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



class OverlaySnapshotter(_MetadataSnapshotter):
    """The overlayfs snapshotter for one namespace (cheap: make one per request)."""

    name = "overlayfs"

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

    @staticmethod
    def _overlay(options: list[str]) -> Mount:
        size = len(",".join(options))
        if size >= PAGE_SIZE:
            raise InvalidArgument(f"overlay options are {size} bytes, more than a page "
                                  f"({PAGE_SIZE}): too many layers for this snapshot root")
        return Mount("overlay", "overlay", options)


class NativeSnapshotter(_MetadataSnapshotter):
    """The native snapshotter: full copies and bind mounts (module docstring)."""

    name = "native"

    def _make(self, rec: SnapshotRecord) -> None:
        fs = self._fs(rec)
        if rec.kind == ACTIVE and rec.parent:
            copy_tree(self._fs(self._get(rec.parent)), fs)
        else:
            fs.mkdir(parents=True, exist_ok=True)

    def mounts(self, key: str) -> list[Mount]:
        rec = self._get(key)
        if rec.kind == ACTIVE:
            return [Mount("bind", str(self._fs(rec)), ["rbind", "rw"])]
        # A view shows its parent, which is committed and never changes: bind it read-only.
        # (A committed snapshot, looked at, shows itself.)
        source = rec if rec.kind == COMMITTED or not rec.parent else self._get(rec.parent)
        return [Mount("bind", str(self._fs(source)), ["rbind", "ro"])]


def copy_tree(src: Path, dst: Path) -> None:
    """Copy directory `src` to the new directory `dst` exactly: types, owners, modes, times,
    xattrs, hardlinks (as links), symlinks (never followed), device nodes, fifos.

    The source is a committed snapshot under our 0700 directory, which nobody changes, but its
    contents come from image layers: so nothing is followed (scandir's entries are not, every
    file is opened O_NOFOLLOW), and a device node is made with mknod, never opened.
    """
    links: dict[tuple[int, int], str] = {}   # (dev, ino) of a file with nlink > 1 -> its copy
    dirs: list[tuple[str, os.stat_result]] = []
    dst.parent.mkdir(parents=True, exist_ok=True)

    def copy(s: str, d: str, st: os.stat_result) -> None:
        mode = st.st_mode
        if statmod.S_ISDIR(mode):
            os.mkdir(d, 0o700)
            dirs.append((d, st))
            with os.scandir(s) as it:
                for e in it:
                    copy(e.path, os.path.join(d, e.name), e.stat(follow_symlinks=False))
            _copy_meta(s, d, st, is_dir=True)
            return
        if st.st_nlink > 1:
            first = links.get((st.st_dev, st.st_ino))
            if first:
                os.link(first, d, follow_symlinks=False)
                return
            links[(st.st_dev, st.st_ino)] = d
        if statmod.S_ISREG(mode):
            fin = os.open(s, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            try:
                fout = os.open(d, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                               | os.O_CLOEXEC, 0o600)
                try:
                    _copy_data(fin, fout, st.st_size)
                finally:
                    os.close(fout)
            finally:
                os.close(fin)
        elif statmod.S_ISLNK(mode):
            os.symlink(os.readlink(s), d)
        elif statmod.S_ISCHR(mode) or statmod.S_ISBLK(mode) or statmod.S_ISFIFO(mode) \
                or statmod.S_ISSOCK(mode):
            os.mknod(d, statmod.S_IFMT(mode) | 0o600, st.st_rdev)
        else:
            raise OSError(errno.EINVAL, f"cannot copy {s}: unknown file type {oct(mode)}")
        _copy_meta(s, d, st, is_dir=False)

    copy(str(src), str(dst), os.lstat(src))
    # Directory times last: copying into a directory changed its mtime.
    for d, st in reversed(dirs):
        os.utime(d, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


def _copy_data(fin: int, fout: int, size: int) -> None:
    """copy_file_range (the kernel copies, or shares the blocks, without a round trip
    through us); plain read/write where the filesystem cannot."""
    left = size
    try:
        while left > 0:
            n = os.copy_file_range(fin, fout, left)
            if n == 0:
                break
            left -= n
    except OSError as e:
        if e.errno not in (errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL):
            raise
        os.lseek(fin, 0, os.SEEK_SET)
        os.lseek(fout, 0, os.SEEK_SET)
        os.ftruncate(fout, 0)
        while chunk := os.read(fin, 1 << 20):
            os.write(fout, chunk)


def _copy_meta(s: str, d: str, st: os.stat_result, *, is_dir: bool) -> None:
    # Owner first: chown clears setuid/setgid, so the mode comes after it.
    os.chown(d, st.st_uid, st.st_gid, follow_symlinks=False)
    try:
        names = os.listxattr(s, follow_symlinks=False)
    except OSError as e:
        if e.errno not in (errno.ENOTSUP, errno.EPERM):
            raise
        names = []
    for name in names:
        os.setxattr(d, name, os.getxattr(s, name, follow_symlinks=False),
                    follow_symlinks=False)
    if not statmod.S_ISLNK(st.st_mode):
        os.chmod(d, statmod.S_IMODE(st.st_mode))
    if not is_dir:
        os.utime(d, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


def disk_usage(top: Path) -> Usage:
    """Blocks and inodes under `top`, each hardlinked inode counted once (du's rule)."""
    seen: set[tuple[int, int]] = set()
    usage = Usage()
    stack = [str(top)]
    while stack:
        path = stack.pop()
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            continue
        if (st.st_dev, st.st_ino) not in seen:
            seen.add((st.st_dev, st.st_ino))
            usage.inodes += 1
            usage.size += st.st_blocks * 512
        if statmod.S_ISDIR(st.st_mode):
            with os.scandir(path) as it:
                stack.extend(e.path for e in it)
    return usage


# The snapshotters a daemon can offer, by the name clients ask for (containerd's plugin ids).
SNAPSHOTTERS = {"overlayfs": OverlaySnapshotter, "native": NativeSnapshotter}


def _check_key(key: str, what: str) -> None:
    if not key or not isinstance(key, str):
        raise InvalidArgument(f"snapshot {what} must not be empty")


def _info(rec: SnapshotRecord) -> SnapshotInfo:
    return SnapshotInfo(name=rec.key, parent=rec.parent, kind=rec.kind,
                        created_at=rec.created_at, labels=rec.labels)
