"""Applying a layer: unpack an image layer's tar onto a directory (containerd's diff service).

An image layer is a tar archive (usually gzip-compressed) of the files that layer adds or
changes, with root-relative paths. Deleting is expressed with *whiteout* entries (image-spec
layer.md, INTERFACES §3.3):

    etc/.wh.motd          "etc/motd existed in a lower layer; it is gone now"
    usr/.wh..wh..opq      "usr is opaque: hide everything lower layers had in it"
    other .wh..wh.* names are reserved and ignored; marker files are never written out.

A whiteout only ever hides what *lower* layers had: entries of the same layer are untouched,
whatever their order in the archive. So we remember every path this layer wrote.

Two ways to honour whiteouts, chosen by `whiteouts=`:

    "remove"   (default) delete the hidden files. Used when the target is a *mounted* snapshot
               (a bind of the first layer, or an overlay of a layer on its parents): deleting
               through an overlay mount makes the kernel itself record the whiteout in the
               upper directory. This is how labkit-containerd unpacks.
    "overlay"  write overlayfs's own representation into a directory that will later be an
               overlay upperdir: a character device 0/0 for `.wh.x`, the xattr
               trusted.overlay.opaque=y for an opaque directory. (Doing that *through* an
               overlay mount is refused by the kernel: mknod 0/0 gets EPERM.)

Safety: a layer comes from the network, so it is hostile until proven otherwise.
    * an entry whose path climbs out of the root (`../../etc/passwd`) is rejected;
    * symlinks met on the way to an entry are resolved *inside* the root (an absolute link
      /lib -> /usr/lib means <root>/usr/lib, never the host's /usr/lib), so a layer cannot
      plant a link in one entry and write through it in the next;
    * the last component is never followed: we replace it, we do not write through it;
    * hardlink targets are root-relative and resolved the same way.

Integrity: the *decompressed* stream is hashed while it is unpacked; its sha256 is the
layer's diff id, which must equal the config's rootfs.diff_ids[n]. (The compressed blob's
digest was already checked by the content store.)

Python's tarfile does the parsing; we do each entry's creation ourselves, because tarfile's
own extract() knows neither whiteouts nor root-scoped symlink resolution.
"""

from __future__ import annotations

import errno
import gzip
import hashlib
import io
import os
import shutil
import stat
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable

from labkit.containerd.errors import Internal, InvalidArgument
from labkit.securejoin import secure_join

WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"
OPAQUE_XATTR = "trusted.overlay.opaque"



class InvalidLayer(InvalidArgument):
    """The layer is malformed or malicious (bad compression, escaping paths, wrong diff id)."""


@dataclass
class ApplyResult:
    diff_id: str  # sha256 of the decompressed tar
    size: int     # bytes of decompressed tar


def apply_layer(stream: BinaryIO, root: str | Path, *, diff_id: str | None = None,
                whiteouts: str = "remove",
                progress: Callable[[int], None] | None = None) -> ApplyResult:
    """Unpack the layer read from `stream` (gzip, zstd or plain tar) onto directory `root`.

    `diff_id`, if given, is checked against the sha256 of the decompressed tar.
    `progress(n)` is called with the number of (compressed) bytes read so far.
    """
    if whiteouts not in ("remove", "overlay"):
        raise InvalidArgument(f"whiteouts must be 'remove' or 'overlay', not {whiteouts!r}")
    root = os.path.realpath(root)
    if not os.path.isdir(root):
        raise InvalidArgument(f"apply layer: {root} is not a directory")
    hashed = _HashingReader(_decompress(io.BufferedReader(_Counting(stream, progress))))
    try:
        with tarfile.open(fileobj=hashed, mode="r|", errorlevel=1) as tar:
            _Extractor(root, tar, whiteouts).run()
    except tarfile.TarError as e:
        raise InvalidLayer(f"layer is not a valid tar archive: {e}") from None
    except (EOFError, zlib.error, gzip.BadGzipFile) as e:
        raise InvalidLayer(f"layer stream is corrupt: {e}") from None
    except OSError as e:
        # The layer was fine but the filesystem said no (ENOSPC, EPERM on an xattr, ...).
        raise Internal(f"apply layer: {e}") from None
    hashed.drain()  # the tar's trailing zero blocks are part of the diff id too
    actual = "sha256:" + hashed.hash.hexdigest()
    if diff_id and actual != diff_id:
        raise InvalidLayer(f"layer diff id mismatch: content is {actual}, config says {diff_id}")
    return ApplyResult(diff_id=actual, size=hashed.count)


