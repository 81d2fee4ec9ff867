"""The helpers the notebooks use: the Engine API logging proxy and the diagrams.

The proxy is tested without a lab: a small HTTP/1.1 server on a unix socket of our own plays
the daemon, including keep-alive, chunked answers, HEAD and a 101 upgrade to a raw stream."""

from __future__ import annotations

import http.client
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections import deque
from pathlib import Path

import pytest

from labkit.course import diagrams
from labkit.course.apiproxy import APIProxy, Exchange, _Framer


# ------------------------------------------------------------------ the framer (no I/O)

def test_framer_finds_each_message_of_a_keep_alive_stream():
    methods: deque[str] = deque(["HEAD", "GET", "POST"])
    f = _Framer(True, methods)
    stream = (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n"          # answer to HEAD: no body
              b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
              b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
    heads = []
    for i in range(0, len(stream), 7):                  # in pieces, as a socket delivers them
        heads += f.feed(stream[i:i + 7])
    assert [h[0] for h in heads] == ["HTTP/1.1 200 OK"] * 3
    assert f.state == "head" and not methods


def test_framer_stops_at_an_upgrade():
    f = _Framer(True, deque(["POST"]))
    heads = f.feed(b"HTTP/1.1 101 UPGRADED\r\nUpgrade: tcp\r\n\r\n\x01\x00\x00\x00\x00\x00\x00\x03HTTP/1.1 200")
    assert [h[0] for h in heads] == ["HTTP/1.1 101 UPGRADED"]
    assert f.state == "raw" and f.feed(b"HTTP/1.1 200 OK\r\n\r\n") == []


def test_framer_request_side():
    f = _Framer(False, deque())
    heads = f.feed(b"POST /v1.45/containers/create HTTP/1.1\r\nContent-Length: 4\r\n\r\n{}\r\n"
                   b"POST /v1.45/containers/x/attach HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n"
                   b"GET /not/a/request HTTP/1.1\r\n\r\n")        # stdin bytes after the upgrade
    assert [h[0].split()[1] for h in heads] == ["/v1.45/containers/create", "/v1.45/containers/x/attach"]
    assert f.state == "raw"


def test_exchange_route_and_text():
    e = Exchange("POST", "/v1.45/containers/abc/wait?condition=removed", 200)
    assert e.route == "/containers/abc/wait" and str(e) == "POST /v1.45/containers/abc/wait?condition=removed -> 200"
    assert str(Exchange("GET", "/_ping")) == "GET /_ping -> …"


# ------------------------------------------------------------------ the proxy, for real

class _Daemon(threading.Thread):
    """A tiny Engine-API-like server: /_ping, a chunked /stream, and /attach that upgrades
    and then echoes raw bytes upper-cased."""

    def __init__(self, path: str):
        super().__init__(daemon=True)
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.bind(path)
        self.sock.listen()

    def run(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.serve, args=(conn,), daemon=True).start()

    def serve(self, conn: socket.socket):
        f = conn.makefile("rb")
        with conn:
            while line := f.readline():
                method, path, _ = line.decode().split(" ", 2)
                length = 0
                while (h := f.readline()) not in (b"\r\n", b""):
                    if h.lower().startswith(b"content-length:"):
                        length = int(h.split(b":")[1])
                f.read(length)
                if path == "/attach":
                    conn.sendall(b"HTTP/1.1 101 UPGRADED\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n")
                    while data := f.read1(100):
                        conn.sendall(data.upper())
                    return
                if path == "/stream":
                    conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                                 b"2\r\n{}\r\n0\r\n\r\n")
                elif path == "/_ping":
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n"
                                 + (b"" if method == "HEAD" else b"OK"))
                else:
                    conn.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")

    def close(self):
        self.sock.close()


@pytest.fixture
def daemon():
    d = tempfile.mkdtemp(prefix="lkpx-", dir="/tmp")
    server = _Daemon(os.path.join(d, "d.sock"))
    server.start()
    try:
        yield Path(d, "d.sock")
    finally:
        server.close()
        shutil.rmtree(d, ignore_errors=True)


class _UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path: Path):
        super().__init__("localhost", timeout=5)
        self.path = str(path)

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(5)
        self.sock.connect(self.path)


