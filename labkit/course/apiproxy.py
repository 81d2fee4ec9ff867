"""apiproxy — watch the Engine API requests a client makes, by standing in the middle.

Theory of operation
-------------------
The docker CLI knows only one thing about the daemon: the socket named by DOCKER_HOST. Point it
at this proxy instead, and the proxy forwards every byte to the real socket and back, unchanged,
while it writes down each request's method and path and the status of its answer::

    docker CLI ──HTTP/1.1──> proxy.sock ══ APIProxy ══> docker.sock ──> labkit-dockerd
               <──────────── (same bytes) ──────────── (same bytes) <──

Each connection the client opens gets its own connection to the daemon and two relay threads,
one per direction. Bytes are forwarded as they arrive (never held back until a message is
complete: `docker logs -f` and `/wait` answer slowly, and the client must see each byte when the
daemon sends it). On the side, each direction's bytes are fed to `_Framer`, which knows just
enough HTTP/1.1 (RFC 9112) to find where one message ends and the next begins:

    start line and headers   up to the first empty line (CRLF CRLF)
    the body                 Content-Length bytes, or chunks until a chunk of size 0,
                             or (an answer with neither) everything until the connection closes
    no body at all           a request without those headers; an answer to HEAD; 1xx, 204, 304

It must find the ends, not just the starts, because the CLI keeps its connection open and sends
the next request on it (keep-alive): answers are matched to requests in order, per connection.

`docker run` (without -d) and `docker exec` *upgrade* the connection: the client asks with
`Upgrade: tcp`, the daemon answers `101 UPGRADED`, and from then on the connection carries the
container's raw stdin/stdout, not HTTP. The proxy records the 101 and then only relays bytes.

Nothing here changes what goes over the wire: a framing mistake can only make the record
incomplete, never break the conversation (the framer gives up and the relay goes on).

    >>> with APIProxy("/run/labkit/docker.sock") as proxy:
    ...     subprocess.run(["docker", "version"], env={**os.environ, "DOCKER_HOST": proxy.docker_host})
    ...     for exchange in proxy.requests:
    ...         print(exchange)                 # HEAD /_ping -> 200, GET /v1.47/version -> 200

Run it in a terminal to watch another terminal's docker CLI:
``python -m labkit.course.apiproxy [--upstream /run/labkit/docker.sock] [--listen PATH]``.
"""

from __future__ import annotations

import argparse
import atexit
import os
import re
import shutil
import socket
import socketserver
import sys
import tempfile
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from labkit import paths

_VERSION_PREFIX = re.compile(r"^/v\d+\.\d+(?=/)")
_MAX_HEAD = 64 * 1024   # a start line and headers longer than this is not HTTP we can follow


@dataclass
class Exchange:
    """One request the client made, and the status of the daemon's answer."""
    method: str                      # "POST"
    path: str                        # "/v1.47/containers/create?name=web" (as sent)
    status: int | None = None        # None until the answer's status line has arrived
    connection: int = 0              # which client connection carried it (1, 2, …)

    @property
    def route(self) -> str:
        """The path without the API version prefix and the query: "/containers/create"."""
        return _VERSION_PREFIX.sub("", self.path.split("?", 1)[0])

    @property
    def upgraded(self) -> bool:
        """True if the daemon switched this connection to a raw stream (101)."""
        return self.status == 101

    def __str__(self) -> str:
        return f"{self.method} {self.path} -> {self.status if self.status is not None else '…'}"


