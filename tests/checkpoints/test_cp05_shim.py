"""Checkpoint cp05 -- chapter 05, the shim (labkit/shim/: reaper.py, stdio.py, service.py).

Graded with `labkit grade cp05`. The first group tests one exercise each, in a process the
checkpoint forks for it (a subreaper flag and reaped children must not touch the grader);
then the student's shim runs a container through its real protocol (`labkit-shim … start`,
ttrpc) with no containerd at all; the last checkpoint is the docker CLI through a private
lab whose shim is the student's workspace, with containerd and dockerd killed and restarted
while a container exits. The truth comes from the kernel (/proc/<pid>/status PPid, waitpid,
FIONREAD) or from the real protocol's answers, never from the code under test.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import termios
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from labkit.course.grading import checkpoint
from labkit.lab.implementations import resolve_binary, resolve_module

pytestmark = pytest.mark.root


@pytest.fixture
def reaper():
    """Chapter 05's reaper module as configured: labkit.shim.reaper, or the workspace's copy."""
    return resolve_module("shim", "labkit.shim.reaper")


@pytest.fixture
def stdio():
    return resolve_module("shim", "labkit.shim.stdio")


@pytest.fixture
def service():
    return resolve_module("shim", "labkit.shim.service")


@pytest.fixture
def scratch():
    """A short directory under /tmp (fifo and socket paths), removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix="lk-cp05-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def ppid_of(pid: int) -> int:
    """The parent the KERNEL says `pid` has (man 5 proc, /proc/<pid>/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("PPid:"):
            return int(line.split()[1])
    raise AssertionError(f"no PPid in /proc/{pid}/status")


def fionread(fd: int) -> int:
    """The checkpoint's own count of unread bytes (not the student's unread_bytes)."""
    return struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0" * 4))[0]


def zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return False


def until(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def with_alarm(seconds: int, what: str):
    """In a checkpoint's child: turn a call that blocks for good into an error naming it."""
    def expired(signum, frame):
        raise TimeoutError(f"{what} blocked for {seconds} s")
    signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)


# --- one exercise at a time ----------------------------------------------------------------

@checkpoint("cp05", points=2, hint="become_subreaper() is prctl(PR_SET_CHILD_SUBREAPER, 1) (man 2 "
            "prctl; python-prctl: prctl.set_child_subreaper): afterwards an orphaned grandchild "
            "is re-parented to the caller, not to pid 1")
def test_become_subreaper(reaper, in_child):
    def inside():
        reaper.become_subreaper()
        r, w = os.pipe()
        middle = os.fork()
        if middle == 0:                       # the runtime's role: fork the init, then exit
            middle_pid = os.getpid()
            if os.fork() == 0:
                os.close(r)
                while os.getppid() == middle_pid:     # until the middle process has gone
                    time.sleep(0.005)
                os.write(w, str(os.getppid()).encode())
                os._exit(0)
            os._exit(0)
        os.close(w)
        os.waitpid(middle, 0)
        with_alarm(10, "waiting for the orphan's report")
        parent = int(os.read(r, 32) or b"0")
        try:
            os.waitpid(-1, 0)                 # the orphan, if it was adopted by us
        except ChildProcessError:
            pass
        return parent, os.getpid()

    parent, me = in_child(inside)
    assert parent == me, (f"the orphan's parent became {parent}, not the subreaper {me} "
                          "(the flag was not set: it went to an init)")


@checkpoint("cp05", points=3, hint="reap() calls os.waitpid(-1, os.WNOHANG) until it returns (0, 0) "
            "(children left, none exited) or raises ChildProcessError (no children): every exited "
            "child once, as (pid, exit status) -- 7 for exit(7), 128 + 9 for SIGKILL -- and it "
            "never blocks while a child still runs")
