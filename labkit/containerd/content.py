"""The content store: immutable blobs addressed by their digest.

Glossary
    blob        a sequence of bytes: a layer tarball, an image config, a manifest, an index.
    digest      "sha256:<64 hex>", the sha256 of the blob's bytes. It is the blob's *name*, so
                a blob can never change, and two images sharing a layer store it once.
    ingest      a blob being written. It is not visible until it is committed.
    commit      check the ingest's size and digest against what the writer expected, then
                make it visible under its digest in one atomic rename.

On disk (the same layout as containerd's content store, io.containerd.content.v1.content):

    <root>/content/blobs/sha256/<hex>     committed blobs, read-only
    <root>/content/ingest/<random>/data   ingests in progress (same filesystem: rename is atomic)

Lifecycle of a blob, worked through:

    store = LocalContentStore(root)
    with store.writer("sha256:ab…", size=1234) as w:   # an ingest directory appears
        w.write(chunk); w.write(chunk)                  # bytes are hashed as they arrive
        w.commit()                                      # size + sha256 checked, then renamed
    store.info("sha256:ab…")     -> ContentInfo(digest, size, created_at)
    with store.open("sha256:ab…") as f: f.read()
    store.delete("sha256:ab…")

Leaving the `with` block without commit() (an exception, a dropped connection) removes the
ingest, so a half-downloaded layer can never be mistaken for a whole one. Verification on the
way *in* is what lets every other layer trust a blob by its name.

Two kinds of ingest
    anonymous   store.writer(digest, size): the puller's. <random>/data, hashed in memory as
                it is written; it belongs to one writer, so nobody can ask for it again once
                its daemon is gone. A crash (kill -9 in the middle of a pull leaves <random>/data,
                as big as the download had got) makes it garbage: `remove_ingests`, called
                by the daemon before it accepts any writer, removes it, and the next pull
                downloads the blob again.
    named       store.ingest(ref): Content.Write's, as containerd names an ingest after its
                writer's *ref*: ingest/<sha256 of the ref>/ holding data, ref, startedat,
                updatedat and total. A writer whose stream broke comes back with the same ref,
                asks where the ingest stands (STAT: the offset reached) and goes on from there
                (`ctr content active` lists them). Resuming re-reads data to rebuild the hash.
                They survive a restart, and are removed at start only once idle for
                INGEST_EXPIRY (containerd's collector drops them on a similar expiry), or by
                Content.Abort.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Protocol

from labkit.containerd.errors import (AlreadyExists, FailedPrecondition, InvalidArgument,
                                      NotFound, OutOfRange, Unavailable)

_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
INGEST_EXPIRY = 24 * 3600   # seconds a named ingest may sit idle before a restart drops it


def _mtime(d: Path) -> float:
    """When an ingest was last written (its updatedat, else its directory's mtime)."""
    for name in ("updatedat", "startedat"):
        try:
            return float((d / name).read_text())
        except (FileNotFoundError, ValueError):
            pass
    return d.stat().st_mtime


def check_digest(digest: str) -> str:
    """Return the hex part of a sha256 digest, or raise InvalidArgument naming it."""
    if not isinstance(digest, str) or not _DIGEST.match(digest):
        raise InvalidArgument(f"invalid digest {digest!r}: expected sha256:<64 lower-case hex>")
    return digest.split(":", 1)[1]


@dataclass
class ContentInfo:
    digest: str
    size: int
    created_at: float  # seconds since the epoch
    labels: dict[str, str] = field(default_factory=dict)


class ContentWriter(Protocol):
    """A file-like ingest: write() bytes, then commit() to verify and publish them."""

    def write(self, data: bytes) -> int: ...
    def commit(self) -> ContentInfo: ...
    def __enter__(self) -> "ContentWriter": ...
    def __exit__(self, *exc) -> None: ...


class ContentStore(Protocol):
    """What labkit-containerd needs from a content store (containerd: content.Store).

    A contract test suite (tests/containerd/test_content_contract.py) runs against any
    implementation given a factory, so a student's store is checked by the same tests.
    """

    def info(self, digest: str) -> ContentInfo:
        """The blob's size and creation time. NotFound if absent."""
    def list(self) -> list[ContentInfo]:
        """Every committed blob."""
    def open(self, digest: str) -> BinaryIO:
        """The blob's bytes as a read-only, seekable binary file. NotFound if absent."""
    def delete(self, digest: str) -> None:
        """Remove the blob. NotFound if absent."""
    def writer(self, digest: str, size: int = -1) -> ContentWriter:
        """Start an ingest that must end up as `digest` (and `size` bytes, unless -1)."""


class _LocalWriter:
    """An ingest in <root>/content/ingest/<random>/data, hashed while it is written."""

    def __init__(self, store: "LocalContentStore", digest: str, size: int) -> None:
        self._store, self._digest, self._size = store, digest, size
        self._dir = Path(tempfile.mkdtemp(dir=store.ingest_dir))
        self._file = open(self._dir / "data", "wb")
        self._hash = hashlib.sha256()
        self._written = 0
        self._done = False

    def write(self, data: bytes) -> int:
        self._file.write(data)
        self._hash.update(data)
        self._written += len(data)
        return len(data)

    @property
    def written(self) -> int:
        return self._written

    def commit(self) -> ContentInfo:
        self._file.close()
        # BEGIN SOLUTION chapter="07" hint="compare self._written with self._size and the sha256 with self._digest"
        # TODO: verify the ingest (size, then digest), then publish it with one rename
        # HINT: os.rename is atomic within a filesystem: readers see all of the blob or none
        if self._size >= 0 and self._written != self._size:
            raise FailedPrecondition(f"commit {self._digest}: got {self._written} bytes, "
                                     f"expected {self._size}")
        actual = "sha256:" + self._hash.hexdigest()
        if actual != self._digest:
            raise FailedPrecondition(f"commit {self._digest}: content has digest {actual}")
        target = self._store.blob_path(self._digest)
        # Two pulls of the same layer may race; the second one's bytes are identical, so
        # keeping the first is correct (containerd answers ALREADY_EXISTS and moves on).
        if not target.exists():
            os.chmod(self._dir / "data", 0o444)
            os.rename(self._dir / "data", target)
        # END SOLUTION
        self._done = True
        self._cleanup()
        return self._store.info(self._digest)

    def _cleanup(self) -> None:
        if not self._file.closed:
            self._file.close()
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> "_LocalWriter":
        return self

    def __exit__(self, *exc) -> None:
        if not self._done:
            self._cleanup()


@dataclass
class IngestStatus:
    """Where a named ingest stands (Content.Status)."""

    ref: str
    offset: int
    total: int
    expected: str
    started_at: float
    updated_at: float


class Ingest:
    """A named, resumable ingest: ingest/<sha256(ref)>/{data,ref,startedat,updatedat,total}.

    Open it with store.ingest(ref); one writer at a time (a second gets UNAVAILABLE, as
    containerd answers "ref … locked"); close() releases it, keeping the bytes for a resume.
    """

    def __init__(self, store: "LocalContentStore", ref: str, total: int, expected: str) -> None:
        self._store, self.ref = store, ref
        self.dir = store.ingest_path(ref)
        fresh = not (self.dir / "ref").exists()
        if fresh:
            self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            (self.dir / "data").touch()
            (self.dir / "ref").write_text(ref)
            (self.dir / "startedat").write_text(repr(time.time()))
        self._file = open(self.dir / "data", "r+b")
        self._hash = hashlib.sha256()
        while chunk := self._file.read(1 << 20):   # resuming: the hash of what is there
            self._hash.update(chunk)
        self.offset = self._file.tell()
        self.total = total or self._read_int("total")
        if total:
            (self.dir / "total").write_text(str(total))
        self.expected = expected
        if expected:
            check_digest(expected)

    def _read_int(self, name: str) -> int:
        try:
            return int((self.dir / name).read_text())
        except (FileNotFoundError, ValueError):
            return 0

    def status(self) -> IngestStatus:
        return self._store.ingest_status(self.ref, self.expected)

    def write(self, data: bytes, offset: int) -> None:
        """Append `data`, which must start where the ingest stands (OUT_OF_RANGE if not)."""
        # BEGIN SOLUTION chapter="07" hint="a write elsewhere than self.offset is OutOfRange: nothing may be skipped or written twice"
        # TODO: append `data` to the ingest's file, hash it, move self.offset on, touch updatedat
        # HINT: flush the file: Content.Status, from another call, reads the file's size
        if offset != self.offset:
            raise OutOfRange(f"ingest {self.ref!r}: write at {offset} must occur at the current "
                             f"offset {self.offset}")
        self._file.write(data)
        self._file.flush()          # Status, from another call, reads the file's size
        self._hash.update(data)
        self.offset += len(data)
        (self.dir / "updatedat").write_text(repr(time.time()))
        # END SOLUTION

    def restart(self) -> None:
        """Start over (a WRITE at offset 0 on an ingest that has bytes: containerd's rule)."""
        self._file.seek(0)
        self._file.truncate()
        self._hash = hashlib.sha256()
        self.offset = 0

    def commit(self, total: int, expected: str, before_publish=None) -> ContentInfo:
        """Check size and digest, then publish the blob. A short ingest stays (write the rest
        and commit again); a wrong digest removes it: those bytes can never be right."""
        total = total or self.total
        expected = expected or self.expected
        if not expected:
            raise InvalidArgument(f"commit {self.ref!r}: the expected digest is required")
        check_digest(expected)
        self._file.flush()
        if total and self.offset != total:
            raise FailedPrecondition(f"commit {self.ref!r}: unexpected commit size "
                                     f"{self.offset}, expected {total}")
        actual = "sha256:" + self._hash.hexdigest()
        if actual != expected:
            self.abort()
            raise FailedPrecondition(f"commit {self.ref!r}: unexpected commit digest {actual}, "
                                     f"expected {expected}")
        if before_publish:
            before_publish(expected)   # e.g. hold it in the caller's lease, first
        target = self._store.blob_path(expected)
        self._file.close()
        if target.exists():
            self.abort()
            raise AlreadyExists(f"content {expected}: already exists")
        os.chmod(self.dir / "data", 0o444)
        os.rename(self.dir / "data", target)
        self.abort()
        return self._store.info(expected)

    def abort(self) -> None:
        """Remove the ingest (and release it)."""
        self.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()
        self._store._release(self.ref)


class LocalContentStore:
    """A content store in a directory (see the module docstring for the layout)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root) / "content"
        self.blobs_dir = self.root / "blobs" / "sha256"
        self.ingest_dir = self.root / "ingest"
        self.blobs_dir.mkdir(parents=True, exist_ok=True)
        self.ingest_dir.mkdir(parents=True, exist_ok=True)
        self._locked: set[str] = set()
        self._lock = threading.Lock()

    def remove_ingests(self, expiry: float = INGEST_EXPIRY) -> list[str]:
        """Remove what a crash left in ingest/ (for a daemon that starts: see the module
        docstring): every anonymous ingest, and named ones idle for `expiry` seconds; the
        names of those removed. Never while writers are open."""
        removed = []
        now = time.time()
        for d in sorted(self.ingest_dir.iterdir()):
            if d.is_dir() and not d.is_symlink():
                if (d / "ref").is_file() and now - _mtime(d) < expiry:
                    continue   # a named ingest, resumable
                shutil.rmtree(d, ignore_errors=True)
            else:
                d.unlink(missing_ok=True)
            removed.append(d.name)
        return removed

    # -------------------------------------------------------------- named ingests

    def ingest_path(self, ref: str) -> Path:
        if not ref:
            raise InvalidArgument("an ingest needs a ref")
        return self.ingest_dir / hashlib.sha256(ref.encode()).hexdigest()

    def ingest(self, ref: str, total: int = 0, expected: str = "") -> Ingest:
        """Open (or resume) the named ingest `ref` for writing; UNAVAILABLE if in use."""
        with self._lock:
            if ref in self._locked:
                raise Unavailable(f"ref {ref!r} is locked: another writer has it")
            self._locked.add(ref)
        try:
            return Ingest(self, ref, total, expected)
        except BaseException:
            self._release(ref)
            raise

    def _release(self, ref: str) -> None:
        with self._lock:
            self._locked.discard(ref)

    def ingest_status(self, ref: str, expected: str = "") -> IngestStatus:
        d = self.ingest_path(ref)
        try:
            size = (d / "data").stat().st_size
            started = float((d / "startedat").read_text())
        except (FileNotFoundError, ValueError):
            raise NotFound(f"ingest {ref!r}: not found") from None
        try:
            total = int((d / "total").read_text())
        except (FileNotFoundError, ValueError):
            total = 0
        return IngestStatus(ref=ref, offset=size, total=total, expected=expected,
                            started_at=started, updated_at=_mtime(d))

    def ingest_statuses(self) -> list[IngestStatus]:
        out = []
        for d in sorted(self.ingest_dir.iterdir()):
            try:
                out.append(self.ingest_status((d / "ref").read_text()))
            except (FileNotFoundError, NotADirectoryError, NotFound):
                continue   # anonymous, or gone meanwhile
        return out

    def abort_ingest(self, ref: str) -> None:
        with self._lock:
            if ref in self._locked:
                raise Unavailable(f"ref {ref!r} is locked: another writer has it")
        d = self.ingest_path(ref)
        if not (d / "ref").exists():
            raise NotFound(f"ingest {ref!r}: not found")
        shutil.rmtree(d, ignore_errors=True)

    def blob_path(self, digest: str) -> Path:
        return self.blobs_dir / check_digest(digest)

    def exists(self, digest: str) -> bool:
        return self.blob_path(digest).exists()

    def info(self, digest: str) -> ContentInfo:
        path = self.blob_path(digest)
        try:
            st = path.stat()
        except FileNotFoundError:
            raise NotFound(f"content {digest}: not found") from None
        return ContentInfo(digest=digest, size=st.st_size, created_at=st.st_mtime)

    def list(self) -> list[ContentInfo]:
        out = []
        for p in sorted(self.blobs_dir.iterdir()):
            if _DIGEST.match("sha256:" + p.name):
                try:
                    st = p.stat()
                except FileNotFoundError:
                    continue   # collected as garbage since the directory was read: gone
                out.append(ContentInfo("sha256:" + p.name, st.st_size, st.st_mtime))
        return out

    def open(self, digest: str) -> BinaryIO:
        try:
            return open(self.blob_path(digest), "rb")
        except FileNotFoundError:
            raise NotFound(f"content {digest}: not found") from None

    def read_bytes(self, digest: str) -> bytes:
        with self.open(digest) as f:
            return f.read()

    def delete(self, digest: str) -> None:
        try:
            self.blob_path(digest).unlink()
        except FileNotFoundError:
            raise NotFound(f"content {digest}: not found") from None

    def writer(self, digest: str, size: int = -1) -> _LocalWriter:
        check_digest(digest)
        if self.exists(digest):
            raise AlreadyExists(f"content {digest}: already exists")
        return _LocalWriter(self, digest, size)

    def write_bytes(self, data: bytes, digest: str | None = None) -> ContentInfo:
        """Store a small blob held in memory (a manifest, a config), verified like any other."""
        digest = digest or "sha256:" + hashlib.sha256(data).hexdigest()
        try:
            with self.writer(digest, len(data)) as w:
                w.write(data)
                return w.commit()
        except AlreadyExists:
            return self.info(digest)   # stored already (perhaps just now, by a concurrent pull)
