"""`docker save`: images as one tar, read from containerd's content store (moby's
daemon/containerd/image_exporter.go).

The tar is an OCI image layout that Docker's older `docker load` also understands:

    oci-layout                {"imageLayoutVersion": "1.0.0"}
    index.json                one descriptor per name saved, annotated with the name
    blobs/sha256/<digest>     the manifest (this host's platform's), its config, its layers
                              — byte for byte what containerd stores, so every digest holds
    manifest.json             Docker's own index: [{"Config", "RepoTags", "Layers"}] as
                              paths into blobs/, for `docker load` of Docker 20.10

Only the chosen platform's manifest is written (not the whole index): what was pulled is
what this host runs. Nothing is written to disk: the tar streams as it is made. load.py reads
it back (`docker load`), and Docker 20.10's legacy layout too.
"""

from __future__ import annotations

import io
import json
import tarfile
import time
from typing import Iterator

from labkit.distribution import mediatypes
from labkit.distribution.platforms import select_manifest
from labkit.dockerd.images import ImageService, familiar

CHUNK = 64 * 1024


class _Pipe(io.RawIOBase):
    """A write-only file whose writes are collected, for tarfile to stream into."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self.chunks.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        out, self.chunks = b"".join(self.chunks), []
        return out


def save(images: ImageService, names: list[str]) -> Iterator[bytes]:
    """Check every name now (a 404 before any byte), then stream the tar."""
    records = [(name, images.find(name)) for name in names]
    return _stream(images, records)


def _stream(images: ImageService, records: list) -> Iterator[bytes]:
    pipe = _Pipe()
    tar = tarfile.open(fileobj=pipe, mode="w|", format=tarfile.PAX_FORMAT)
    written: set[str] = set()
    index, legacy = [], []

    def add(name: str, data: bytes) -> None:
        info = tarfile.TarInfo(name)
        info.size, info.mtime, info.mode = len(data), int(time.time()), 0o644
        tar.addfile(info, io.BytesIO(data))

    def add_blob(digest: str, data: bytes | None = None) -> str:
        path = "blobs/" + digest.replace(":", "/")
        if digest not in written:
            written.add(digest)
            add(path, data if data is not None else images.ctr.read_blob(digest))
        return path

    add("oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode())
    for name, record in records:
        manifest_digest = record.target_digest
        manifest = images.ctr.read_blob(manifest_digest)
        document = json.loads(manifest)
        if "manifests" in document:   # an index: this platform's manifest, as pulled
            manifest_digest = select_manifest(document)["digest"]
            manifest = images.ctr.read_blob(manifest_digest)
        add_blob(manifest_digest, manifest)
        config_path = add_blob(record.config_digest)
        yield pipe.take()
        layers = []
        for layer in record.manifest.get("layers", []):
            layers.append(add_blob(layer["digest"]))
            yield pipe.take()
        tags = [familiar(record.name)] if "@" not in record.name else []
        index.append({"mediaType": record.manifest.get("mediaType", mediatypes.OCI_MANIFEST),
                      "digest": manifest_digest, "size": len(manifest),
                      "annotations": {"io.containerd.image.name": record.name,
                                      "org.opencontainers.image.ref.name": name}})
        legacy.append({"Config": config_path, "RepoTags": tags, "Layers": layers})
    add("index.json", json.dumps({"schemaVersion": 2, "mediaType": mediatypes.OCI_INDEX,
                                  "manifests": index}).encode())
    add("manifest.json", json.dumps(legacy).encode())
    tar.close()
    yield pipe.take()
