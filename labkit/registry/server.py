"""labkit-registry's HTTP side: the OCI distribution API as a route table.

Theory of operation. A registry is a small REST API over a content-addressed store
(storage.py). Every route is (method, path pattern) -> a thin handler that decodes the
request, calls Storage, and encodes the answer; errors are Storage's codes turned into the
spec's JSON ({"errors": [{"code", "message", "detail"}]}) with the code's usual status.

    GET    /v2/                                       200 {}: "I speak registry/2.0"
    GET    /v2/_catalog                               repositories
    GET    /v2/<name>/tags/list                       tags
    GET    /v2/<name>/manifests/<tag|digest>          exact bytes + Content-Type + Docker-Content-Digest
    HEAD   (same)                                     headers only
    PUT    /v2/<name>/manifests/<tag|digest>          store, after checking its blobs exist
    DELETE /v2/<name>/manifests/<tag|digest>
    GET    /v2/<name>/blobs/<digest>                  the blob (Range: bytes=a-b honoured)
    HEAD   (same)
    POST   /v2/<name>/blobs/uploads/                  start an upload: 202 + Location
           ...?digest=<d> with a body                 monolithic upload: 201
           ...?mount=<d>&from=<other>                 cross-repository mount: 201 (or 202)
    PATCH  /v2/<name>/blobs/uploads/<uuid>?_state=    append a chunk: 202 + a new Location
    PUT    /v2/<name>/blobs/uploads/<uuid>?digest=    (last chunk and) commit: 201 or 400 DIGEST_INVALID
    GET    /v2/<name>/blobs/uploads/<uuid>            progress: 204 + Range
    DELETE /v2/<name>/blobs/uploads/<uuid>            cancel

`<name>` may contain slashes (library/busybox), so the patterns use the reference grammar's
path regular expression. Upload Locations carry a `_state` token recording how many bytes
the registry has; it changes with every chunk, so a client must always use the newest one
(Docker's registry also signs it with a secret; ours is readable, for teaching).

Every answer carries `Docker-Distribution-Api-Version: registry/2.0`; clients check for it on
/v2/. Each request is logged to stderr as one line.
"""

from __future__ import annotations

import base64
import json
import re
import socket
import sys
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import BinaryIO, Callable, TextIO
from urllib.parse import parse_qs, quote, urlsplit

from labkit.distribution import mediatypes
from labkit.distribution.errors import ERROR_CODES, error_body
from labkit.distribution.reference import DIGEST_RE, PATH_RE

from .storage import Storage, StorageError

API_VERSION_HEADER = ("Docker-Distribution-Api-Version", "registry/2.0")
MAX_MANIFEST_SIZE = 4 << 20     # Docker's registry refuses larger manifests too

_NAME = rf"(?P<name>{PATH_RE.pattern})"
# a route with a name the grammar refuses ("Bad/Name"): answered NAME_INVALID, not 404
_LOOSE_NAME_RE = re.compile(r"/v2/(.+?)/(?:tags/list|manifests/[^/]+|blobs/.+)")


class ChunkedReader:
    """Reads an HTTP/1.1 `Transfer-Encoding: chunked` request body (RFC 9112 §7.1).

    The docker CLI and skopeo stream layer uploads this way: they do not know the length in
    advance. Each chunk is "<hex size>\\r\\n<bytes>\\r\\n"; a zero-size chunk ends the body.
    """

    def __init__(self, raw: BinaryIO):
        self.raw, self.left, self.done = raw, 0, False

    def read(self, n: int = -1) -> bytes:
        out = bytearray()
        while not self.done and (n < 0 or len(out) < n):
            if self.left == 0:
                line = self.raw.readline(1024)
                try:
                    self.left = int(line.split(b";")[0].strip(), 16)
                except ValueError:
                    raise StorageError("BLOB_UPLOAD_INVALID", "malformed chunked request body") from None
                if self.left == 0:
                    while self.raw.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass      # trailers: ignored
                    self.done = True
                    break
            want = self.left if n < 0 else min(self.left, n - len(out))
            data = self.raw.read(want)
            if not data:
                raise StorageError("BLOB_UPLOAD_INVALID", "request body ended in the middle of a chunk")
            out += data
            self.left -= len(data)
            if self.left == 0:
                self.raw.readline(16)   # the CRLF after the chunk's data
        return bytes(out)