# ---------------------------------------------------------------- streams


class _Counting(io.RawIOBase):
    """Counts the compressed bytes read, for progress reports."""

    def __init__(self, f: BinaryIO, progress: Callable[[int], None] | None) -> None:
        self._f, self._progress, self.count = f, progress, 0

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        data = self._f.read(len(b))
        n = len(data)
        b[:n] = data
        self.count += n
        if self._progress and n:
            self._progress(self.count)
        return n


def _decompress(f: io.BufferedReader) -> BinaryIO:
    """Pick the decompressor from the stream's magic number (media types lie; bytes don't)."""
    magic = f.peek(4)[:4]
    if magic[:2] == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=f, mode="rb")
    if magic == b"\x28\xb5\x2f\xfd":
        try:
            import zstandard  # optional: Python 3.11 has no zstd in the standard library
        except ImportError:
            raise InvalidLayer("layer is zstd-compressed: install the 'zstandard' package "
                               "to unpack it") from None
        return zstandard.ZstdDecompressor().stream_reader(f)
    return f


class _HashingReader(io.RawIOBase):
    """Hashes (and counts) every decompressed byte that tarfile reads."""

    def __init__(self, f: BinaryIO) -> None:
        self._f, self.hash, self.count = f, hashlib.sha256(), 0

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        data = self._f.read(n)
        self.hash.update(data)
        self.count += len(data)
        return data

    def readinto(self, b) -> int:
        data = self.read(len(b))
        b[: len(data)] = data
        return len(data)

    def drain(self) -> None:
        while self.read(1 << 16):
            pass


# ---------------------------------------------------------------- paths


def clean_path(name: str) -> str:
    """A tar entry name as a clean root-relative path ("" = the root); reject escapes."""
    parts: list[str] = []
    for part in name.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                raise InvalidLayer(f"layer entry {name!r} escapes the root")
            parts.pop()
        else:
            parts.append(part)
    return "/".join(parts)


def resolve_in_root(root: str, rel: str) -> str:
    """Resolve `rel` under `root`, following symlinks as if `root` were `/` (labkit.securejoin):
    a layer's links can point anywhere, its files must land inside the snapshot."""
    try:
        return secure_join(root, rel)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise InvalidLayer(f"too many symlinks resolving {rel!r} in the layer") from None
        raise


