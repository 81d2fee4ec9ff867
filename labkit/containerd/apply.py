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

Safety: a layer comes from the network, so it is hostile until proven otherwise. Docker
unpacks in a chroot for this reason; labkit gets the same confinement from the kernel:
    * an entry whose path climbs out of the root (`../../etc/passwd`) is rejected;
    * every path is resolved *by the kernel, inside the root* (openat2 with RESOLVE_IN_ROOT,
      labkit.securejoin.open_in_root): an absolute link /lib -> /usr/lib means
      <root>/usr/lib, never the host's /usr/lib, so a layer cannot plant a link in one entry
      and write through it in the next. This holds for every operation: creating, writing,
      linking, whiteouts, opaque directories and the directory times set at the end (looked
      up again then: a later entry may have turned a parent into a symlink);
    * the work is done relative to that directory fd (mkdirat, openat, unlinkat, linkat,
      fchownat, utimensat …), naming one last component, which is never followed: we replace
      it, we do not write through it;
    * hardlink targets are root-relative and resolved the same way;
    * whiteouts must name something: `.wh.`, `.wh..` and `.wh...` (hiding "", "." or "..")
      are refused.

Device nodes (`c 1:1`, `b 8:0` …) are created as the layer says, as Docker does: an image may
carry its own /dev entries, and inside the container the runtime's device cgroup decides who
may open them. On the host they must not be reachable by other users, so the snapshotter keeps
its snapshots under a directory of mode 0700, as containerd's does (OverlaySnapshotter), and
the layer is unpacked on a mount point under containerd's 0700 tmpmounts directory.

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
from labkit.securejoin import MAX_SYMLINKS, open_in_root

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


def _lstat_at(dir_fd: int, name: str) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def _remove_at(dir_fd: int, name: str) -> None:
    """rm -rf `name` in the directory `dir_fd`, never following a symlink (rmtree's fd walk)."""
    st = _lstat_at(dir_fd, name)
    if st is None:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(name, dir_fd=dir_fd)
    else:
        os.unlink(name, dir_fd=dir_fd)


def _at(dir_fd: int, name: str) -> str:
    """A path for the calls that take no dir_fd (setxattr): the fd's magic link, then `name`."""
    return f"/proc/self/fd/{dir_fd}/{name}"


# ---------------------------------------------------------------- extraction


