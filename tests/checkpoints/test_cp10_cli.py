"""Checkpoint cp10 -- chapter 10, the CLI and the whole flow (labkit/cli/run.py).

Graded with `labkit grade cp10`. The code under test is the `cli` layer: the student's
labkit.cli.run (in-process, for one exercise at a time) and the student's `labkit` program
(the workspace's bin/labkit wrapper, for the last checkpoint). The engine it talks to is real:
a private lab (labkit-dockerd and the layers below, as configured) and, at the end, a real
dockerd 20.10 started on its own socket (tests/realdocker.py). What a test compares against
is the engine's own answer (inspect, the container's output, its exit status), never the
code under test.
"""

from __future__ import annotations

import io
import os
import subprocess
import threading

import pytest

from labkit.client import APIError, Client
from labkit.course.grading import checkpoint
from labkit.distribution.reference import parse_reference
from labkit.lab.implementations import resolve_binary, resolve_module
from labkit.stdcopy import STDERR, STDOUT, SYSTEMERR, FrameDecoder, encode_frame

pytestmark = pytest.mark.root


@pytest.fixture
def run():
    """Chapter 10's module as configured: labkit.cli.run, or the workspace's copy."""
    return resolve_module("cli", "labkit.cli.run")


def parse(*argv: str):
    """`labkit run …`'s flags, parsed by the configured CLI's own parser."""
    main = resolve_module("cli", "labkit.cli.main")
    args, _ = main.build_parser().parse_known_args(["run", *argv])
    return args


@pytest.fixture
def lab(module_lab) -> Client:
    """A client (labkit's reference) of the private lab, for setting up and looking; busybox
    pulled (a no-op after the first time)."""
    client = Client(module_lab["DOCKER_HOST"])
    for _ in client.pull("docker.io/library/busybox", "latest"):
        pass
    return client


def remove(client: Client, *names: str) -> None:
    for name in names:
        try:
            client.remove_container(name, force=True)
        except APIError:
            pass


def with_timeout(fn, seconds: float = 30):
    """fn() in a thread: its value, or AssertionError if it has not returned in time (a wait
    registered after the container exited waits for an exit that never comes)."""
    box: dict = {}

    def target():
        try:
            box["value"] = fn()
        except BaseException as e:  # noqa: BLE001 -- raised again below
            box["error"] = e
    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), f"no answer within {seconds} s (is something waiting for an exit " \
                             "that already happened?)"
    if "error" in box:
        raise box["error"]
    return box["value"]


# --- one exercise at a time ----------------------------------------------------------------

@checkpoint("cp10", points=4, hint="container_config: Image and Cmd as typed; AttachStdout/"
            "AttachStderr unless -d; -i: OpenStdin (AttachStdin and StdinOnce only when attached);"
            " -t: Tty; Env, WorkingDir, User, Hostname, Entrypoint [X]; HostConfig: AutoRemove, "
            "NetworkMode ('default'), Binds, Memory in bytes (64m = 67108864), PidsLimit, "
            "PortBindings; -v /path alone goes in Volumes")
