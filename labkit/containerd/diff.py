"""The Diff service: layers <-> filesystems, both ways (containerd.services.diff.v1).

    Apply(layer descriptor, mounts)  unpack a layer blob from the content store onto the
                                     filesystem the mounts show (the puller's step, offered
                                     to clients: a builder, `ctr`)
    Diff(left mounts, right mounts)  the difference between two filesystems, written into the
                                     content store as a layer: how `docker commit` and a
                                     builder turn a container's changes into an image layer

Comparing (containerd's "walking" differ, a double walk)
    Both sides are mounted read-only on temporary directories. Walking `right`, every entry
    is compared with the same path in `left`:

        only in right                       added     -> the entry (a directory: all of it)
        in both, but type, mode, owner,     changed   -> the entry (a directory: only itself;
        size, mtime, link target, device,               its children are compared one by one)
        or xattrs differ
        in both, the same                   unchanged -> nothing
        only in left                        deleted   -> a whiteout  dir/.wh.<name>
        a directory none of whose old                 -> an opaque marker dir/.wh..wh..opq,
        entries survive                                  then all of its new entries

    The layer is a tar (PAX, owners numeric, xattrs as SCHILY.xattr.*), hardlinks within the
    layer as links, gzip-compressed unless asked for plain tar. Its two digests:
        diff id   sha256 of the tar: what the image config lists (rootfs.diff_ids) and the
                  blob's label containerd.io/uncompressed says
        digest    sha256 of the compressed blob: its name in the content store

    Read-only mounts of a snapshot (mount.readonly): an active overlay snapshot cannot be
    mounted twice with its upperdir (the kernel refuses a workdir in use), so its upperdir
    becomes the top lowerdir instead, as containerd does.

Safety: the trees come from image layers and containers. Nothing is followed: entries are
lstat'ed, files opened O_NOFOLLOW under directories walked without following symlinks.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import stat
import tarfile
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from labkit.containerd import mount as mountlib
from labkit.containerd.apply import OPAQUE_MARKER, WHITEOUT_PREFIX, apply_layer
from labkit.containerd.content import ContentInfo, LocalContentStore
from labkit.containerd.errors import InvalidArgument
from labkit.containerd.mount import Mount
from labkit.distribution import mediatypes

GZIP_TYPES = (mediatypes.OCI_LAYER_GZIP, mediatypes.DOCKER_LAYER_GZIP)
TAR_TYPES = (mediatypes.OCI_LAYER_TAR,)


@dataclass
class Descriptor:
    media_type: str
    digest: str
    size: int
    diff_id: str = ""   # of a compressed layer: the digest of its tar


class Differ:
    """Apply and Diff over one daemon's content store; temporary mounts go under `tmp_dir`
    (containerd's 0700 tmpmounts: a layer's device nodes appear there)."""

    def __init__(self, content: LocalContentStore, tmp_dir: Path) -> None:
        self.content, self.tmp_dir = content, Path(tmp_dir)

    # -------------------------------------------------------------- Apply

    def apply(self, desc: Descriptor, mounts: list[Mount]) -> Descriptor:
        """Unpack blob `desc` onto `mounts`; the uncompressed layer's descriptor."""
        if desc.media_type and desc.media_type not in mediatypes.LAYER_TYPES:
            raise InvalidArgument(f"apply: {desc.media_type!r} is not a layer media type")
        if not mounts:
            raise InvalidArgument("apply: no mounts to apply the layer to")
        with self._mounted(mounts) as target, self.content.open(desc.digest) as f:
            result = apply_layer(f, target)
        return Descriptor(mediatypes.OCI_LAYER_TAR, result.diff_id, result.size)

    # -------------------------------------------------------------- Diff

    def diff(self, left: list[Mount], right: list[Mount], media_type: str = "",
             ref: str = "", hold: Callable[[str], None] | None = None) -> Descriptor:
        """Write the layer that turns `left` into `right` into the content store.
        `hold(digest)` is called before the blob is published (a lease, see gc.py)."""
        media_type = media_type or mediatypes.OCI_LAYER_GZIP
        if media_type not in GZIP_TYPES + TAR_TYPES:
            raise InvalidArgument(f"diff: cannot write a {media_type!r} layer: "
                                  f"{', '.join(GZIP_TYPES + TAR_TYPES)}")
        ingest = self.content.ingest(ref or f"diff-{uuid.uuid4().hex}")
        try:
            blob = _HashingWriter(ingest)
            tar_hash = _HashingWriter(None)
            with self._mounted(mountlib.readonly(left)) as lroot, \
                    self._mounted(mountlib.readonly(right)) as rroot:
                if media_type in GZIP_TYPES:
                    gz = gzip.GzipFile(fileobj=blob, mode="wb", mtime=0)
                    out = _Tee(gz, tar_hash)
                else:
                    gz, out = None, _Tee(blob, tar_hash)
                with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                    write_changes(tar, lroot, rroot)
                if gz is not None:
                    gz.close()
            digest = "sha256:" + blob.hash.hexdigest()
            info: ContentInfo = ingest.commit(blob.count, digest, before_publish=hold)
        except BaseException:
            ingest.abort()
            raise
        return Descriptor(media_type, info.digest, info.size,
                          diff_id="sha256:" + tar_hash.hash.hexdigest())

    # -------------------------------------------------------------- helpers

    def _mounted(self, mounts: list[Mount]):
        return _TempMount(self.tmp_dir, mounts)


