"""End to end: the Engine API users reach for (issue 11), through the real docker CLI and
docker-py against labkit-dockerd on the private stack of conftest.py.

Every test removes the containers and volumes it makes, also when it fails (the stack is
shared with test_e2e.py, whose last test checks that nothing is left).
"""

from __future__ import annotations

import json
import os
import pty
import select
import socket
import time
from contextlib import contextmanager

import pytest

from dockerd.conftest import DOCKER
from dockerd.httpunix import call
from dockerd.test_e2e import docker

pytestmark = [pytest.mark.root, pytest.mark.e2e,
              pytest.mark.skipif(not os.path.exists(DOCKER), reason="docker CLI not installed")]


@contextmanager
def containers(env: dict, *names: str):
    """Remove the named containers afterwards, whatever happened."""
    try:
        yield
    finally:
        docker(env, "rm", "-f", *names)


@contextmanager
def docker_py(env: dict):
    module = pytest.importorskip("docker")
    client = module.DockerClient(base_url=env["DOCKER_HOST"])
    try:
        yield client
    finally:
        client.close()


def wait_until(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def status_of(env: dict, name: str) -> str:
    return docker(env, "inspect", "--format", "{{.State.Status}}", name).stdout.strip()


class Terminal:
    """The docker CLI on a pseudo-terminal, as a user at a terminal runs it."""

    def __init__(self, env: dict, *args: str) -> None:
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: exec the CLI, its stdio the pty
            os.execve(DOCKER, [DOCKER, *args], env)
        self.output = b""

    def read_until(self, marker: bytes, timeout: float = 15) -> bool:
        deadline = time.monotonic() + timeout
        while marker not in self.output and time.monotonic() < deadline:
            if select.select([self.fd], [], [], 0.1)[0]:
                try:
                    self.output += os.read(self.fd, 4096)
                except OSError:   # EIO: the CLI exited and closed the pty
                    break
        return marker in self.output

    def type(self, data: bytes) -> None:
        os.write(self.fd, data)

    def wait(self, timeout: float = 15) -> int | None:
        """The CLI's exit code, or None (then it is killed) if it did not exit in time."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.read_until(b"\0never", 0.1)
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                os.close(self.fd)
                return os.waitstatus_to_exitcode(status)
        os.kill(self.pid, 9)
        os.waitpid(self.pid, 0)
        os.close(self.fd)
        return None


# ---------------------------------------------------------------- 1. exec framing, detach keys

def test_exec_framing_follows_the_tty_of_exec_start(docker_env):
    """docker-py frames by the Tty it gives exec_start; create's Tty only makes the pty."""
    with containers(docker_env, "api-exec"), docker_py(docker_env) as client:
        assert docker(docker_env, "run", "-d", "--name", "api-exec", "busybox",
                      "sleep", "60").returncode == 0
        exec_id = client.api.exec_create("api-exec", ["echo", "hello"], tty=True)["Id"]
        assert client.api.exec_start(exec_id, tty=False) == b"hello\r\n"  # one frame, the pty's
        exec_id = client.api.exec_create("api-exec", ["sh", "-c", "echo out; echo err >&2"])["Id"]
        assert client.api.exec_start(exec_id, demux=True) == (b"out\n", b"err\n")
        result = client.containers.get("api-exec").exec_run("echo raw", tty=True)
        assert (result.exit_code, result.output) == (0, b"raw\r\n")


def test_detach_keys_leave_the_container_running(docker_env):
    """ctrl-p ctrl-q in `docker run -it`, --detach-keys in `docker start -ai`: the CLI
    returns, the container runs on (its stdin stays open), and takes the next attach."""
    with containers(docker_env, "api-detach"):
        term = Terminal(docker_env, "run", "-it", "--name", "api-detach", "busybox", "sh")
        assert term.read_until(b"/ # "), term.output
        term.type(b"echo one-$((40+2))\r")
        assert term.read_until(b"one-42"), term.output
        term.type(b"\x10\x11")
        assert term.wait() == 0, term.output
        assert status_of(docker_env, "api-detach") == "running"
        term = Terminal(docker_env, "start", "-ai", "--detach-keys", "ctrl-x,y", "api-detach")
        time.sleep(0.5)   # the CLI puts its terminal in raw mode once attached
        term.type(b"echo two-$((40+3))\r")
        assert term.read_until(b"two-43"), term.output
        term.type(b"\x18y")
        assert term.wait() == 0, term.output
        assert status_of(docker_env, "api-detach") == "running"


def test_the_daemon_sees_detach_keys_too(labkit_stack, docker_env):
    """A client that sends every byte (no detection of its own) is detached by the daemon:
    its connection ends, the container runs on. Without a TTY stdin is data, not keys."""
    with containers(docker_env, "api-detach2"):
        assert docker(docker_env, "run", "-dit", "--name", "api-detach2", "busybox",
                      "sh").returncode == 0
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(10)
        s.connect(labkit_stack)
        s.sendall(b"POST /v1.45/containers/api-detach2/attach?stdin=1&stdout=1&stream=1"
                  b"&detachKeys=ctrl-a,b HTTP/1.1\r\nHost: d\r\nConnection: Upgrade\r\n"
                  b"Upgrade: tcp\r\nContent-Length: 0\r\n\r\n")
        received = b""
        while b"\r\n\r\n" not in received:
            received += s.recv(4096)
        assert received.startswith(b"HTTP/1.1 101"), received
        s.sendall(b"echo three-$((40+4))\n")
        while b"three-44" not in received:
            received += s.recv(4096)
        s.sendall(b"\x01b")
        while chunk := s.recv(4096):   # the daemon ends the session: EOF
            received += chunk
        s.close()
        assert status_of(docker_env, "api-detach2") == "running"
        status, _, body = call(labkit_stack, "POST", "/v1.45/containers/api-detach2/attach?"
                               "stdin=1&stream=1&detachKeys=ctrl-nope")
        assert status == 400 and b"Invalid detach keys (ctrl-nope)" in body


def test_stream_content_type_by_api_version(labkit_stack, docker_env):
    """Frames are called multiplexed-stream from API 1.42; before, raw-stream (same bytes)."""
    with containers(docker_env, "api-ctype"):
        assert docker(docker_env, "run", "--name", "api-ctype", "busybox",
                      "echo", "x").returncode == 0
        for version, expected in (("1.41", "application/vnd.docker.raw-stream"),
                                  ("1.45", "application/vnd.docker.multiplexed-stream")):
            status, headers, body = call(labkit_stack, "GET", f"/v{version}/containers/"
                                         "api-ctype/logs?stdout=1")
            assert (status, headers["Content-Type"]) == (200, expected)
            assert body == b"\x01\x00\x00\x00\x00\x00\x00\x02x\n"   # framed either way