def test_container_config(run):
    hello = run.container_config(parse("hello-world"))
    assert hello["Image"] == "hello-world" and not hello.get("Cmd")
    assert hello["AttachStdout"] is True and hello["AttachStderr"] is True
    assert not hello.get("AttachStdin") and not hello.get("OpenStdin") and not hello.get("Tty")
    assert hello["HostConfig"]["AutoRemove"] is False
    assert hello["HostConfig"]["NetworkMode"] == "default"

    it = run.container_config(parse("-it", "busybox", "sh"))
    assert it["Cmd"] == ["sh"] and it["Tty"] is True and it["OpenStdin"] is True
    assert it["AttachStdin"] is True and it["StdinOnce"] is True

    full = run.container_config(parse(
        "-d", "--rm", "-i", "-e", "A=1", "-v", "/data", "-v", "vol:/v:ro", "-m", "64m",
        "--pids-limit", "10", "-p", "127.0.0.1:8080:80", "-w", "/tmp", "-u", "1000",
        "--entrypoint", "sh", "-h", "box", "--network", "none", "busybox", "-c", "true"))
    hc = full["HostConfig"]
    assert full["AttachStdout"] is False and full["AttachStderr"] is False
    assert full["OpenStdin"] is True and not full.get("AttachStdin") and not full.get("StdinOnce")
    assert full["Cmd"] == ["-c", "true"] and full["Entrypoint"] == ["sh"]
    assert full["Env"] == ["A=1"] and full["WorkingDir"] == "/tmp" and full["User"] == "1000"
    assert full["Hostname"] == "box" and "/data" in (full.get("Volumes") or {})
    assert hc["AutoRemove"] is True and hc["NetworkMode"] == "none"
    assert hc["Binds"] == ["vol:/v:ro"] and hc["Memory"] == 64 * 1024 * 1024
    assert hc["PidsLimit"] == 10
    assert hc["PortBindings"] == {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8080"}]}


@checkpoint("cp10", points=3, hint="create: client.create_container; on APIError with status 404 "
            "print \"Unable to find image 'hello-world:latest' locally\" to stderr, pull_image, "
            "create again (once); any other error goes up unchanged")
def test_create_pulls_on_404(run, lab, capsys):
    for img in lab.images():
        if "hello-world:latest" in (img.get("RepoTags") or []):
            lab.remove_image("hello-world", force=True)
    ref = parse_reference("hello-world:latest")
    name = "cp10-create"
    remove(lab, name)
    try:
        cid = run.create(lab, {"Image": "hello-world"}, name, ref)
        err = capsys.readouterr().err
        assert "Unable to find image 'hello-world:latest' locally" in err, err
        info = lab.inspect_container(name)
        assert info["Id"] == cid and info["State"]["Status"] == "created"
        # a name already in use is the daemon's 409: reported, not taken for a missing image
        with pytest.raises(APIError) as e:
            run.create(lab, {"Image": "hello-world"}, name, ref)
        assert e.value.status == 409
        err = capsys.readouterr().err
        assert "Unable to find image" not in err, f"a 409 was taken for a missing image: {err}"
        # an image no registry has: the pull's error, not a second 404 or a loop
        with pytest.raises(APIError):
            run.create(lab, {"Image": "cp10/no-such-image"}, None,
                       parse_reference("cp10/no-such-image:latest"))
    finally:
        remove(lab, name)


@checkpoint("cp10", points=4, hint="attach_wait_start: client.attach(cid, stdin=…, tty=…) FIRST "
            "(output written before anyone listens is lost), then client.wait(cid, condition) "
            "(a fast exit must still be caught), then client.start(cid); return Session(attachment, "
            "waiter); a failing start: close both, raise")
def test_attach_wait_start(run, lab):
    cid = lab.create_container({"Image": "busybox", "Cmd": ["sh", "-c", "echo out; echo err >&2; exit 7"],
                                "AttachStdout": True, "AttachStderr": True,
                                "HostConfig": {"NetworkMode": "default"}})["Id"]
    try:
        session = with_timeout(lambda: run.attach_wait_start(lab, cid, stdin=False, tty=False))
        got: dict[int, bytes] = {}

        def drain():
            for frame in session.attachment.frames():
                got[frame.stream] = got.get(frame.stream, b"") + frame.data
            return session.waiter.result()
        result = with_timeout(drain)
        session.attachment.close()
        assert got == {STDOUT: b"out\n", STDERR: b"err\n"}, got
        assert result["StatusCode"] == 7
    finally:
        remove(lab, cid)
    bad = lab.create_container({"Image": "busybox", "Cmd": ["cp10-no-such-program"],
                                "AttachStdout": True, "AttachStderr": True})["Id"]
    try:
        with pytest.raises(APIError):
            with_timeout(lambda: run.attach_wait_start(lab, bad, stdin=False, tty=False))
    finally:
        remove(lab, bad)


@checkpoint("cp10", points=3, hint="copy_output: frame.stream 1 -> out, 2 -> err (write, flush), "
            "3 (SYSTEMERR, the daemon's own error) -> failures as text; the frames come already "
            "split by labkit.stdcopy")
def test_copy_output(run):
    wire = b"".join([encode_frame(STDOUT, b"one\n"), encode_frame(STDERR, b"two\n"),
                     encode_frame(STDOUT, b"three\n"), encode_frame(SYSTEMERR, b"the daemon failed\n")])
    decoder = FrameDecoder()
    frames = [f for i in range(0, len(wire), 5) for f in decoder.feed(wire[i:i + 5])]
    out, err, failures = io.BytesIO(), io.BytesIO(), []
    run.copy_output(iter(frames), out, err, failures)
    assert out.getvalue() == b"one\nthree\n" and err.getvalue() == b"two\n"
    assert failures == ["the daemon failed"]


@checkpoint("cp10", points=2, hint="start_error_status: 127 for 'executable file not found' or "
            "'no such file or directory', 126 for 'permission denied', 125 for anything else")
def test_start_error_status(run, lab):
    messages = {}
    for cmd in (["cp10-no-such-program"], ["/cp10/no/such/file"], ["/etc/passwd"]):
        cid = lab.create_container({"Image": "busybox", "Cmd": cmd})["Id"]
        try:
            with pytest.raises(APIError) as e:
                lab.start(cid)
            messages[cmd[0]] = e.value.message   # the engine's own words, passed up the layers
        finally:
            remove(lab, cid)
    assert run.start_error_status(messages["cp10-no-such-program"]) == 127, messages
    assert run.start_error_status(messages["/cp10/no/such/file"]) == 127, messages
    assert run.start_error_status(messages["/etc/passwd"]) == 126, messages
    assert run.start_error_status("Conflict. The container name is already in use") == 125
    assert run.start_error_status("cannot start a container that has stopped") == 125


# --- the proof: `labkit run` -- your client -- against your engine and a real dockerd -------

def labkit_cli(host: str, *args: str) -> subprocess.CompletedProcess:
    program = resolve_binary("cli")  # labkit's, or the workspace's bin/labkit
    return subprocess.run([str(program), "-H", host, *args], capture_output=True, text=True,
                          timeout=120, env={k: v for k, v in os.environ.items()
                                            if k != "DOCKER_HOST"})


def _short(r: subprocess.CompletedProcess) -> str:
    lines = [line for line in r.stderr.splitlines() if "rror" in line or "exercise" in line]
    return lines[-1] if lines else (r.stderr.strip()[-400:] or f"exit status {r.returncode}")


@checkpoint("cp10", points=4, hint="your `labkit run` (the workspace's bin/labkit) runs hello-world "
            "on a private lab and busybox on a real dockerd 20.10, with the container's output on "
            "the right streams and its exit status as labkit's (the error names the function "
            "not done yet)")
def test_labkit_run_through_your_cli(module_lab):
    from realdocker import Unavailable, private_real_dockerd

    hello = labkit_cli(module_lab["DOCKER_HOST"], "run", "--rm", "hello-world")
    assert hello.returncode == 0, _short(hello)
    assert "Hello from labkit!" in hello.stdout
    try:
        real = private_real_dockerd(module_lab["LABKIT_REGISTRY_ADDR"])
        host = real.__enter__()
    except Unavailable as e:
        pytest.skip(f"no real dockerd here: {e}")
    try:
        r = labkit_cli(host, "run", "--rm", "busybox", "sh", "-c", "echo out; echo err >&2; exit 3")
        assert r.returncode == 3, _short(r)
        assert r.stdout == "out\n" and "err\n" in r.stderr
        assert "Unable to find image 'busybox:latest' locally" in r.stderr
        missing = labkit_cli(host, "run", "--rm", "busybox", "cp10-no-such-program")
        assert missing.returncode == 127, _short(missing)
    finally:
        real.__exit__(None, None, None)