class _TempMount:
    """`with _TempMount(dir, mounts) as path:` the mounts performed on a fresh directory
    (an empty directory when there are none: the empty filesystem), undone after."""

    def __init__(self, tmp_dir: Path, mounts: list[Mount]) -> None:
        self.tmp_dir, self.mounts = tmp_dir, mounts

    def __enter__(self) -> str:
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        self.tmp_dir.chmod(0o700)
        self.path = tempfile.mkdtemp(prefix="d", dir=self.tmp_dir)
        try:
            mountlib.mount_all(self.mounts, self.path)
        except BaseException:
            os.rmdir(self.path)
            raise
        return self.path

    def __exit__(self, *exc) -> None:
        mountlib.unmount_all(self.path)
        os.rmdir(self.path)


class _HashingWriter:
    """A write-only file that hashes and counts, and passes the bytes on to an Ingest."""

    def __init__(self, ingest) -> None:
        self.ingest, self.hash, self.count = ingest, hashlib.sha256(), 0

    def write(self, data) -> int:
        data = bytes(data)
        self.hash.update(data)
        if self.ingest is not None:
            self.ingest.write(data, self.count)
        self.count += len(data)
        return len(data)

    def flush(self) -> None:
        pass


class _Tee:
    def __init__(self, out, also: _HashingWriter) -> None:
        self.out, self.also = out, also

    def write(self, data) -> int:
        self.also.write(data)
        return self.out.write(data)

    def flush(self) -> None:
        pass


# ---------------------------------------------------------------- comparing


def _lstat(path: str) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None


def _xattrs(path: str) -> dict[str, bytes]:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return {}
    out = {}
    for n in names:
        if n.startswith("trusted.overlay."):
            continue   # overlay's own bookkeeping, not the file's
        try:
            out[n] = os.getxattr(path, n, follow_symlinks=False)
        except OSError:
            pass
    return out


def same(lpath: str, l: os.stat_result, rpath: str, r: os.stat_result) -> bool:
    """Is the right entry unchanged from the left one? (metadata, as containerd compares)"""
    if stat.S_IFMT(l.st_mode) != stat.S_IFMT(r.st_mode):
        return False
    if (l.st_mode, l.st_uid, l.st_gid) != (r.st_mode, r.st_uid, r.st_gid):
        return False
    if stat.S_ISLNK(r.st_mode):
        return os.readlink(lpath) == os.readlink(rpath)
    if stat.S_ISCHR(r.st_mode) or stat.S_ISBLK(r.st_mode):
        if l.st_rdev != r.st_rdev:
            return False
    if not stat.S_ISDIR(r.st_mode):
        if l.st_size != r.st_size or l.st_mtime_ns != r.st_mtime_ns:
            return False
    elif l.st_mtime_ns != r.st_mtime_ns:
        return False
    return _xattrs(lpath) == _xattrs(rpath)