class _Extractor:
    """Unpacks entries one by one. Every call works relative to a directory fd that the kernel
    resolved inside the root (labkit.securejoin.open_in_root), and names only the entry's last
    component, which is never followed: no path string is ever resolved against the host."""

    def __init__(self, root: str, tar: tarfile.TarFile, whiteouts: str) -> None:
        self.tar, self.mode = tar, whiteouts
        self.root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self.written: set[str] = set()           # root-relative paths this layer created
        self.dir_times: list[tuple[str, float]] = []

    def run(self) -> None:
        try:
            for member in self.tar:
                self.entry(member)
            self.set_dir_times()
        finally:
            os.close(self.root_fd)

    def set_dir_times(self) -> None:
        """Directory mtimes last (creating their children changed them), each looked up again
        inside the root: a later entry may have replaced a parent with a symlink."""
        for rel, mtime in reversed(self.dir_times):
            parent_rel, _, base = rel.rpartition("/")
            try:
                parent = self.open_dir(parent_rel, rel, create=False)
            except FileNotFoundError:
                continue  # replaced by a later entry: its times are that entry's
            try:
                st = _lstat_at(parent, base)
                if st is not None and stat.S_ISDIR(st.st_mode):
                    os.utime(base, (mtime, mtime), dir_fd=parent, follow_symlinks=False)
            finally:
                os.close(parent)

    def open_dir(self, rel: str, name: str, *, create: bool) -> int:
        """An fd for directory `rel` (of entry `name`), resolved inside the root. With `create`,
        missing directories are made (0755, as Docker makes a layer's missing parents), also
        where a dangling symlink points (its target, inside the root, is made)."""
        links = 0
        while True:
            try:
                return open_in_root(self.root_fd, rel)
            except FileNotFoundError:
                if not create or not rel:
                    raise
            except NotADirectoryError:
                raise InvalidLayer(f"layer entry {name!r}: {rel!r} is not a directory") from None
            except OSError as e:
                if e.errno == errno.ELOOP:
                    raise InvalidLayer(f"layer entry {name!r}: too many symlinks in {rel!r}") from None
                raise
            # The first missing component: make it, or restart the walk at the target of the
            # dangling symlink that stands there.
            parts = rel.split("/")
            i = next(i for i in range(len(parts)) if not self.exists("/".join(parts[: i + 1])))
            parent = open_in_root(self.root_fd, "/".join(parts[:i]))
            try:
                st = _lstat_at(parent, parts[i])
                if st is None:
                    os.mkdir(parts[i], 0o755, dir_fd=parent)
                    continue
                links += 1
                if not stat.S_ISLNK(st.st_mode) or links > MAX_SYMLINKS:
                    raise InvalidLayer(f"layer entry {name!r}: cannot make directory {rel!r}")
                target = os.readlink(parts[i], dir_fd=parent)
            finally:
                os.close(parent)
            here = [] if target.startswith("/") else parts[:i]
            rel = "/".join(p for p in here + target.split("/") + parts[i + 1:] if p)

    def exists(self, rel: str) -> bool:
        try:
            os.close(open_in_root(self.root_fd, rel, os.O_PATH))
            return True
        except FileNotFoundError:
            return False

    def entry(self, m: tarfile.TarInfo) -> None:
        rel = clean_path(m.name)
        if not rel:
            return  # "./": the root itself is the snapshot's, not the layer's
        parent_rel, _, base = rel.rpartition("/")
        if base.startswith(WHITEOUT_PREFIX):
            self.whiteout(m.name, parent_rel, base)
            return
        parent = self.open_dir(parent_rel, m.name, create=True)
        try:
            self.make(m, parent, base)
        finally:
            os.close(parent)
        self.mark_written(rel)

    def mark_written(self, rel: str) -> None:
        while rel and rel not in self.written:
            self.written.add(rel)
            rel = rel.rpartition("/")[0]

    def whiteout(self, entry_name: str, parent_rel: str, base: str) -> None:
        """`base` is `.wh.<name>` or the opaque marker, in directory `parent_rel`."""
        if base == OPAQUE_MARKER:
            self.opaque(entry_name, parent_rel)
            return
        if base.startswith(WHITEOUT_PREFIX + WHITEOUT_PREFIX):
            return  # reserved .wh..wh.* names other than the opaque marker
        name = base[len(WHITEOUT_PREFIX):]
        if name in ("", ".", ".."):
            # `.wh...` would hide the parent's parent, `.wh..` the directory itself
            raise InvalidLayer(f"layer entry {entry_name!r} is not a valid whiteout: "
                               f"it hides {name!r}")
        if _join(parent_rel, name) in self.written:
            return  # a whiteout never hides an entry of its own layer
        try:
            parent = self.open_dir(parent_rel, entry_name, create=self.mode == "overlay")
        except FileNotFoundError:
            return  # nothing there to hide
        try:
            self.hide(parent, name)
        finally:
            os.close(parent)

    def hide(self, parent: int, name: str) -> None:
        _remove_at(parent, name)
        if self.mode == "overlay":
            os.mknod(name, stat.S_IFCHR | 0o000, os.makedev(0, 0), dir_fd=parent)

    def opaque(self, entry_name: str, parent_rel: str) -> None:
        parent = self.open_dir(parent_rel, entry_name, create=True)
        try:
            if self.mode == "overlay":
                os.setxattr(parent, OPAQUE_XATTR, b"y")
                return
            for child in os.listdir(parent):
                if _join(parent_rel, child) not in self.written:
                    _remove_at(parent, child)
        finally:
            os.close(parent)

    def make(self, m: tarfile.TarInfo, parent: int, base: str) -> None:
        existing = _lstat_at(parent, base)
        if existing is not None and not (m.isdir() and stat.S_ISDIR(existing.st_mode)):
            _remove_at(parent, base)  # a dir entry merges into an existing dir; anything else replaces

        if m.isdir():
            if existing is None or not stat.S_ISDIR(existing.st_mode):
                os.mkdir(base, 0o700, dir_fd=parent)
        elif m.isreg():
            fd = os.open(base, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                         0o600, dir_fd=parent)
            with os.fdopen(fd, "wb") as out:
                src = self.tar.extractfile(m)
                if src is not None:
                    shutil.copyfileobj(src, out, 1 << 20)
        elif m.issym():
            os.symlink(m.linkname, base, dir_fd=parent)
        elif m.islnk():
            self.hardlink(m, parent, base)
            return  # a hardlink shares its target's inode and metadata
        elif m.ischr() or m.isblk():
            # Created 0000 and given the tar's mode below; the snapshotter's directory is 0700,
            # so no other user of the host can reach the node (see OverlaySnapshotter).
            kind = stat.S_IFCHR if m.ischr() else stat.S_IFBLK
            os.mknod(base, kind, os.makedev(m.devmajor, m.devminor), dir_fd=parent)
        elif m.isfifo():
            os.mkfifo(base, 0o600, dir_fd=parent)
        else:
            raise InvalidLayer(f"layer entry {m.name!r} has unsupported type {m.type!r}")
        self.metadata(m, parent, base)

    def hardlink(self, m: tarfile.TarInfo, parent: int, base: str) -> None:
        """A hardlink's target is root-relative; it is looked up inside the root too, and
        linked without following it (a link to a symlink links the symlink)."""
        target_rel = clean_path(m.linkname)
        t_parent_rel, _, t_base = target_rel.rpartition("/")
        missing = InvalidLayer(f"hardlink {m.name!r} -> {m.linkname!r}: target is missing")
        if not target_rel:
            raise missing
        try:
            t_parent = open_in_root(self.root_fd, t_parent_rel)
        except (FileNotFoundError, NotADirectoryError):
            raise missing from None
        try:
            if _lstat_at(t_parent, t_base) is None:
                raise missing
            os.link(t_base, base, src_dir_fd=t_parent, dst_dir_fd=parent, follow_symlinks=False)
        finally:
            os.close(t_parent)

    def metadata(self, m: tarfile.TarInfo, parent: int, base: str) -> None:
        # Owner first: chown clears the setuid/setgid bits, so the mode must come after it.
        os.chown(base, m.uid, m.gid, dir_fd=parent, follow_symlinks=False)
        for key, value in m.pax_headers.items():
            if key.startswith("SCHILY.xattr."):
                raw = value.encode("utf-8", "surrogateescape")
                os.setxattr(_at(parent, base), key[len("SCHILY.xattr."):], raw,
                            follow_symlinks=False)
        if not m.issym():
            # `base` is what make() just created, never a symlink, so chmod cannot leave it
            os.chmod(base, m.mode & 0o7777, dir_fd=parent)
        if m.isdir():
            self.dir_times.append((clean_path(m.name), m.mtime))
        else:
            os.utime(base, (m.mtime, m.mtime), dir_fd=parent, follow_symlinks=False)


def _join(parent_rel: str, name: str) -> str:
    return f"{parent_rel}/{name}" if parent_rel else name
