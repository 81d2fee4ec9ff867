"""labkit.dockerd.load's parsing, without a daemon: compressed or plain tars, the OCI layout and
Docker's legacy layout read into manifests and blobs, and the 400s for what is neither."""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import json
import lzma
import tarfile

import pytest

from labkit.distribution import mediatypes
from labkit.dockerd import load
from labkit.dockerd.errors import InvalidParameter


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def tar_of(files: dict[str, bytes], prefix: str = "") -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for path, data in files.items():
            info = tarfile.TarInfo(prefix + path)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


LAYER = tar_of({"hello": b"hi\n"})
LAYER_GZ = gzip.compress(LAYER, mtime=0)
CONFIG = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                     "rootfs": {"type": "layers", "diff_ids": [digest(LAYER)]}}).encode()


def oci_layout(annotations: dict[str, str]) -> dict[str, bytes]:
    manifest = json.dumps({"schemaVersion": 2, "mediaType": mediatypes.OCI_MANIFEST,
                           "config": {"mediaType": mediatypes.OCI_CONFIG,
                                      "digest": digest(CONFIG), "size": len(CONFIG)},
                           "layers": [{"mediaType": mediatypes.OCI_LAYER_GZIP,
                                       "digest": digest(LAYER_GZ), "size": len(LAYER_GZ)}]}
                          ).encode()
    index = {"schemaVersion": 2, "manifests": [{"mediaType": mediatypes.OCI_MANIFEST,
                                                "digest": digest(manifest),
                                                "size": len(manifest),
                                                "annotations": annotations}]}
    return {"oci-layout": b'{"imageLayoutVersion": "1.0.0"}',
            "index.json": json.dumps(index).encode(),
            **{f"blobs/sha256/{digest(b)[7:]}": b for b in (manifest, CONFIG, LAYER_GZ)}}


@pytest.mark.parametrize("compress", [lambda b: b, gzip.compress, bz2.compress, lzma.compress],
                         ids=["plain", "gzip", "bzip2", "xz"])
def test_read_tar_any_compression(compress):
    files = load.read_tar(compress(tar_of({"a": b"1", "d/b": b"2"}, prefix="./")))
    assert files == {"a": b"1", "d/b": b"2"}


def test_oci_layout_names():
    # Docker 25+: the full name in io.containerd.image.name, the tag alone in ref.name
    images = load.loadables(oci_layout({"io.containerd.image.name": "docker.io/library/x:1",
                                        "org.opencontainers.image.ref.name": "1"}))
    assert len(images) == 1 and images[0].names == ["docker.io/library/x:1"]
    assert set(images[0].blobs) == {digest(CONFIG), digest(LAYER_GZ)}
    # a name in ref.name (skopeo copy oci-archive:…:name) is normalized
    assert load.loadables(oci_layout({"org.opencontainers.image.ref.name": "x/y:2"}))[0].names \
        == ["docker.io/x/y:2"]
    # a tag alone names nothing: the image loads without a name
    assert load.loadables(oci_layout({"org.opencontainers.image.ref.name": "latest"}))[0].names \
        == []


def test_oci_layout_blobs_are_checked():
    files = oci_layout({})
    files[f"blobs/sha256/{digest(LAYER_GZ)[7:]}"] = b"tampered"
    with pytest.raises(InvalidParameter, match="does not match its digest"):
        load.loadables(files)
    del files[f"blobs/sha256/{digest(LAYER_GZ)[7:]}"]
    with pytest.raises(InvalidParameter, match="lacks blob"):
        load.loadables(files)


def test_legacy_layout_gets_a_manifest():
    files = {"manifest.json": json.dumps([{"Config": "c.json", "RepoTags": ["x:1"],
                                           "Layers": ["l1/layer.tar", "l2/layer.tar"]}]).encode(),
             "c.json": CONFIG, "l1/layer.tar": LAYER, "l2/layer.tar": LAYER_GZ}
    [image] = load.loadables(files)
    manifest = json.loads(image.manifest)
    assert manifest["config"]["digest"] == digest(CONFIG)           # the image ID is kept
    assert [(l["mediaType"], l["digest"]) for l in manifest["layers"]] == [
        (mediatypes.OCI_LAYER_TAR, digest(LAYER)), (mediatypes.OCI_LAYER_GZIP, digest(LAYER_GZ))]
    assert image.names == ["docker.io/library/x:1"]
    assert image.blobs[digest(LAYER)] == LAYER


@pytest.mark.parametrize("body, words", [
    (b"", "empty"),
    (b"plain text, not a tar" * 40, "not a tar archive"),
    (b"\x1f\x8b\x08garbage", "cannot be decompressed"),
    (tar_of({"etc/passwd": b"root"}), "neither index.json"),
    (tar_of({"manifest.json": b"{not json"}), "manifest.json is not valid JSON"),
    (tar_of({"manifest.json": b"[]"}), "lists no image"),
    (tar_of({"index.json": b"{}"}), 'no "manifests" list'),
])
def test_not_a_save_tarball(body, words):
    with pytest.raises(InvalidParameter, match=words):
        load.loadables(load.read_tar(body))