def test_reap(reaper, in_child):
    def inside():
        with_alarm(10, "reap()")
        assert reaper.reap() == [], "reap() with no children at all"
        exits = {}
        for action, code in ((lambda: os._exit(0), 0), (lambda: os._exit(7), 7),
                             (lambda: os.kill(os.getpid(), signal.SIGKILL), 137)):
            pid = os.fork()
            if pid == 0:
                action()
                os._exit(99)
            exits[pid] = code
        running = os.fork()
        if running == 0:
            signal.pause()
            os._exit(0)
        assert until(lambda: all(zombie(p) for p in exits)), "the children did not exit"
        first = reaper.reap()             # must return although `running` is still running
        second = reaper.reap()
        os.kill(running, signal.SIGKILL)
        assert until(lambda: zombie(running))
        last = reaper.reap()
        left = [p for p in exits if zombie(p)]
        return sorted(first), exits, second, last, running, left

    first, exits, second, last, running, left = in_child(inside)
    assert first == sorted(exits.items()), f"reap() gave {first}, expected {sorted(exits.items())}"
    assert second == [], f"a second reap() found {second}: each child is reaped once"
    assert last == [(running, 137)], f"after SIGKILL of the last child, reap() gave {last}"
    assert left == [], f"zombies left: {left}"


@checkpoint("cp05", points=2, hint="open_output(fifo) must return at once with no reader, and its "
            "writes must never fail when the reader goes away: O_RDWR (man 7 fifo), not O_WRONLY "
            "(which blocks until a reader comes, then gets EPIPE when it leaves); a regular file is "
            "opened O_WRONLY|O_APPEND; both O_CLOEXEC")
def test_open_output(stdio, in_child, scratch):
    fifo = scratch / "out"
    os.mkfifo(fifo)
    log = scratch / "log"
    log.write_text("before\n")

    def inside():
        with_alarm(5, f"open_output({fifo}) with no reader")
        fd = stdio.open_output(str(fifo))
        signal.alarm(0)
        inheritable = os.get_inheritable(fd)
        os.write(fd, b"nobody reads yet\n")
        reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        got = os.read(reader, 100)
        os.close(reader)                     # the reader leaves: writing must still work
        os.write(fd, b"still fine\n")
        os.close(fd)
        f = stdio.open_output(str(log))
        os.write(f, b"after\n")
        os.close(f)
        return got, inheritable

    got, inheritable = in_child(inside)
    assert got == b"nobody reads yet\n"
    assert not inheritable, "the fd is inherited by the runtime (O_CLOEXEC missing)"
    assert log.read_text() == "before\nafter\n", "a regular file must be appended to"
    with pytest.raises(ValueError):
        stdio.open_output(str(scratch / "missing"))


@checkpoint("cp05", points=2, hint="unread_bytes(fd) is ioctl(fd, FIONREAD) (man 2 ioctl, man 7 "
            "pipe): the bytes written into a pipe or fifo that no reader has taken yet")
def test_unread_bytes(stdio, scratch):
    r, w = os.pipe()
    try:
        assert stdio.unread_bytes(r) == 0
        os.write(w, b"hello")
        assert stdio.unread_bytes(r) == 5 and stdio.unread_bytes(w) == 5
        os.read(r, 2)
        assert stdio.unread_bytes(r) == 3
        os.read(r, 3)
        assert stdio.unread_bytes(r) == 0
    finally:
        os.close(r)
        os.close(w)
    fifo = scratch / "f"
    os.mkfifo(fifo)
    fd = os.open(fifo, os.O_RDWR)
    try:
        os.write(fd, b"x" * 1000)
        assert stdio.unread_bytes(fd) == 1000 == fionread(fd)
    finally:
        os.close(fd)


@checkpoint("cp05", points=3, hint="the shim closes its end of the stdout fifo only once the "
            "reader has taken everything (unread_bytes == 0): closing the last open end of a "
            "fifo throws its contents away, so a container that printed and exited while dockerd "
            "was away would lose its output", depends=["test_open_output", "test_unread_bytes"])
def test_output_waits_for_its_reader(stdio, scratch):
    fifo = scratch / "stdout"
    os.mkfifo(fifo)
    io = stdio.ContainerIO("", str(fifo), "")
    try:
        os.write(io.container_fds[1], b"bye\n")   # the container prints …
        io.started_runtime()                      # … and exits: the pipe reaches EOF
        # No reader yet (dockerd is restarting): the copy must keep the fifo open, waiting.
        assert not io.wait(0.5), "the shim stopped holding the fifo while nobody had read it"
        reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)   # dockerd is back
        try:
            data = b""
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                try:
                    chunk = os.read(reader, 100)
                except BlockingIOError:
                    time.sleep(0.01)
                    continue
                if not chunk:
                    break                                      # EOF: the shim closed its end
                data += chunk
            assert data == b"bye\n", f"the reader that came back got {data!r}"
            assert io.wait(5), "the shim did not close the fifo once everything was read"
        finally:
            os.close(reader)
    finally:
        io.close()


