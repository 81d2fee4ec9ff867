"""The registry client's contract, against labkit-registry AND Debian's docker-registry 2.8."""

from __future__ import annotations

import hashlib
import http.client
import io
import json
import socket
import urllib.parse

import pytest

from labkit.distribution import DigestMismatch, RegistryClient, RegistryError, RegistryUnavailable
from labkit.distribution.errors import TruncatedBlob
from labkit.distribution import mediatypes as mt
from labkit.distribution.reference import parse_reference
from support import http_request


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def image_docs(client: RegistryClient, repo: str, *, docker_types: bool = False) -> tuple[bytes, bytes]:
    """Push a layer and a config; return (manifest bytes, its media type) referencing them."""
    layer = b"layer-bytes-" * 100
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": [digest(layer)]}}).encode()
    client.push_blob(repo, layer, digest(layer))
    client.push_blob(repo, config, digest(config))
    media_type = mt.DOCKER_MANIFEST if docker_types else mt.OCI_MANIFEST
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": media_type,
        "config": {"mediaType": mt.DOCKER_CONFIG if docker_types else mt.OCI_CONFIG,
                   "digest": digest(config), "size": len(config)},
        "layers": [{"mediaType": mt.DOCKER_LAYER_GZIP if docker_types else mt.OCI_LAYER_GZIP,
                    "digest": digest(layer), "size": len(layer)}],
    }, indent=3).encode()          # odd formatting on purpose: bytes must survive exactly
    return manifest, media_type


def test_blob_round_trip_in_chunks(registry_url):
    client = RegistryClient(registry_url)
    client.chunk_size = 1000      # several PATCHes, each answered with a new Location
    data = bytes(range(256)) * 17
    d = digest(data)
    assert not client.blob_exists("lab/blobs", d)
    client.push_blob("lab/blobs", data, d)
    assert client.blob_exists("lab/blobs", d)
    out, seen = io.BytesIO(), []
    client.fetch_blob("lab/blobs", {"digest": d, "size": len(data)}, out, seen.append)
    assert out.getvalue() == data
    assert seen[-1] == len(data) and seen == sorted(seen)


def test_push_blob_from_a_file(registry_url, tmp_path):
    client = RegistryClient(registry_url)
    path = tmp_path / "blob"
    path.write_bytes(b"from a file\n" * 1000)
    d = digest(path.read_bytes())
    client.push_blob("lab/files", path, d)
    client.push_blob("lab/files", str(path), d)      # second time: HEAD says it is there
    out = io.BytesIO()
    client.fetch_blob("lab/files", {"digest": d, "size": path.stat().st_size}, out)
    assert out.getvalue() == path.read_bytes()


def test_empty_blob(registry_url):
    client = RegistryClient(registry_url)
    client.push_blob("lab/empty", b"", digest(b""))
    out = io.BytesIO()
    client.fetch_blob("lab/empty", {"digest": digest(b""), "size": 0}, out)
    assert out.getvalue() == b""


@pytest.mark.parametrize("docker_types", [False, True], ids=["oci", "docker"])
def test_manifest_round_trip_keeps_exact_bytes(registry_url, docker_types):
    client = RegistryClient(registry_url)
    manifest, media_type = image_docs(client, "lab/img", docker_types=docker_types)
    pushed = client.push_manifest("lab/img", "v1", manifest, media_type)
    assert pushed == digest(manifest)
    for ref in ("v1", pushed):
        desc, raw = client.resolve("lab/img", ref)
        assert raw == manifest
        assert desc == {"mediaType": media_type, "digest": pushed, "size": len(manifest)}
    assert client.tags("lab/img") == ["v1"]


