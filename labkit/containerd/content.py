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

Ingests left by a crash (kill -9 in the middle of a pull leaves <random>/data, as big as the
download had got) are removed when labkit-containerd starts (`remove_ingests`, called by the
daemon before it accepts any writer), and the next pull downloads the blob again. They are
not resumed, and this is why: an ingest here belongs to the one writer that made it (an
anonymous directory, hashed in memory as it is written), so nobody can ask for it again once
its daemon is gone. containerd itself names an ingest after its writer's *ref*
(ingest/<hash of the ref>/ with data, ref, startedat, updatedat) so that a Content.Write with
the same ref resumes at the offset reached (`ctr content active` lists them), and it keeps
them until they are aborted, or until its garbage collector finds them past the expiry a
writer may give them. A store with resumable writes would keep the ingests that have a ref
and remove, at start, only those past their expiry.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Protocol

from labkit.containerd.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound

_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


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


class LocalContentStore:
    """A content store in a directory (see the module docstring for the layout)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root) / "content"
        self.blobs_dir = self.root / "blobs" / "sha256"
        self.ingest_dir = self.root / "ingest"
        self.blobs_dir.mkdir(parents=True, exist_ok=True)
        self.ingest_dir.mkdir(parents=True, exist_ok=True)

    def remove_ingests(self) -> list[str]:
        """Remove every ingest (for a daemon that starts: they are all left by a crash, see
        the module docstring); the names of those removed. Never while writers are open."""
        removed = []
        for d in sorted(self.ingest_dir.iterdir()):
            if d.is_dir() and not d.is_symlink():
                shutil.rmtree(d, ignore_errors=True)
            else:
                d.unlink(missing_ok=True)
            removed.append(d.name)
        return removed

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
                st = p.stat()
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
