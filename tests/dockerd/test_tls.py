"""The Engine API on TCP beyond loopback: only with TLS and client certificates, as dockerd.

A labkit-dockerd (with its own labkit-containerd) listens on tcp://0.0.0.0:PORT with
--tlsverify; the test talks to it on 127.0.0.1 only. The certificates are made here with the
openssl command (a test may use tools; the engine uses Python's ssl module): a CA, the
daemon's certificate, a client certificate from that CA and one from a stranger's CA."""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess
import sys
from pathlib import Path

import pytest

from support import free_port, stop_process, wait_for_daemon

VENV_BIN = Path(sys.executable).parent
DOCKER = shutil.which("docker") or "/usr/bin/docker"
OPENSSL = shutil.which("openssl")

pytestmark = pytest.mark.skipif(OPENSSL is None, reason="openssl is not installed")


def _openssl(*args, cwd):
    subprocess.run([OPENSSL, *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _ca(d: Path, name: str) -> None:
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
             f"/CN={name}", "-keyout", f"{name}-key.pem", "-out", f"{name}.pem", cwd=d)


def _signed(d: Path, ca: str, name: str, ext: str) -> None:
    (d / f"{name}.ext").write_text(ext)
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
             "-keyout", f"{name}-key.pem", "-out", f"{name}.csr", cwd=d)
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}-key.pem",
             "-CAcreateserial", "-days", "2", "-extfile", f"{name}.ext", "-out", f"{name}.pem",
             cwd=d)


@pytest.fixture(scope="module")
def tls_daemon(tmp_path_factory):
    d = tmp_path_factory.mktemp("tls")
    _ca(d, "ca")
    _ca(d, "stranger-ca")
    _signed(d, "ca", "server", "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                                "extendedKeyUsage=serverAuth\n")
    _signed(d, "ca", "client", "extendedKeyUsage=clientAuth\n")
    _signed(d, "stranger-ca", "stranger", "extendedKeyUsage=clientAuth\n")
    port = free_port()
    env = dict(os.environ, LABKIT_RUN_DIR=str(d / "run"), LABKIT_LIB_DIR=str(d / "lib"))
    procs = []
    try:
        for name, argv, ready in (
            ("containerd", [str(VENV_BIN / "labkit-containerd"), "--address", str(d / "c.sock"),
                            "--root", str(d / "croot"), "--state", str(d / "cstate")],
             lambda: (d / "c.sock").exists()),
            ("dockerd", [str(VENV_BIN / "labkit-dockerd"), "-H", f"tcp://0.0.0.0:{port}",
                         "--tlsverify", "--tlscacert", str(d / "ca.pem"),
                         "--tlscert", str(d / "server.pem"), "--tlskey", str(d / "server-key.pem"),
                         "--containerd", str(d / "c.sock"), "--root", str(d / "droot"),
                         "--exec-root", str(d / "dexec"), "--cgroup-parent", f"/labkit-test-tls{port}"],
             lambda: _accepts(port))):
            log = d / f"{name}.log"
            with open(log, "ab") as out:
                proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env,
                                        start_new_session=True)
            procs.append(proc)
            wait_for_daemon(ready, name, proc, log, timeout=20)
        yield d, port
    finally:
        for proc in reversed(procs):
            stop_process(proc)


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def _docker(d: Path, port: int, *args, client="client"):
    env = dict(os.environ, DOCKER_CONFIG=str(d / "dockercfg"))
    env.pop("DOCKER_HOST", None)
    return subprocess.run([DOCKER, "-H", f"tcp://127.0.0.1:{port}", "--tlsverify",
                           "--tlscacert", str(d / "ca.pem"), "--tlscert", str(d / f"{client}.pem"),
                           "--tlskey", str(d / f"{client}-key.pem"), *args],
                          capture_output=True, text=True, timeout=60, env=env)


def test_the_docker_cli_with_a_client_certificate_gets_in(tls_daemon):
    d, port = tls_daemon
    r = _docker(d, port, "version", "--format", "{{.Server.Version}}")
    assert (r.returncode, r.stdout.strip()) == (0, "0.1.0-labkit"), r.stderr
    r = _docker(d, port, "ps", "-a")
    assert r.returncode == 0 and r.stdout.startswith("CONTAINER ID"), r.stderr


def test_docker_py_tlsconfig_gets_in(tls_daemon, monkeypatch):
    docker = pytest.importorskip("docker")
    d, port = tls_daemon
    # requests lets these variables override the CA a session was given (a requests quirk,
    # not docker-py's choice); this host sets them for its proxy
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    tls = docker.tls.TLSConfig(client_cert=(str(d / "client.pem"), str(d / "client-key.pem")),
                               ca_cert=str(d / "ca.pem"), verify=True)
    client = docker.DockerClient(base_url=f"https://127.0.0.1:{port}", tls=tls)
    try:
        assert client.version()["Version"] == "0.1.0-labkit"
    finally:
        client.close()


def test_a_stranger_certificate_or_none_is_refused(tls_daemon):
    d, port = tls_daemon
    r = _docker(d, port, "version", client="stranger")
    assert r.returncode != 0 and "Server:" not in r.stdout
    # no client certificate at all: the handshake fails before any HTTP
    context = ssl.create_default_context(cafile=str(d / "ca.pem"))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with pytest.raises((ssl.SSLError, ConnectionError)):
            with context.wrap_socket(raw, server_hostname="127.0.0.1") as s:
                s.sendall(b"GET /version HTTP/1.1\r\nHost: x\r\n\r\n")
                if not s.recv(1):       # TLS 1.3: the refusal arrives with the first read
                    raise ConnectionError("closed")
    # plain HTTP to the TLS port gets no API answer
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"GET /version HTTP/1.1\r\nHost: x\r\n\r\n")
        try:
            reply = s.recv(4096)
        except ConnectionError:
            reply = b""
        assert b"ApiVersion" not in reply


def test_beyond_loopback_without_tls_refuses_to_start_saying_why():
    r = subprocess.run([str(VENV_BIN / "labkit-dockerd"), "-H", "tcp://0.0.0.0:2375"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2
    assert "refusing -H tcp://0.0.0.0:2375" in r.stderr and "--tlsverify" in r.stderr
    r = subprocess.run([str(VENV_BIN / "labkit-dockerd"), "-H", "tcp://0.0.0.0:2375",
                        "--tlsverify"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "--tlsverify needs --tlscacert, --tlscert and --tlskey" in r.stderr