def test_proxy_relays_and_records_keep_alive_requests(daemon):
    seen = []
    with APIProxy(f"unix://{daemon}", on_exchange=seen.append) as proxy:
        assert proxy.docker_host.startswith("unix:///tmp/")
        conn = _UnixHTTP(proxy.listen)                   # one connection, four requests
        for method, path in [("HEAD", "/_ping"), ("GET", "/_ping"), ("GET", "/stream"), ("GET", "/nope")]:
            conn.request(method, path)
            r = conn.getresponse()
            body = r.read()
        assert body == b"" and r.status == 404
        conn.close()
        assert [str(e) for e in proxy.requests] == [
            "HEAD /_ping -> 200", "GET /_ping -> 200", "GET /stream -> 200", "GET /nope -> 404"]
        assert {e.connection for e in proxy.requests} == {1}
        assert seen == proxy.requests
        proxy.clear()
        assert proxy.requests == []
    assert not proxy.listen.exists()


def test_proxy_relays_an_upgraded_stream_both_ways(daemon):
    with APIProxy(daemon) as proxy:
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(5)
        s.connect(str(proxy.listen))
        s.sendall(b"POST /attach HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n")
        answer = b""
        while b"\r\n\r\n" not in answer:
            answer += s.recv(100)
        assert answer.startswith(b"HTTP/1.1 101")
        s.sendall(b"GET / HTTP/1.1\r\n\r\n")             # looks like HTTP, but it is stdin now
        s.shutdown(socket.SHUT_WR)                       # half-close: "no more input"
        echoed = answer.partition(b"\r\n\r\n")[2]
        while data := s.recv(100):
            echoed += data
        s.close()
        assert echoed == b"GET / HTTP/1.1\r\n\r\n"
        assert [str(e) for e in proxy.requests] == ["POST /attach -> 101"]
        assert proxy.requests[0].upgraded


def test_proxy_bad_input(daemon):
    before = set(Path("/tmp").glob("lkapi-*"))
    with pytest.raises(FileNotFoundError, match="no Engine API socket at /nonexistent/d.sock"):
        APIProxy("/nonexistent/d.sock").start()
    with pytest.raises(RuntimeError, match="call start"):
        APIProxy(daemon).docker_host
    with pytest.raises(FileExistsError, match="already exists"):
        APIProxy(daemon, listen=daemon).start()
    assert set(Path("/tmp").glob("lkapi-*")) == before      # nothing left behind


# ------------------------------------------------------------------ diagrams

@pytest.mark.root
def test_process_tree_shows_parents_and_the_namespaces_that_differ():
    # a parent in a new UTS namespace, with a child: both must appear, the uts inode in red
    proc = subprocess.Popen(["unshare", "--uts", "sh", "-c", "sleep 30 & wait"])
    try:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            kids = [p for p in diagrams.all_processes().values() if p.ppid == proc.pid]
            if kids:
                break
            time.sleep(0.05)
        # `unshare` execs sh: proc.pid is sh, in its new UTS namespace
        me = diagrams.read_process(os.getpid())
        sh = diagrams.read_process(proc.pid)
        assert sh.namespaces["uts"] != me.namespaces["uts"]
        assert sh.namespaces["net"] == me.namespaces["net"]
        g = diagrams.process_tree([proc.pid])
        src = g.source
        assert f"pid {proc.pid}" in src and f"pid {kids[0].pid}" in src
        assert f"{proc.pid} -> {kids[0].pid}" in src
        assert f"<b>{sh.namespaces['uts']}</b>" in src            # differs: bold, red
        assert f"<b>{sh.namespaces['net']}</b>" not in src
        assert "<svg" in g.pipe(format="svg").decode()
    finally:
        for p in diagrams.all_processes().values():
            if p.ppid == proc.pid:
                os.kill(p.pid, 9)
        proc.kill()
        proc.wait()


def test_process_tree_bad_pid():
    with pytest.raises(ProcessLookupError, match="no process with pid 999999999"):
        diagrams.process_tree([999999999])


def test_layers_diagram():
    src = diagrams.layers_diagram(highlight="L2").source
    for proto in ("Docker Engine API", "gRPC", "ttrpc", "OCI runtime", "OCI distribution"):
        assert proto in src
    with pytest.raises(ValueError, match="unknown layer 'L7'"):
        diagrams.layers_diagram("L7")


