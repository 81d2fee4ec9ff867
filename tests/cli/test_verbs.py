"""The docker verbs of `labkit` (issue 11 item 6), against BOTH engines.

Each test runs the CLI as a user does (`python -m labkit.cli.main -H … VERB …`) and compares
its output and exit status with docker's for the same case. `engine` is parametrized:

    labkit   a private labkit stack (tests/dockerd/conftest.py's Stack: registry, containerd,
             dockerd in a temp dir)
    real     a private dockerd 20.10 + containerd 1.6 (tests/realdocker.py, conftest.py here)

Which daemon endpoint each verb needs, and where labkit-dockerd has it:

    run/exec/logs/stop/start/restart/kill/inspect/ps/images/rmi/pull/version/info
                     both engines (labkit-dockerd serves them on main)
    build            POST /build: real dockerd only until the integrator's `build` branch
                     (labkit-dockerd's POST /build and /commit) is merged — see
                     needs_labkit_endpoint
    tag, push        POST /images/{name}/tag, /images/{name}/push: real dockerd only until
                     another helper's branch adds them to labkit-dockerd
"""

from __future__ import annotations

import json
import os
import shutil
import pty
import select
import time

import pytest

from labkit.client import APIError, Client
from support import LABKIT, REPO, run_labkit

pytestmark = [pytest.mark.root, pytest.mark.slow]


@pytest.fixture(scope="session")
def labkit_engine():
    """The host URL of a private labkit stack (the one tests/dockerd use)."""
    import shutil
    import tempfile
    from pathlib import Path

    from dockerd.conftest import Stack  # tests/ is on sys.path; tests/dockerd is a package

    if os.geteuid() != 0:
        pytest.skip("the labkit stack needs root")
    tmp = Path(tempfile.mkdtemp(prefix="lkcli-", dir="/tmp"))
    stack = Stack(tmp)
    try:
        stack.start()
        yield f"unix://{stack.socket}"
    finally:
        stack.stop()
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(params=["labkit", "real"])
def engine(request) -> str:
    return request.getfixturevalue("labkit_engine" if request.param == "labkit"
                                   else "real_dockerd")


def needs_labkit_endpoint(engine: str, request, what: str) -> None:
    """Skip on labkit-dockerd while the endpoint is on another branch (and say which)."""
    if "labkit" in request.node.callspec.id:
        probe = Client(engine)
        try:
            probe._call("POST", what)
        except APIError as e:
            if e.message == "page not found":
                pytest.skip(f"labkit-dockerd has no {what} on this branch yet")


def lk(engine: str, *args: str, timeout: float = 90, input: str | None = None):
    return run_labkit("-H", engine, *args, timeout=timeout, input=input)


@pytest.fixture
def busybox(engine):
    r = lk(engine, "pull", "busybox")
    assert r.returncode == 0, r.stderr
    return engine


@pytest.fixture
def sleeper(busybox):
    """A running busybox named after the test, removed afterwards."""
    name = f"lkv-{os.getpid()}-{time.monotonic_ns() % 10**6}"
    r = lk(busybox, "run", "-d", "--name", name, "-e", "GREETING=hi", "-w", "/tmp",
           "busybox", "sh", "-c", "echo started; echo oops >&2; exec sleep 300")
    assert r.returncode == 0, r.stderr
    try:
        yield name
    finally:
        lk(busybox, "rm", "-f", name)


# -- run and its flags ----------------------------------------------------------------------

def test_run_flags_reach_the_container(busybox):
    r = lk(busybox, "run", "--rm", "-e", "A=1", "-e", "B=two words", "-w", "/tmp", "-u", "65534",
           "-h", "flags", "--entrypoint", "sh", "busybox",
           "-c", 'echo "$A|$B|$(pwd)|$(id -u)|$(hostname)"')
    assert r.returncode == 0, r.stderr
    assert r.stdout == "1|two words|/tmp|65534|flags\n"


def test_run_memory_and_pids_limits(busybox):
    r = lk(busybox, "run", "-d", "-m", "64m", "--pids-limit", "33", "busybox", "sleep", "60")
    assert r.returncode == 0, r.stderr
    cid = r.stdout.strip()
    try:
        fmt = lk(busybox, "inspect", "-f", "{{.HostConfig.Memory}} {{.HostConfig.PidsLimit}}", cid)
        assert fmt.stdout == f"{64 * 1024 * 1024} 33\n", fmt.stderr
    finally:
        lk(busybox, "rm", "-f", cid)


