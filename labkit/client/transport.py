"""Where the daemon is, and how to open an HTTP connection to it.

`DOCKER_HOST` names the daemon as a URL: `unix:///run/labkit/docker.sock` (the lab's default)
or `tcp://127.0.0.1:2375` (plain HTTP; TLS is outside the course). The HTTP spoken over the
socket is the same in both cases — only `connect()` differs — so the unix case is a three-line
subclass of the standard library's http.client.HTTPConnection.
"""

from __future__ import annotations

import http.client
import os
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from labkit import paths


@dataclass(frozen=True)
class DockerHost:
    """A parsed DOCKER_HOST: scheme "unix" with a socket path, or "tcp" with host and port."""

    url: str
    scheme: str
    path: str = ""
    host: str = ""
    port: int = 0


def default_host() -> str:
    """DOCKER_HOST if set (as the docker CLI honours it), else the lab's socket."""
    return os.environ.get("DOCKER_HOST") or f"unix://{paths.DOCKER_SOCK}"


def parse_host(url: str) -> DockerHost:
    """Parse `unix:///path` or `tcp://host:port`; raise ValueError naming what is wrong."""
    if url.startswith("/"):  # a bare socket path, as some tools accept
        url = "unix://" + url
    parts = urlsplit(url)
    if parts.scheme == "unix":
        path = parts.netloc + parts.path  # unix:///a/b -> "/a/b"; unix://a/b -> "a/b"
        if not path:
            raise ValueError(f"invalid docker host {url!r}: unix:// needs a socket path")
        return DockerHost(url=url, scheme="unix", path=path)
    if parts.scheme in ("tcp", "http"):
        try:
            port = parts.port or 2375
        except ValueError:
            raise ValueError(f"invalid docker host {url!r}: bad port") from None
        if not parts.hostname:
            raise ValueError(f"invalid docker host {url!r}: tcp:// needs host:port")
        return DockerHost(url=url, scheme="tcp", host=parts.hostname, port=port)
    raise ValueError(f"invalid docker host {url!r}: expected unix:///path or tcp://host:port")


class UnixHTTPConnection(http.client.HTTPConnection):
    """http.client over AF_UNIX. The Host header is a placeholder, as the docker CLI's is
    (it sends `Host: api.moby.localhost`): the socket path, not a name, picks the daemon."""

    def __init__(self, path: str, timeout: float | None = None):
        super().__init__("api.moby.localhost", timeout=timeout)
        self.socket_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(self.socket_path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


def connect(host: DockerHost, timeout: float | None = None) -> http.client.HTTPConnection:
    """A fresh (not yet connected) HTTP connection to the daemon."""
    if host.scheme == "unix":
        return UnixHTTPConnection(host.path, timeout=timeout)
    return http.client.HTTPConnection(host.host, host.port, timeout=timeout)