def test_request_sequence_reads_each_form():
    g = diagrams.request_sequence([
        Exchange("HEAD", "/_ping", 200),
        ("POST", "/v1.45/containers/create", 404),
        "POST /v1.45/containers/" + "a" * 64 + "/attach?stream=1 -> 101",
    ])
    src = g.source
    assert "1. HEAD /_ping" in src and "2. POST /containers/create" in src
    assert "3. POST /containers/aaaaaaaaaaaa…/attach?stream=1" in src
    assert "404" in src and "101 UPGRADED" in src
    with pytest.raises(ValueError, match="cannot read a request from 42"):
        diagrams.request_sequence([42])


def test_image_diagram_digests_and_sizes():
    import hashlib
    import json
    manifest = json.dumps({"mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": {"digest": "sha256:" + "c" * 64, "size": 455},
                           "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                                       "digest": "sha256:" + "d" * 64, "size": 2048}]}).encode()
    mdigest = "sha256:" + hashlib.sha256(manifest).hexdigest()
    index = {"manifests": [{"digest": "sha256:" + "e" * 64, "platform": {"os": "linux", "architecture": "arm64"}},
                           {"digest": mdigest, "platform": {"os": "linux", "architecture": "amd64"}}]}
    src = diagrams.image_diagram(index, manifest, {"os": "linux", "architecture": "amd64",
                                                   "config": {"Cmd": ["sh"]}}).source
    assert mdigest[:19] in src and "manifests[1]" in src          # the entry naming our manifest
    assert "2.0 KiB" in src and "455 B" in src and "[&quot;sh&quot;]" in src
    with pytest.raises(ValueError, match="must have 'config' and 'layers'"):
        diagrams.image_diagram(None, index)
    with pytest.raises(ValueError, match="the manifest is not JSON"):
        diagrams.image_diagram(None, b"{nope")


def test_process_tree_names_launched_programs_and_the_workspace_layers(tmp_path):
    """A daemon run through labkit.lab.launch is shown by its own name and arguments, with
    the layers it takes from a workspace; a dockerd whose runtime is a launcher wrapper shows
    that its containers are made with the workspace's namespaces (chapter 01's proof)."""
    from labkit.lab import launch
    wrapper = launch.write_wrapper(tmp_path / "labkit-runc", "labkit-runc",
                                   "labkit.runc.main:main", {"namespaces": tmp_path / "ws"})
    dockerd = diagrams.Process(10, 1, ["/venv/bin/python", "-m", "labkit.lab.launch",
                                       "--as=labkit-dockerd", "--layer=distribution=/w", "--",
                                       "labkit.dockerd.main:main", "labkit-dockerd", "-H", "x",
                                       "--default-runtime", str(wrapper)])
    assert dockerd.name == "labkit-dockerd"
    assert dockerd.args == ["-H", "x", "--default-runtime", str(wrapper)]
    assert diagrams._workspace_layers(dockerd) == {
        "distribution": "/w", "runtime's namespaces": str(tmp_path / "ws")}
    label = diagrams._process_label(dockerd, {})
    assert "runtime&#x27;s namespaces</b> from" in label or "runtime's namespaces</b> from" in label
    plain = diagrams.Process(11, 1, ["/venv/bin/labkit-containerd", "--address", "a"])
    assert plain.launched is None and diagrams._workspace_layers(plain) == {}


def test_process_tree_names_a_lean_shim():
    """The shim daemon runs as `python -S -m labkit.shim.main …` (or a workspace's
    labkit_student.shim.main): named by its module, its flags after it."""
    shim = diagrams.Process(12, 1, ["/venv/bin/python", "-S", "-m", "labkit_student.shim.main",
                                    "-namespace", "moby", "-id", "c1", "-address", "/run/c.sock"])
    assert shim.name == "labkit_student.shim.main"
    assert shim.args == ["-namespace", "moby", "-id", "c1", "-address", "/run/c.sock"]
    tuned = diagrams.Process(13, 1, ["/usr/bin/python3", "-X", "importtime", "-u", "tool.py", "a"])
    assert (tuned.name, tuned.args) == ("tool.py", ["a"])