@checkpoint("cp05", points=2, hint="record_exit sets the process's status (STOPPED), exit_status and "
            "exited_at, sets its `exited` event (Wait returns), and publishes "
            "TaskExit{container_id, id (exec id, or the task id for the init), pid, exit_status, "
            "exited_at} -- containerd receives it as /tasks/exit over ttrpc")
def test_record_exit(service, scratch):
    from labkit.shim.events import Publisher
    from labkit.wire import ttrpc
    from labkit.wire.shim import events_pb2, task_pb2
    from labkit.wire.shim.protocol import EVENTS_SERVICE

    received: list[events_pb2.ForwardRequest] = []
    arrived = threading.Event()

    def forward(payload: bytes) -> bytes:      # containerd's Events.Forward, for real
        received.append(events_pb2.ForwardRequest.FromString(payload))
        arrived.set()
        return b""

    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(scratch / "events.sock"))
    listener.listen(8)
    server = ttrpc.Server(listener, {EVENTS_SERVICE: {"Forward": forward}})
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        svc = service.TaskService("cp05", publisher=Publisher(str(scratch / "events.sock"), "cp05"))
        when = datetime(2026, 1, 2, 3, 4, 5, 600000, tzinfo=timezone.utc)
        for exec_id, status in (("", 7), ("e1", 137)):
            io = resolve_module("shim", "labkit.shim.stdio").ContainerIO()
            process = service.Process(exec_id, io)
            process.pid = 4242
            task = service.Task("cp05-task", scratch, None, process)
            svc.record_exit(task, process, status, when)
            io.close()
            assert process.exited.is_set(), "Wait would never return: `exited` is not set"
            assert (process.status, process.exit_status, process.exited_at) == \
                (task_pb2.STOPPED, status, when)
            assert arrived.wait(5), "no event reached containerd's events socket"
            arrived.clear()
            envelope = received.pop().envelope
            assert envelope.topic == "/tasks/exit" and envelope.namespace == "cp05"
            event = events_pb2.TaskExit.FromString(envelope.event.value)
            assert (event.container_id, event.id, event.pid, event.exit_status) == \
                ("cp05-task", exec_id or "cp05-task", 4242, status)
            assert event.exited_at.ToDatetime(tzinfo=timezone.utc) == when
    finally:
        server.close()


# --- your shim, whole -------------------------------------------------------------------------

@checkpoint("cp05", points=3, hint="your labkit-shim, driven as containerd drives it (start, then "
            "Task.Create/Start/Wait/Delete over ttrpc): Create runs `runtime create` with the "
            "container's stdio and pid file, and the init it leaves behind must be the shim's "
            "child (subreaper); Wait answers the exit status, the output reaches the fifo",
            depends=["test_become_subreaper", "test_open_output", "test_unread_bytes",
                     "test_record_exit"])
