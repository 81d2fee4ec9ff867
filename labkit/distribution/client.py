"""The registry client: the OCI distribution API from the pulling and pushing side.

Theory of operation. A registry is a content-addressed blob store with names on top, spoken
over plain HTTP (the OCI distribution spec; INTERFACES §3):

    pull busybox:latest
      GET  /v2/library/busybox/manifests/latest      Accept: index, list, manifests
           -> an index: pick linux/amd64 (platforms.select_manifest), GET it by digest
           -> a manifest: config + layers, each a descriptor {mediaType, digest, size}
      GET  /v2/library/busybox/blobs/<digest>        for the config and each layer
           (may be a 307 to a CDN: follow it, but not with our Authorization header)

    push
      HEAD /v2/<name>/blobs/<digest>                 200: already there, skip
      POST /v2/<name>/blobs/uploads/                 202 + Location: an upload session
      PATCH <Location>   (bytes start-end)           202 + a NEW Location, each time
      PUT   <Location>&digest=<digest>               201: verified and committed
      PUT  /v2/<name>/manifests/<tag>                201 + Docker-Content-Digest

Every byte that comes back is checked against the digest it was asked for: a digest is a
promise about content, and the client, not the registry, is the one who must keep it.

Authentication is reactive, as in containerd: send the request; on 401 read the challenge
(labkit.distribution.auth), get a Bearer token for the repository's scope or use Basic
credentials, and send it again. One HTTP connection per request keeps the code simple and
thread-safe (containerd pulls layers in parallel); `http.client` is all it needs.

    >>> c = RegistryClient("http://127.0.0.1:5000")
    >>> desc, raw = c.resolve("library/busybox", "latest")
    >>> desc["mediaType"], desc["digest"]
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import ssl
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Protocol

from . import auth, mediatypes
from .errors import (DigestMismatch, RegistryError, RegistryUnavailable, TruncatedBlob,
                     parse_error)
from .reference import DIGEST_RE, TAG_RE, validate_repository

__all__ = ["RegistryClient", "Registry", "RegistryError", "DigestMismatch", "RegistryUnavailable",
           "TruncatedBlob", "endpoint_for_domain"]

_REDIRECTS = (301, 302, 303, 307, 308)
_MAX_REDIRECTS = 10
_READ_SIZE = 256 << 10      # a blob streams in chunks this big: progress, bounded memory
_LINK_NEXT_RE = re.compile(r'<([^>]+)>\s*;\s*rel="?next"?')


class Registry(Protocol):
    """What labkit's other layers need from a registry (this client, or a student's)."""

    def resolve(self, repository: str, reference: str) -> tuple[dict, bytes]: ...
    def fetch_blob(self, repository: str, descriptor: dict, out: BinaryIO,
                   progress: Callable[[int], None] | None = None) -> None: ...
    def blob_exists(self, repository: str, digest: str) -> bool: ...
    def push_blob(self, repository: str, data_or_path: bytes | str | os.PathLike, digest: str) -> None: ...
    def push_manifest(self, repository: str, reference: str, raw: bytes, media_type: str) -> str: ...
    def tags(self, repository: str) -> list[str]: ...


def endpoint_for_domain(domain: str) -> str:
    """The base URL for a reference's domain: Docker Hub's API host, plain HTTP for loopback.

    Docker treats localhost and 127.0.0.0/8 as insecure registries by default (HTTP);
    everything else is HTTPS. "docker.io" is a name, not a host: its API is registry-1.
    """
    if domain in ("docker.io", "index.docker.io"):
        return "https://registry-1.docker.io"
    host = domain.rsplit(":", 1)[0] if not domain.endswith("]") else domain
    if host in ("localhost", "[::1]") or host.startswith("127."):
        return f"http://{domain}"
    return f"https://{domain}"


@dataclass
class _Reply:
    """A finished HTTP exchange: status, headers and the whole body."""
    status: int
    reason: str
    headers: http.client.HTTPMessage
    body: bytes
    url: str

    def header(self, name: str, default: str = "") -> str:
        return self.headers.get(name, default) or default


def _hasher(digest: str):
    algorithm = digest.partition(":")[0]
    if algorithm not in ("sha256", "sha384", "sha512"):
        raise ValueError(f"unsupported digest algorithm in {digest!r}")
    return hashlib.new(algorithm)


def _check_digest(digest: str) -> str:
    if not isinstance(digest, str) or not DIGEST_RE.fullmatch(digest):
        raise ValueError(f"invalid digest {digest!r}: expected \"sha256:<hex>\"")
    return digest


class RegistryClient:
    """A client for one registry endpoint ("http://127.0.0.1:5000", "https://registry-1.docker.io").

    A bare address ("127.0.0.1:5000", "docker.io") is turned into a URL by
    endpoint_for_domain(). Credentials come as username/password, or as `auth_config`: a
    docker config.json document or one AuthConfig (auth.credentials_for picks this host's).
    Bad arguments raise ValueError; registry answers raise RegistryError (DigestMismatch for
    content that fails verification, TruncatedBlob for a download cut short); an unreachable
    registry raises RegistryUnavailable, a ConnectionError naming the endpoint.
    """

    # Uploads go in PATCH chunks of this size (a class attribute so tests can make it small).
    chunk_size = 16 << 20

    def __init__(self, endpoint: str, *, username: str | None = None,
                 password: str | None = None, timeout: float = 30,
                 auth_config: dict | None = None):
        if "://" not in endpoint:
            endpoint = endpoint_for_domain(endpoint)
        parts = urllib.parse.urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"invalid registry endpoint {endpoint!r}: "
                             "expected http://host[:port] or https://host[:port]")
        self.endpoint = f"{parts.scheme}://{parts.netloc}"
        if username is None and auth_config:
            # a docker config.json ({"auths": {host: {"auth": base64(user:password)}}}) or one
            # AuthConfig ({"username", "password"}), as the docker CLI sends in X-Registry-Auth
            username, password = auth.credentials_for(auth_config, parts.netloc) or (None, None)
        self.username = username
        self.password = password
        self.timeout = timeout
        self._tokens: dict[str, auth.Token] = {}   # scope -> bearer token
        self._basic = False                        # the registry asked for Basic auth

    def __repr__(self) -> str:
        return f"RegistryClient({self.endpoint!r})"

    # ------------------------------------------------------------------ pull

    def resolve(self, repository: str, reference: str) -> tuple[dict, bytes]:
        """GET a manifest (or index) by tag or digest: (descriptor, exact raw bytes).

        The descriptor is {"mediaType", "digest", "size"} of the bytes received. The digest is
        verified when we asked for one, and when the registry claims one in
        Docker-Content-Digest; the raw bytes must be kept as they are, since re-serializing
        JSON would change the digest.
        """
        repository = validate_repository(repository)
        by_digest = DIGEST_RE.fullmatch(reference or "") is not None
        if not by_digest and not TAG_RE.fullmatch(reference or ""):
            raise ValueError(f"invalid manifest reference {reference!r}: expected a tag or a digest")
        # BEGIN SOLUTION chapter="06" hint="distribution-spec: pulling manifests; INTERFACES §3.1"
        # TODO: GET /v2/<repository>/manifests/<reference> and return (descriptor, raw bytes)
        # HINT: self._request(method, path, repository, headers=…) does auth and redirects; send
        # HINT: Accept: every type in mediatypes.MANIFEST_ACCEPT, or registry 2.8 answers schema 1
        # HINT: not 200: raise self._error(reply, "MANIFEST_UNKNOWN"); check the digest you asked
        # HINT: for (or Docker-Content-Digest) against the bytes, raising DigestMismatch
        reply = self._request("GET", f"/v2/{repository}/manifests/{reference}", repository,
                              headers={"Accept": ", ".join(mediatypes.MANIFEST_ACCEPT)})
        if reply.status != 200:
            raise self._error(reply, "MANIFEST_UNKNOWN")
        raw = reply.body
        claimed = reply.header("Docker-Content-Digest")
        expected = reference if by_digest else claimed
        if expected:
            hasher = _hasher(expected)
            hasher.update(raw)
            actual = f"{expected.partition(':')[0]}:{hasher.hexdigest()}"
            if actual != expected:
                raise DigestMismatch(expected, actual, "manifest")
            digest = expected
        else:
            digest = "sha256:" + hashlib.sha256(raw).hexdigest()
        media_type = reply.header("Content-Type").partition(";")[0].strip()
        if media_type not in mediatypes.INDEX_TYPES | mediatypes.MANIFEST_TYPES:
            # Some registries answer application/json or octet-stream; the document says.
            try:
                media_type = json.loads(raw).get("mediaType") or media_type
            except (ValueError, AttributeError):
                pass
        return {"mediaType": media_type, "digest": digest, "size": len(raw)}, raw
        # END SOLUTION

    def fetch_blob(self, repository: str, descriptor: dict, out: BinaryIO,
                   progress: Callable[[int], None] | None = None) -> None:
        """Stream a blob into `out`, verifying its size and digest while it arrives.

        `progress(n)` is called after each chunk with the bytes received so far. On a
        mismatch DigestMismatch is raised, on a download cut short TruncatedBlob, and `out`
        then holds untrusted data: discard it (a content store's writer does).
        """
        repository = validate_repository(repository)
        digest = _check_digest(descriptor.get("digest", ""))
        size = descriptor.get("size")
        conn, resp = self._open("GET", f"/v2/{repository}/blobs/{digest}", repository)
        received = 0
        try:
            if resp.status != 200:
                error = self._error(self._finish(resp, self.endpoint), "BLOB_UNKNOWN")
                raise RegistryError(error.code, f"blob {digest}: {error.message}",
                                    error.status, error.detail)
            # BEGIN SOLUTION chapter="06" hint="hashlib: update() chunk by chunk; image-spec descriptor.md"
            # TODO: copy resp to out in chunks, hashing as you go; then check size and digest
            # HINT: _hasher(digest) gives the hash object; resp.read(n) returns b"" at the end
            # HINT: never read past `size` (a bad server could stream forever); fewer bytes
            # HINT: than `size` is TruncatedBlob(digest, received, size), a wrong hash is
            # HINT: DigestMismatch(digest, actual, "blob"); call progress(received) per chunk
            hasher = _hasher(digest)
            while True:
                limit = _READ_SIZE if size is None else min(_READ_SIZE, size - received + 1)
                chunk = resp.read(limit) if limit > 0 else b""
                if not chunk:
                    break
                received += len(chunk)
                if size is not None and received > size:
                    raise DigestMismatch(f"{size} bytes", f"more than {size} bytes",
                                         f"blob {digest} size")
                hasher.update(chunk)
                out.write(chunk)
                if progress:
                    progress(received)
            if size is not None and received < size:
                raise TruncatedBlob(digest, received, size)
            actual = f"{digest.partition(':')[0]}:{hasher.hexdigest()}"
            if actual != digest:
                raise DigestMismatch(digest, actual, "blob")
            # END SOLUTION
        except http.client.IncompleteRead as e:
            # the server promised more (Content-Length) than it sent before closing
            raise TruncatedBlob(digest, received + len(e.partial),
                                size if size is not None else received + len(e.partial) +
                                (e.expected or 0)) from None
        except (OSError, http.client.HTTPException) as e:
            raise RegistryUnavailable(f"registry {self.endpoint}: download of {digest} "
                                      f"failed: {e}") from e
        finally:
            conn.close()

    def blob_exists(self, repository: str, digest: str) -> bool:
        """HEAD a blob: is it already in this repository?"""
        repository = validate_repository(repository)
        reply = self._request("HEAD", f"/v2/{repository}/blobs/{_check_digest(digest)}",
                              repository, push=True)
        if reply.status == 200:
            return True
        if reply.status == 404:
            return False
        raise self._error(reply, "BLOB_UNKNOWN")

    def tags(self, repository: str) -> list[str]:
        """The repository's tags (following `Link: <...>; rel="next"` pagination)."""
        repository = validate_repository(repository)
        result: list[str] = []
        path = f"/v2/{repository}/tags/list"
        for _ in range(1000):
            reply = self._request("GET", path, repository)
            if reply.status != 200:
                raise self._error(reply, "NAME_UNKNOWN")
            result.extend(self._json(reply).get("tags") or [])
            m = _LINK_NEXT_RE.search(reply.header("Link"))
            if not m:
                break
            path = m.group(1)
        return result

    def catalog(self) -> list[str]:
        """Every repository name in the registry (GET /v2/_catalog; Docker Hub refuses it)."""
        reply = self._request("GET", "/v2/_catalog", None)
        if reply.status != 200:
            raise self._error(reply, "UNSUPPORTED")
        return list(self._json(reply).get("repositories") or [])

    # ------------------------------------------------------------------ push

    def push_blob(self, repository: str, data_or_path: bytes | str | os.PathLike, digest: str) -> None:
        """Upload a blob (bytes, or a file's path) unless the registry already has it."""
        repository = validate_repository(repository)
        _check_digest(digest)
        if self.blob_exists(repository, digest):
            return
        if isinstance(data_or_path, (bytes, bytearray, memoryview)):
            self._upload(repository, _BytesSource(bytes(data_or_path)), digest)
        else:
            path = Path(data_or_path)
            try:
                with open(path, "rb") as f:
                    self._upload(repository, _FileSource(f, os.fstat(f.fileno()).st_size), digest)
            except FileNotFoundError:
                raise FileNotFoundError(f"blob to push not found: {path}") from None

    def _upload(self, repository: str, source: "_BytesSource | _FileSource", digest: str) -> None:
        # 1. open an upload session
        reply = self._request("POST", f"/v2/{repository}/blobs/uploads/", repository,
                              push=True, body=b"")
        if reply.status == 201:        # some registries commit immediately (nothing to send)
            return
        if reply.status != 202:
            raise self._error(reply, "BLOB_UPLOAD_INVALID")
        location = self._location(reply)
        # 2. send the bytes in chunks; each answer carries the Location to use next
        offset = 0
        while offset < source.size:
            chunk = source.read(offset, self.chunk_size)
            end = offset + len(chunk) - 1
            reply = self._request("PATCH", location, repository, push=True, body=chunk,
                                  headers={"Content-Type": "application/octet-stream",
                                           "Content-Range": f"{offset}-{end}"})
            if reply.status != 202:
                raise self._error(reply, "BLOB_UPLOAD_INVALID")
            location = self._location(reply)
            offset = end + 1
        # 3. close the session, naming the digest the registry must verify
        sep = "&" if "?" in location else "?"
        reply = self._request("PUT", f"{location}{sep}digest={urllib.parse.quote(digest)}",
                              repository, push=True, body=b"",
                              headers={"Content-Type": "application/octet-stream"})
        if reply.status not in (201, 204):
            raise self._error(reply, "BLOB_UPLOAD_INVALID")

    def push_manifest(self, repository: str, reference: str, raw: bytes, media_type: str) -> str:
        """PUT a manifest or index under a tag (or its digest); returns its digest.

        Push the blobs it references (and, for an index, its manifests) first: the registry
        refuses a manifest whose blobs it does not have (MANIFEST_BLOB_UNKNOWN).
        """
        repository = validate_repository(repository)
        if not DIGEST_RE.fullmatch(reference or "") and not TAG_RE.fullmatch(reference or ""):
            raise ValueError(f"invalid manifest reference {reference!r}: expected a tag or a digest")
        computed = "sha256:" + hashlib.sha256(raw).hexdigest()
        reply = self._request("PUT", f"/v2/{repository}/manifests/{reference}", repository,
                              push=True, body=bytes(raw), headers={"Content-Type": media_type})
        if reply.status not in (200, 201):
            raise self._error(reply, "MANIFEST_INVALID")
        claimed = reply.header("Docker-Content-Digest")
        if claimed and claimed.startswith("sha256:") and claimed != computed:
            raise DigestMismatch(computed, claimed, "pushed manifest")
        return computed

    # ------------------------------------------------------------------ HTTP plumbing

    def _url(self, path_or_url: str) -> str:
        # Locations may be relative ("/v2/...") or absolute (another host): resolve both.
        return urllib.parse.urljoin(self.endpoint + "/", path_or_url)

    def _location(self, reply: _Reply) -> str:
        location = reply.header("Location")
        if not location:
            raise RegistryError("BLOB_UPLOAD_INVALID",
                                f"registry answered {reply.status} without a Location header",
                                reply.status)
        return urllib.parse.urljoin(reply.url, location)

    def _connect(self, url: str) -> tuple[http.client.HTTPConnection, str]:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme == "https":
            conn = http.client.HTTPSConnection(parts.netloc, timeout=self.timeout,
                                               context=ssl.create_default_context())
        elif parts.scheme == "http":
            conn = http.client.HTTPConnection(parts.netloc, timeout=self.timeout)
        else:
            raise RegistryError("UNSUPPORTED", f"cannot follow a redirect to {url!r}")
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        return conn, target

    def _auth_header(self, scope: str | None) -> str | None:
        if self._basic and self.username is not None:
            return auth.basic_header(self.username, self.password or "")
        token = self._tokens.get(scope or "")
        if token and not token.expired:
            return "Bearer " + token.value
        return None

    def _open(self, method: str, path_or_url: str, repository: str | None, *, push: bool = False,
              body: bytes | None = None, headers: dict | None = None
              ) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        """Send one request (authenticating on 401, following redirects); the caller reads
        the response and closes the connection."""
        scope = auth.scope_for(repository, push) if repository else "registry:catalog:*"
        for attempt in (1, 2):
            url = self._url(path_or_url)
            hdrs = {"User-Agent": "labkit", **(headers or {})}
            authorization = self._auth_header(scope)
            if authorization:
                hdrs["Authorization"] = authorization
            if body is not None:
                hdrs["Content-Length"] = str(len(body))
            conn, resp = self._send(method, url, hdrs, body)
            if resp.status == 401 and attempt == 1:
                challenge = resp.getheader("WWW-Authenticate", "")
                self._finish(resp, url)
                conn.close()
                self._authenticate(challenge, scope)
                continue
            return conn, resp
        raise AssertionError("unreachable")

    def _send(self, method: str, url: str, headers: dict, body: bytes | None
              ) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        """One request, following redirects for GET/HEAD (Docker Hub sends blobs to a CDN)."""
        origin = urllib.parse.urlsplit(url).netloc
        for _ in range(_MAX_REDIRECTS + 1):
            conn, target = self._connect(url)
            try:
                conn.request(method, target, body=body, headers=headers)
                resp = conn.getresponse()
            except (OSError, http.client.HTTPException) as e:
                conn.close()
                reason = getattr(e, "strerror", None) or str(e) or type(e).__name__
                raise RegistryUnavailable(
                    f"cannot reach registry {self.endpoint} ({method} {url}): {reason}") from e
            resp.url_ = url  # type: ignore[attr-defined]
            if resp.status in _REDIRECTS and method in ("GET", "HEAD") and resp.getheader("Location"):
                url = urllib.parse.urljoin(url, resp.getheader("Location"))
                resp.read()
                conn.close()
                # The CDN behind the redirect must not see our registry credentials.
                if urllib.parse.urlsplit(url).netloc != origin:
                    headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
                continue
            return conn, resp
        raise RegistryError("UNKNOWN", f"too many redirects fetching {url}")

    def _request(self, method: str, path_or_url: str, repository: str | None, *,
                 push: bool = False, body: bytes | None = None, headers: dict | None = None
                 ) -> _Reply:
        conn, resp = self._open(method, path_or_url, repository, push=push, body=body,
                                headers=headers)
        try:
            return self._finish(resp, getattr(resp, "url_", self.endpoint), method == "HEAD")
        except (OSError, http.client.HTTPException) as e:
            raise RegistryUnavailable(f"registry {self.endpoint}: reading the answer to "
                                      f"{method} {path_or_url} failed: {e}") from e
        finally:
            conn.close()

    @staticmethod
    def _finish(resp: http.client.HTTPResponse, url: str, head: bool = False) -> _Reply:
        body = b"" if head else resp.read()
        return _Reply(resp.status, resp.reason, resp.headers, body, url)

    def _authenticate(self, header: str, scope: str) -> None:
        """React to a 401: get a Bearer token for `scope`, or switch to Basic credentials.

        The token dance (distribution/docs/spec/auth/token.md):
            GET /v2/...                 -> 401  WWW-Authenticate: Bearer realm=R,service=S
            GET R?service=S&scope=repository:<name>:pull   (Basic credentials, if any)
                                        -> 200  {"token": T, "expires_in": 300}
            GET /v2/... Authorization: Bearer T  -> 200
        The caller (_open) sends the request again; _auth_header finds the token by scope.
        """
        if not header:
            raise RegistryError("UNAUTHORIZED", f"registry {self.endpoint} answered 401 "
                                "without a WWW-Authenticate challenge", 401)
        # BEGIN SOLUTION chapter="06" hint="distribution token.md; RFC 7235 (WWW-Authenticate)"
        # TODO: Basic: remember to send self.username/self.password (self._basic = True);
        # TODO: Bearer: ask the token server for `scope`, store the token in self._tokens[scope]
        # HINT: auth.parse_challenge(header) -> Challenge(scheme, params); auth.token_url(
        # HINT: challenge, scope) is the URL; self._send("GET", url, headers, None) -> (conn,
        # HINT: resp); auth.parse_token_response(body) -> Token; a refusal is RegistryError
        # HINT: ("UNAUTHORIZED", message naming the realm and scope, status)
        challenge = auth.parse_challenge(header)
        if challenge.scheme == "basic":
            if self.username is None:
                raise RegistryError("UNAUTHORIZED", f"registry {self.endpoint} requires a "
                                    "username and password (Basic authentication)", 401)
            self._basic = True
            return
        if challenge.scheme != "bearer":
            raise RegistryError("UNAUTHORIZED", f"unsupported authentication scheme "
                                f"{challenge.scheme!r} from {self.endpoint}", 401)
        headers = {"User-Agent": "labkit"}
        if self.username is not None:
            # the token server, not the registry, checks the password
            headers["Authorization"] = auth.basic_header(self.username, self.password or "")
        url = auth.token_url(challenge, scope)
        conn, resp = self._send("GET", url, headers, None)
        try:
            reply = self._finish(resp, url)
        finally:
            conn.close()
        if reply.status != 200:
            raise RegistryError("UNAUTHORIZED", f"token server {challenge.params.get('realm')} "
                                f"refused scope {scope!r} (HTTP {reply.status})", reply.status)
        try:
            self._tokens[scope] = auth.parse_token_response(reply.body)
        except ValueError as e:
            raise RegistryError("UNAUTHORIZED", f"token server {challenge.params.get('realm')}: "
                                f"{e}", reply.status) from None
        # END SOLUTION

    def _error(self, reply: _Reply, default_code: str) -> RegistryError:
        error = parse_error(reply.status, reply.body, default_code=default_code,
                            reason=reply.reason)
        if reply.status == 429:
            # Docker Hub's pull limit: say which registry, and when it lets us in again
            wait = reply.header("Retry-After")
            where = f"registry {self.endpoint}" + (f", retry after {wait} s" if wait else "")
            error = RegistryError(error.code, f"{error.message} ({where})", 429, error.detail)
        return error

    def _json(self, reply: _Reply) -> dict:
        try:
            doc = json.loads(reply.body)
        except ValueError:
            doc = None
        if not isinstance(doc, dict):
            raise RegistryError("UNKNOWN", f"registry {self.endpoint} answered {reply.url} "
                                "with something that is not a JSON object", reply.status)
        return doc


class _BytesSource:
    def __init__(self, data: bytes):
        self.data, self.size = data, len(data)

    def read(self, offset: int, n: int) -> bytes:
        return self.data[offset:offset + n]


class _FileSource:
    def __init__(self, f: BinaryIO, size: int):
        self.f, self.size = f, size

    def read(self, offset: int, n: int) -> bytes:
        self.f.seek(offset)
        return self.f.read(n)
