"""`docker load` and `docker import`: images from a tarball (moby's daemon/images/image_
{exporter,import}.go, and the containerd image store's importer).

`docker load < images.tar`  (POST /images/load, the body a `docker save` tar)
    The tar is one of two layouts, both of which `docker save` has written (save.py writes
    the pair, so a labkit save loads back):

    OCI image layout (Docker 25+, labkit; image-spec image-layout.md)
        oci-layout                {"imageLayoutVersion": "1.0.0"}
        index.json                manifests[]: descriptors, each annotated with its name
                                  ("io.containerd.image.name": docker.io/library/busybox:latest;
                                  "org.opencontainers.image.ref.name": the tag, or the name)
        blobs/sha256/<hex>        manifests (or indexes), configs, layers: addressed by digest
    Docker's legacy layout (Docker up to 24, e.g. Debian's 20.10)
        manifest.json             [{"Config": "<hex>.json", "RepoTags": ["busybox:latest"],
                                    "Layers": ["<hex>/layer.tar", …]}]
        <hex>.json                the image config (its sha256 is the image ID)
        <hex>/layer.tar           each layer, an uncompressed tar (its sha256 is its diff id)
        repositories              the same names, older still (not needed)

    Either way, each image becomes containerd content exactly as dockerd's pull makes it:
    the blobs go into the content store through Content.Write (never by writing containerd's
    files), under a lease; each layer is unpacked into its snapshot (Snapshots.Prepare,
    Diff.Apply, Commit: the digest Apply computes must be the config's diff id); the name
    is created in Images. A legacy image gets a manifest written for it (OCI, its layers
    plain tars), since the layout has none; its config's bytes, hence its ID, are kept.
    -> {"stream": "Loaded image: busybox:latest\n"} per name ("Loaded image ID: sha256:…"
       for an image saved without a name).

`docker import rootfs.tar name:tag`  (POST /images/create?fromSrc=-&repo=&tag=&message=
&changes=…, the body a tarball of a root filesystem, possibly gzip/bzip2/xz-compressed)
    One layer, no parent: the tar is the layer (ImageWriter.from_tar); the config is empty
    but for the host's platform, --change instructions (CMD, ENV, …; commit.apply_changes)
    and the history line's comment (--message, default "Imported from -").
    -> {"status": "sha256:<image id>"}

Bad input is a 400 that says what was wrong, before any byte of the answer: a body that is
not a tar (after decompression), a tar that is neither layout, a blob the manifest names that
the tar lacks or whose digest does not match, a name that is not a reference.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import json
import lzma
import tarfile
import zlib
from dataclasses import dataclass, field

from labkit.distribution import mediatypes
from labkit.distribution.platforms import select_manifest
from labkit.distribution.reference import parse_reference
from labkit.dockerd.commit import ImageWriter, apply_changes
from labkit.dockerd.errors import InvalidParameter
from labkit.dockerd.images import familiar

MAX_MEMBER = 8 << 30    # a member larger than this is refused (the tar is read into memory)


# --------------------------------------------------------------------------- the tar

def decompress(body: bytes) -> bytes:
    """The body as a plain tar: gzip, bzip2 and xz are recognized by their magic numbers
    (as moby's archive.DecompressStream); anything else is taken as it is."""
    try:
        if body[:2] == b"\x1f\x8b":
            return gzip.decompress(body)
        if body[:3] == b"BZh":
            return bz2.decompress(body)
        if body[:6] == b"\xfd7zXZ\x00":
            return lzma.decompress(body)
    except (OSError, EOFError, ValueError, lzma.LZMAError, zlib.error) as e:
        raise InvalidParameter(f"the compressed tarball cannot be decompressed: {e}") from None
    return body


def check_tar(data: bytes, what: str) -> None:
    """A 400 naming `what` unless `data` is a tar archive (every header readable)."""
    if not data:
        raise InvalidParameter(f"{what} is empty: expected a tar archive")
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
            for _ in tar:
                pass
    except tarfile.TarError as e:
        raise InvalidParameter(f"{what} is not a tar archive: {e}") from None


def read_tar(body: bytes) -> dict[str, bytes]:
    """The regular files of a (possibly compressed) tar: {"index.json": b"…", …}."""
    data = decompress(body)
    check_tar(data, "the request body")
    files = {}
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        for member in tar:
            if member.isfile():
                if member.size > MAX_MEMBER:
                    raise InvalidParameter(f"{member.name}: {member.size} bytes is too large")
                files[member.name.removeprefix("./")] = tar.extractfile(member).read()
    return files


# --------------------------------------------------------------------------- the layouts

@dataclass
class Loadable:
    """One image found in the tar: its manifest's bytes, the blobs it names, its names."""
    manifest: bytes
    blobs: dict[str, bytes]
    names: list[str] = field(default_factory=list)


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _json(files: dict[str, bytes], path: str) -> object:
    try:
        return json.loads(files[path])
    except KeyError:
        raise InvalidParameter(f"the tarball has no {path}") from None
    except ValueError as e:
        raise InvalidParameter(f"{path} is not valid JSON: {e}") from None


def _blob(files: dict[str, bytes], digest: str) -> bytes:
    algorithm, _, hex_ = str(digest).partition(":")
    data = files.get(f"blobs/{algorithm}/{hex_}")
    if data is None:
        raise InvalidParameter(f"the tarball lacks blob {digest}")
    if _digest(data) != digest:
        raise InvalidParameter(f"blob {digest} does not match its digest")
    return data


def _full_name(name: str) -> str:
    """"busybox", "busybox:1" -> "docker.io/library/busybox:latest" …; a 400 if invalid."""
    try:
        ref = parse_reference(name)
        if not ref.tag and not ref.digest:
            ref = parse_reference(name + ":latest")
    except ValueError as e:
        raise InvalidParameter(f"invalid image name {name!r}: {e}") from None
    return str(ref)


def from_oci_layout(files: dict[str, bytes]) -> list[Loadable]:
    """index.json's entries: each a manifest (or an index: this host's manifest in it)."""
    index = _json(files, "index.json")
    if not isinstance(index, dict) or not isinstance(index.get("manifests"), list):
        raise InvalidParameter("index.json has no \"manifests\" list")
    found: dict[str, Loadable] = {}
    for entry in index["manifests"]:
        document_bytes = _blob(files, entry.get("digest", ""))
        document = json.loads(document_bytes)
        if "manifests" in document:            # an index: the host's platform
            try:
                chosen = select_manifest(document)
            except (LookupError, ValueError) as e:
                raise InvalidParameter(f"index {entry['digest']}: {e}") from None
            document_bytes = _blob(files, chosen["digest"])
            document = json.loads(document_bytes)
        if "config" not in document:
            raise InvalidParameter(f"manifest {entry['digest']} has no config")
        blobs = {d["digest"]: _blob(files, d["digest"])
                 for d in [document["config"], *(document.get("layers") or [])]}
        image = found.setdefault(_digest(document_bytes), Loadable(document_bytes, blobs))
        annotations = entry.get("annotations") or {}
        name = annotations.get("io.containerd.image.name") or ""
        ref_name = annotations.get("org.opencontainers.image.ref.name") or ""
        if not name and ("/" in ref_name or ":" in ref_name):   # a name, not just a tag
            name = ref_name
        if name:
            image.names.append(_full_name(name))
    if not found:
        raise InvalidParameter("index.json lists no image")
    return list(found.values())


def from_legacy(files: dict[str, bytes]) -> list[Loadable]:
    """manifest.json's entries: a config, plain-tar layers; a manifest is written for each."""
    entries = _json(files, "manifest.json")
    if not isinstance(entries, list) or not entries:
        raise InvalidParameter("manifest.json lists no image")
    images = []
    for entry in entries:
        if not isinstance(entry, dict) or "Config" not in entry:
            raise InvalidParameter("manifest.json: an entry has no \"Config\"")
        try:
            config = files[entry["Config"]]
            layers = [files[path] for path in entry.get("Layers") or []]
        except KeyError as e:
            raise InvalidParameter(f"manifest.json names {e.args[0]}, which the tarball "
                                   "lacks") from None
        blobs = {_digest(config): config}
        descriptors = []
        for layer in layers:
            gzipped = layer[:2] == b"\x1f\x8b"
            descriptors.append({"mediaType": mediatypes.OCI_LAYER_GZIP if gzipped
                                else mediatypes.OCI_LAYER_TAR,
                                "digest": _digest(layer), "size": len(layer)})
            blobs[_digest(layer)] = layer
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": mediatypes.OCI_MANIFEST,
            "config": {"mediaType": mediatypes.OCI_CONFIG, "digest": _digest(config),
                       "size": len(config)},
            "layers": descriptors}, separators=(",", ":")).encode()
        images.append(Loadable(manifest, blobs,
                               [_full_name(t) for t in entry.get("RepoTags") or []]))
    return images