def test_your_shim_runs_a_container(scratch):
    import json

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from support import make_bundle
    from labkit.wire.shim.client import ShimClient, ShimError
    from labkit.wire.shim.launch import start_shim

    shim = str(resolve_binary("shim"))
    runtime = str(resolve_binary("runtime"))
    bundle = make_bundle(scratch / "c", ["/bin/sh", "-c", "echo hello from the shim; exit 3"])
    (bundle / "options.json").write_text(json.dumps({"binary_name": runtime,
                                                     "root": str(scratch / "root")}))
    out = scratch / "out"
    os.mkfifo(out)
    output = bytearray()

    def read_all():
        with open(out, "rb", buffering=0) as f:
            while chunk := f.read(4096):
                output.extend(chunk)

    reader = threading.Thread(target=read_all, daemon=True)
    reader.start()
    address = start_shim(shim, id="cp05", namespace="cp05", bundle=bundle,
                         containerd_address=str(scratch / "containerd.sock"))
    shim_pid = 0
    try:
        with ShimClient(address, timeout=30) as client:
            shim_pid = client.connect()["shim_pid"]
            try:
                pid = client.create("cp05", bundle, stdout=str(out))
                assert ppid_of(pid) == shim_pid, \
                    f"the container's init {pid} is the child of {ppid_of(pid)}, not of the shim"
                client.start("cp05")
                status, _ = client.wait("cp05", timeout=30)
                assert status == 3
                client.delete("cp05")
            except ShimError as e:
                pytest.fail(f"your shim answered: {e.message}")
            reader.join(10)
            assert bytes(output) == b"hello from the shim\n"
            client.shutdown(now=True)
        assert until(lambda: not Path(f"/proc/{shim_pid}").exists() or zombie(shim_pid), 5), \
            "the shim did not exit after Shutdown"
    finally:
        subprocess.run([runtime, "--root", str(scratch / "root" / "cp05"), "delete", "--force",
                        "cp05"], capture_output=True)
        if shim_pid and Path(f"/proc/{shim_pid}").exists():
            os.kill(shim_pid, signal.SIGKILL)
        if not out.exists() or reader.is_alive():
            try:   # unblock the reader if no writer ever came
                os.close(os.open(out, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:
                pass


# --- the proof: docker run through your shim ----------------------------------------------------

@checkpoint("cp05", points=3, hint="every container of `docker run` is held by your labkit-shim: "
            "hello-world must print, `exit 3` must come back as 3, and a container that prints and "
            "exits while containerd and dockerd are killed must keep its output and exit status "
            "for the restarted daemons (the docker error names the function that is not done yet)")
def test_docker_run_through_your_shim(private_lab):
    docker = shutil.which("docker")
    assert docker, "no docker CLI on PATH (vagrant/setup.sh installs Debian's docker.io)"

    def run(env, *args, timeout=120):
        return subprocess.run([docker, *args], env=env, capture_output=True, text=True,
                              timeout=timeout)

    with private_lab() as env:
        hello = run(env, "run", "--rm", "hello-world")
        assert hello.returncode == 0 and "Hello from labkit!" in hello.stdout, \
            _docker_error(hello.stderr)
        echo = run(env, "run", "--rm", "busybox", "sh", "-c", "echo through your shim; exit 3")
        assert (echo.returncode, echo.stdout) == (3, "through your shim\n"), _docker_error(echo.stderr)

        # The shim's reason to exist: the daemons die, the container lives on, prints, exits.
        started = run(env, "run", "-d", "--name", "cp05-away", "busybox", "sh", "-c",
                      "trap 'echo bye; exit 4' USR1; while true; do sleep 0.05; done")
        assert started.returncode == 0, _docker_error(started.stderr)
        pid = int(run(env, "inspect", "-f", "{{.State.Pid}}", "cp05-away").stdout)
        run_dir = Path(env["LABKIT_RUN_DIR"])
        for daemon in ("labkit-dockerd", "labkit-containerd"):
            daemon_pid = int((run_dir / f"{daemon}.pid").read_text())
            os.kill(daemon_pid, signal.SIGKILL)
            assert until(lambda: not Path(f"/proc/{daemon_pid}").exists() or zombie(daemon_pid))
        os.kill(pid, signal.SIGUSR1)                  # it prints and exits, nobody listening
        assert until(lambda: not Path(f"/proc/{pid}").exists()), "the container did not exit"
        up = subprocess.run([sys.executable, "-m", "labkit.cli.main", "lab", "up"], env=env,
                            capture_output=True, text=True, timeout=180)
        assert up.returncode == 0, up.stderr
        waited = run(env, "wait", "cp05-away")
        assert waited.stdout.strip() == "4", _docker_error(waited.stderr)
        logs = run(env, "logs", "cp05-away")
        assert logs.stdout == "bye\n", f"output of the container that exited while away: " \
                                       f"{logs.stdout!r} {logs.stderr}"


def _docker_error(stderr: str) -> str:
    """The line of docker's error that says what failed (the rest is the pull's progress)."""
    lines = [line for line in stderr.splitlines() if "Error" in line or "error" in line]
    return (lines[-1] if lines else stderr.strip()[-500:])