def _remove(path: str) -> None:
    """rm -rf, without following a symlink at `path`."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(path)
    else:
        os.unlink(path)


# ---------------------------------------------------------------- extraction


class _Extractor:
    def __init__(self, root: str, tar: tarfile.TarFile, whiteouts: str) -> None:
        self.root, self.tar, self.mode = root, tar, whiteouts
        self.written: set[str] = set()           # root-relative paths this layer created
        self.dir_times: list[tuple[str, float]] = []

    def run(self) -> None:
        for member in self.tar:
            self.entry(member)
        # Directory mtimes last: creating their children changed them.
        for path, mtime in reversed(self.dir_times):
            os.utime(path, (mtime, mtime), follow_symlinks=False)

    def entry(self, m: tarfile.TarInfo) -> None:
        rel = clean_path(m.name)
        if not rel:
            return  # "./": the root itself is the snapshot's, not the layer's
        parent_rel, _, base = rel.rpartition("/")
        parent = resolve_in_root(self.root, parent_rel)
        if base.startswith(WHITEOUT_PREFIX):
            self.whiteout(parent_rel, parent, base)
            return
        os.makedirs(parent, exist_ok=True)
        path = os.path.join(parent, base)
        self.make(m, path)
        self.mark_written(rel)

    def mark_written(self, rel: str) -> None:
        while rel and rel not in self.written:
            self.written.add(rel)
            rel = rel.rpartition("/")[0]

    def whiteout(self, parent_rel: str, parent: str, base: str) -> None:
        # BEGIN SOLUTION hint="image-spec layer.md, 'Whiteouts'; INTERFACES §3.3"
        # TODO: honour `.wh.<name>` and the opaque marker `.wh..wh..opq` in directory `parent`
        # HINT: self.mode is "remove" (delete what lower layers had) or "overlay" (mknod 0/0,
        # HINT: xattr trusted.overlay.opaque=y); never hide what self.written says this layer wrote
        if base == OPAQUE_MARKER:
            os.makedirs(parent, exist_ok=True)
            if self.mode == "overlay":
                os.setxattr(parent, OPAQUE_XATTR, b"y", follow_symlinks=False)
                return
            for child in os.listdir(parent):
                if _join(parent_rel, child) not in self.written:
                    _remove(os.path.join(parent, child))
            return
        if base.startswith(WHITEOUT_PREFIX + WHITEOUT_PREFIX):
            return  # reserved .wh..wh.* names other than the opaque marker
        name = base[len(WHITEOUT_PREFIX):]
        if _join(parent_rel, name) in self.written:
            return  # a whiteout never hides an entry of its own layer
        target = os.path.join(parent, name)
        if self.mode == "overlay":
            os.makedirs(parent, exist_ok=True)
            _remove(target)
            os.mknod(target, stat.S_IFCHR | 0o000, os.makedev(0, 0))
        else:
            _remove(target)
        # END SOLUTION

    def make(self, m: tarfile.TarInfo, path: str) -> None:
        try:
            existing = os.lstat(path)
        except FileNotFoundError:
            existing = None
        if existing is not None and not (m.isdir() and stat.S_ISDIR(existing.st_mode)):
            _remove(path)  # a dir entry merges into an existing dir; anything else replaces

        if m.isdir():
            if existing is None or not stat.S_ISDIR(existing.st_mode):
                os.mkdir(path, 0o700)
        elif m.isreg():
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "wb") as out:
                src = self.tar.extractfile(m)
                if src is not None:
                    shutil.copyfileobj(src, out, 1 << 20)
        elif m.issym():
            os.symlink(m.linkname, path)
        elif m.islnk():
            target_rel = clean_path(m.linkname)
            t_parent, _, t_base = target_rel.rpartition("/")
            target = os.path.join(resolve_in_root(self.root, t_parent), t_base)
            if not target_rel or not os.path.lexists(target):
                raise InvalidLayer(f"hardlink {m.name!r} -> {m.linkname!r}: target is missing")
            os.link(target, path, follow_symlinks=False)
            return  # a hardlink shares its target's inode and metadata
        elif m.ischr() or m.isblk():
            kind = stat.S_IFCHR if m.ischr() else stat.S_IFBLK
            os.mknod(path, kind | (m.mode & 0o7777), os.makedev(m.devmajor, m.devminor))
        elif m.isfifo():
            os.mkfifo(path, m.mode & 0o7777)
        else:
            raise InvalidLayer(f"layer entry {m.name!r} has unsupported type {m.type!r}")
        self.metadata(m, path)

    def metadata(self, m: tarfile.TarInfo, path: str) -> None:
        # Owner first: chown clears the setuid/setgid bits, so the mode must come after it.
        os.chown(path, m.uid, m.gid, follow_symlinks=False)
        for key, value in m.pax_headers.items():
            if key.startswith("SCHILY.xattr."):
                raw = value.encode("utf-8", "surrogateescape")
                os.setxattr(path, key[len("SCHILY.xattr."):], raw, follow_symlinks=False)
        if not m.issym():
            os.chmod(path, m.mode & 0o7777)
        if m.isdir():
            self.dir_times.append((path, m.mtime))
        else:
            os.utime(path, (m.mtime, m.mtime), follow_symlinks=False)


def _join(parent_rel: str, name: str) -> str:
    return f"{parent_rel}/{name}" if parent_rel else name