def changes(lroot: str, rroot: str) -> Iterator[tuple[str, str]]:
    """(kind, relative path) in tar order: kind is "add" (write the right entry; a directory
    alone), "tree" (write the right entry and everything under it), "whiteout" or "opaque"
    (the marker for directory `path`)."""
    def walk(rel: str) -> Iterator[tuple[str, str]]:
        ldir, rdir = os.path.join(lroot, rel), os.path.join(rroot, rel)
        rnames = sorted(os.listdir(rdir))
        lst = _lstat(ldir)
        lnames = sorted(os.listdir(ldir)) if lst is not None and stat.S_ISDIR(lst.st_mode) else []
        gone = [n for n in lnames if n not in rnames]
        if lnames and len(gone) == len(lnames):
            # Nothing of the old directory survives: one opaque marker says so, and
            # everything in the new one is written whole.
            yield "opaque", rel
            for n in rnames:
                yield "tree", _join(rel, n)
            return
        for n in gone:
            yield "whiteout", _join(rel, n)
        for n in rnames:
            child = _join(rel, n)
            lpath, rpath = os.path.join(lroot, child), os.path.join(rroot, child)
            r = os.lstat(rpath)
            l = _lstat(lpath)
            if l is None or (stat.S_ISDIR(r.st_mode) != stat.S_ISDIR(l.st_mode)):
                yield "tree", child
                continue
            if not same(lpath, l, rpath, r):
                yield "add", child
            if stat.S_ISDIR(r.st_mode):
                yield from walk(child)

    yield from walk("")


def write_changes(tar: tarfile.TarFile, lroot: str, rroot: str) -> None:
    """Write the layer turning `lroot` into `rroot` (see the module docstring) to `tar`."""
    links: dict[tuple[int, int], str] = {}    # inode -> first path written in this layer
    for kind, rel in changes(lroot, rroot):
        if kind == "whiteout":
            parent, _, name = rel.rpartition("/")
            _marker(tar, _join(parent, WHITEOUT_PREFIX + name))
        elif kind == "opaque":
            _marker(tar, _join(rel, OPAQUE_MARKER))
        elif kind == "add":
            _entry(tar, rroot, rel, links)
        else:   # a whole tree
            for sub in _tree(rroot, rel):
                _entry(tar, rroot, sub, links)


def _tree(root: str, rel: str) -> Iterator[str]:
    yield rel
    path = os.path.join(root, rel)
    if stat.S_ISDIR(os.lstat(path).st_mode):
        for n in sorted(os.listdir(path)):
            yield from _tree(root, _join(rel, n))


def _marker(tar: tarfile.TarFile, name: str) -> None:
    info = tarfile.TarInfo(name)
    info.mode = 0o644
    tar.addfile(info)


def _entry(tar: tarfile.TarFile, root: str, rel: str, links: dict) -> None:
    path = os.path.join(root, rel)
    st = os.lstat(path)
    info = tarfile.TarInfo(rel + "/" if stat.S_ISDIR(st.st_mode) else rel)
    info.mode = stat.S_IMODE(st.st_mode)
    info.uid, info.gid = st.st_uid, st.st_gid
    info.uname = info.gname = ""
    info.mtime = st.st_mtime_ns // 1_000_000_000
    for name, value in _xattrs(path).items():
        info.pax_headers["SCHILY.xattr." + name] = value.decode("utf-8", "surrogateescape")
    if not stat.S_ISDIR(st.st_mode) and st.st_nlink > 1:
        first = links.get((st.st_dev, st.st_ino))
        if first is not None:
            info.type, info.linkname = tarfile.LNKTYPE, first
            tar.addfile(info)
            return
        links[(st.st_dev, st.st_ino)] = rel
    if stat.S_ISDIR(st.st_mode):
        info.type = tarfile.DIRTYPE
        tar.addfile(info)
    elif stat.S_ISREG(st.st_mode):
        info.size = st.st_size
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as f:
            tar.addfile(info, f)
    elif stat.S_ISLNK(st.st_mode):
        info.type, info.linkname = tarfile.SYMTYPE, os.readlink(path)
        tar.addfile(info)
    elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
        if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
            return   # an overlay whiteout seen through a raw directory: not a file
        info.type = tarfile.CHRTYPE if stat.S_ISCHR(st.st_mode) else tarfile.BLKTYPE
        info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
        tar.addfile(info)
    elif stat.S_ISFIFO(st.st_mode):
        info.type = tarfile.FIFOTYPE
        tar.addfile(info)
    # sockets are not part of a layer (tar cannot hold them; docker skips them too)


def _join(parent: str, name: str) -> str:
    return f"{parent}/{name}" if parent else name