class _LimitedReader:
    """Reads exactly Content-Length bytes, so the connection can carry the next request."""

    def __init__(self, raw: BinaryIO, length: int):
        self.raw, self.left = raw, length

    def read(self, n: int = -1) -> bytes:
        if self.left <= 0:
            return b""
        data = self.raw.read(self.left if n < 0 else min(n, self.left))
        self.left -= len(data)
        return data


def _state_token(name: str, upload_id: str, offset: int) -> str:
    raw = json.dumps({"name": name, "uuid": upload_id, "offset": offset}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _read_state(token: str) -> dict:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        state = json.loads(raw)
        if not isinstance(state, dict):
            raise ValueError
        return state
    except ValueError:
        raise StorageError("BLOB_UPLOAD_INVALID", "invalid _state token in the upload URL") from None


class RegistryHandler(BaseHTTPRequestHandler):
    """One HTTP connection; `self.server.storage` is the Storage."""

    protocol_version = "HTTP/1.1"   # keep-alive: clients push many blobs on one connection
    server_version = "labkit-registry"
    server: "RegistryServer"

    # ---------------------------------------------------------------- dispatch
    def _dispatch(self) -> None:
        started = time.monotonic()
        self._status, self._sent, self._body_read = 0, 0, False
        parts = urlsplit(self.path)
        self.query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        try:
            handler, params = self._route(self.command, parts.path)
            handler(self, **params)
        except StorageError as e:
            self._error(e.code, e.message, e.detail)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as e:   # a bug: answer 500 rather than drop the connection
            traceback.print_exc(file=sys.stderr)
            self._error("UNKNOWN", f"internal error: {type(e).__name__}: {e}")
        finally:
            if not self._body_read and self._request_has_body():
                # We answered without reading the body: the stream is out of step now.
                self.close_connection = True
            took = time.monotonic() - started
            if self.server.log is not None:
                self.server.log.write(f"{self.client_address[0]} \"{self.command} {self.path}\" "
                                      f"{self._status} {self._sent} {took:.3f}s\n")
                self.server.log.flush()

    do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _dispatch

    def _route(self, method: str, path: str) -> tuple[Callable, dict]:
        allowed = False
        for methods, pattern, handler in ROUTES:
            m = pattern.fullmatch(path)
            if m:
                if method in methods:
                    return handler, m.groupdict()
                allowed = True
        if allowed:
            raise StorageError("UNSUPPORTED", f"method {method} is not allowed on {path}")
        m = _LOOSE_NAME_RE.fullmatch(path)
        if m:
            raise StorageError("NAME_INVALID", f"invalid repository name {m.group(1)!r}")
        raise StorageError("NOT_FOUND", f"no such endpoint: {path}")

    # An idle keep-alive connection is dropped after this many seconds, freeing its thread.
    timeout = 120

    def log_request(self, code="-", size="-") -> None:
        pass   # _dispatch logs one line per request, with the status and size we sent

    def log_message(self, format: str, *args) -> None:
        # http.server's own complaints (malformed request lines, timeouts) go to the same log
        if self.server.log is not None:
            self.server.log.write(f"{self.client_address[0]} {format % args}\n")

    # ---------------------------------------------------------------- request bodies
    def _request_has_body(self) -> bool:
        return int(self.headers.get("Content-Length") or 0) > 0 or \
            "chunked" in self.headers.get("Transfer-Encoding", "").lower()

    def _body_stream(self) -> tuple[BinaryIO, int | None]:
        """The request body as a stream, and its length if announced."""
        self._body_read = True
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return ChunkedReader(self.rfile), None
        try:
            length = int(self.headers.get("Content-Length") or 0)
            if length < 0:
                raise ValueError
        except ValueError:
            raise StorageError("SIZE_INVALID", "invalid Content-Length header") from None
        return _LimitedReader(self.rfile, length), length

    def _body(self, limit: int) -> bytes:
        stream, length = self._body_stream()
        if length is not None and length > limit:
            self._body_read = False
            raise StorageError("SIZE_INVALID", f"request body larger than {limit} bytes")
        data = stream.read(limit + 1)
        if len(data) > limit:
            raise StorageError("SIZE_INVALID", f"request body larger than {limit} bytes")
        return data

    # ---------------------------------------------------------------- responses
    def _send(self, status: int, body: bytes = b"", headers: dict | None = None,
              content_type: str = "application/json") -> None:
        self._status = status
        self.send_response(status)
        self.send_header(*API_VERSION_HEADER)
        headers = dict(headers or {})
        headers.setdefault("Content-Length", str(len(body)))
        if body or "Content-Type" not in headers:
            headers.setdefault("Content-Type", content_type)
        for k, v in headers.items():
            self.send_header(k, v)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)
            self._sent = len(body)

    def _error(self, code: str, message: str | None = None, detail=None) -> None:
        if code == "NOT_FOUND":
            status, code = 404, "UNSUPPORTED"
        else:
            status = ERROR_CODES.get(code, (500, ""))[0]
        if not self._body_read and self._request_has_body():
            self.close_connection = True
        self._send(status, error_body(code, message, detail))

    def _json(self, status: int, doc, headers: dict | None = None) -> None:
        self._send(status, json.dumps(doc).encode(), headers)

    def _upload_location(self, name: str, upload_id: str, offset: int) -> str:
        return f"/v2/{name}/blobs/uploads/{upload_id}?_state={_state_token(name, upload_id, offset)}"

    def _upload_headers(self, name: str, upload_id: str, offset: int) -> dict:
        return {"Location": self._upload_location(name, upload_id, offset),
                "Range": f"0-{max(offset - 1, 0)}",
                "Docker-Upload-UUID": upload_id}

    @property
    def storage(self) -> Storage:
        return self.server.storage

    # ---------------------------------------------------------------- handlers
    def base(self) -> None:
        self._json(200, {})

    def catalog(self) -> None:
        names = self.storage.repositories()
        self._paged(names, "repositories", "/v2/_catalog", {})

    def tags_list(self, name: str) -> None:
        tags = self.storage.tags(name)
        self._paged(tags, "tags", f"/v2/{name}/tags/list", {"name": name})

    def _paged(self, items: list[str], key: str, path: str, doc: dict) -> None:
        """?n=<count>&last=<item> pagination, with a Link header to the next page."""
        last = self.query.get("last")
        if last:
            items = [i for i in items if i > last]
        headers = {}
        if "n" in self.query:
            try:
                n = int(self.query["n"])
                if n < 0:
                    raise ValueError
            except ValueError:
                raise StorageError("PAGINATION_NUMBER_INVALID", f"invalid n={self.query['n']!r}") from None
            if len(items) > n:
                items = items[:n]
                if items:
                    headers["Link"] = f'<{path}?n={n}&last={quote(items[-1])}>; rel="next"'
        self._json(200, {**doc, key: items}, headers)

    def get_manifest(self, name: str, reference: str) -> None:
        digest, media_type, raw = self.storage.get_manifest(name, reference)
        self._send(200, raw, {"Docker-Content-Digest": digest, "ETag": f'"{digest}"'},
                   content_type=media_type)

    def put_manifest(self, name: str, reference: str) -> None:
        raw = self._body(MAX_MANIFEST_SIZE)
        header_type = self.headers.get("Content-Type", "").partition(";")[0].strip()
        try:
            doc = json.loads(raw)
            if not isinstance(doc, dict):
                raise ValueError("not a JSON object")
        except ValueError as e:
            raise StorageError("MANIFEST_INVALID", f"manifest is not valid JSON: {e}") from None
        media_type = header_type if header_type not in ("", "application/json") else doc.get("mediaType", "")
        if doc.get("mediaType") and doc["mediaType"] != media_type:
            raise StorageError("MANIFEST_INVALID", f"Content-Type {media_type!r} does not match the "
                               f"manifest's mediaType {doc['mediaType']!r}")
        if media_type in mediatypes.MANIFEST_TYPES:
            self._check_manifest_blobs(name, doc)
        elif media_type in mediatypes.INDEX_TYPES:
            self._check_index_children(name, doc)
        else:
            raise StorageError("MANIFEST_INVALID", f"unsupported manifest media type {media_type!r}")
        digest = self.storage.put_manifest(name, reference, raw, media_type)
        self._send(201, b"", {"Location": f"/v2/{name}/manifests/{digest}",
                              "Docker-Content-Digest": digest})

    def _check_manifest_blobs(self, name: str, doc: dict) -> None:
        config, layers = doc.get("config"), doc.get("layers")
        if not isinstance(config, dict) or not isinstance(layers, list):
            raise StorageError("MANIFEST_INVALID", "an image manifest needs \"config\" and \"layers\"")
        for descriptor in [config, *layers]:
            if not isinstance(descriptor, dict) or not DIGEST_RE.fullmatch(str(descriptor.get("digest", ""))):
                raise StorageError("MANIFEST_INVALID", f"invalid descriptor {descriptor!r}")
            if descriptor.get("urls"):
                continue   # a foreign layer lives elsewhere (its urls), not in this registry
            if not self.storage.has_blob(name, descriptor["digest"]):
                raise StorageError("MANIFEST_BLOB_UNKNOWN", detail={"digest": descriptor["digest"]})

    def _check_index_children(self, name: str, doc: dict) -> None:
        manifests = doc.get("manifests")
        if not isinstance(manifests, list):
            raise StorageError("MANIFEST_INVALID", "an index needs a \"manifests\" list")
        for descriptor in manifests:
            digest = descriptor.get("digest", "") if isinstance(descriptor, dict) else ""
            if not DIGEST_RE.fullmatch(str(digest)):
                raise StorageError("MANIFEST_INVALID", f"invalid descriptor {descriptor!r}")
            if not self.storage.has_manifest(name, digest):
                raise StorageError("MANIFEST_BLOB_UNKNOWN", detail={"digest": digest})

    def delete_manifest(self, name: str, reference: str) -> None:
        self.storage.delete_manifest(name, reference)
        self._send(202)

    def get_blob(self, name: str, digest: str) -> None:
        info = self.storage.blob_info(name, digest)
        start, end = 0, info.size - 1
        status = 200
        headers = {"Docker-Content-Digest": digest, "ETag": f'"{digest}"',
                   "Accept-Ranges": "bytes", "Cache-Control": "max-age=31536000"}
        m = re.fullmatch(r"bytes=(\d*)-(\d*)", self.headers.get("Range", "").strip())
        if m and (m.group(1) or m.group(2)):
            if m.group(1):
                start = int(m.group(1))
                end = min(int(m.group(2)), info.size - 1) if m.group(2) else info.size - 1
            else:       # "bytes=-N": the last N bytes
                start = max(info.size - int(m.group(2)), 0)
            if start > end:
                self._send(416, error_body("RANGE_INVALID"), {"Content-Range": f"bytes */{info.size}"})
                return
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end}/{info.size}"
        length = end - start + 1
        headers["Content-Length"] = str(length)
        headers["Content-Type"] = "application/octet-stream"
        self._send(status, b"", headers)
        if self.command == "HEAD":
            return
        with open(info.path, "rb") as f:
            f.seek(start)
            left = length
            while left > 0:
                chunk = f.read(min(1 << 20, left))
                if not chunk:
                    break
                self.wfile.write(chunk)
                left -= len(chunk)
                self._sent += len(chunk)

    def delete_blob(self, name: str, digest: str) -> None:
        self.storage.delete_blob_link(name, digest)
        self._send(202)

    def start_upload(self, name: str) -> None:
        digest, mount, source = self.query.get("digest"), self.query.get("mount"), self.query.get("from")
        if mount and source:
            # Cross-repository mount: no bytes move, the blob just gets a second link.
            if self.storage.has_blob(source, mount):
                self.storage.link_blob(name, mount)
                self._send(201, b"", {"Location": f"/v2/{name}/blobs/{mount}",
                                      "Docker-Content-Digest": mount})
                return
        elif digest:
            # Monolithic upload: the whole blob is this request's body.
            stream, _ = self._body_stream()
            data = stream.read()
            self.storage.put_blob(name, data, digest)
            self._send(201, b"", {"Location": f"/v2/{name}/blobs/{digest}",
                                  "Docker-Content-Digest": digest})
            return
        upload_id = self.storage.start_upload(name)
        if self._request_has_body():      # a first chunk may come with the POST
            stream, length = self._body_stream()
            self.storage.append_upload(name, upload_id, stream, length)
        offset = self.storage.upload_size(name, upload_id)
        self._send(202, b"", self._upload_headers(name, upload_id, offset))

    def _check_state(self, name: str, upload_id: str) -> int:
        """The current offset of an upload, checked against the URL's _state token."""
        offset = self.storage.upload_size(name, upload_id)
        token = self.query.get("_state")
        if token:
            state = _read_state(token)
            if state.get("name") != name or state.get("uuid") != upload_id:
                raise StorageError("BLOB_UPLOAD_INVALID", "the _state token belongs to another upload")
            if state.get("offset") != offset:
                raise StorageError("RANGE_INVALID", f"stale upload URL: it says {state.get('offset')} "
                                   f"bytes, the upload has {offset}; use the newest Location")
        return offset

    def upload_status(self, name: str, upload_id: str) -> None:
        offset = self.storage.upload_size(name, upload_id)
        self._send(204, b"", self._upload_headers(name, upload_id, offset))

    def patch_upload(self, name: str, upload_id: str) -> None:
        self._check_state(name, upload_id)
        start = None
        content_range = self.headers.get("Content-Range")
        if content_range:
            m = re.fullmatch(r"(?:bytes[ =])?(\d+)-(\d+)(?:/\d+|/\*)?", content_range.strip())
            if not m:
                raise StorageError("RANGE_INVALID", f"invalid Content-Range {content_range!r}")
            start = int(m.group(1))
        stream, length = self._body_stream()
        offset = self.storage.append_upload(name, upload_id, stream, length, start)
        self._send(202, b"", self._upload_headers(name, upload_id, offset))

    def put_upload(self, name: str, upload_id: str) -> None:
        self._check_state(name, upload_id)
        digest = self.query.get("digest")
        if not digest:
            raise StorageError("DIGEST_INVALID", "finishing an upload needs ?digest=")
        stream, length = self._body_stream()
        self.storage.append_upload(name, upload_id, stream, length)   # an optional last chunk
        info = self.storage.finish_upload(name, upload_id, digest)
        self._send(201, b"", {"Location": f"/v2/{name}/blobs/{info.digest}",
                              "Docker-Content-Digest": info.digest})

    def cancel_upload(self, name: str, upload_id: str) -> None:
        self.storage.cancel_upload(name, upload_id)
        self._send(204)


