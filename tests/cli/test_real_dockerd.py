"""The labkit client and CLI against a REAL dockerd 20.10 (see conftest.py for the set-up).

The CLI runs as a separate process (`python -m labkit.cli.main`), exactly as a user runs it;
its output and exit status are compared with what the docker CLI does in the same case.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest

from labkit.client import APIError, Client
from support import LABKIT, REPO, run_labkit

pytestmark = [pytest.mark.root, pytest.mark.slow]


def labkit(host: str, *args: str, timeout: float = 60,
           input: str | None = None) -> subprocess.CompletedProcess:
    return run_labkit("-H", host, *args, timeout=timeout, input=input)


def test_ping_negotiates_the_daemons_version(client: Client):
    headers = client.ping()
    assert headers["api-version"] == "1.41" and client.api_version == "1.41"
    assert client.version()["ApiVersion"] == "1.41"


def test_run_pulls_on_404_then_streams_output_and_exit_status(real_dockerd):
    r = labkit(real_dockerd, "run", "--rm", "busybox", "sh", "-c", "echo out; echo err >&2; exit 3")
    assert r.returncode == 3, r.stderr
    assert r.stdout == "out\n"
    assert "err\n" in r.stderr
    # the first run of an image pulls it, as `docker run` does
    assert "Unable to find image 'busybox:latest' locally" in r.stderr
    assert "Status: Downloaded newer image for busybox:latest" in r.stderr


def test_run_hello_world(real_dockerd):
    r = labkit(real_dockerd, "run", "--rm", "hello-world")
    assert r.returncode == 0, r.stderr
    assert "Hello from labkit!" in r.stdout


def test_rm_flag_removes_the_container(real_dockerd, client):
    r = labkit(real_dockerd, "run", "--rm", "--name", "lk-gone", "busybox", "true")
    assert r.returncode == 0, r.stderr
    with pytest.raises(APIError) as e:
        client.inspect_container("lk-gone")
    assert e.value.status == 404


def test_missing_command_exits_127_like_docker(real_dockerd):
    r = labkit(real_dockerd, "run", "--rm", "busybox", "no-such-program")
    assert r.returncode == 127
    assert "executable file not found" in r.stderr


def test_unknown_image_is_a_daemon_error_125(real_dockerd):
    r = labkit(real_dockerd, "run", "--rm", "labkit-test/no-such-image")
    assert r.returncode == 125
    assert "Unable to find image 'labkit-test/no-such-image:latest' locally" in r.stderr
    assert "Error response from daemon" in r.stderr and "Traceback" not in r.stderr


def test_detached_run_ps_rm(real_dockerd, client):
    r = labkit(real_dockerd, "run", "-d", "--name", "lk-sleeper", "busybox", "sleep", "60")
    assert r.returncode == 0, r.stderr
    cid = r.stdout.strip()
    assert len(cid) == 64
    try:
        ps = labkit(real_dockerd, "ps")
        lines = ps.stdout.splitlines()
        assert lines[0].split("   ")[:2] == ["CONTAINER ID", "IMAGE"]
        row = next(line for line in lines if line.startswith(cid[:12]))
        assert '"sleep 60"' in row and "Up " in row and row.endswith("lk-sleeper")
        busy = labkit(real_dockerd, "rm", "lk-sleeper")
        assert busy.returncode == 1 and "Error response from daemon" in busy.stderr
        gone = labkit(real_dockerd, "rm", "-f", "lk-sleeper")
        assert gone.returncode == 0 and gone.stdout == "lk-sleeper\n"
    finally:
        try:
            client.remove_container(cid, force=True)
        except APIError:
            pass


def test_ps_all_shows_exited(real_dockerd, client):
    r = labkit(real_dockerd, "run", "--name", "lk-exited", "busybox", "true")
    assert r.returncode == 0, r.stderr
    try:
        assert "lk-exited" not in labkit(real_dockerd, "ps").stdout
        row = next(line for line in labkit(real_dockerd, "ps", "-a").stdout.splitlines()
                   if line.endswith("lk-exited"))
        assert "Exited (0)" in row
    finally:
        client.remove_container("lk-exited", force=True)


def test_pull_images_rmi(real_dockerd):
    r = labkit(real_dockerd, "pull", "busybox")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0] == "Using default tag: latest"
    assert r.stdout.splitlines()[-1] == "docker.io/library/busybox:latest"
    # a tag of our own, so that removing it leaves the busybox the other tests use
    assert labkit(real_dockerd, "pull", "hello-world").returncode == 0
    images = labkit(real_dockerd, "images").stdout.splitlines()
    assert images[0].split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    assert any(line.split()[:2] == ["hello-world", "latest"] for line in images[1:])
    rmi = labkit(real_dockerd, "rmi", "hello-world")
    assert rmi.returncode == 0, rmi.stderr
    assert "Untagged: hello-world:latest" in rmi.stdout
    again = labkit(real_dockerd, "rmi", "hello-world")
    assert again.returncode == 1 and "No such image" in again.stderr


def test_version_shows_both_sides(real_dockerd):
    r = labkit(real_dockerd, "version")
    assert r.returncode == 0, r.stderr
    assert "Client: labkit" in r.stdout and "API version:      1.41" in r.stdout


def test_attach_frames_through_the_client(client):
    list(client.pull("docker.io/library/busybox", "latest"))
    cid = client.create_container({"Image": "busybox", "Cmd": ["sh", "-c", "echo a; echo b >&2"],
                                   "AttachStdout": True, "AttachStderr": True,
                                   "HostConfig": {"NetworkMode": "default"}})["Id"]
    try:
        att = client.attach(cid)
        waiter = client.wait(cid)
        client.start(cid)
        got = {}
        for frame in att.frames():
            got[frame.stream] = got.get(frame.stream, b"") + frame.data
        att.close()
        assert got == {1: b"a\n", 2: b"b\n"}
        assert waiter.result()["StatusCode"] == 0
    finally:
        client.remove_container(cid, force=True)


def test_labkit_runc_under_real_dockerd(real_dockerd):
    """Stretch: labkit's OCI runtime under the real dockerd, containerd and shim (--add-runtime)."""
    if importlib.util.find_spec("labkit.runc.main") is None:
        pytest.skip("labkit-runc is not written yet")
    labkit(real_dockerd, "pull", "busybox")
    r = subprocess.run(["docker", "-H", real_dockerd, "run", "--rm", "--runtime", "labkit",
                        "busybox", "echo", "hi"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "hi\n"


def test_interactive_stdin_then_eof(real_dockerd):
    """-i: our stdin goes to the container; our EOF (a half-close) becomes its EOF."""
    r = labkit(real_dockerd, "run", "-i", "--rm", "busybox", "sh", "-c", "cat; echo done",
               input="line1\nline2\n")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "line1\nline2\ndone\n"


def test_tty_needs_a_terminal_for_stdin(real_dockerd):
    r = labkit(real_dockerd, "run", "-it", "--rm", "busybox", "sh", input="")
    assert r.returncode == 1 and "the input device is not a TTY" in r.stderr


def test_tty_in_a_pty(real_dockerd):
    """-it inside a pseudo-terminal: the container gets a terminal, output is raw (no frames)."""
    import pty
    import select

    pid, fd = pty.fork()
    if pid == 0:  # the child: labkit with the pty as its terminal
        os.chdir(REPO)
        os.execv(sys.executable, [*LABKIT, "-H", real_dockerd, "run", "-it", "--rm", "busybox",
                                  "sh", "-c", "test -t 0 && echo is-a-tty; stty size; exit 5"])
    out = b""
    try:
        while True:
            ready, _, _ = select.select([fd], [], [], 30)
            if not ready:
                break
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            out += chunk
    finally:
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 5, out
    assert b"is-a-tty" in out


def test_engine_benchmark_runs_against_a_daemon(real_dockerd):
    """benchmarks/bench.py's engine part, pointed at the private real dockerd for both rows
    (the lab's labkit-dockerd is not needed to check that the measurement works)."""
    bench = os.path.join(REPO, "benchmarks", "bench.py")
    r = subprocess.run([sys.executable, bench, "-n", "1", "--skip-runtime", "--image", "busybox",
                        "--lab-host", real_dockerd, "--real-docker-host", real_dockerd],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    rows = {line.split()[0]: line.split() for line in r.stdout.splitlines()
            if line.strip().startswith(("labkit-dockerd ", "dockerd "))}
    assert set(rows) == {"labkit-dockerd", "dockerd"}, r.stdout
    assert rows["dockerd"][-1] == "1.00x" and rows["labkit-dockerd"][-1].endswith("x")
