"""`Client`: the Engine API calls the docker CLI makes, one method each.

Theory of operation
-------------------
Version negotiation. Every session starts with `HEAD /_ping`. The daemon answers with an
`Api-Version` header; the client then prefixes every path with `/v<min(ours, theirs)>/`. A
daemon that sends no `Api-Version` is assumed to be old: `/v1.24/`. If HEAD fails with anything
but 200 or 500, the CLI retries with GET (some proxies refuse HEAD); we do the same.
`DOCKER_API_VERSION` (or `version=`) pins the version and skips negotiation.

One connection per request. The CLI runs `docker run` over three connections at once: the
attach (upgraded to a raw socket), the wait (whose response headers come at once and whose body
comes when the container exits) and everything else. Opening a new unix-socket connection is
cheap, so every call here opens its own; nothing is shared between threads.

Errors. A failing call answers 4xx/5xx with `{"message": "…"}` — parsed only when the
Content-Type is exactly `application/json`, as the CLI does; otherwise the raw body is the
message. Both become `APIError(status, message)`. A socket nobody listens on becomes
`DaemonNotRunning`. Streams (pull) fail in-band: an `errorDetail` message after the 200.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from labkit.client import streams, transport

MAX_API_VERSION = "1.50"      # what docker CLI 28 speaks; we talk down to the daemon's version
FALLBACK_API_VERSION = "1.24"  # a daemon that sends no Api-Version header
USER_AGENT = "labkit-client/0.1"
ANONYMOUS = "e30="  # X-Registry-Auth: base64url of "{}", an anonymous AuthConfig


class APIError(Exception):
    """The daemon answered with an error status; `message` is the daemon's own words."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


class DaemonNotRunning(ConnectionError):
    """Nothing answers at the daemon's address."""

    def __init__(self, host: str, reason: str = ""):
        self.host = host
        self.reason = reason
        if "Permission denied" in reason:
            # the socket is there, but only root (or the docker group) may use it
            super().__init__(f"cannot connect to labkit-dockerd at {host}: permission denied "
                             "(run as root)")
            return
        super().__init__(f"cannot connect to labkit-dockerd at {host}: is the lab running? "
                         "start it with: labkit lab up")


def _version_tuple(v: str) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in v.split("."))
    except ValueError:
        raise ValueError(f"bad API version {v!r}: expected something like 1.41") from None


def _error_from(resp: http.client.HTTPResponse) -> APIError:
    body = resp.read()
    message = body.decode(errors="replace").strip()
    # The CLI parses the body only for exactly this Content-Type (not "…; charset=utf-8").
    if resp.getheader("Content-Type") == "application/json":
        try:
            message = json.loads(body).get("message", message)
        except (ValueError, AttributeError):
            pass
    return APIError(resp.status, message or f"{resp.status} {resp.reason}")


def _frames(read, tty: bool, what: str) -> Iterator[streams.Frame]:
    """Bytes from `read()` (b"" at the end) as Frames: split by labkit.stdcopy's decoder, or,
    with a TTY (one raw stream, no headers), every chunk as stdout."""
    decoder = None if tty else streams.FrameDecoder()
    while data := read():
        if decoder is None:
            yield streams.Frame(streams.STDOUT, data)
        else:
            yield from decoder.feed(data)
    if decoder is not None and decoder.pending():
        raise APIError(500, f"{what} stream ended in the middle of a frame")


def _upgraded(conn: http.client.HTTPConnection, resp: http.client.HTTPResponse, tty: bool,
              what: str) -> "Attachment":
    """The socket of a `101 UPGRADED` answer (attach, exec start) as an Attachment."""
    if resp.status != 101:
        try:
            if resp.status >= 400:
                raise _error_from(resp)
            raise APIError(resp.status, f"{what}: expected 101 UPGRADED, got {resp.status}")
        finally:
            conn.close()
    # http.client believes a 101 has an empty body; take the socket and its read buffer
    # away from it, so that closing the connection object does not close them.
    reader, sock = resp.fp, conn.sock
    resp.fp = None
    conn.sock = None
    return Attachment(sock, reader, tty)


@dataclass
class Waiter:
    """A pending `POST /containers/{id}/wait`: the headers have arrived, the body has not."""

    conn: http.client.HTTPConnection
    resp: http.client.HTTPResponse

    def result(self) -> dict:
        """Block until the container exits: {"StatusCode": N, "Error": null|{"Message"}}."""
        try:
            body = self.resp.read()
        finally:
            self.conn.close()
        try:
            return json.loads(body)
        except ValueError:
            raise APIError(500, f"bad wait response from daemon: {body[:80]!r}") from None

    def close(self) -> None:
        self.conn.close()