def test_run_volume_bind_and_named(busybox, tmp_path):
    (tmp_path / "in").write_text("from the host\n")
    r = lk(busybox, "run", "--rm", "-v", f"{tmp_path}:/data", "busybox",
           "sh", "-c", "cat /data/in; echo back > /data/out")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "from the host\n" and (tmp_path / "out").read_text() == "back\n"
    vol = f"lkv-vol-{os.getpid()}"
    try:
        w = lk(busybox, "run", "--rm", "-v", f"{vol}:/v", "busybox", "sh", "-c", "echo kept > /v/f")
        assert w.returncode == 0, w.stderr
        r = lk(busybox, "run", "--rm", "-v", f"{vol}:/v:ro", "busybox", "sh", "-c",
               "cat /v/f; touch /v/g || echo read-only")
        assert r.stdout == "kept\nread-only\n", r.stderr
    finally:
        try:
            Client(busybox)._call("DELETE", f"/volumes/{vol}")
        except APIError:
            pass


def test_run_network_none_and_bad_flags(busybox):
    r = lk(busybox, "run", "--rm", "--network", "none", "busybox", "sh", "-c", "ls /sys/class/net")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["lo"]
    bad = lk(busybox, "run", "--rm", "-p", "x:y", "busybox", "true")
    assert bad.returncode == 125 and "invalid port specification" in bad.stderr


def test_run_exit_codes_125_126_127(busybox):
    assert lk(busybox, "run", "--rm", "busybox", "no-such-cmd").returncode == 127
    r = lk(busybox, "run", "--rm", "busybox", "/etc/passwd")
    assert r.returncode == 126, r.stderr
    assert lk(busybox, "run", "--rm", "--name", "a/b", "busybox", "true").returncode == 125


# -- exec, logs, lifecycle ------------------------------------------------------------------

def test_exec_env_workdir_user_and_status(sleeper, busybox):
    r = lk(busybox, "exec", "-e", "X=y", "-w", "/etc", "-u", "65534", sleeper,
           "sh", "-c", 'echo "$X $(pwd) $(id -u) $GREETING"; exit 4')
    assert r.returncode == 4, r.stderr
    assert r.stdout == "y /etc 65534 hi\n"
    i = lk(busybox, "exec", "-i", sleeper, "sh", "-c", "tr a-z A-Z", input="quiet\n")
    assert i.returncode == 0 and i.stdout == "QUIET\n"
    assert lk(busybox, "exec", sleeper, "no-such-cmd").returncode in (126, 127)


def test_logs_split_streams_tail_and_timestamps(sleeper, busybox):
    deadline = time.monotonic() + 10
    while "started" not in (r := lk(busybox, "logs", sleeper)).stdout and time.monotonic() < deadline:
        time.sleep(0.1)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "started\n" and r.stderr == "oops\n"
    t = lk(busybox, "logs", "-t", "--tail", "1", sleeper)
    line = (t.stdout + t.stderr).strip()
    assert line.count("\n") == 0 and line.endswith(("started", "oops")) and line[:4].isdigit()


def test_logs_follow_ends_when_the_container_stops(busybox):
    r = lk(busybox, "run", "-d", "busybox", "sh", "-c", "for i in 1 2 3; do echo $i; sleep 0.2; done")
    cid = r.stdout.strip()
    try:
        f = lk(busybox, "logs", "-f", cid, timeout=30)
        assert f.returncode == 0 and f.stdout == "1\n2\n3\n"
    finally:
        lk(busybox, "rm", "-f", cid)


def test_stop_start_restart_kill(sleeper, busybox):
    status = lambda: lk(busybox, "inspect", "-f", "{{.State.Status}}", sleeper).stdout.strip()
    assert status() == "running"
    r = lk(busybox, "stop", "-t", "1", sleeper)
    assert r.returncode == 0 and r.stdout == f"{sleeper}\n"
    assert status() == "exited"
    assert lk(busybox, "start", sleeper).returncode == 0 and status() == "running"
    assert lk(busybox, "restart", "-t", "1", sleeper).returncode == 0 and status() == "running"
    k = lk(busybox, "kill", "-s", "KILL", sleeper)
    assert k.returncode == 0 and status() == "exited"
    again = lk(busybox, "kill", sleeper)
    assert again.returncode == 1 and "Error response from daemon" in again.stderr
    missing = lk(busybox, "stop", "lk-no-such-container", sleeper)
    assert missing.returncode == 1 and missing.stdout == f"{sleeper}\n"