def test_index_needs_its_manifests_first(registry_url):
    client = RegistryClient(registry_url)
    manifest, media_type = image_docs(client, "lab/multi")
    index = json.dumps({"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": [
        {"mediaType": media_type, "digest": digest(manifest), "size": len(manifest),
         "platform": {"os": "linux", "architecture": "amd64"}}]}).encode()
    with pytest.raises(RegistryError) as info:
        client.push_manifest("lab/multi", "latest", index, mt.OCI_INDEX)
    assert (info.value.code, info.value.status) == ("MANIFEST_BLOB_UNKNOWN", 400)
    client.push_manifest("lab/multi", digest(manifest), manifest, media_type)
    client.push_manifest("lab/multi", "latest", index, mt.OCI_INDEX)
    desc, raw = client.resolve("lab/multi", "latest")
    assert desc["mediaType"] == mt.OCI_INDEX and json.loads(raw)["manifests"][0]["digest"] == digest(manifest)


def test_manifest_with_missing_blob_is_refused(registry_url):
    client = RegistryClient(registry_url)
    missing = digest(b"never pushed")
    manifest = json.dumps({"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST,
                           "config": {"mediaType": mt.OCI_CONFIG, "digest": missing, "size": 12},
                           "layers": []}).encode()
    with pytest.raises(RegistryError) as info:
        client.push_manifest("lab/broken", "v1", manifest, mt.OCI_MANIFEST)
    assert (info.value.code, info.value.status) == ("MANIFEST_BLOB_UNKNOWN", 400)


def test_unknown_things(registry_url):
    client = RegistryClient(registry_url)
    client.push_blob("lab/known", b"x", digest(b"x"))
    with pytest.raises(RegistryError) as info:
        client.resolve("lab/known", "nope")
    assert (info.value.code, info.value.status) == ("MANIFEST_UNKNOWN", 404)
    assert str(info.value).startswith("manifest unknown: ")
    with pytest.raises(RegistryError) as info:
        client.fetch_blob("lab/known", {"digest": digest(b"y"), "size": 1}, io.BytesIO())
    assert (info.value.code, info.value.status) == ("BLOB_UNKNOWN", 404)
    with pytest.raises(RegistryError) as info:
        client.tags("lab/never")
    assert (info.value.code, info.value.status) == ("NAME_UNKNOWN", 404)


def test_fetch_checks_the_size(registry_url):
    client = RegistryClient(registry_url)
    client.push_blob("lab/size", b"12345", digest(b"12345"))
    with pytest.raises(DigestMismatch, match="size"):
        client.fetch_blob("lab/size", {"digest": digest(b"12345"), "size": 4}, io.BytesIO())
    with pytest.raises(TruncatedBlob, match="truncated: received 5 of 6 bytes"):
        client.fetch_blob("lab/size", {"digest": digest(b"12345"), "size": 6}, io.BytesIO())


def test_resolve_by_wrong_digest_is_unknown(registry_url):
    client = RegistryClient(registry_url)
    manifest, media_type = image_docs(client, "lab/dg")
    client.push_manifest("lab/dg", "v1", manifest, media_type)
    with pytest.raises(RegistryError) as info:
        client.resolve("lab/dg", digest(b"other"))
    assert info.value.code == "MANIFEST_UNKNOWN"


def test_upload_with_wrong_digest_is_refused(registry_url):
    status, headers, _ = http_request(registry_url, "POST", "/v2/lab/bad/blobs/uploads/")
    assert status == 202
    location = urllib.parse.urljoin(registry_url, headers["Location"])
    status, headers, _ = http_request(registry_url, "PATCH", location, b"some bytes",
                              {"Content-Type": "application/octet-stream"})
    assert status == 202
    location = urllib.parse.urljoin(registry_url, headers["Location"])
    sep = "&" if "?" in location else "?"
    status, _, body = http_request(registry_url, "PUT", f"{location}{sep}digest={digest(b'other bytes')}")
    assert status == 400
    assert json.loads(body)["errors"][0]["code"] == "DIGEST_INVALID"


