"""labkit-registry's own behaviour, beyond the contract suite in tests/distribution."""

from __future__ import annotations

import hashlib
import http.client
import io
import json
import os
import select
import signal
import subprocess
import sys
import time

import pytest

from labkit.distribution import DigestMismatch, RegistryClient, RegistryError
from labkit.distribution import mediatypes as mt
from support import free_port, http_request, short_tmpdir, wait_for_v2


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def code_of(body: bytes) -> str:
    return json.loads(body)["errors"][0]["code"]


def push_image(client, repo, tag="v1"):
    layer, config = b"L" * 100, b'{"os":"linux"}'
    client.push_blob(repo, layer, digest(layer))
    client.push_blob(repo, config, digest(config))
    manifest = json.dumps({"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST,
                           "config": {"mediaType": mt.OCI_CONFIG, "digest": digest(config), "size": len(config)},
                           "layers": [{"mediaType": mt.OCI_LAYER_GZIP, "digest": digest(layer), "size": 100}]}).encode()
    client.push_manifest(repo, tag, manifest, mt.OCI_MANIFEST)
    return manifest, layer


def test_manifest_headers(registry):
    manifest, _ = push_image(RegistryClient(registry.url), "lab/h")
    for method in ("GET", "HEAD"):
        status, headers, body = http_request(registry.address, method, "/v2/lab/h/manifests/v1")
        assert status == 200
        assert headers["Content-Type"] == mt.OCI_MANIFEST
        assert headers["Docker-Content-Digest"] == digest(manifest)
        assert int(headers["Content-Length"]) == len(manifest)
        assert headers["Docker-Distribution-Api-Version"] == "registry/2.0"
        assert body == (manifest if method == "GET" else b"")


def test_blob_range_requests(registry):
    data = bytes(range(200))
    RegistryClient(registry.url).push_blob("lab/r", data, digest(data))
    status, headers, body = http_request(registry.address, "GET", f"/v2/lab/r/blobs/{digest(data)}", headers={"Range": "bytes=10-19"})
    assert status == 206 and body == data[10:20] and headers["Content-Range"] == "bytes 10-19/200"
    status, _, body = http_request(registry.address, "GET", f"/v2/lab/r/blobs/{digest(data)}", headers={"Range": "bytes=190-"})
    assert status == 206 and body == data[190:]
    status, _, _ = http_request(registry.address, "GET", f"/v2/lab/r/blobs/{digest(data)}", headers={"Range": "bytes=300-"})
    assert status == 416


def test_monolithic_upload_and_cross_repo_mount(registry):
    data = b"one shot"
    status, headers, _ = http_request(registry.address, "POST", f"/v2/lab/a/blobs/uploads/?digest={digest(data)}", data)
    assert status == 201 and headers["Docker-Content-Digest"] == digest(data)
    # b does not have it, even though the registry does: blobs are per repository
    assert not RegistryClient(registry.url).blob_exists("lab/b", digest(data))
    status, headers, _ = http_request(registry.address, "POST", f"/v2/lab/b/blobs/uploads/?mount={digest(data)}&from=lab/a")
    assert status == 201 and headers["Location"] == f"/v2/lab/b/blobs/{digest(data)}"
    assert RegistryClient(registry.url).blob_exists("lab/b", digest(data))
    # mounting from a repository that lacks the blob starts a normal upload instead
    status, headers, _ = http_request(registry.address, "POST", f"/v2/lab/c/blobs/uploads/?mount={digest(b'zz')}&from=lab/a")
    assert status == 202 and "Docker-Upload-UUID" in headers
    status, _, body = http_request(registry.address, "POST", f"/v2/lab/a/blobs/uploads/?digest={digest(b'other')}", data)
    assert status == 400 and code_of(body) == "DIGEST_INVALID"


def test_stale_upload_location_is_refused(registry):
    status, headers, _ = http_request(registry.address, "POST", "/v2/lab/s/blobs/uploads/")
    first = headers["Location"]
    status, headers, _ = http_request(registry.address, "PATCH", first, b"abc", {"Content-Range": "0-2"})
    assert status == 202 and headers["Location"] != first and headers["Range"] == "0-2"
    status, _, body = http_request(registry.address, "PATCH", first, b"def")      # the old Location
    assert status == 416 and code_of(body) == "RANGE_INVALID"
    status, _, body = http_request(registry.address, "PATCH", headers["Location"], b"def", {"Content-Range": "5-7"})
    assert status == 416 and code_of(body) == "RANGE_INVALID"
    status, headers, _ = http_request(registry.address, "GET", headers["Location"].split("?")[0])
    assert status == 204 and headers["Range"] == "0-2"
    status, _, _ = http_request(registry.address, "DELETE", headers["Location"].split("?")[0])
    assert status == 204
    status, _, body = http_request(registry.address, "PATCH", headers["Location"], b"x")
    assert status == 404 and code_of(body) == "BLOB_UPLOAD_UNKNOWN"


def test_delete_manifest_by_tag_and_digest(registry):
    client = RegistryClient(registry.url)
    manifest, _ = push_image(client, "lab/d", "v1")
    client.push_manifest("lab/d", "v2", manifest, mt.OCI_MANIFEST)
    assert http_request(registry.address, "DELETE", "/v2/lab/d/manifests/v1")[0] == 202
    assert client.tags("lab/d") == ["v2"]
    assert http_request(registry.address, "DELETE", f"/v2/lab/d/manifests/{digest(manifest)}")[0] == 202
    assert client.tags("lab/d") == []
    with pytest.raises(RegistryError) as info:
        client.resolve("lab/d", digest(manifest))
    assert info.value.code == "MANIFEST_UNKNOWN"