def test_start_attach_reruns_and_exits_with_status(busybox):
    name = f"lkv-sa-{os.getpid()}"
    r = lk(busybox, "run", "--name", name, "busybox", "sh", "-c", "echo run; exit 6")
    try:
        assert r.returncode == 6 and r.stdout == "run\n"
        a = lk(busybox, "start", "-a", name)
        assert a.returncode == 6 and a.stdout == "run\n", a.stderr
        ai = lk(busybox, "start", "-ai", name, input="")
        assert ai.returncode == 6, ai.stderr
    finally:
        lk(busybox, "rm", "-f", name)


def test_run_it_exit_then_start_ai(busybox, request):
    """The chapter's scene: `run -it busybox sh`, exit, `start -ai` again — in a pty."""
    known_restart_stdin_race(request)
    name = f"lkv-it-{os.getpid()}"

    try:
        code, out = in_a_terminal([*LABKIT, "-H", busybox, "run", "-it", "--name", name,
                                   "busybox", "sh"], keys=b"echo first > /mark; exit 3\r")
        assert code == 3, out
        code, out = in_a_terminal([*LABKIT, "-H", busybox, "start", "-ai", name],
                                  keys=b"cat /mark; exit 4\r")
        assert code == 4, out
        assert b"first" in out
    finally:
        lk(busybox, "rm", "-f", name)


def known_restart_stdin_race(request) -> None:
    """labkit-dockerd on main sometimes loses the keys sent to a RESTARTED -it container
    (`start -ai` shows the prompt, the typed line never arrives: the docker CLI too, seen
    through labkit.course.apiproxy with the same request sequence as the real dockerd's).
    The api branch rewrites attach's stdin (routes_stdio.py, detach keys): with it merged,
    both tests pass on labkit-dockerd (checked on a merge of ch10 and api). Delete this
    skip when api is merged."""
    if "labkit" in request.node.callspec.id:
        pytest.skip("labkit-dockerd on main: stdin of a restarted -it container races "
                    "(docker CLI too); fixed by the api branch")


def in_a_terminal(argv: list[str], keys: bytes = b"", timeout: float = 30) -> tuple[int, bytes]:
    """Run argv with a pseudo-terminal as its stdio; type `keys` at the shell's first prompt
    ("# "). Returns (exit status, everything it wrote). A program that does not finish within
    `timeout` seconds of silence is killed (by its pid) and the test sees status -9."""
    pid, fd = pty.fork()
    if pid == 0:
        os.chdir(REPO)
        os.execv(argv[0], argv)
    out, sent = b"", not keys
    try:
        while True:
            ready, _, _ = select.select([fd], [], [], timeout)
            if not ready:
                os.kill(pid, 9)
                break
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            out += chunk
            if not sent and b"# " in out:  # the shell's prompt: type
                os.write(fd, keys)
                sent = True
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    return os.waitstatus_to_exitcode(status), out


# -- inspect --------------------------------------------------------------------------------

def test_docker_cli_run_it_then_start_ai(busybox, request):
    """The same scene with the real docker CLI: what the daemon must do for it."""
    known_restart_stdin_race(request)
    docker = shutil.which("docker")
    if not docker:
        pytest.skip("no docker CLI")
    name = f"lkv-dit-{os.getpid()}"
    try:
        code, out = in_a_terminal([docker, "-H", busybox, "run", "-it", "--name", name,
                                   "busybox", "sh"], keys=b"echo first > /mark; exit 3\r")
        assert code == 3, out
        code, out = in_a_terminal([docker, "-H", busybox, "start", "-ai", name],
                                  keys=b"cat /mark; exit 4\r")
        assert code == 4, out
    finally:
        lk(busybox, "rm", "-f", name)


