"""The Engine API's HTTP layer against a fake backend, over a real unix socket."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading

import pytest

from labkit import stdcopy
from labkit.dockerd.httputils import Request, Response, split_version
from labkit.dockerd.router import Router
from labkit.dockerd.server import EngineAPIServer
from dockerd.conftest import DOCKER
from dockerd.fake_backend import FakeBackend
from dockerd.httpunix import call


@pytest.fixture
def api():
    """(socket path, fake backend) of a running server; stopped and removed afterwards."""
    tmp = tempfile.mkdtemp(prefix="lk-d-", dir="/tmp")
    backend = FakeBackend()
    server = EngineAPIServer(os.path.join(tmp, "d.sock"), Router(backend))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield str(server.socket_path), backend
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
        shutil.rmtree(tmp, ignore_errors=True)


def raw_request(sock_path: str, data: bytes) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(sock_path)
    s.sendall(data)
    return s


def read_until(s: socket.socket, marker: bytes) -> bytes:
    buf = b""
    while marker not in buf:
        chunk = s.recv(65536)
        if not chunk:
            break
        buf += chunk
    return buf


# ---------------------------------------------------------------- pure parts

def test_split_version():
    assert split_version("/v1.41/containers/json") == ("1.41", "/containers/json")
    assert split_version("/_ping") == (None, "/_ping")
    with pytest.raises(Exception, match="too old"):
        split_version("/v1.12/info")
    with pytest.raises(Exception, match="too new"):
        split_version("/v9.99/info")


def test_dispatch_without_io_finds_routes_and_404s():
    router = Router(FakeBackend())
    r = router.dispatch(Request("GET", "/v1.45/nope", {}, {}))
    assert isinstance(r, Response) and r.status == 404
    assert json.loads(r.body) == {"message": "page not found"}
    r = router.dispatch(Request("DELETE", "/images/127.0.0.1:5000/x", {}, {}))
    assert r.status == 200 and json.loads(r.body) == [{"Untagged": "127.0.0.1:5000/x"}]


def test_frames_roundtrip():
    data = stdcopy.encode_frame(1, b"out") + stdcopy.encode_frame(2, b"err") + stdcopy.encode_frame(1, b"!")
    assert data[:8] == b"\x01\x00\x00\x00\x00\x00\x00\x03"
    assert stdcopy.demultiplex(data) == {1: b"out!", 2: b"err"}
    with pytest.raises(ValueError):
        stdcopy.demultiplex(data[:-1])


# ---------------------------------------------------------------- over the socket

def test_ping_headers(api):
    sock, _ = api
    status, headers, body = call(sock, "HEAD", "/_ping")
    assert status == 200 and body == b""
    assert headers["Api-Version"] == "1.45"
    assert headers["Ostype"] == "linux"
    assert headers["Docker-Experimental"] == "false"
    assert headers["Server"].startswith("Docker/")
    assert headers["Cache-Control"] == "no-cache, no-store, must-revalidate"
    status, headers, body = call(sock, "GET", "/_ping")
    assert (status, body) == (200, b"OK")


def test_versioned_and_unversioned_paths(api):
    sock, _ = api
    for path in ("/version", "/v1.24/version", "/v1.41/version", "/v1.45/version"):
        status, headers, body = call(sock, "GET", path)
        assert status == 200, path
        assert json.loads(body)["ApiVersion"] == "1.45"
    status, headers, body = call(sock, "GET", "/v1.10/version")
    assert status == 400 and b"too old" in body


def test_one_api_version_range(api):
    """What /version advertises is what the paths accept, and what the refusal names."""
    sock, _ = api
    version = json.loads(call(sock, "GET", "/version")[2])
    assert (version["MinAPIVersion"], version["ApiVersion"]) == ("1.24", "1.45")
    assert call(sock, "GET", "/v1.46/version")[0] == 400
    status, _, body = call(sock, "GET", "/v1.99/version")
    assert status == 400
    assert json.loads(body)["message"] == ("client version 1.99 is too new. Maximum "
                                           "supported API version is 1.45")
    status, _, body = call(sock, "GET", "/v1.23/version")
    assert status == 400 and "Minimum supported API version is 1.24" in json.loads(body)["message"]


def test_unknown_route_is_json_404(api):
    sock, _ = api
    status, headers, body = call(sock, "GET", "/v1.45/frobnicate")
    assert status == 404
    assert headers["Content-Type"] == "application/json"
    assert json.loads(body) == {"message": "page not found"}
    assert headers["Api-Version"] == "1.45"


def test_malformed_json_is_400(api):
    sock, _ = api
    status, headers, body = call(sock, "POST", "/containers/create", b"{not json",
                                 {"Content-Type": "application/json"})
    assert status == 400 and headers["Content-Type"] == "application/json"
    assert "invalid JSON" in json.loads(body)["message"]
    status, _, body = call(sock, "POST", "/containers/create", b"[1]")
    assert status == 400
    status, _, body = call(sock, "GET", "/containers/json?limit=abc")
    assert status == 400 and "limit" in json.loads(body)["message"]
    status, _, body = call(sock, "POST", "/containers/create?name=bad%20name", b"{}")
    assert status == 400 and "Invalid container name" in json.loads(body)["message"]


def test_garbage_request_line_gets_json_error(api):
    sock, _ = api
    s = raw_request(sock, b"NOT A REQUEST\r\n\r\n")
    data = read_until(s, b"}")
    s.close()
    assert data.startswith(b"HTTP/1.1 400") or data.startswith(b"HTTP/1.0 400")
    assert b'"message"' in data


def test_create_404_and_201(api):
    sock, _ = api
    status, _, body = call(sock, "POST", "/v1.45/containers/create",
                           json.dumps({"Image": "hello-world"}).encode())
    assert status == 404 and json.loads(body)["message"] == "No such image: hello-world:latest"
    status, _, body = call(sock, "POST", "/v1.45/containers/create?name=web",
                           json.dumps({"Image": "busybox", "Cmd": ["echo", "hi"]}).encode())
    assert status == 201
    reply = json.loads(body)
    assert len(reply["Id"]) == 64 and reply["Warnings"] == []
    status, _, body = call(sock, "POST", "/v1.45/containers/create?name=web",
                           json.dumps({"Image": "busybox"}).encode())
    assert status == 409


def test_wait_headers_flush_before_exit_then_attach_frames(api):
    """The docker run sequence by hand: attach (101), wait (headers now), start, frames, body."""
    sock, backend = api
    backend.start_delay = 0.3
    _, _, body = call(sock, "POST", "/v1.45/containers/create",
                      json.dumps({"Image": "busybox", "Cmd": ["echo", "hi"]}).encode())
    cid = json.loads(body)["Id"]

    attach = raw_request(sock, f"POST /v1.45/containers/{cid}/attach?stderr=1&stdout=1&stream=1 "
                               "HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: Upgrade\r\n"
                               "Upgrade: tcp\r\n\r\n".encode())
    head = read_until(attach, b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101 UPGRADED")
    assert b"Content-Type: application/vnd.docker.multiplexed-stream" in head
    attach.shutdown(socket.SHUT_WR)  # as the CLI does: must not end the output

    wait = raw_request(sock, f"POST /v1.45/containers/{cid}/wait?condition=next-exit HTTP/1.1\r\n"
                             "Host: x\r\nContent-Length: 0\r\n\r\n".encode())
    wait_head = read_until(wait, b"\r\n\r\n")  # arrives although nothing has started yet
    assert wait_head.startswith(b"HTTP/1.1 200")
    assert b"Transfer-Encoding: chunked" in wait_head

    status, _, _ = call(sock, "POST", f"/v1.45/containers/{cid}/start")
    assert status == 204
    status, _, _ = call(sock, "POST", f"/v1.45/containers/{cid[:10]}/start")

    out = b""
    while chunk := attach.recv(65536):
        out += chunk
    attach.close()
    assert stdcopy.demultiplex(out) == {1: b"echo hi\n"}

    rest = read_until(wait, b"0\r\n\r\n")
    wait.close()
    assert b'{"StatusCode": 0, "Error": null}' in rest


def test_start_running_is_304_and_errors_are_400(api):
    sock, backend = api
    backend.start_delay = 1
    _, _, body = call(sock, "POST", "/containers/create",
                      json.dumps({"Image": "busybox", "Cmd": ["sleep"]}).encode())
    cid = json.loads(body)["Id"]
    assert call(sock, "POST", f"/containers/{cid}/start")[0] == 204
    assert call(sock, "POST", f"/containers/{cid}/start")[0] == 304
    status, _, body = call(sock, "DELETE", f"/containers/{cid}")
    assert status == 409
    _, _, body = call(sock, "POST", "/containers/create",
                      json.dumps({"Image": "busybox", "Cmd": ["nosuchcmd"]}).encode())
    cid = json.loads(body)["Id"]
    status, _, body = call(sock, "POST", f"/containers/{cid}/start")
    assert status == 400 and "executable file not found" in json.loads(body)["message"]


def test_restart_calls_the_backends_restart(api):
    sock, backend = api
    _, _, body = call(sock, "POST", "/containers/create",
                      json.dumps({"Image": "busybox", "Cmd": ["echo", "x"]}).encode())
    cid = json.loads(body)["Id"]
    assert call(sock, "POST", f"/containers/{cid}/restart?t=1")[0] == 204
    assert backend.calls[-2:] == ["restart", "start"]
    assert call(sock, "POST", "/containers/nosuch/restart")[0] == 404


def test_wait_bad_condition_and_missing_container(api):
    sock, _ = api
    status, _, body = call(sock, "POST", "/containers/nope/wait")
    assert status == 404 and json.loads(body)["message"] == "No such container: nope"
    _, _, body = call(sock, "POST", "/containers/create", json.dumps({"Image": "busybox"}).encode())
    cid = json.loads(body)["Id"]
    status, _, body = call(sock, "POST", f"/containers/{cid}/wait?condition=soon")
    assert status == 400


def test_pull_stream_reports_errors_after_200(api):
    sock, _ = api
    status, headers, body = call(sock, "POST", "/images/create?fromImage=missing&tag=latest")
    assert status == 200 and headers["Content-Type"] == "application/json"
    messages = [json.loads(line) for line in body.split(b"\r\n") if line]
    assert messages[0]["status"] == "Pulling from library/busybox"
    assert "manifest for missing:latest not found" in messages[-1]["errorDetail"]["message"]
    status, _, body = call(sock, "POST", "/images/create?fromImage=bad%20ref")
    assert status == 400
    status, _, body = call(sock, "POST", "/images/create")
    assert status == 400


def test_logs_requires_a_stream(api):
    sock, _ = api
    _, _, body = call(sock, "POST", "/containers/create", json.dumps({"Image": "busybox"}).encode())
    cid = json.loads(body)["Id"]
    status, _, body = call(sock, "GET", f"/containers/{cid}/logs")
    assert status == 400 and "at least one stream" in json.loads(body)["message"]
    status, _, body = call(sock, "GET", f"/containers/{cid}/logs?stdout=1&tail=x")
    assert status == 400


@pytest.mark.skipif(not os.path.exists(DOCKER), reason="the docker CLI is not installed")
def test_real_docker_cli_against_fake_backend(api):
    sock, backend = api
    env = dict(os.environ, DOCKER_HOST=f"unix://{sock}", DOCKER_CONFIG=os.path.dirname(sock))
    v = subprocess.run([DOCKER, "version", "--format", "{{.Server.APIVersion}}"], env=env,
                       capture_output=True, text=True, timeout=30)
    assert v.returncode == 0, v.stderr
    assert v.stdout.strip() == "1.45"
    r = subprocess.run([DOCKER, "run", "busybox", "echo", "hello", "fake"], env=env,
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "echo hello fake\n"
    assert backend.calls[:4] == ["create", "attach", "wait", "start"]
    r = subprocess.run([DOCKER, "run", "busybox", "exit", "3"], env=env,
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 3
    r = subprocess.run([DOCKER, "run", "busybox", "nosuchcmd"], env=env,
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 127 and "executable file not found" in r.stderr


def test_exec_create_start_inspect(api):
    sock, backend = api
    backend.start_delay = 2
    _, _, body = call(sock, "POST", "/containers/create",
                      json.dumps({"Image": "busybox", "Cmd": ["sleep"]}).encode())
    cid = json.loads(body)["Id"]
    assert call(sock, "POST", f"/containers/{cid}/start")[0] == 204
    status, _, body = call(sock, "POST", f"/v1.45/containers/{cid}/exec",
                           json.dumps({"Cmd": ["echo", "x"], "AttachStdout": True}).encode())
    assert status == 201
    exec_id = json.loads(body)["Id"]
    s = raw_request(sock, f"POST /v1.45/exec/{exec_id}/start HTTP/1.1\r\nHost: x\r\n"
                          "Content-Type: application/json\r\nContent-Length: 30\r\n"
                          "Connection: Upgrade\r\nUpgrade: tcp\r\n\r\n"
                          '{"Detach":false,"Tty":false}  '.encode())
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    s.close()
    head, _, rest = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101 UPGRADED")
    assert stdcopy.demultiplex(rest) == {1: b"exec echo x\n"}
    status, _, body = call(sock, "GET", f"/v1.45/exec/{exec_id}/json")
    assert status == 200 and json.loads(body)["ExitCode"] == 0
    assert call(sock, "GET", "/v1.45/exec/nope/json")[0] == 404
    assert call(sock, "POST", f"/v1.45/containers/{cid}/exec", b"[]")[0] == 400


# ---------------------------------------------------------------- bad input (issue 11)

def test_json_nested_too_deep_is_400(api):
    sock, _ = api
    body = b"[" * 100_000 + b"]" * 100_000
    status, headers, reply = call(sock, "POST", "/v1.45/containers/create", body,
                                  {"Content-Type": "application/json"})
    assert (status, json.loads(reply)["message"]) == (
        400, "invalid JSON in request body: nested too deeply")


def test_an_oversized_body_is_413_and_the_daemon_serves_on(api):
    sock, _ = api
    body = b'{"Image":"busybox","Env":["X=' + b"x" * (10 * 1024 * 1024) + b'"]}'
    status, headers, reply = call(sock, "POST", "/v1.45/containers/create", body,
                                  {"Content-Type": "application/json"})
    assert status == 413 and headers["Content-Type"] == "application/json"
    assert "too large" in json.loads(reply)["message"]
    s = raw_request(sock, b"POST /containers/create HTTP/1.1\r\nHost: d\r\n"
                          b"Content-Length: 999999999999\r\n\r\n")
    assert read_until(s, b"\r\n\r\n").startswith(b"HTTP/1.1 413")
    s.close()
    assert call(sock, "GET", "/_ping")[0] == 200


def test_listen_backlog_takes_a_burst(api):
    """listen(2)'s backlog is >= 128 (socketserver's default, 5, refused bursts)."""
    from labkit.dockerd.server import EngineAPIServer, EngineAPITCPServer
    assert EngineAPIServer.request_queue_size >= 128
    assert EngineAPITCPServer.request_queue_size >= 128
    sock, _ = api
    clients = [socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) for _ in range(100)]
    try:
        for c in clients:
            c.setblocking(False)
            c.connect(sock)          # EAGAIN if the backlog overflowed
    finally:
        for c in clients:
            c.close()