def loadables(files: dict[str, bytes]) -> list[Loadable]:
    """The images of a `docker save` tar, whichever layout it has (OCI first: a tar with
    both, as Docker 25+ and labkit write, is read as OCI, which keeps the manifests)."""
    if "index.json" in files:
        return from_oci_layout(files)
    if "manifest.json" in files:
        return from_legacy(files)
    raise InvalidParameter("the tarball is not a `docker save` archive: it has neither "
                           "index.json (OCI layout) nor manifest.json")


# --------------------------------------------------------------------------- the Daemon's

class Load:
    """The Daemon's `docker load` and `docker import` (mixed into labkit.dockerd.daemon.Daemon)."""

    def image_load(self, body: bytes) -> list[dict]:
        """Everything is checked and stored before the answer starts (a 400 otherwise)."""
        images = loadables(read_tar(body))
        writer = ImageWriter(self.ctr, self.images)
        messages = []
        for image in images:
            writer.from_blobs(image.manifest, image.blobs, image.names)
            config_digest = json.loads(image.manifest)["config"]["digest"]
            for name in image.names:
                messages.append({"stream": f"Loaded image: {familiar(name)}\n"})
                self.event_bus.publish("image", "load", config_digest, {"name": familiar(name)})
            if not image.names:
                messages.append({"stream": f"Loaded image ID: {config_digest}\n"})
                self.event_bus.publish("image", "load", config_digest, {})
        return messages

    def image_import(self, body: bytes, repo: str, tag: str, message: str,
                     changes: list[str]) -> str:
        """A root filesystem tar -> a one-layer image; its ID."""
        name = _full_name(f"{repo}:{tag}" if repo and tag else repo) if repo else ""
        tar = decompress(body)
        check_tar(tar, "the imported root filesystem")
        config: dict = {}
        apply_changes(config, changes)
        # (the config's architecture and os are the host's: ImageWriter starts from those)
        record = ImageWriter(self.ctr, self.images).from_tar(
            None, tar, config, "", name=name, comment=message or "Imported from -")
        self.event_bus.publish("image", "import", record.config_digest,
                               {"name": familiar(name)} if name else {})
        return record.config_digest