class _Framer:
    """Finds the heads of HTTP/1.1 messages in one direction of a connection (no I/O).

    feed(bytes) returns the heads completed by those bytes, each as (start line, headers with
    lower-case names). `answers_to` is the per-connection queue of request methods, so that the
    response framer knows an answer to HEAD has no body."""

    def __init__(self, is_response: bool, answers_to: deque[str]) -> None:
        self.is_response = is_response
        self.answers_to = answers_to
        self.buf = bytearray()
        self.state = "head"          # head | body | chunk-size | chunk-data | trailers | raw
        self.remaining = 0
        self.after_body = "head"     # "raw" after an upgrade request: the stream follows it

    def feed(self, data: bytes) -> list[tuple[str, dict[str, str]]]:
        if self.state == "raw":
            return []                # an upgraded stream, or a body that lasts until close
        self.buf += data
        heads = []
        while True:
            if self.state == "head":
                end = self.buf.find(b"\r\n\r\n")
                if end < 0:
                    if len(self.buf) > _MAX_HEAD:
                        self.state = "raw"
                    return heads
                head = bytes(self.buf[:end]).decode("latin-1")
                del self.buf[:end + 4]
                start, headers = self._parse_head(head)
                heads.append((start, headers))
                self._body_of(start, headers)
            elif self.state == "body":
                n = min(self.remaining, len(self.buf))
                del self.buf[:n]
                self.remaining -= n
                if self.remaining:
                    return heads
                self.state = self.after_body
            elif self.state == "chunk-size":
                end = self.buf.find(b"\r\n")
                if end < 0:
                    return heads
                size = bytes(self.buf[:end]).split(b";")[0].strip()
                del self.buf[:end + 2]
                try:
                    self.remaining = int(size, 16)
                except ValueError:
                    self.state = "raw"       # not HTTP we can follow: just relay from here on
                    return heads
                if self.remaining == 0:
                    self.state = "trailers"
                else:
                    self.remaining += 2      # the CRLF after the chunk's data
                    self.state = "chunk-data"
            elif self.state == "chunk-data":
                n = min(self.remaining, len(self.buf))
                del self.buf[:n]
                self.remaining -= n
                if self.remaining:
                    return heads
                self.state = "chunk-size"
            elif self.state == "trailers":
                end = self.buf.find(b"\r\n")
                if end < 0:
                    return heads
                del self.buf[:end + 2]
                if end == 0:                 # the empty line that ends the trailers
                    self.state = self.after_body
            else:                            # raw
                self.buf.clear()
                return heads

    @staticmethod
    def _parse_head(head: str) -> tuple[str, dict[str, str]]:
        start, *lines = head.split("\r\n")
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        return start, headers

    def _body_of(self, start: str, headers: dict[str, str]) -> None:
        """Set the state for what follows the head just parsed."""
        chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        length = headers.get("content-length")
        if self.is_response:
            try:
                status = int(start.split()[1])
            except (IndexError, ValueError):
                self.state = "raw"
                return
            if status == 101:
                self.state = "raw"           # the connection is a raw stream from now on
                return
            if 100 <= status < 200:
                return                       # an interim answer: the real one follows
            method = self.answers_to.popleft() if self.answers_to else "GET"
            if method == "HEAD" or status in (204, 304):
                return
        elif "upgrade" in headers.get("connection", "").lower():
            # After an upgrade request the client sends stream data as soon as it sees 101:
            # its request body (if any) is framed as usual, then the framer stops.
            self.after_body = self.state = "raw"
        if chunked:
            self.state = "chunk-size"
        elif length is not None:
            try:
                self.remaining = int(length)
            except ValueError:
                self.state = "raw"
                return
            self.state = "body" if self.remaining else self.after_body
        elif self.is_response:
            self.state = "raw"               # no length given: the body lasts until close


class _Connection(socketserver.BaseRequestHandler):
    """One client connection: dial the daemon, relay both ways, record on the side."""

    server: "_Server"

    def handle(self) -> None:
        client = self.request
        upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            upstream.connect(str(self.server.upstream))
        except OSError as e:
            self.server.proxy._note(f"cannot connect to {self.server.upstream}: {e}")
            client.close()
            upstream.close()
            return
        number = self.server.proxy._next_connection()
        methods: deque[str] = deque()
        pending: deque[Exchange] = deque()
        requests, answers = _Framer(False, methods), _Framer(True, methods)

        def on_request(start: str, headers: dict[str, str]) -> None:
            method, _, rest = start.partition(" ")
            path = rest.rpartition(" ")[0] or rest
            exchange = Exchange(method, path, connection=number)
            methods.append(method)
            pending.append(exchange)
            self.server.proxy._record(exchange)

        def on_answer(start: str, headers: dict[str, str]) -> None:
            try:
                status = int(start.split()[1])
            except (IndexError, ValueError):
                return
            if 100 <= status < 200 and status != 101:
                return
            if pending:
                exchange = pending.popleft()
                exchange.status = status
                self.server.proxy._answered(exchange)

        back = threading.Thread(target=_relay, args=(upstream, client, answers, on_answer),
                                daemon=True)
        back.start()
        _relay(client, upstream, requests, on_request)
        back.join()
        client.close()
        upstream.close()


