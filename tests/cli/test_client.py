"""Client behaviour a real dockerd does not show on demand — HEAD refused, no Api-Version, error
bodies that are not JSON — checked against a small real HTTP server on a unix socket."""

from __future__ import annotations

import http.server
import json
import os
import shutil
import socketserver
import tempfile
import threading

import pytest

from labkit.client import APIError, Client, DaemonNotRunning


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


def _handler(api_version: str | None, refuse_head: bool, seen: list[str]):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # unix sockets have no client address to log
            pass

        def _reply(self, status: int, body: bytes = b"", ctype: str = "application/json",
                   headers: dict | None = None):
            self.send_response(status)
            if api_version:
                self.send_header("Api-Version", api_version)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def do_HEAD(self):
            seen.append(f"HEAD {self.path}")
            self._reply(405 if refuse_head else 200)

        def do_GET(self):
            seen.append(f"GET {self.path}")
            if self.path == "/_ping":
                self._reply(200, b"OK", "text/plain; charset=utf-8")
            elif self.path.endswith("/containers/json"):
                self._reply(200, b"[]")
            elif self.path.endswith("/containers/busy/json"):
                self._reply(409, b'{"message":"container is busy"}', "application/json; charset=utf-8")
            else:
                self._reply(404, b'{"message":"No such container: x"}')

    return Handler


@pytest.fixture
def fake_daemon():
    """start(api_version, refuse_head) -> (host URL, list of requests seen)."""
    d = tempfile.mkdtemp(prefix="lkc-", dir="/tmp")
    servers = []

    def start(api_version: str | None = "1.41", refuse_head: bool = False):
        seen: list[str] = []
        path = os.path.join(d, f"d{len(servers)}.sock")
        srv = _Server(path, _handler(api_version, refuse_head, seen))
        threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        servers.append(srv)
        return f"unix://{path}", seen

    try:
        yield start
    finally:
        for srv in servers:
            srv.shutdown()
            srv.server_close()
        shutil.rmtree(d, ignore_errors=True)


@pytest.mark.parametrize("advertised, used", [("1.41", "1.41"), ("1.99", "1.50"), (None, "1.24")])
def test_negotiation_uses_min_of_ours_and_theirs(fake_daemon, advertised, used):
    host, seen = fake_daemon(advertised)
    assert Client(host).containers() == []
    assert seen == ["HEAD /_ping", f"GET /v{used}/containers/json"]


def test_head_refused_falls_back_to_get(fake_daemon):
    host, seen = fake_daemon("1.41", refuse_head=True)
    Client(host).containers()
    assert seen == ["HEAD /_ping", "GET /_ping", "GET /v1.41/containers/json"]


def test_pinned_version_skips_negotiation(fake_daemon):
    host, seen = fake_daemon("1.41")
    Client(host, version="1.40").containers()
    assert seen == ["GET /v1.40/containers/json"]


def test_error_message_parsed_only_for_exact_json_content_type(fake_daemon):
    host, _ = fake_daemon()
    c = Client(host)
    with pytest.raises(APIError) as e:
        c.inspect_container("x")
    assert (e.value.status, e.value.message) == (404, "No such container: x")
    with pytest.raises(APIError) as e:
        c.inspect_container("busy")
    # "application/json; charset=utf-8" is not parsed by the docker CLI: the raw body is shown
    assert e.value.status == 409 and json.loads(e.value.message) == {"message": "container is busy"}


def test_no_daemon_is_a_clear_error():
    with pytest.raises(DaemonNotRunning) as e:
        Client("unix:///tmp/labkit-no-such-daemon.sock").containers()
    assert str(e.value) == ("cannot connect to labkit-dockerd at unix:///tmp/labkit-no-such-daemon.sock: "
                            "is the lab running? start it with: labkit lab up")