def test_streamed_chunked_upload(registry_url):
    """The docker daemon and skopeo send layers with Transfer-Encoding: chunked."""
    data = b"streamed " * 5000
    status, headers, _ = http_request(registry_url, "POST", "/v2/lab/stream/blobs/uploads/")
    location = urllib.parse.urljoin(registry_url, headers["Location"])
    parts = urllib.parse.urlsplit(registry_url)
    conn = http.client.HTTPConnection(parts.netloc, timeout=10)
    try:
        conn.request("PATCH", location, body=iter([data[:1000], data[1000:]]),
                     headers={"Content-Type": "application/octet-stream"}, encode_chunked=True)
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 202
        location = urllib.parse.urljoin(registry_url, resp.headers["Location"])
    finally:
        conn.close()
    sep = "&" if "?" in location else "?"
    status, headers, _ = http_request(registry_url, "PUT", f"{location}{sep}digest={digest(data)}")
    assert status == 201 and headers["Docker-Content-Digest"] == digest(data)
    out = io.BytesIO()
    RegistryClient(registry_url).fetch_blob("lab/stream", {"digest": digest(data), "size": len(data)}, out)
    assert out.getvalue() == data


def test_v2_ping_says_registry_2(registry_url):
    status, headers, _ = http_request(registry_url, "GET", "/v2/")
    assert status == 200
    assert headers["Docker-Distribution-Api-Version"] == "registry/2.0"


def test_tags_are_listed(registry_url):
    # (registry 2.8 ignores ?n= for tags and does not sort them; labkit's paginates: see
    # tests/registry)
    client = RegistryClient(registry_url)
    manifest, media_type = image_docs(client, "lab/tags")
    for tag in ("b", "a", "c"):
        client.push_manifest("lab/tags", tag, manifest, media_type)
    assert sorted(client.tags("lab/tags")) == ["a", "b", "c"]


def test_pull_by_reference_string(registry_url):
    """What containerd does: parse a reference, then resolve its locator in its path."""
    client = RegistryClient(registry_url)
    manifest, media_type = image_docs(client, "library/thing")
    client.push_manifest("library/thing", "latest", manifest, media_type)
    host = urllib.parse.urlsplit(registry_url).netloc
    ref = parse_reference(f"{host}/library/thing")
    desc, raw = RegistryClient(ref.domain).resolve(ref.path, ref.locator)
    assert raw == manifest


def test_registry_down_is_a_clear_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}"     # nobody listens there once closed
    with pytest.raises(RegistryUnavailable) as info:
        RegistryClient(url).resolve("library/busybox", "latest")
    assert url in str(info.value) and isinstance(info.value, ConnectionError)


def test_bad_arguments_are_value_errors():
    client = RegistryClient("http://127.0.0.1:1")
    with pytest.raises(ValueError, match="invalid repository name"):
        client.resolve("Library/Busybox", "latest")
    with pytest.raises(ValueError, match="invalid manifest reference"):
        client.resolve("library/busybox", "bad tag")
    with pytest.raises(ValueError, match="invalid digest"):
        client.blob_exists("library/busybox", "md5:x")
    with pytest.raises(ValueError, match="invalid registry endpoint"):
        RegistryClient("ftp://x")


def test_accept_header_matters(registry_url, request):
    """Registry 2.8 without Accept answers 404 for OCI content (INTERFACES §3.1): that is why
    resolve() always lists the four manifest types. labkit-registry serves what it stored."""
    client = RegistryClient(registry_url)
    manifest, media_type = image_docs(client, "lab/accept")
    client.push_manifest("lab/accept", "v1", manifest, media_type)
    status, _, _ = http_request(registry_url, "GET", "/v2/lab/accept/manifests/v1")
    kind = request.node.callspec.params["registry_url"]
    assert status == (404 if kind == "docker-registry" else 200)
    status, headers, body = http_request(registry_url, "GET", "/v2/lab/accept/manifests/v1",
                                 headers={"Accept": ", ".join(mt.MANIFEST_ACCEPT)})
    assert status == 200 and body == manifest and headers["Content-Type"] == mt.OCI_MANIFEST