def test_inspect_json_and_format(sleeper, busybox):
    r = lk(busybox, "inspect", sleeper)
    assert r.returncode == 0 and r.stdout.startswith("[\n    {\n")
    [obj] = json.loads(r.stdout)
    assert obj["Name"] == f"/{sleeper}" and obj["State"]["Running"] is True
    f = lk(busybox, "inspect", "--format",
           "{{.State.Status}} {{.Config.WorkingDir}} {{json .Config.Cmd}} {{.NoSuchField}}", sleeper)
    assert f.stdout == 'running /tmp ["sh","-c","echo started; echo oops >&2; exec sleep 300"] <no value>\n'
    img = lk(busybox, "inspect", "--type", "image", "-f", "{{.Os}}", "busybox")
    assert img.stdout == "linux\n"
    both = lk(busybox, "inspect", "-f", "{{.Id}}", sleeper, "lk-nothing")
    assert both.returncode == 1 and len(both.stdout.strip()) == 64
    assert "Error: No such object: lk-nothing" in both.stderr


# -- images: tag, push, build, ps -q, rmi ---------------------------------------------------

def test_tag_and_push_with_progress(busybox, request, lab_registry):
    needs_labkit_endpoint(busybox, request, "/images/busybox/tag")
    target = f"{lab_registry}/lkv/busybox:pushed"
    assert lk(busybox, "tag", "busybox", target).returncode == 0
    try:
        r = lk(busybox, "push", target, timeout=120)
        assert r.returncode == 0, r.stderr
        assert f"The push refers to repository [{lab_registry}/lkv/busybox]" in r.stdout
        assert "Pushed" in r.stdout or "Layer already exists" in r.stdout
        assert "pushed: digest: sha256:" in r.stdout
        # not a terminal: no bars, no escape sequences
        assert "\x1b[" not in r.stdout
    finally:
        lk(busybox, "rmi", target)


def test_build_sends_the_context_without_ignored_files(busybox, request, tmp_path):
    needs_labkit_endpoint(busybox, request, "/build")
    (tmp_path / "Dockerfile").write_text("FROM busybox\nCOPY . /ctx\nRUN ls /ctx > /listing\n"
                                         'CMD ["cat", "/listing"]\n')
    (tmp_path / ".dockerignore").write_text("secret*\n*.log\n!keep.log\n")
    for name in ("app.txt", "secret.key", "debug.log", "keep.log"):
        (tmp_path / name).write_text(name)
    tag = f"lkv-built-{os.getpid()}:1"
    r = lk(busybox, "build", "-t", tag, str(tmp_path), timeout=180)
    try:
        assert r.returncode == 0, r.stdout + r.stderr
        assert r.stdout.startswith("Sending build context to Docker daemon")
        assert "Step 1/4 : FROM busybox" in r.stdout and f"Successfully tagged {tag}" in r.stdout
        run = lk(busybox, "run", "--rm", tag)
        assert run.stdout.split() == ["Dockerfile", "app.txt", "keep.log"], run.stdout
        q = lk(busybox, "build", "-q", str(tmp_path), timeout=180)
        assert q.returncode == 0 and q.stdout.strip().startswith("sha256:")
        bad = tmp_path / "bad"
        bad.mkdir()
        (bad / "Dockerfile").write_text("FROM busybox\nRUN exit 9\n")
        failed = lk(busybox, "build", str(bad), timeout=180)
        assert failed.returncode == 1 and "Error response from daemon" in failed.stderr
    finally:
        lk(busybox, "rmi", tag)


def test_ps_quiet_and_info(sleeper, busybox):
    r = lk(busybox, "ps", "-q")
    info = Client(busybox).inspect_container(sleeper)
    assert info["Id"][:12] in r.stdout.split()
    i = lk(busybox, "info")
    assert i.returncode == 0 and i.stdout.startswith("Server:") and " OSType: linux" in i.stdout


def test_pull_progress_on_a_terminal_redraws_lines(busybox):
    """On a TTY each layer's line is redrawn in place (cursor up, erase line, \\r)."""
    lk(busybox, "rmi", "hello-world")
    code, out = in_a_terminal([*LABKIT, "-H", busybox, "pull", "hello-world"], timeout=60)
    assert code == 0, out
    assert b"\x1b[2K\r" in out and b"\x1b[1A" in out and b"Pull complete" in out
    plain = lk(busybox, "pull", "hello-world")
    assert "\x1b" not in plain.stdout and "Status: Image is up to date" in plain.stdout
