"""Authentication, redirects and digest checks, against a small stand-in for Docker Hub.

Docker Hub is out of reach here, so this server plays its part of the protocol
(INTERFACES §3.1): 401 + a Bearer challenge, a token endpoint, blobs answered with a 307 to
a "CDN" on another host name (localhost vs 127.0.0.1), which must not see our credentials.
It can also demand Basic credentials, or lie about digests.
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

from labkit.distribution import DigestMismatch, RegistryClient, RegistryError
from labkit.distribution import mediatypes as mt

LAYER = b"hub layer " * 300
LAYER_DIGEST = "sha256:" + hashlib.sha256(LAYER).hexdigest()
MANIFEST = json.dumps({"schemaVersion": 2, "mediaType": mt.DOCKER_MANIFEST,
                       "config": {"mediaType": mt.DOCKER_CONFIG, "digest": LAYER_DIGEST, "size": len(LAYER)},
                       "layers": []}).encode()
MANIFEST_DIGEST = "sha256:" + hashlib.sha256(MANIFEST).hexdigest()


class FakeHub(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, mode: str):
        super().__init__(("127.0.0.1", 0), HubHandler)
        self.mode = mode                 # "bearer", "basic", "lying-manifest", "lying-blob"
        self.log: list[tuple[str, str, str | None]] = []   # (method, path, Authorization)
        self.thread = threading.Thread(target=self.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return self.server_address[1]

    def close(self):
        self.shutdown()
        self.thread.join()
        self.server_close()


class HubHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: FakeHub

    def log_message(self, *args):
        pass

    def _send(self, status, body=b"", headers=None):
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_GET(self):
        auth = self.headers.get("Authorization")
        self.server.log.append((self.command, self.path, auth))
        url = urllib.parse.urlsplit(self.path)
        port = self.server.port
        if url.path == "/token":
            q = urllib.parse.parse_qs(url.query)
            if q.get("service") != ["fake-hub"]:
                return self._send(400, b'{"details":"wrong service"}')
            token = "tok:" + q["scope"][0]
            return self._send(200, json.dumps({"token": token, "expires_in": 300}).encode())
        if url.path.startswith("/cdn/"):
            data = LAYER if self.server.mode != "lying-blob" else LAYER[:-1] + b"!"
            return self._send(200, data)
        scope = "repository:library/busybox:pull"
        if self.server.mode == "basic":
            good = "Basic " + base64.b64encode(b"student:secret").decode()
            if auth != good:
                return self._send(401, b'{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}',
                                  {"WWW-Authenticate": 'Basic realm="fake-hub"'})
        elif auth != f"Bearer tok:{scope}":
            challenge = (f'Bearer realm="http://127.0.0.1:{port}/token",service="fake-hub",'
                         f'scope="{scope}"')
            return self._send(401, b'{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}',
                              {"WWW-Authenticate": challenge})
        if url.path == "/v2/library/busybox/manifests/latest":
            body = MANIFEST if self.server.mode != "lying-manifest" else MANIFEST + b" "
            return self._send(200, body, {"Content-Type": mt.DOCKER_MANIFEST,
                                          "Docker-Content-Digest": MANIFEST_DIGEST})
        if url.path == f"/v2/library/busybox/blobs/{LAYER_DIGEST}":
            # another host name for the same server: a different origin, like a CDN
            return self._send(307, b"", {"Location": f"http://localhost:{port}/cdn/{LAYER_DIGEST}"})
        self._send(404, b'{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}')


@pytest.fixture
def hub(request):
    server = FakeHub(request.param)
    try:
        yield server
    finally:
        server.close()


@pytest.mark.parametrize("hub", ["bearer"], indirect=True)
def test_bearer_token_flow_and_cdn_redirect(hub):
    client = RegistryClient(f"http://127.0.0.1:{hub.port}")
    desc, raw = client.resolve("library/busybox", "latest")
    assert raw == MANIFEST and desc == {"mediaType": mt.DOCKER_MANIFEST, "digest": MANIFEST_DIGEST,
                                        "size": len(MANIFEST)}
    out = io.BytesIO()
    client.fetch_blob("library/busybox", {"digest": LAYER_DIGEST, "size": len(LAYER)}, out)
    assert out.getvalue() == LAYER

    paths = [(m, p.split("?")[0], a) for m, p, a in hub.log]
    # 401 first, then the token, then the retry with the token
    assert paths[0] == ("GET", "/v2/library/busybox/manifests/latest", None)
    assert paths[1][1] == "/token" and "scope=repository%3Alibrary%2Fbusybox%3Apull" in hub.log[1][1]
    assert paths[2] == ("GET", "/v2/library/busybox/manifests/latest",
                        "Bearer tok:repository:library/busybox:pull")
    # the token is reused for the blob, and dropped on the cross-host redirect
    assert paths[3] == ("GET", f"/v2/library/busybox/blobs/{LAYER_DIGEST}",
                        "Bearer tok:repository:library/busybox:pull")
    assert paths[4] == ("GET", f"/cdn/{LAYER_DIGEST}", None)
    assert len(paths) == 5


@pytest.mark.parametrize("hub", ["basic"], indirect=True)
def test_basic_auth(hub):
    url = f"http://127.0.0.1:{hub.port}"
    with pytest.raises(RegistryError) as info:
        RegistryClient(url).resolve("library/busybox", "latest")
    assert info.value.code == "UNAUTHORIZED" and "username and password" in str(info.value)
    client = RegistryClient(url, username="student", password="secret")
    assert client.resolve("library/busybox", "latest")[1] == MANIFEST
    with pytest.raises(RegistryError) as info:
        RegistryClient(url, username="student", password="wrong").resolve("library/busybox", "latest")
    assert (info.value.code, info.value.status) == ("UNAUTHORIZED", 401)


@pytest.mark.parametrize("hub", ["lying-manifest"], indirect=True)
def test_manifest_not_matching_its_digest_is_refused(hub):
    with pytest.raises(DigestMismatch) as info:
        RegistryClient(f"http://127.0.0.1:{hub.port}").resolve("library/busybox", "latest")
    assert info.value.expected == MANIFEST_DIGEST


@pytest.mark.parametrize("hub", ["lying-blob"], indirect=True)
def test_blob_not_matching_its_digest_is_refused(hub):
    with pytest.raises(DigestMismatch) as info:
        RegistryClient(f"http://127.0.0.1:{hub.port}").fetch_blob(
            "library/busybox", {"digest": LAYER_DIGEST, "size": len(LAYER)}, io.BytesIO())
    assert info.value.expected == LAYER_DIGEST and info.value.code == "DIGEST_INVALID"


@pytest.mark.parametrize("hub", ["basic", "bearer"], indirect=True)
def test_credentials_from_a_docker_config(hub):
    """The caller passes a docker config.json (or one AuthConfig, as in X-Registry-Auth): the
    client takes this host's entry; Basic sends it to the registry, Bearer to the token server."""
    host = f"127.0.0.1:{hub.port}"
    encoded = base64.b64encode(b"student:secret").decode()
    config = {"auths": {"other.example:5000": {"auth": base64.b64encode(b"x:y").decode()},
                        f"http://{host}": {"auth": encoded}}}
    client = RegistryClient(f"http://{host}", auth_config=config)
    assert (client.username, client.password) == ("student", "secret")
    assert client.resolve("library/busybox", "latest")[1] == MANIFEST
    basic = "Basic " + encoded
    where = "/v2/" if hub.mode == "basic" else "/token"
    assert any(p.startswith(where) and a == basic for _, p, a in hub.log), hub.log
    one = RegistryClient(f"http://{host}", auth_config={"username": "student", "password": "secret"})
    assert one.resolve("library/busybox", "latest")[1] == MANIFEST
    assert RegistryClient(f"http://{host}", auth_config={"auths": {}}).username is None


def test_auth_config_entries():
    from labkit.distribution.auth import credentials_for
    hub = {"auths": {"https://index.docker.io/v1/": {"auth": base64.b64encode(b"u:p:q").decode()}}}
    assert credentials_for(hub, "registry-1.docker.io") == ("u", "p:q")   # ":" in a password
    assert credentials_for(hub, "127.0.0.1:5000") is None
    with pytest.raises(ValueError, match="base64 of user:password"):
        credentials_for({"auths": {"h": {"auth": base64.b64encode(b"nocolon").decode()}}}, "h")