_H = RegistryHandler
ROUTES: list[tuple[frozenset[str], re.Pattern, Callable]] = [
    (frozenset({"GET", "HEAD"}), re.compile(r"/v2/?"), _H.base),
    (frozenset({"GET"}), re.compile(r"/v2/_catalog"), _H.catalog),
    (frozenset({"GET"}), re.compile(rf"/v2/{_NAME}/tags/list"), _H.tags_list),
    (frozenset({"GET", "HEAD"}), re.compile(rf"/v2/{_NAME}/manifests/(?P<reference>[^/]+)"), _H.get_manifest),
    (frozenset({"PUT"}), re.compile(rf"/v2/{_NAME}/manifests/(?P<reference>[^/]+)"), _H.put_manifest),
    (frozenset({"DELETE"}), re.compile(rf"/v2/{_NAME}/manifests/(?P<reference>[^/]+)"), _H.delete_manifest),
    (frozenset({"POST"}), re.compile(rf"/v2/{_NAME}/blobs/uploads/?"), _H.start_upload),
    (frozenset({"GET"}), re.compile(rf"/v2/{_NAME}/blobs/uploads/(?P<upload_id>[^/]+)"), _H.upload_status),
    (frozenset({"PATCH"}), re.compile(rf"/v2/{_NAME}/blobs/uploads/(?P<upload_id>[^/]+)"), _H.patch_upload),
    (frozenset({"PUT"}), re.compile(rf"/v2/{_NAME}/blobs/uploads/(?P<upload_id>[^/]+)"), _H.put_upload),
    (frozenset({"DELETE"}), re.compile(rf"/v2/{_NAME}/blobs/uploads/(?P<upload_id>[^/]+)"), _H.cancel_upload),
    (frozenset({"GET", "HEAD"}), re.compile(rf"/v2/{_NAME}/blobs/(?P<digest>[^/]+)"), _H.get_blob),
    (frozenset({"DELETE"}), re.compile(rf"/v2/{_NAME}/blobs/(?P<digest>[^/]+)"), _H.delete_blob),
]