class Attachment:
    """An upgraded attach connection: after `101 UPGRADED` the socket carries raw bytes.

    Without a TTY the output is multiplexed (see labkit.client.streams); with one it is raw.
    """

    def __init__(self, sock: socket.socket, reader, tty: bool):
        self.sock = sock
        self._reader = reader  # http.client's buffered reader: it may already hold output bytes
        self.tty = tty

    def send(self, data: bytes) -> None:
        """Write to the container's stdin (attach with stdin=True)."""
        self.sock.sendall(data)

    def close_stdin(self) -> None:
        """Half-close: the daemon closes the container's stdin and keeps streaming output."""
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def chunks(self) -> Iterator[bytes]:
        while True:
            data = self._reader.read1(65536)
            if not data:
                return
            yield data

    def frames(self) -> Iterator[streams.Frame]:
        """Output as Frames until the daemon closes the stream (the container's stdio hit EOF).
        A TTY stream is reported as stdout frames."""
        yield from _frames(lambda: self._reader.read1(65536), self.tty, "attach")

    def close(self) -> None:
        try:
            self._reader.close()
        finally:
            self.sock.close()


class Client:
    """A Docker Engine API client for one daemon address (DOCKER_HOST syntax)."""

    def __init__(self, host: str | None = None, version: str | None = None,
                 timeout: float | None = None):
        self.host_url = host or transport.default_host()
        self.host = transport.parse_host(self.host_url)
        self.timeout = timeout
        pinned = version or os.environ.get("DOCKER_API_VERSION")
        if pinned:
            _version_tuple(pinned)
        self._version: str | None = pinned
        self._pinned = bool(pinned)  # a pinned version skips negotiation, as in the CLI
        self.ping_headers: dict[str, str] = {}

    # -- plumbing ---------------------------------------------------------------------------

    def _connect(self, timeout: float | None = None) -> http.client.HTTPConnection:
        return transport.connect(self.host, timeout=timeout if timeout is not None else self.timeout)

    def _send(self, method: str, path: str, *, query: dict | None = None, body: Any = None,
              data: bytes | None = None, headers: dict | None = None, versioned: bool = True,
              timeout: float | None = None) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        """Send one request on a new connection; return it with the response (headers read)."""
        if versioned:
            path = f"/v{self.api_version}{path}"
        query = {k: v for k, v in (query or {}).items() if v is not None}
        if query:
            path += "?" + urlencode(query, doseq=True)  # a list value: the key repeated (t=a&t=b)
        hdrs = {"User-Agent": USER_AGENT}
        hdrs.update(headers or {})
        if body is not None:
            data = json.dumps(body).encode()
            hdrs["Content-Type"] = "application/json"
        elif data is not None:
            hdrs.setdefault("Content-Type", "application/octet-stream")
        elif method in ("POST", "PUT"):
            hdrs["Content-Length"] = "0"
        conn = self._connect(timeout)
        try:
            conn.request(method, path, body=data, headers=hdrs)
            resp = conn.getresponse()
        except (FileNotFoundError, ConnectionRefusedError, PermissionError) as e:
            conn.close()
            raise DaemonNotRunning(self.host_url, str(e)) from None
        except (http.client.HTTPException, OSError) as e:
            conn.close()
            raise APIError(500, f"error talking to the daemon at {self.host_url}: {e}") from None
        return conn, resp

    def _call(self, method: str, path: str, **kw) -> Any:
        """A plain request/response call: raise APIError on failure, return the decoded JSON
        body (or None for an empty one, e.g. 204)."""
        conn, resp = self._send(method, path, **kw)
        try:
            if resp.status >= 400:
                raise _error_from(resp)
            body = resp.read()
        finally:
            conn.close()
        if not body.strip():
            return None
        try:
            return json.loads(body)
        except ValueError:
            return body.decode(errors="replace")

    # -- negotiation ------------------------------------------------------------------------

    def ping(self) -> dict[str, str]:
        """HEAD /_ping (GET if HEAD is refused); negotiate the API version; return the headers."""
        conn, resp = self._send("HEAD", "/_ping", versioned=False)
        resp.read()
        conn.close()
        if resp.status not in (200, 500):
            conn, resp = self._send("GET", "/_ping", versioned=False)
            resp.read()
            conn.close()
        if resp.status >= 400:
            raise APIError(resp.status, f"daemon at {self.host_url} answered /_ping with "
                                        f"{resp.status} {resp.reason}")
        self.ping_headers = {k.lower(): v for k, v in resp.getheaders()}
        if not self._pinned:
            theirs = self.ping_headers.get("api-version") or FALLBACK_API_VERSION
            try:
                self._version = min(MAX_API_VERSION, theirs, key=_version_tuple)
            except ValueError:
                self._version = FALLBACK_API_VERSION
        return self.ping_headers

    @property
    def api_version(self) -> str:
        if self._version is None:
            self.ping()
        return self._version  # type: ignore[return-value]

    # -- system -----------------------------------------------------------------------------

    def version(self) -> dict:
        return self._call("GET", "/version")

    def info(self) -> dict:
        return self._call("GET", "/info")

    # -- containers -------------------------------------------------------------------------

    def create_container(self, config: dict, name: str | None = None) -> dict:
        """POST /containers/create -> {"Id", "Warnings"}. 404 (APIError) = image not present."""
        return self._call("POST", "/containers/create", query={"name": name} if name else None,
                          body=config)

    def start(self, cid: str) -> None:
        self._call("POST", f"/containers/{quote(cid)}/start")

    def stop(self, cid: str, timeout: int | None = None) -> None:
        """POST /containers/{id}/stop[?t=N]: SIGTERM, then SIGKILL after N seconds (304 = was
        not running, which the CLI counts as success)."""
        self._call("POST", f"/containers/{quote(cid)}/stop", query={"t": timeout})

    def restart(self, cid: str, timeout: int | None = None) -> None:
        self._call("POST", f"/containers/{quote(cid)}/restart", query={"t": timeout})

    def kill(self, cid: str, signal: str | None = None) -> None:
        """POST /containers/{id}/kill[?signal=…] (409 if it is not running)."""
        self._call("POST", f"/containers/{quote(cid)}/kill", query={"signal": signal})

    def logs(self, cid: str, *, follow: bool = False, tail: str | None = None,
             timestamps: bool = False, tty: bool = False) -> Iterator[streams.Frame]:
        """GET /containers/{id}/logs: the container's output as Frames. Framed or raw
        depends on the container's Tty, which the caller looks up (inspect) as the docker CLI
        does: below API 1.42 the Content-Type does not say which it is."""
        query = {"stdout": "1", "stderr": "1", "follow": "1" if follow else None,
                 "tail": tail, "timestamps": "1" if timestamps else None}
        conn, resp = self._send("GET", f"/containers/{quote(cid)}/logs", query=query,
                                timeout=None)
        try:
            if resp.status >= 400:
                raise _error_from(resp)
            yield from _frames(lambda: resp.read1(65536), tty, "logs")
        finally:
            conn.close()

    def exec_create(self, cid: str, config: dict) -> str:
        """POST /containers/{id}/exec -> the exec's ID (201). config: Cmd, Tty, AttachStdin…"""
        return self._call("POST", f"/containers/{quote(cid)}/exec", body=config)["Id"]

    def exec_start(self, exec_id: str, *, tty: bool = False) -> Attachment:
        """POST /exec/{id}/start upgraded to a raw socket, as attach (Detach false)."""
        conn, resp = self._send("POST", f"/exec/{quote(exec_id)}/start", timeout=None,
                                body={"Detach": False, "Tty": tty},
                                headers={"Connection": "Upgrade", "Upgrade": "tcp"})
        return _upgraded(conn, resp, tty, "exec start")

    def exec_start_detached(self, exec_id: str, *, tty: bool = False) -> None:
        """POST /exec/{id}/start with Detach: the process runs, nothing is streamed (200)."""
        self._call("POST", f"/exec/{quote(exec_id)}/start", body={"Detach": True, "Tty": tty})

    def exec_inspect(self, exec_id: str) -> dict:
        return self._call("GET", f"/exec/{quote(exec_id)}/json")

    def exec_resize(self, exec_id: str, height: int, width: int) -> None:
        self._call("POST", f"/exec/{quote(exec_id)}/resize", query={"h": height, "w": width})

    def wait(self, cid: str, condition: str = "next-exit") -> Waiter:
        """Register a wait and return as soon as the daemon has sent the headers — before the
        container is started, so even a container that exits at once is caught."""
        # No timeout on this connection: the body arrives whenever the container exits.
        conn, resp = self._send("POST", f"/containers/{quote(cid)}/wait",
                                query={"condition": condition}, timeout=None)
        if resp.status >= 400:
            try:
                raise _error_from(resp)
            finally:
                conn.close()
        return Waiter(conn, resp)

    def attach(self, cid: str, *, stdin: bool = False, stdout: bool = True,
               stderr: bool = True, logs: bool = False, tty: bool = False) -> Attachment:
        """POST /containers/{id}/attach with `Connection: Upgrade` -> 101 and a raw socket."""
        query = {"stream": "1"}
        for key, on in (("stdin", stdin), ("stdout", stdout), ("stderr", stderr), ("logs", logs)):
            if on:
                query[key] = "1"
        conn, resp = self._send("POST", f"/containers/{quote(cid)}/attach",
                                query=dict(sorted(query.items())), timeout=None,
                                headers={"Connection": "Upgrade", "Upgrade": "tcp"})
        return _upgraded(conn, resp, tty, "attach")

    def resize(self, cid: str, height: int, width: int) -> None:
        """POST /containers/{id}/resize: tell the container's terminal its size (TTY only)."""
        self._call("POST", f"/containers/{quote(cid)}/resize", query={"h": height, "w": width})

    def inspect_container(self, cid: str) -> dict:
        return self._call("GET", f"/containers/{quote(cid)}/json")

    def containers(self, all: bool = False, filters: dict | None = None) -> list[dict]:
        query = {"all": "1" if all else None,
                 "filters": json.dumps(filters) if filters else None}
        return self._call("GET", "/containers/json", query=query) or []

    def remove_container(self, cid: str, force: bool = False) -> None:
        self._call("DELETE", f"/containers/{quote(cid)}", query={"force": "1"} if force else None)

    # -- images -----------------------------------------------------------------------------

    def images(self) -> list[dict]:
        return self._call("GET", "/images/json") or []

    def inspect_image(self, name: str) -> dict:
        return self._call("GET", f"/images/{name}/json")

    def remove_image(self, name: str, force: bool = False) -> list[dict]:
        return self._call("DELETE", f"/images/{name}", query={"force": "1"} if force else None) or []

    def pull(self, from_image: str, tag: str = "latest") -> Iterator[dict]:
        """POST /images/create?fromImage=…&tag=…: yield the progress messages as they come.
        An in-band error (errorDetail) is raised as APIError after the messages before it."""
        return self._messages("POST", "/images/create", "pull",
                              query={"fromImage": from_image, "tag": tag},
                              headers={"X-Registry-Auth": ANONYMOUS})

    def push(self, name: str, tag: str | None = None) -> Iterator[dict]:
        """POST /images/{name}/push?tag=…: the same JSON message stream as pull
        ("Preparing", "Pushing" {current,total}, "Pushed", then "<tag>: digest: … size: …")."""
        return self._messages("POST", f"/images/{name}/push", "push",
                              query={"tag": tag}, headers={"X-Registry-Auth": ANONYMOUS})

    def tag(self, image: str, repo: str, tag: str | None = None) -> None:
        """POST /images/{image}/tag?repo=…&tag=…: one more name for an image (201)."""
        self._call("POST", f"/images/{image}/tag", query={"repo": repo, "tag": tag})

    def build(self, context_tar: bytes, query: dict) -> Iterator[dict]:
        """POST /build with the context as a tar body: the JSON message stream of the build
        ({"stream": "Step 1/2 : FROM busybox\n"}, …, {"aux": {"ID": …}})."""
        return self._messages("POST", "/build", "build", query=query, data=context_tar,
                              headers={"Content-Type": "application/x-tar",
                                       "X-Registry-Config": ANONYMOUS})

    def _messages(self, method: str, path: str, what: str, **kw) -> Iterator[dict]:
        """The one reader of JSON message streams (pull, push, build): decoded messages as
        the bytes arrive; an `errorDetail` message (the daemon's failure after its 200) is
        raised as APIError, and so is a stream cut in the middle of a message."""
        conn, resp = self._send(method, path, timeout=None, **kw)
        try:
            if resp.status >= 400:
                raise _error_from(resp)
            decoder = streams.JSONStreamDecoder()
            while True:
                data = resp.read1(65536)
                if not data:
                    break
                for msg in decoder.feed(data):
                    if "errorDetail" in msg or "error" in msg:
                        detail = msg.get("errorDetail") or {}
                        raise APIError(500, detail.get("message") or msg.get("error")
                                       or f"{what} failed")
                    yield msg
            if decoder.pending():
                raise APIError(500, f"{what} stream ended in the middle of a message: "
                                    f"{decoder.pending()[:60]!r}")
        finally:
            conn.close()
