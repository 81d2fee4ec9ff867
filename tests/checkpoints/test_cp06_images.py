"""Checkpoint cp06 -- chapter 06, images and the registry (labkit/distribution/).

Graded with `labkit grade cp06`. The first group tests one exercise each: the pure ones
(split_domain, select_manifest, chain_ids) against the rules of Docker and the OCI image spec,
the ones that speak HTTP (resolve, fetch_blob, _authenticate) against a small registry this
file runs on 127.0.0.1 -- small, so that it can also misbehave on purpose: lie about a digest,
cut a download short, demand a token. The last one runs the real docker CLI through a private
lab whose distribution layer (in labkit-containerd and labkit-dockerd) is the graded code:
`docker pull busybox`, then `docker run --rm busybox echo …`.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from labkit.course.grading import checkpoint
from labkit.lab.implementations import resolve_module


def module(name: str):
    """labkit.distribution.<name> as this grading run configured it (reference or workspace)."""
    return resolve_module("distribution", f"labkit.distribution.{name}")


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"

BLOB = bytes(range(256)) * 5000                     # 1.2 MB: more than one read
CONFIG = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
MANIFEST = json.dumps({"schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
                       "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                                  "digest": sha256(CONFIG), "size": len(CONFIG)},
                       "layers": []}, indent=3).encode()   # indented: re-serializing changes it
INDEX = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
    {"mediaType": DOCKER_MANIFEST, "digest": sha256(MANIFEST), "size": len(MANIFEST),
     "platform": {"os": "linux", "architecture": "amd64"}}]}).encode()
TOKEN_USER, TOKEN_PASSWORD = "student", "s3cret"


class TinyRegistry(ThreadingHTTPServer):
    """Just enough of the distribution API (INTERFACES §3.1), with repositories that misbehave:

        lab/img       the index (tag "latest"), its manifest and the blob; 404 for OCI content
                      without Accept, as registry 2.8 answers
        lab/liar      Docker-Content-Digest does not match the body; the blob is one byte off
        lab/short     the blob's answer is cut short (a Content-Length smaller than its size)
        private/img   like lab/img behind a Bearer token from /token (service "tiny")
        basic/img     like lab/img behind Basic credentials
    """

    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.log: list[tuple[str, str, str | None]] = []      # (method, path, Authorization)
        self.tokens_issued = 0
        self.thread = threading.Thread(target=self.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def close(self) -> None:
        self.shutdown()
        self.thread.join()
        self.server_close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: TinyRegistry

    def log_message(self, *args):
        pass

    def _send(self, status: int, body: bytes = b"", headers: dict | None = None,
              length: int | None = None) -> None:
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _error(self, status: int, code: str, message: str, headers: dict | None = None) -> None:
        self._send(status, json.dumps({"errors": [{"code": code, "message": message}]}).encode(),
                   {"Content-Type": "application/json", **(headers or {})})

    def do_GET(self):  # noqa: N802 - http.server's name
        auth = self.headers.get("Authorization")
        self.server.log.append((self.command, self.path, auth))
        url = urllib.parse.urlsplit(self.path)
        if url.path == "/token":
            return self._token(urllib.parse.parse_qs(url.query), auth)
        parts = url.path.split("/")            # "", "v2", ns, name, kind, ref
        if len(parts) != 6 or parts[1] != "v2":
            return self._error(404, "NAME_UNKNOWN", "repository name not known to registry")
        repo, kind, ref = f"{parts[2]}/{parts[3]}", parts[4], parts[5]
        if repo == "private/img" and auth != "Bearer tok-" + "repository:private/img:pull":
            realm = f"{self.server.url}/token"
            return self._error(401, "UNAUTHORIZED", "authentication required", {
                "WWW-Authenticate": f'Bearer realm="{realm}",service="tiny"'})
        if repo == "basic/img":
            good = "Basic " + base64.b64encode(f"{TOKEN_USER}:{TOKEN_PASSWORD}".encode()).decode()
            if auth != good:
                return self._error(401, "UNAUTHORIZED", "authentication required",
                                   {"WWW-Authenticate": 'Basic realm="tiny"'})
        if kind == "manifests":
            return self._manifest(repo, ref)
        if kind == "blobs":
            return self._blob(repo, ref)
        self._error(404, "NAME_UNKNOWN", "repository name not known to registry")

    def _token(self, query: dict, auth: str | None) -> None:
        if query.get("service") != ["tiny"] or query.get("scope") != ["repository:private/img:pull"]:
            return self._send(400, b'{"details":"expected service=tiny and one scope '
                                   b'repository:private/img:pull"}')
        if auth is not None and auth != "Basic " + base64.b64encode(
                f"{TOKEN_USER}:{TOKEN_PASSWORD}".encode()).decode():
            return self._send(401, b'{"details":"bad credentials"}')
        self.server.tokens_issued += 1
        self._send(200, json.dumps({"token": "tok-" + query["scope"][0],
                                    "expires_in": 300}).encode(), {"Content-Type": "application/json"})

    def _manifest(self, repo: str, ref: str) -> None:
        accept = self.headers.get("Accept", "")
        docs = {"latest": (INDEX, OCI_INDEX), sha256(INDEX): (INDEX, OCI_INDEX),
                sha256(MANIFEST): (MANIFEST, DOCKER_MANIFEST)}
        if ref not in docs:
            return self._error(404, "MANIFEST_UNKNOWN", "manifest unknown")
        body, media_type = docs[ref]
        if media_type not in accept:          # what registry 2.8 does for OCI content
            return self._error(404, "MANIFEST_UNKNOWN", "manifest unknown")
        digest = sha256(body)
        if repo == "lab/liar":
            body = body.replace(b'"schemaVersion": 2', b'"schemaVersion":  2')
        self._send(200, body, {"Content-Type": media_type, "Docker-Content-Digest": digest})

    def _blob(self, repo: str, digest: str) -> None:
        if digest != sha256(BLOB):
            return self._error(404, "BLOB_UNKNOWN", "blob unknown to registry")
        if repo == "lab/liar":
            return self._send(200, BLOB[:-1] + b"!")
        if repo == "lab/short":
            return self._send(200, BLOB[:1000])
        self._send(200, BLOB)


@pytest.fixture
def registry():
    server = TinyRegistry()
    try:
        yield server
    finally:
        server.close()


# --- one exercise at a time ----------------------------------------------------------------

@checkpoint("cp06", points=2, hint="split_domain: the first component is a registry host only if "
            "it contains '.' or ':' or is 'localhost'; otherwise the domain is docker.io, where a "
            "one-component name gets 'library/' in front; index.docker.io means docker.io")
def test_split_domain():
    split = module("reference").split_domain
    cases = {
        "busybox": ("docker.io", "library/busybox"),
        "myuser/tool": ("docker.io", "myuser/tool"),
        "library/busybox": ("docker.io", "library/busybox"),
        "docker.io/busybox": ("docker.io", "library/busybox"),
        "index.docker.io/busybox": ("docker.io", "library/busybox"),
        "127.0.0.1:5000/lab/hello": ("127.0.0.1:5000", "lab/hello"),
        "localhost/x": ("localhost", "x"),
        "ghcr.io/owner/tool": ("ghcr.io", "owner/tool"),
        "a/b/c": ("docker.io", "a/b/c"),
    }
    for name, expected in cases.items():
        assert split(name) == expected, f"split_domain({name!r})"
    # and through the whole parser, as dockerd uses it
    ref = module("reference").parse_reference("busybox")
    assert (ref.domain, ref.path, ref.tag) == ("docker.io", "library/busybox", None)


def _entry(digest: str, os_: str, arch: str, variant: str | None = None, **extra) -> dict:
    platform = {"os": os_, "architecture": arch}
    if variant:
        platform["variant"] = variant
    return {"mediaType": DOCKER_MANIFEST, "digest": digest, "size": 1, "platform": platform, **extra}


@checkpoint("cp06", points=2, hint="select_manifest: skip attestation entries (platform "
            "unknown/unknown, annotation vnd.docker.reference.type), return the first entry whose "
            "platform matches() the wanted one (the host's when None), else raise LookupError "
            "naming the platform")
def test_select_manifest():
    platforms = module("platforms")
    attestation = _entry("sha256:" + "a" * 64, "unknown", "unknown",
                         annotations={"vnd.docker.reference.type": "attestation-manifest",
                                      "vnd.docker.reference.digest": "sha256:" + "1" * 64})
    index = {"manifests": [
        attestation,
        _entry("sha256:" + "1" * 64, "linux", "amd64"),
        _entry("sha256:" + "2" * 64, "linux", "arm", "v7"),
        _entry("sha256:" + "3" * 64, "linux", "arm64", "v8"),
        _entry("sha256:" + "4" * 64, "windows", "amd64"),
    ]}
    pick = platforms.select_manifest
    assert pick(index, {"os": "linux", "architecture": "amd64"})["digest"] == "sha256:" + "1" * 64
    assert pick(index, {"os": "linux", "architecture": "arm64"})["digest"] == "sha256:" + "3" * 64
    assert pick(index, {"os": "windows", "architecture": "amd64"})["digest"] == "sha256:" + "4" * 64
    # an attestation listed first must not be chosen, even for a platform it could "match"
    assert pick({"manifests": [dict(attestation, platform={"os": "linux", "architecture": "amd64"}),
                               index["manifests"][1]]},
                {"os": "linux", "architecture": "amd64"})["digest"] == "sha256:" + "1" * 64
    # arm64 entries often omit the variant: v8 is implied
    assert pick({"manifests": [_entry("sha256:" + "5" * 64, "linux", "arm64")]},
                {"os": "linux", "architecture": "arm64", "variant": "v8"})["digest"] == "sha256:" + "5" * 64
    # the host's platform by default
    host = platforms.host_platform()
    mine = _entry("sha256:" + "6" * 64, host["os"], host["architecture"], host.get("variant"))
    assert pick({"manifests": [index["manifests"][4], mine]})["digest"] == "sha256:" + "6" * 64
    with pytest.raises(LookupError, match="linux/s390x"):
        pick(index, {"os": "linux", "architecture": "s390x"})
    with pytest.raises(LookupError):
        pick({"manifests": [attestation]}, {"os": "unknown", "architecture": "unknown"})


@checkpoint("cp06", points=1, hint="chain_ids: chainID[0] = diffID[0]; chainID[n] = 'sha256:' + "
            "sha256hex(chainID[n-1] + ' ' + diffID[n]) (image-spec config.md); a diff id that is "
            "not 'algorithm:hex' is a ValueError")
def test_chain_ids():
    chain_ids = module("layers").chain_ids
    a, b, c = (sha256(x) for x in (b"a", b"b", b"c"))
    ab = sha256(f"{a} {b}".encode())
    assert chain_ids([]) == []
    assert chain_ids([a]) == [a]
    assert chain_ids([a, b]) == [a, ab]
    assert chain_ids([a, b, c]) == [a, ab, sha256(f"{ab} {c}".encode())]
    assert chain_ids([b, a])[1] != ab, "the order of the layers matters"
    with pytest.raises(ValueError):
        chain_ids([a, "not-a-digest"])


@checkpoint("cp06", points=3, hint="resolve: GET /v2/<repo>/manifests/<tag|digest> with Accept "
            "listing every manifest type (mediatypes.MANIFEST_ACCEPT); return ({mediaType, digest, "
            "size}, the exact raw bytes); the digest asked for, or Docker-Content-Digest, must "
            "equal sha256 of the bytes, else DigestMismatch; a 404 is RegistryError MANIFEST_UNKNOWN")
def test_resolve(registry):
    client_mod = module("client")
    client = client_mod.RegistryClient(registry.url)
    desc, raw = client.resolve("lab/img", "latest")
    assert raw == INDEX, "the index's exact bytes"
    assert desc == {"mediaType": OCI_INDEX, "digest": sha256(INDEX), "size": len(INDEX)}
    desc, raw = client.resolve("lab/img", sha256(MANIFEST))
    assert raw == MANIFEST, "the manifest's exact bytes (never re-serialized: that changes the digest)"
    assert desc == {"mediaType": DOCKER_MANIFEST, "digest": sha256(MANIFEST), "size": len(MANIFEST)}
    with pytest.raises(client_mod.DigestMismatch):
        client.resolve("lab/liar", "latest")          # Docker-Content-Digest is not the body's
    with pytest.raises(client_mod.DigestMismatch):
        client.resolve("lab/liar", sha256(MANIFEST))  # the digest we asked for is not the body's
    with pytest.raises(client_mod.RegistryError) as info:
        client.resolve("lab/img", "nope")
    assert info.value.code == "MANIFEST_UNKNOWN" and info.value.status == 404


@checkpoint("cp06", points=3, hint="fetch_blob: read the answer in chunks, hash each chunk and write "
            "it to `out` as it arrives (a layer may be bigger than memory), call progress(bytes so "
            "far); fewer bytes than the descriptor's size is TruncatedBlob, a wrong sha256 is "
            "DigestMismatch(digest, actual, 'blob')")
def test_fetch_blob(registry):
    client_mod = module("client")
    client = client_mod.RegistryClient(registry.url)
    desc = {"digest": sha256(BLOB), "size": len(BLOB)}
    out, seen = io.BytesIO(), []
    client.fetch_blob("lab/img", desc, out, seen.append)
    assert out.getvalue() == BLOB
    assert seen and seen[-1] == len(BLOB) and seen == sorted(seen), f"progress calls: {seen[:5]}…"
    assert len(seen) > 1, "progress is reported while the blob streams, not once at the end"

    with pytest.raises(client_mod.DigestMismatch) as info:
        client.fetch_blob("lab/liar", desc, io.BytesIO())
    assert info.value.expected == sha256(BLOB) and info.value.actual != sha256(BLOB)
    with pytest.raises(client_mod.TruncatedBlob) as cut:
        client.fetch_blob("lab/short", desc, io.BytesIO())
    assert (cut.value.received, cut.value.size) == (1000, len(BLOB))
    with pytest.raises(client_mod.RegistryError) as info:
        client.fetch_blob("lab/img", {"digest": sha256(b"other"), "size": 5}, io.BytesIO())
    assert info.value.code == "BLOB_UNKNOWN"


@checkpoint("cp06", points=3, hint="_authenticate: parse the WWW-Authenticate challenge; Basic -> "
            "self._basic = True (needs self.username); Bearer -> GET auth.token_url(challenge, "
            "scope) (with Basic credentials if you have them), store auth.parse_token_response() in "
            "self._tokens[scope]; a refusal is RegistryError UNAUTHORIZED")
def test_token_dance(registry):
    client_mod = module("client")
    client = client_mod.RegistryClient(registry.url)
    desc, raw = client.resolve("private/img", "latest")
    assert raw == INDEX
    token_requests = [p for m, p, a in registry.log if p.startswith("/token")]
    assert len(token_requests) == 1, registry.log
    out = io.BytesIO()
    client.fetch_blob("private/img", {"digest": sha256(BLOB), "size": len(BLOB)}, out)
    assert out.getvalue() == BLOB
    assert registry.tokens_issued == 1, "the token is kept for its scope and used again"
    # credentials go to the token server
    assert client_mod.RegistryClient(registry.url, username=TOKEN_USER, password=TOKEN_PASSWORD) \
        .resolve("private/img", "latest")[1] == INDEX
    with pytest.raises(client_mod.RegistryError) as info:
        client_mod.RegistryClient(registry.url, username=TOKEN_USER, password="wrong") \
            .resolve("private/img", "latest")
    assert info.value.code == "UNAUTHORIZED"
    # Basic: the registry itself wants the password
    assert client_mod.RegistryClient(registry.url, username=TOKEN_USER, password=TOKEN_PASSWORD) \
        .resolve("basic/img", "latest")[1] == INDEX
    with pytest.raises(client_mod.RegistryError) as info:
        client_mod.RegistryClient(registry.url).resolve("basic/img", "latest")
    assert info.value.code == "UNAUTHORIZED"


# --- the proof: docker pull through your registry client ------------------------------------

@checkpoint("cp06", points=4, hint="labkit-containerd pulls with your distribution package (and "
            "labkit-dockerd parses names with it): `docker pull busybox` must resolve "
            "docker.io/library/busybox on the lab's registry (a mirror), pick this machine's "
            "manifest from the index, fetch and verify every blob; then `docker run --rm busybox "
            "echo …` must work (the docker error names the function that is not done yet)")
@pytest.mark.root
def test_docker_pull_through_your_distribution(private_lab):
    import shutil
    import subprocess

    docker = shutil.which("docker")
    assert docker, "no docker CLI on PATH (vagrant/setup.sh installs Debian's docker.io)"
    with private_lab() as env:
        pull = subprocess.run([docker, "pull", "busybox"], env=env, capture_output=True,
                              text=True, timeout=120)
        assert pull.returncode == 0, _docker_error(pull.stderr or pull.stdout)
        assert "docker.io/library/busybox:latest" in pull.stdout, pull.stdout
        run = subprocess.run([docker, "run", "--rm", "busybox", "echo", "cp06-proof"], env=env,
                             capture_output=True, text=True, timeout=120)
        assert (run.returncode, run.stdout) == (0, "cp06-proof\n"), _docker_error(run.stderr)


def _docker_error(stderr: str) -> str:
    """The line of docker's error that says what failed (the rest is the pull's progress)."""
    lines = [line for line in stderr.splitlines() if "rror" in line]
    return lines[-1] if lines else stderr.strip()[-500:]
