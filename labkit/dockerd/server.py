"""HTTP/1.1 over a unix socket: how the Engine API reaches the router.

The Docker Engine API is plain HTTP/1.1 on `/run/docker.sock` (here
/run/labkit/docker.sock). Three things make it more than request/response, and they
are why this module exists instead of a web framework:

1. Keep-alive. The CLI sends /_ping, create, wait ... on one connection.
2. Streaming bodies. A `StreamResponse` sends its headers immediately with
   `Transfer-Encoding: chunked` and then one chunk per event. `docker run` waits for
   the headers of `/wait` before it sends `/start`; the body comes at the exit.
3. Hijacking. `POST /containers/{id}/attach` with `Connection: Upgrade, Upgrade: tcp`
   gets `HTTP/1.1 101 UPGRADED`; from then on the socket carries raw stdio bytes in both
   directions, and this module hands it to the attach session.

The stdlib pieces fit: `socketserver.ThreadingUnixStreamServer` (one thread per
connection, so a blocked /wait does not stop other requests) and
`http.server.BaseHTTPRequestHandler` (request parsing, `protocol_version = "HTTP/1.1"`
for keep-alive).
"""

from __future__ import annotations

import grp
import logging
import os
import socket
import socketserver
import ssl
import stat
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from labkit.dockerd.errors import TooLarge
from labkit.dockerd.httputils import (HijackResponse, Request, Response, StreamResponse,
                                      error_response)
from labkit.dockerd.router import Router

log = logging.getLogger("labkit.dockerd")

SOCKET_GROUP = "labkit"
MAX_BODY = 64 * 1024 * 1024  # a container config is a few kB; refuse absurd bodies


class _Hijacked:
    """A hijacked connection: reads go through the handler's buffered reader (it may
    already hold bytes the client sent right after its request), writes go to the socket."""

    def __init__(self, handler: "EngineAPIHandler") -> None:
        self._rfile = handler.rfile
        self._sock = handler.connection

    def read(self, n: int = 65536) -> bytes:
        return self._rfile.read1(n)

    def write(self, data: bytes) -> None:
        self._sock.sendall(data)


class EngineAPIHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "EngineAPIServer"

    # ---- BaseHTTPRequestHandler hooks

    def version_string(self) -> str:  # the Server header
        return f"Docker/{self.server.router.server_version} (linux)"

    def log_message(self, format: str, *args) -> None:
        log.debug("api: " + format, *args)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Malformed request lines and headers: a JSON error like every other one."""
        text = (message or self.responses.get(code, ("error",))[0]).lower()
        # a request line too broken to name its version would get a headerless HTTP/0.9 answer
        self.request_version = "HTTP/1.1"
        try:
            self._send(error_response(code, text))
        except OSError:
            pass
        self.close_connection = True

    def do_GET(self) -> None:
        self._handle()

    do_HEAD = do_POST = do_PUT = do_DELETE = do_GET

    # ---- request

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked()
        raw = self.headers.get("Content-Length") or "0"
        try:
            length = int(raw)
        except ValueError:
            raise ValueError(f"invalid Content-Length {raw!r}") from None
        if length < 0:
            raise ValueError(f"invalid Content-Length {length}")
        if length > MAX_BODY:
            raise TooLarge(f"request body too large: {length} bytes (at most {MAX_BODY})")
        return self.rfile.read(length)

    def _read_chunked(self) -> bytes:
        body = bytearray()
        while True:
            size_line = self.rfile.readline(1024).split(b";")[0].strip()
            try:
                size = int(size_line, 16)
            except ValueError:
                raise ValueError(f"invalid chunk size {size_line!r}") from None
            if size == 0:
                while self.rfile.readline(1024).strip():  # trailers
                    pass
                return bytes(body)
            if len(body) + size > MAX_BODY:
                raise TooLarge(f"request body too large (at most {MAX_BODY} bytes)")
            body += self.rfile.read(size)
            self.rfile.readline(1024)  # the CRLF after each chunk

    def _handle(self) -> None:
        url = urlsplit(self.path)
        try:
            body = self._read_body()
        except TooLarge as e:   # not read: the connection cannot carry another request
            self._send(error_response(413, e.message))
            self.close_connection = True
            return
        except ValueError as e:
            self._send(error_response(400, f"bad request body: {e}"))
            self.close_connection = True
            return
        every = parse_qs(url.query, keep_blank_values=True)
        query = {k: v[-1] for k, v in every.items()}
        # names in paths may be percent-encoded (busybox%40sha256%3A... for busybox@sha256:...)
        req = Request(self.command, unquote(url.path), query, self.headers, body,
                      repeated=every)
        log.debug("%s %s", self.command, self.path)
        response = self.server.router.dispatch(req)
        try:
            if isinstance(response, StreamResponse):
                self._send_stream(response)
            elif isinstance(response, HijackResponse):
                self._hijack(response)
            else:
                self._send(response)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    # ---- the three kinds of answer

    def _common_headers(self) -> None:
        for k, v in self.server.router.common_headers().items():
            self.send_header(k, v)

    def _send(self, r: Response) -> None:
        self.send_response(r.status)
        self._common_headers()
        for k, v in r.headers.items():
            self.send_header(k, v)
        if r.content_type and r.status not in (204, 304):
            self.send_header("Content-Type", r.content_type)
        if r.status not in (204, 304):
            self.send_header("Content-Length", str(len(r.body)))
        self.end_headers()
        if r.body and self.command != "HEAD" and r.status not in (204, 304):
            self.wfile.write(r.body)

    def _send_stream(self, r: StreamResponse) -> None:
        self.send_response(r.status)
        self._common_headers()
        self.send_header("Content-Type", r.content_type)
        for k, v in r.headers.items():
            self.send_header(k, v)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()  # flushes: the client sees the headers now, the body later
        for chunk in r.chunks:
            if chunk:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        self.wfile.write(b"0\r\n\r\n")

    def _hijack(self, r: HijackResponse) -> None:
        if r.upgrade:
            self.send_response_only(101, "UPGRADED")
            self.send_header("Content-Type", r.content_type)
            self.send_header("Connection", "Upgrade")
            self.send_header("Upgrade", "tcp")
        else:
            self.send_response(200)
            self._common_headers()
            self.send_header("Content-Type", r.content_type)
        self.end_headers()
        self.close_connection = True  # after a hijack the connection is no longer HTTP
        try:
            r.session(_Hijacked(self))
        finally:
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


# listen(2)'s backlog: connections the kernel queues while every thread is busy accepting.
# socketserver's default, 5, refuses the sixth of a burst of `docker run`s (Go's is
# SOMAXCONN, and so is dockerd's).
BACKLOG = max(128, socket.SOMAXCONN)


class EngineAPIServer(socketserver.ThreadingUnixStreamServer):
    """The API on a unix socket, mode 0660: root, and the group `labkit` if it exists."""

    daemon_threads = True        # a hanging /wait must not keep the process alive at exit
    block_on_close = False
    request_queue_size = BACKLOG

    def __init__(self, socket_path: str | os.PathLike, router: Router) -> None:
        self.router = router
        path = Path(socket_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists() or path.is_symlink():
            if not stat.S_ISSOCK(path.lstat().st_mode):
                raise OSError(f"{path} exists and is not a socket; refusing to replace it")
            _refuse_if_listening(path)
            path.unlink()
        super().__init__(str(path), EngineAPIHandler)
        os.chmod(path, 0o660)
        try:        # as dockerd with its `docker` group: members may use the socket
            os.chown(path, -1, grp.getgrnam(SOCKET_GROUP).gr_gid)
        except KeyError:
            pass    # no such group: root only
        self.socket_path = path

    def server_close(self) -> None:
        super().server_close()
        try:
            self.socket_path.unlink()
        except FileNotFoundError:
            pass


class EngineAPITCPServer(socketserver.ThreadingTCPServer):
    """The same API on TCP, for clients that cannot reach a unix socket.

    Whoever can send requests to the Engine API is root on this host. So, as dockerd:
    plain TCP (DOCKER_HOST=tcp://127.0.0.1:2375, curl works) only on loopback; any other
    address only with TLS *and* client certificates signed by the CA given (`--tlsverify`):
    the certificate is the authentication. main.py refuses to start otherwise, saying why."""

    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = BACKLOG

    def __init__(self, host: str, port: int, router: Router,
                 tls: ssl.SSLContext | None = None) -> None:
        if tls is None and not is_loopback(host):
            raise OSError(f"refusing to listen on {host}:{port} without --tlsverify: the Engine "
                          "API gives root on this host to anyone who connects, so plain TCP is "
                          "for loopback only (127.0.0.1 or ::1)")
        self.router = router
        self.tls = tls
        if ":" in host:
            self.address_family = socket.AF_INET6
        super().__init__((host, port), EngineAPIHandler)

    def finish_request(self, request, client_address) -> None:
        """In the connection's own thread: the TLS handshake first (a client without a valid
        certificate is dropped here, before a byte of HTTP), then the HTTP exchange."""
        if self.tls is not None:
            request.settimeout(30)
            try:
                request = self.tls.wrap_socket(request, server_side=True)
            except (ssl.SSLError, OSError) as e:
                log.info("TLS handshake with %s failed: %s", client_address[0], e)
                return
            request.settimeout(None)
        super().finish_request(request, client_address)


def is_loopback(host: str) -> bool:
    return host in ("localhost", "127.0.0.1", "::1") or host.startswith("127.")


def tls_context(cacert: str, cert: str, key: str) -> ssl.SSLContext:
    """dockerd's --tlsverify: serve `cert`/`key`, accept only clients whose certificate
    `cacert` signed (TLS 1.2 or newer)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    context.load_verify_locations(cacert)
    context.verify_mode = ssl.CERT_REQUIRED
    return context


def _refuse_if_listening(path: Path) -> None:
    """A stale socket file is replaced; a live one means another daemon owns it."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except OSError:
        return
    finally:
        probe.close()
    raise OSError(f"{path} is in use by another daemon")
