"""The registry's storage: a directory of content-addressed blobs with names on top.

Layout (modelled on Docker's registry, distribution/registry/storage/paths.go, simplified):

    <root>/blobs/sha256/<hex>                             every blob and manifest, once
    <root>/repositories/<name>/_layers/sha256/<hex>       "this repository may serve that blob"
    <root>/repositories/<name>/_manifests/revisions/sha256/<hex>
                                                          a manifest of this repository; the
                                                          file holds its media type
    <root>/repositories/<name>/_manifests/tags/<tag>      the tag's current manifest digest
    <root>/repositories/<name>/_uploads/<uuid>/data       an upload in progress

Blobs are shared between repositories (pushing busybox's layer into two repositories stores
it once), but a repository only serves blobs linked into it: knowing a digest must not be
enough to read another repository's content. Cross-repository *mount* is just a new link.

Crash safety: every file is written to a temporary name in the same directory and renamed
into place (rename is atomic), so a registry killed at any instant leaves either the old
state or the new one, never half a blob or an empty tag. A finished upload's data file is
renamed into blobs/ only after its digest has been verified.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import uuid as uuidlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from labkit.distribution.reference import DIGEST_RE, TAG_RE, validate_repository


class StorageError(Exception):
    """A storage failure carrying the distribution error code the API should answer."""

    def __init__(self, code: str, message: str | None = None, detail=None):
        self.code, self.message, self.detail = code, message, detail
        super().__init__(message or code)


@dataclass(frozen=True)
class BlobInfo:
    digest: str
    size: int
    path: Path


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def _split_digest(digest: str) -> tuple[str, str]:
    if not isinstance(digest, str) or not DIGEST_RE.fullmatch(digest):
        raise StorageError("DIGEST_INVALID", f"invalid digest {digest!r}")
    algorithm, _, hexpart = digest.partition(":")
    if algorithm != "sha256":
        raise StorageError("UNSUPPORTED", f"digest algorithm {algorithm!r} is not supported")
    if len(hexpart) != 64 or hexpart.lower() != hexpart:
        raise StorageError("DIGEST_INVALID", f"invalid sha256 digest {digest!r}")
    return algorithm, hexpart


class Storage:
    """Blobs, manifests, tags and uploads under one root directory."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        (self.root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        (self.root / "repositories").mkdir(parents=True, exist_ok=True)

    # ---------------------------------------------------------------- paths
    def _blob_path(self, digest: str) -> Path:
        algorithm, hexpart = _split_digest(digest)
        return self.root / "blobs" / algorithm / hexpart

    def _repo(self, name: str) -> Path:
        try:
            validate_repository(name)
        except ValueError:
            raise StorageError("NAME_INVALID", f"invalid repository name {name!r}") from None
        return self.root / "repositories" / name

    def _layer_link(self, name: str, digest: str) -> Path:
        algorithm, hexpart = _split_digest(digest)
        return self._repo(name) / "_layers" / algorithm / hexpart

    def _revision(self, name: str, digest: str) -> Path:
        algorithm, hexpart = _split_digest(digest)
        return self._repo(name) / "_manifests" / "revisions" / algorithm / hexpart

    def _tag(self, name: str, tag: str) -> Path:
        if not TAG_RE.fullmatch(tag):
            raise StorageError("TAG_INVALID", f"invalid tag {tag!r}")
        return self._repo(name) / "_manifests" / "tags" / tag

    def _upload_dir(self, name: str, upload_id: str) -> Path:
        try:
            uuidlib.UUID(upload_id)
        except ValueError:
            raise StorageError("BLOB_UPLOAD_UNKNOWN", f"invalid upload id {upload_id!r}") from None
        return self._repo(name) / "_uploads" / upload_id

    # ---------------------------------------------------------------- repositories
    def repository_exists(self, name: str) -> bool:
        return self._repo(name).is_dir()

    def repositories(self) -> list[str]:
        """Every repository that has at least one manifest revision, sorted."""
        base = self.root / "repositories"
        found = []
        for dirpath, dirnames, _ in os.walk(base):
            if "_manifests" in dirnames:
                found.append(os.path.relpath(dirpath, base))
            dirnames[:] = [d for d in dirnames if not d.startswith("_")]
        return sorted(found)

    # ---------------------------------------------------------------- blobs
    def blob_info(self, name: str, digest: str) -> BlobInfo:
        """The blob if it is linked into repository `name`; StorageError BLOB_UNKNOWN otherwise."""
        path = self._blob_path(digest)
        if not self._layer_link(name, digest).exists() and not self._revision(name, digest).exists():
            raise StorageError("BLOB_UNKNOWN", detail={"digest": digest})
        try:
            return BlobInfo(digest, path.stat().st_size, path)
        except FileNotFoundError:
            raise StorageError("BLOB_UNKNOWN", detail={"digest": digest}) from None

    def has_blob(self, name: str, digest: str) -> bool:
        try:
            self.blob_info(name, digest)
            return True
        except StorageError:
            return False

    def link_blob(self, name: str, digest: str) -> None:
        """Make an existing blob part of repository `name` (a push, or a cross-repo mount)."""
        if not self._blob_path(digest).exists():
            raise StorageError("BLOB_UNKNOWN", detail={"digest": digest})
        link = self._layer_link(name, digest)
        if not link.exists():
            _write_atomic(link, digest.encode())

    def delete_blob_link(self, name: str, digest: str) -> None:
        link = self._layer_link(name, digest)
        if not link.exists():
            raise StorageError("BLOB_UNKNOWN", detail={"digest": digest})
        link.unlink()

    def put_blob(self, name: str, data: bytes, digest: str) -> None:
        """Store a whole blob at once (monolithic upload), verifying its digest."""
        actual = "sha256:" + hashlib.sha256(data).hexdigest()
        if actual != digest:
            raise StorageError("DIGEST_INVALID", detail={"digest": digest, "actual": actual})
        path = self._blob_path(digest)
        if not path.exists():
            _write_atomic(path, data)
        self.link_blob(name, digest)

    # ---------------------------------------------------------------- uploads
    def start_upload(self, name: str) -> str:
        upload_id = str(uuidlib.uuid4())
        d = self._upload_dir(name, upload_id)
        d.mkdir(parents=True)
        (d / "data").touch()
        return upload_id

    def upload_size(self, name: str, upload_id: str) -> int:
        try:
            return (self._upload_dir(name, upload_id) / "data").stat().st_size
        except FileNotFoundError:
            raise StorageError("BLOB_UPLOAD_UNKNOWN", detail={"uuid": upload_id}) from None

    def append_upload(self, name: str, upload_id: str, stream: BinaryIO, length: int | None,
                      start: int | None = None) -> int:
        """Append a chunk (from `stream`, `length` bytes or until EOF); returns the new size.

        `start` is where the client says the chunk begins (Content-Range); chunks must come
        in order, so it must equal the current size.
        """
        size = self.upload_size(name, upload_id)
        if start is not None and start != size:
            raise StorageError("RANGE_INVALID", f"chunk starts at {start}, upload has {size} bytes")
        with open(self._upload_dir(name, upload_id) / "data", "ab") as f:
            remaining = length
            while remaining is None or remaining > 0:
                chunk = stream.read(1 << 20 if remaining is None else min(1 << 20, remaining))
                if not chunk:
                    break
                f.write(chunk)
                if remaining is not None:
                    remaining -= len(chunk)
            if remaining:
                raise StorageError("BLOB_UPLOAD_INVALID", f"client sent {length - remaining} of "
                                   f"the {length} bytes it announced")
            return f.tell()

    def finish_upload(self, name: str, upload_id: str, digest: str) -> BlobInfo:
        """Verify the uploaded data against `digest` and move it into the blob store."""
        _split_digest(digest)
        data_path = self._upload_dir(name, upload_id) / "data"
        hasher = hashlib.sha256()
        try:
            with open(data_path, "rb") as f:
                while chunk := f.read(1 << 20):
                    hasher.update(chunk)
        except FileNotFoundError:
            raise StorageError("BLOB_UPLOAD_UNKNOWN", detail={"uuid": upload_id}) from None
        actual = "sha256:" + hasher.hexdigest()
        if actual != digest:
            # The session is spent either way (as in Docker's registry): discard the data.
            self.cancel_upload(name, upload_id)
            raise StorageError("DIGEST_INVALID", detail={"digest": digest, "actual": actual})
        path = self._blob_path(digest)
        path.parent.mkdir(parents=True, exist_ok=True)
        os.replace(data_path, path)     # atomic: the blob appears whole or not at all
        self.cancel_upload(name, upload_id)
        self.link_blob(name, digest)
        return BlobInfo(digest, path.stat().st_size, path)

    def cancel_upload(self, name: str, upload_id: str) -> None:
        d = self._upload_dir(name, upload_id)
        if not d.exists():
            raise StorageError("BLOB_UPLOAD_UNKNOWN", detail={"uuid": upload_id})
        shutil.rmtree(d, ignore_errors=True)

    # ---------------------------------------------------------------- manifests and tags
    def put_manifest(self, name: str, reference: str, raw: bytes, media_type: str) -> str:
        """Store a manifest's exact bytes and media type, tag it if `reference` is a tag;
        returns its digest. The caller has checked the referenced blobs exist."""
        digest = "sha256:" + hashlib.sha256(raw).hexdigest()
        if DIGEST_RE.fullmatch(reference):
            if reference != digest:
                raise StorageError("DIGEST_INVALID", detail={"digest": reference, "actual": digest})
            tag = None
        else:
            tag = reference
            self._tag(name, tag)   # validates the tag before anything is written
        path = self._blob_path(digest)
        if not path.exists():
            _write_atomic(path, raw)
        _write_atomic(self._revision(name, digest), media_type.encode())
        if tag:
            _write_atomic(self._tag(name, tag), digest.encode())
        return digest

    def resolve_manifest(self, name: str, reference: str) -> str:
        """A tag or digest -> the manifest digest (StorageError MANIFEST_UNKNOWN if absent)."""
        if DIGEST_RE.fullmatch(reference):
            digest = reference
        else:
            try:
                digest = self._tag(name, reference).read_text().strip()
            except FileNotFoundError:
                raise StorageError("MANIFEST_UNKNOWN", detail={"tag": reference}) from None
        if not self._revision(name, digest).exists():
            raise StorageError("MANIFEST_UNKNOWN", detail={"digest": digest})
        return digest

    def get_manifest(self, name: str, reference: str) -> tuple[str, str, bytes]:
        """(digest, media type, exact bytes) of a manifest by tag or digest."""
        digest = self.resolve_manifest(name, reference)
        media_type = self._revision(name, digest).read_text().strip()
        try:
            raw = self._blob_path(digest).read_bytes()
        except FileNotFoundError:
            raise StorageError("MANIFEST_UNKNOWN", detail={"digest": digest}) from None
        return digest, media_type, raw

    def has_manifest(self, name: str, digest: str) -> bool:
        return self._revision(name, digest).exists()

    def delete_manifest(self, name: str, reference: str) -> None:
        """Delete a tag, or (by digest) a manifest revision and every tag pointing at it."""
        if not DIGEST_RE.fullmatch(reference):
            tag = self._tag(name, reference)
            if not tag.exists():
                raise StorageError("MANIFEST_UNKNOWN", detail={"tag": reference})
            tag.unlink()
            return
        revision = self._revision(name, reference)
        if not revision.exists():
            raise StorageError("MANIFEST_UNKNOWN", detail={"digest": reference})
        for tag in self.tags(name):
            path = self._tag(name, tag)
            try:
                if path.read_text().strip() == reference:
                    path.unlink()
            except FileNotFoundError:
                pass
        revision.unlink()

    def tags(self, name: str) -> list[str]:
        if not self.repository_exists(name):
            raise StorageError("NAME_UNKNOWN", detail={"name": name})
        tags_dir = self._repo(name) / "_manifests" / "tags"
        if not tags_dir.is_dir():
            return []
        return sorted(p.name for p in tags_dir.iterdir() if not p.name.startswith("."))