def _relay(src: socket.socket, dst: socket.socket, framer: _Framer,
           on_head: Callable[[str, dict[str, str]], None]) -> None:
    """Copy src -> dst until src closes; then tell dst no more is coming (half-close), so a
    client that closes its sending side still receives the rest of the answer."""
    try:
        while data := src.recv(65536):
            # Record first, then forward: whoever reads the record after the client got its
            # answer must find that answer in it.
            try:
                for start, headers in framer.feed(data):
                    on_head(start, headers)
            except Exception:        # noqa: BLE001 — the record may fail, the relay must not
                framer.state = "raw"
            dst.sendall(data)
    except OSError:
        pass
    finally:
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass


class _Server(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True        # a hanging /wait must not keep the notebook's kernel alive
    block_on_close = False

    def __init__(self, listen: Path, upstream: Path, proxy: "APIProxy") -> None:
        self.upstream = upstream
        self.proxy = proxy
        super().__init__(str(listen), _Connection)


class APIProxy:
    """A logging proxy in front of an Engine API unix socket.

    `upstream` is the daemon's socket (default: the lab's, labkit.paths.DOCKER_SOCK, or a
    "unix://…" address); `listen` is where the proxy listens (default: a new short path under
    /tmp). `requests` lists every Exchange in the order the requests arrived; `on_exchange`,
    if given, is called with each one when its answer's status is known."""

    def __init__(self, upstream: str | os.PathLike | None = None,
                 listen: str | os.PathLike | None = None,
                 on_exchange: Callable[[Exchange], None] | None = None) -> None:
        up = str(upstream) if upstream is not None else str(paths.DOCKER_SOCK)
        self.upstream = Path(up.removeprefix("unix://"))
        self._tmpdir: str | None = None
        self.listen = Path(listen) if listen is not None else None   # chosen by start() if None
        self.on_exchange = on_exchange
        self.requests: list[Exchange] = []
        self.problems: list[str] = []
        self._lock = threading.Lock()
        self._connections = 0
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def docker_host(self) -> str:
        """The value for DOCKER_HOST that sends a client through this proxy."""
        if self.listen is None:
            raise RuntimeError("the proxy has no socket yet: call start() first")
        return f"unix://{self.listen}"

    def start(self) -> "APIProxy":
        if self._server is not None:
            return self
        if not self.upstream.exists():
            raise FileNotFoundError(f"no Engine API socket at {self.upstream}: is the daemon "
                                    "running? (labkit lab up)")
        if self.listen is None:
            # a unix socket path must fit in 108 bytes: keep it short, under /tmp
            self._tmpdir = tempfile.mkdtemp(prefix="lkapi-", dir="/tmp")
            self.listen = Path(self._tmpdir, "docker.sock")
        elif self.listen.exists():
            raise FileExistsError(f"{self.listen} already exists: choose another listen path")
        self._server = _Server(self.listen, self.upstream, self)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        name=f"apiproxy {self.listen}")
        self._thread.start()
        # A notebook whose cell failed may never reach proxy.stop(): remove the socket and its
        # directory when the kernel exits, whatever happened before.
        atexit.register(self.stop)
        return self

    def stop(self) -> None:
        """Stop listening and remove the socket (connections still open finish on their own)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self.listen is not None:
            self.listen.unlink(missing_ok=True)
        if self._tmpdir:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None
        atexit.unregister(self.stop)

    def clear(self) -> None:
        """Forget the requests recorded so far (before the next command you want to watch)."""
        with self._lock:
            self.requests.clear()

    def __enter__(self) -> "APIProxy":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ---- called from the connection threads

    def _next_connection(self) -> int:
        with self._lock:
            self._connections += 1
            return self._connections

    def _record(self, exchange: Exchange) -> None:
        with self._lock:
            self.requests.append(exchange)

    def _answered(self, exchange: Exchange) -> None:
        if self.on_exchange is not None:
            self.on_exchange(exchange)

    def _note(self, problem: str) -> None:
        with self._lock:
            self.problems.append(problem)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m labkit.course.apiproxy",
                                description="print each Engine API request a client makes")
    p.add_argument("--upstream", default=str(paths.DOCKER_SOCK),
                   help="the daemon's socket (default: %(default)s)")
    p.add_argument("--listen", help="where to listen (default: a new path under /tmp)")
    args = p.parse_args(argv)
    try:
        proxy = APIProxy(args.upstream, args.listen,
                         on_exchange=lambda e: print(f"[{e.connection}] {e}", flush=True)).start()
    except OSError as e:
        print(f"apiproxy: {e}", file=sys.stderr)
        return 1
    print(f"export DOCKER_HOST={proxy.docker_host}   # in the terminal to watch; Ctrl-C stops",
          flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        proxy.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
