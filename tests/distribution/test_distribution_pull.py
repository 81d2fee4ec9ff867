"""Pulls through a private labkit-containerd from a registry that misbehaves on request.

The path is `docker pull`'s: labkit-containerd's Transfer.Pull (gRPC) -> labkit.distribution
-> HTTP. Between containerd and a private labkit-registry sits `Front`, a forwarding server
that can break one path at a time: answer 429, 404 or 401, cut a blob short, or change a byte
of it. Each failure must come back as an error naming what was wrong, leave nothing in the
content store (no blob, no ingest), and the next pull -- the fault removed -- must work.

Also here: layers compressed with gzip, zstd or not at all; a diff id that does not match the
unpacked tar; an index with an attestation and several platforms; layers downloaded side by
side (the front holds the first two blob requests until both have arrived).
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import grpc
import pytest
import zstandard

from labkit.containerd.client import Client, pb
from labkit.distribution import mediatypes as mt
from labkit.distribution.client import RegistryClient
from support import labkit_registry


pytestmark = [pytest.mark.root, pytest.mark.slow]

NS = "lkpull"


def tar_of(name: str, data: bytes) -> bytes:
    """A layer tar holding one file."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(name)
        info.size, info.mtime = len(data), 1_700_000_000
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def gz(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Front(ThreadingHTTPServer):
    """Forwards every request to `upstream`, unless `faults` has an entry for the path."""

    daemon_threads = True

    def __init__(self, upstream: str):
        super().__init__(("127.0.0.1", 0), _FrontHandler)
        self.upstream = urllib.parse.urlsplit(upstream).netloc
        self.faults: dict[str, str] = {}          # path suffix -> "429" | "404" | …
        self.barrier: threading.Barrier | None = None
        self.held: set[str] = set()               # paths that wait at the barrier
        self.stalled, self.release = threading.Event(), threading.Event()   # the "stall" fault
        self.thread = threading.Thread(target=self.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server_address[1]}"

    def close(self) -> None:
        self.shutdown()
        self.thread.join()
        self.server_close()


class _FrontHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Front

    def log_message(self, *args):
        pass

    def _send(self, status: int, body: bytes, headers: dict, length: int | None = None) -> None:
        self.send_response(status)
        for k, v in headers.items():
            if k.lower() not in ("content-length", "transfer-encoding", "connection"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _error(self, status: int, code: str, message: str, **headers) -> None:
        body = json.dumps({"errors": [{"code": code, "message": message}]}).encode()
        self._send(status, body, {"Content-Type": "application/json", **headers})

    def do_GET(self):  # noqa: N802
        self._forward()

    def do_HEAD(self):  # noqa: N802
        self._forward()

    def _forward(self) -> None:
        fault = next((f for suffix, f in self.server.faults.items()
                      if self.path.endswith(suffix)), None)
        if fault == "429":
            return self._error(429, "TOOMANYREQUESTS", "You have reached your pull rate limit",
                               **{"Retry-After": "30"})
        if fault == "404":
            return self._error(404, "BLOB_UNKNOWN", "blob unknown to registry")
        if fault == "401":
            return self._error(401, "UNAUTHORIZED", "authentication required",
                               **{"WWW-Authenticate": f'Bearer realm="http://{self.server.address}'
                                                      f'/token",service="front"'})
        if self.path.startswith("/token"):
            return self._send(403, b'{"details":"no tokens here"}', {})
        if self.server.barrier is not None and any(self.path.endswith(h) for h in self.server.held):
            self.server.barrier.wait()            # BrokenBarrierError: downloads not parallel
        conn = http.client.HTTPConnection(self.server.upstream, timeout=30)
        try:
            conn.request(self.command, self.path, headers={
                k: v for k, v in self.headers.items() if k.lower() in ("accept", "authorization")})
            resp = conn.getresponse()
            body = resp.read()
        finally:
            conn.close()
        if fault == "stall":                      # half the bytes, then nothing until released
            self.send_response(resp.status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[:len(body) // 2])
            self.wfile.flush()
            self.server.stalled.set()
            self.server.release.wait(30)
            return
        if fault == "truncate":                   # the connection drops after half the bytes
            return self._send(resp.status, body[:len(body) // 2], dict(resp.getheaders()),
                              length=len(body))
        if fault == "corrupt":
            body = body[:-1] + bytes([body[-1] ^ 1])
        self._send(resp.status, body, dict(resp.getheaders()))


class Daemon:
    """A private labkit-containerd (its own root, state and socket), stopped by PID."""

    def __init__(self, base: Path):
        self.base = base
        self.sock = str(base / "c.sock")
        self.start()

    def start(self) -> None:
        base = self.base
        log = open(base / "containerd.log", "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "labkit.containerd.main", "--address", self.sock,
             "--root", str(base / "root"), "--state", str(base / "state")],
            env=dict(os.environ, LABKIT_RUN_DIR=str(base / "run")), stdout=log, stderr=log)
        log.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="module")
def lab():
    with labkit_registry("lkpull-reg-") as registry:
        front = Front(registry.url)
        base = Path(tempfile.mkdtemp(prefix="lkp-", dir="/tmp"))
        d = Daemon(base)
        try:
            with Client(d.sock, NS) as c:
                c.wait_ready(15)
                d.client, d.registry, d.front = c, registry, front
                d.push = RegistryClient(registry.url)
                yield d
        finally:
            d.stop()
            front.close()
            from labkit.containerd import mount as mountlib
            from labkit.lab.reset import mounts_under
            for point in mounts_under([base]):
                mountlib.unmount_all(point)
            import shutil
            shutil.rmtree(base, ignore_errors=True)


def push(lab, repository: str, layers: list[tuple[bytes, str]], *, diff_ids=None,
         platforms: list[dict] | None = None, attestation: bool = False) -> dict:
    """Push an image whose layers are (tar, compression) pairs; with `platforms`, the tag is an
    index listing the image once per platform (and an attestation manifest first, if asked)."""
    blobs = []
    for tar, how in layers:
        blob = {"gzip": gz, "zstd": zstandard.ZstdCompressor().compress, "": bytes}[how](tar)
        lab.push.push_blob(repository, blob, sha(blob))
        media = {"gzip": mt.OCI_LAYER_GZIP, "zstd": mt.OCI_LAYER_ZSTD, "": mt.OCI_LAYER_TAR}[how]
        blobs.append({"mediaType": media, "digest": sha(blob), "size": len(blob)})
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {
        "type": "layers", "diff_ids": diff_ids or [sha(t) for t, _ in layers]}}).encode()
    lab.push.push_blob(repository, config, sha(config))
    manifest = json.dumps({"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST,
                           "config": {"mediaType": mt.OCI_CONFIG, "digest": sha(config),
                                      "size": len(config)}, "layers": blobs}).encode()
    if not platforms:
        lab.push.push_manifest(repository, "latest", manifest, mt.OCI_MANIFEST)
        return {"manifest": sha(manifest), "blobs": blobs}
    lab.push.push_manifest(repository, sha(manifest), manifest, mt.OCI_MANIFEST)
    entries = [{"mediaType": mt.OCI_MANIFEST, "digest": sha(manifest), "size": len(manifest),
                "platform": p} for p in platforms]
    if attestation:      # Hub lists it like an image, for platform unknown/unknown
        entries.insert(0, {"mediaType": mt.OCI_MANIFEST, "digest": sha(manifest),
                           "size": len(manifest),
                           "platform": {"os": "unknown", "architecture": "unknown"},
                           "annotations": {"vnd.docker.reference.type": "attestation-manifest",
                                           "vnd.docker.reference.digest": sha(manifest)}})
    index = json.dumps({"schemaVersion": 2, "mediaType": mt.OCI_INDEX,
                        "manifests": entries}).encode()
    lab.push.push_manifest(repository, "latest", index, mt.OCI_INDEX)
    return {"manifest": sha(manifest), "index": sha(index), "blobs": blobs}


def pull(lab, repository: str, platform: str = "") -> list:
    ref = f"{lab.front.address}/{repository}:latest"
    return list(lab.client.transfer.Pull(pb.PullRequest(reference=ref, platform=platform),
                                         timeout=60))


def stored(lab, digest: str) -> bool:
    return any((lab.base / "root").rglob(digest.split(":")[1]))


def ingests(lab) -> list[Path]:
    return [p for d in (lab.base / "root").rglob("ingest") if d.is_dir() for p in d.iterdir()]


def test_gzip_zstd_and_plain_layers(lab):
    layers = [(tar_of("a", b"gzip\n"), "gzip"),
              (tar_of("b", b"zstd\n"), "zstd"),
              (tar_of("c", b"plain\n"), "")]
    image = push(lab, "kinds/three", layers)
    events = pull(lab, "kinds/three")
    unpacked = [e.desc.digest for e in events if e.event == "unpacked"]
    assert unpacked == [b["digest"] for b in image["blobs"]]
    # the unpacked files (the top snapshot's lower dirs hold a, b and c)
    found = {p.name: p.read_bytes() for p in (lab.base / "root").rglob("*")
             if p.is_file() and p.name in ("a", "b", "c")}
    assert found == {"a": b"gzip\n", "b": b"zstd\n", "c": b"plain\n"}


def test_diff_id_is_checked(lab):
    tar = tar_of("d", b"diff id\n")
    push(lab, "kinds/diffid", [(tar, "gzip")], diff_ids=[sha(b"something else")])
    with pytest.raises(grpc.RpcError) as e:
        pull(lab, "kinds/diffid")
    assert "diff id mismatch" in e.value.details(), e.value.details()


def test_index_platforms_and_attestations(lab):
    push(lab, "multi/arch", [(tar_of("m", b"m\n"), "gzip")],
         platforms=[{"os": "linux", "architecture": "amd64"},
                    {"os": "linux", "architecture": "arm64", "variant": "v8"}], attestation=True)
    for platform in ("linux/amd64", "linux/arm64/v8", "linux/arm64"):
        events = pull(lab, "multi/arch", platform)
        assert events[-1].event == "done", platform
    with pytest.raises(grpc.RpcError) as e:
        pull(lab, "multi/arch", "linux/s390x")
    assert "no matching manifest for linux/s390x" in e.value.details()
    with pytest.raises(grpc.RpcError) as e:
        pull(lab, "multi/arch", "unknown/unknown")    # an attestation is not an image
    assert "no matching manifest for unknown/unknown" in e.value.details()


def test_layers_download_side_by_side(lab):
    layers = [(tar_of(f"p{n}", bytes([n]) * 1000), "gzip") for n in range(3)]
    image = push(lab, "side/by-side", layers)
    # The front holds the requests for the first two layers until both have arrived: one
    # download at a time would leave the first waiting alone, until the barrier breaks.
    lab.front.held = {f"/blobs/{b['digest']}" for b in image["blobs"][:2]}
    lab.front.barrier = threading.Barrier(2, timeout=20)
    try:
        assert pull(lab, "side/by-side")[-1].event == "done"
        assert not lab.front.barrier.broken, "the layer downloads did not overlap"
    finally:
        lab.front.barrier, lab.front.held = None, set()


FAULTS = {
    "429": "toomanyrequests: blob sha256:",
    "404": "blob unknown",
    "401": "token server",
    "truncate": "truncated: received",
    "corrupt": "blob digest mismatch",
}


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_a_broken_blob_is_named_stored_nowhere_and_the_next_pull_works(lab, fault):
    repository = f"broken/{fault}"
    image = push(lab, repository, [(tar_of("x", fault.encode() * 5000), "gzip")])
    layer = image["blobs"][0]["digest"]
    lab.front.faults = {f"/blobs/{layer}": fault}
    try:
        with pytest.raises(grpc.RpcError) as e:
            pull(lab, repository)
        details = e.value.details()
        assert FAULTS[fault] in details, details
        if fault != "401":           # (that one names the token server and the scope instead)
            assert layer in details, f"the error does not name the blob: {details}"
        if fault == "429":
            assert "retry after 30 s" in details
        assert not stored(lab, layer), "a blob that failed is in the content store"
        assert ingests(lab) == [], "a half-written download was left behind"
    finally:
        lab.front.faults = {}
    assert pull(lab, repository)[-1].event == "done"
    assert stored(lab, layer)


def test_kill_9_during_a_download_leaves_no_corrupt_image_and_the_pull_works_again(lab):
    layer_tar = tar_of("big", os.urandom(2 << 20))
    image = push(lab, "killed/mid-pull", [(layer_tar, "gzip")])
    layer = image["blobs"][0]["digest"]
    lab.front.faults = {f"/blobs/{layer}": "stall"}
    lab.front.stalled.clear()
    lab.front.release.clear()
    failed: list[BaseException] = []

    def doomed_pull():
        try:
            pull(lab, "killed/mid-pull")
        except grpc.RpcError as e:
            failed.append(e)

    puller = threading.Thread(target=doomed_pull)
    puller.start()
    try:
        assert lab.front.stalled.wait(30), "the download never started"
        lab.proc.kill()                       # kill -9, half the layer written
        lab.proc.wait()
    finally:
        lab.front.release.set()
        lab.front.faults = {}
        puller.join(60)
    assert failed, "the pull did not fail when its containerd died"
    assert not stored(lab, layer), "half a layer became a blob"
    lab.start()
    lab.client.wait_ready(15)
    events = pull(lab, "killed/mid-pull")
    assert events[-1].event == "done"
    blob = next(p for p in (lab.base / "root").rglob(layer.split(":")[1]) if p.is_file())
    assert sha(blob.read_bytes()) == layer