class RegistryServer(ThreadingHTTPServer):
    """A threaded HTTP server whose handlers share one Storage."""

    daemon_threads = True          # a stuck client must not keep the process alive
    allow_reuse_address = True

    def __init__(self, root: str | Path, host: str, port: int, log: TextIO | None = sys.stderr):
        if ":" in host:
            self.address_family = socket.AF_INET6
        self.storage = Storage(root)
        self.log = log      # one line per request goes here (None: silent)
        super().__init__((host, port), RegistryHandler)
        self._thread: threading.Thread | None = None

    def handle_error(self, request, client_address) -> None:
        # A client that hangs up between two keep-alive requests is ordinary, not a server fault:
        # note it in one line instead of socketserver's traceback.
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionResetError, BrokenPipeError, TimeoutError)):
            if self.log is not None:
                self.log.write(f"{client_address[0]} connection closed: {exc.strerror or exc}\n")
                self.log.flush()
            return
        super().handle_error(request, client_address)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def address(self) -> str:
        """"127.0.0.1:5000": the form references and --listen use."""
        host, port = self.server_address[:2]
        return f"{host}:{port}"

    def close(self) -> None:
        """Stop serving (if serve() started a thread) and release the socket."""
        if self._thread is not None:
            self.shutdown()
            self._thread.join()
            self._thread = None
        self.server_close()


def serve(root: str | Path, host: str = "127.0.0.1", port: int = 0,
          log: TextIO | None = sys.stderr) -> RegistryServer:
    """Start a registry in a background thread (port 0 = any free port); .close() stops it.

    >>> srv = serve("/tmp/reg")
    >>> srv.url
    'http://127.0.0.1:41235'
    """
    server = RegistryServer(root, host, port, log)
    server._thread = threading.Thread(target=server.serve_forever, args=(0.1,),
                                      name="labkit-registry", daemon=True)
    server._thread.start()
    return server