def test_pagination_and_catalog(registry):
    client = RegistryClient(registry.url)
    manifest, _ = push_image(client, "lab/p", "t0")
    for i in range(1, 5):
        client.push_manifest("lab/p", f"t{i}", manifest, mt.OCI_MANIFEST)
    status, headers, body = http_request(registry.address, "GET", "/v2/lab/p/tags/list?n=2")
    assert json.loads(body) == {"name": "lab/p", "tags": ["t0", "t1"]}
    assert headers["Link"] == '</v2/lab/p/tags/list?n=2&last=t1>; rel="next"'
    assert client.tags("lab/p") == [f"t{i}" for i in range(5)]   # the client follows Link
    push_image(client, "other/repo")
    assert client.catalog() == ["lab/p", "other/repo"]


def test_error_codes(registry):
    status, _, body = http_request(registry.address, "GET", "/v2/Bad/Name/tags/list")
    assert status == 400 and code_of(body) == "NAME_INVALID"
    status, _, body = http_request(registry.address, "GET", "/v2/lab/x/blobs/sha256:short")
    assert status == 400 and code_of(body) == "DIGEST_INVALID"
    status, _, body = http_request(registry.address, "POST", "/v2/lab/x/manifests/v1")
    assert status == 405 and code_of(body) == "UNSUPPORTED"
    status, _, body = http_request(registry.address, "PUT", "/v2/lab/x/manifests/v1", b"not json",
                          {"Content-Type": mt.OCI_MANIFEST})
    assert status == 400 and code_of(body) == "MANIFEST_INVALID"
    status, _, body = http_request(registry.address, "PUT", "/v2/lab/x/manifests/bad:tag", b'{"manifests":[]}',
                          {"Content-Type": mt.OCI_INDEX})
    assert status == 400 and code_of(body) == "TAG_INVALID"
    status, _, body = http_request(registry.address, "PUT", "/v2/lab/x/manifests/v1", b'{"layers":[]}',
                          {"Content-Type": mt.OCI_MANIFEST})
    assert status == 400 and code_of(body) == "MANIFEST_INVALID"
    status, _, body = http_request(registry.address, "PUT", f"/v2/lab/x/manifests/{digest(b'x')}",
                          b'{"manifests":[]}', {"Content-Type": mt.OCI_INDEX})
    assert status == 400 and code_of(body) == "DIGEST_INVALID"
    status, _, body = http_request(registry.address, "GET", "/v2/lab/x/blobs/uploads/not-a-uuid")
    assert status == 404 and code_of(body) == "BLOB_UPLOAD_UNKNOWN"


def test_keep_alive_survives_errors(registry):
    """Many requests on one connection, including refused ones with bodies."""
    conn = http.client.HTTPConnection(registry.address, timeout=10)
    try:
        for _ in range(3):
            conn.request("GET", "/v2/")
            assert conn.getresponse().read() == b"{}"
            conn.request("PUT", "/v2/lab/k/manifests/v1", body=b"{bad", headers={"Content-Type": mt.OCI_MANIFEST})
            resp = conn.getresponse()
            assert resp.status == 400 and code_of(resp.read()) == "MANIFEST_INVALID"
    finally:
        conn.close()


def test_corrupted_storage_is_caught_by_the_client(registry):
    data = b"precious layer"
    RegistryClient(registry.url).push_blob("lab/c", data, digest(data))
    blob = registry.storage.root / "blobs" / "sha256" / digest(data).split(":")[1]
    blob.write_bytes(b"Precious layer")          # same size, different content (bit rot)
    with pytest.raises(DigestMismatch):
        RegistryClient(registry.url).fetch_blob("lab/c", {"digest": digest(data), "size": len(data)},
                                                io.BytesIO())


def test_storage_is_content_addressed_and_clean(registry):
    client = RegistryClient(registry.url)
    client.chunk_size = 3
    data = b"shared layer"
    client.push_blob("lab/one", data, digest(data))
    client.push_blob("lab/two", data, digest(data))
    root = registry.storage.root
    assert [p.name for p in (root / "blobs" / "sha256").iterdir()] == [digest(data).split(":")[1]]
    leftovers = [p for p in root.rglob("*") if p.name.startswith(".tmp-") or p.parent.name == "_uploads"]
    assert leftovers == []


def test_labkit_registry_command():
    """The console script: serves, logs one line per request, stops on SIGTERM."""
    port = free_port()
    with short_tmpdir("labkit-reg-") as root:
        proc = subprocess.Popen([sys.executable, "-m", "labkit.registry.main", "--root", str(root),
                                 "--listen", f"127.0.0.1:{port}"], stderr=subprocess.PIPE, bufsize=0)
        try:
            deadline = time.monotonic() + 10
            wait_for_v2(f"http://127.0.0.1:{port}", proc, timeout=10)
            # The request's log line is written just after its answer went out: read until it
            # arrives (a SIGTERM sent at once could otherwise beat the handler thread to it).
            log = ""
            while '"GET /v2/" 200' not in log:
                left = deadline - time.monotonic()
                assert left > 0, f"no log line for GET /v2/ in {log!r}"
                if select.select([proc.stderr], [], [], left)[0]:
                    log += os.read(proc.stderr.fileno(), 65536).decode()
            os.kill(proc.pid, signal.SIGTERM)
            assert proc.wait(10) == 0
            log += proc.stderr.read().decode()
            assert f"serving {root} on http://127.0.0.1:{port}" in log
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stderr.close()


def test_labkit_registry_command_bad_listen():
    proc = subprocess.run([sys.executable, "-m", "labkit.registry.main", "--listen", "nope"],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "invalid listen address 'nope'" in proc.stderr
