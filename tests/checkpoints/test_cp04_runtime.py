"""Checkpoint cp04 -- chapter 04, the OCI runtime (labkit/runc: container.py, start.py, hooks.py,
process.py, init.py).

Graded with `labkit grade cp04`. The runtime layer is a whole program: with a workspace, the
checkpoints run the workspace's labkit-runc (its bin/labkit-runc) and import its modules
(`labkit_student.runc.…`). To test one exercise at a time, the other half of a handshake is
labkit's REFERENCE runtime, run by its command line on the same --root (the state directory's
format is the runtime's own, so the two can take turns): the reference creates, your `start`
starts; your `create` builds the container, the reference starts it.

Every container lives under a private --root in a directory under /tmp that the `work` fixture
removes, after `delete --force` (by the reference) of every id it handed out -- also when the
test failed. The bundles have no cgroupsPath and no network but their own namespace, so nothing
else on the host is touched. The truth comes from the kernel: /proc/<pid>/status (Uid, Cap*,
NoNewPrivs, Seccomp), /proc/<pid>/exe, the files the container's program wrote.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pytest

from labkit import capabilities, procfs
from labkit.course.grading import checkpoint
from labkit.lab.implementations import load, resolve_module

pytestmark = pytest.mark.root

# labkit's reference runtime, by its command line, for the half of a handshake under test
REFERENCE = [sys.executable, "-m", "labkit.runc.main"]
BUSYBOX = Path("/bin/busybox")


def runc_module(name: str):
    """labkit.runc.<name> of the graded runtime: the reference's, or the workspace's copy."""
    return resolve_module("runtime", f"labkit.runc.{name}")


def your_runtime() -> list[str]:
    """The graded runtime's program: labkit-runc, or the workspace's bin/labkit-runc."""
    return [str(load().resolve_binary("runtime"))]


def cap_mask(*names: str) -> int:
    return sum(1 << capabilities.number(n) for n in names)


class Work:
    """A private --root and bundles under one /tmp directory, for one test."""

    def __init__(self, base: Path):
        self.base = base
        self.root = str(base / "root")
        self.ids: list[str] = []

    def new_id(self) -> str:
        cid = "cp04-" + uuid.uuid4().hex[:8]
        self.ids.append(cid)
        return cid

    def bundle(self, args: list[str], edit=None) -> Path:
        """A busybox bundle (rootfs/ and the config.json `labkit-runc spec` writes, running
        `args`, without a terminal); `edit(spec)` changes what the test is about."""
        from support import base_spec, make_busybox_rootfs
        bundle = Path(tempfile.mkdtemp(prefix="b", dir=self.base))
        make_busybox_rootfs(bundle / "rootfs")
        spec = base_spec(args)
        if edit:
            edit(spec)
        (bundle / "config.json").write_text(json.dumps(spec, indent=2))
        return bundle

    def cli(self, runtime: list[str], *args: str, timeout: float = 30
            ) -> subprocess.CompletedProcess:
        """`<runtime> --root ROOT ARGS…`, its output captured (not for `create`: see there)."""
        return subprocess.run([*runtime, "--root", self.root, *args], stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=timeout)

    def create(self, runtime: list[str], bundle: Path, out: Path, cid: str | None = None,
               check: bool = True) -> tuple[str, int, str]:
        """`create` a container whose program writes to the file `out` (its init inherits the
        runtime's stdio: pipes would stay open as long as it runs). Returns (id, init's host
        pid or 0, what the runtime said on stderr)."""
        cid = cid or self.new_id()
        pid_file = self.base / f"{cid}.pid"
        err = self.base / f"{cid}.err"
        with open(out, "w") as stdout, open(err, "w") as stderr:
            r = subprocess.run([*runtime, "--root", self.root, "create", "--bundle", str(bundle),
                                "--pid-file", str(pid_file), cid], stdin=subprocess.DEVNULL,
                               stdout=stdout, stderr=stderr, timeout=30)
        said = err.read_text()
        if check:
            assert r.returncode == 0, f"create failed: {said.strip()[-600:]}"
        return cid, int(pid_file.read_text()) if r.returncode == 0 else 0, said

    def state(self, cid: str) -> dict:
        r = self.cli(REFERENCE, "state", cid)
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)

    def cleanup(self) -> None:
        for cid in self.ids:
            subprocess.run([*REFERENCE, "--root", self.root, "delete", "--force", cid],
                           capture_output=True, timeout=30)
        shutil.rmtree(self.base, ignore_errors=True)


@pytest.fixture
def work():
    w = Work(Path(tempfile.mkdtemp(prefix="lk-cp04-", dir="/tmp")))
    try:
        yield w
    finally:
        w.cleanup()


def wait_gone(pid: int, timeout: float = 10) -> None:
    """Until `pid` has exited (gone, or a zombie its parent has not reaped yet)."""
    deadline = time.monotonic() + timeout
    while procfs.alive(pid):
        assert time.monotonic() < deadline, f"process {pid} still runs after {timeout}s"
        time.sleep(0.02)


def call_with_timeout(fn, timeout: float):
    """fn() in a forked child, given `timeout` seconds: ("value", v), ("error", "Type: msg")
    or ("timeout", None). A student's loop that never ends must fail the check, not hang it."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            try:
                outcome = ("value", fn())
            except BaseException as e:
                outcome = ("error", f"{type(e).__name__}: {e}")
            try:
                data = pickle.dumps(outcome)
            except Exception:
                data = pickle.dumps(("value", repr(outcome[1])))
            os.write(w, data)
        finally:
            os._exit(0)
    os.close(w)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            done, _ = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            time.sleep(0.02)
        else:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return ("timeout", None)
        with os.fdopen(r, "rb") as f:
            r = -1
            data = f.read()
        return pickle.loads(data) if data else ("error", "the child died")
    finally:
        if r != -1:
            os.close(r)
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass


def read_status(text: str) -> dict[str, str]:
    return {k: v.strip() for k, _, v in (line.partition(":") for line in text.splitlines()) if v}


# --- one exercise at a time ----------------------------------------------------------------

@checkpoint("cp04", points=1, hint="find_executable(name, env): a name without '/' is looked up "
            "in each directory of env['PATH'] in order (an empty entry is the current "
            "directory); the first regular file with an execute bit wins -- not a directory, "
            "not a file without x; none: ContainerError 'executable file not found in $PATH'")
def test_find_executable(work, in_child):
    process = runc_module("process")
    dirs = [work.base / d for d in ("a", "b", "c", "here")]
    for d in dirs:
        d.mkdir()
    (dirs[0] / "tool").mkdir()                          # a directory is no program
    (dirs[1] / "tool").write_text("#!/bin/sh\n")        # not executable
    (dirs[1] / "tool").chmod(0o644)
    for d in (dirs[2], dirs[3]):
        (d / "tool").write_text("#!/bin/sh\n")
        (d / "tool").chmod(0o755)
    path = ":".join(str(d) for d in dirs[:3])
    assert process.find_executable("tool", {"PATH": path}) == str(dirs[2] / "tool")
    assert process.find_executable("tool", {"PATH": f"{dirs[3]}:{dirs[2]}"}) \
        == str(dirs[3] / "tool")
    with pytest.raises(Exception, match=r"executable file not found in \$PATH"):
        process.find_executable("tool", {"PATH": f"{dirs[0]}:{dirs[1]}"})
    with pytest.raises(Exception, match=r"executable file not found in \$PATH"):
        process.find_executable("no-such-tool", {"PATH": path})

    def from_here():
        os.chdir(dirs[3])
        return process.find_executable("tool", {"PATH": f"{dirs[1]}::{dirs[2]}"})
    assert in_child(from_here) == "./tool", "an empty PATH entry is the current directory"


@checkpoint("cp04", points=2, hint="Container.init_alive(): alive = /proc/<pid>/stat exists, its "
            "state is not Z (zombie) or X, AND its start time is the one state.json recorded (a "
            "pid reused by another process is not our init); status(): not alive -> 'stopped', "
            "exec.fifo still there -> 'created', else 'running' (or 'paused' when frozen)")
def test_container_state(work):
    container = runc_module("container")
    state_dir = work.base / "c1"
    state_dir.mkdir()
    child = os.fork()
    if child == 0:
        try:
            signal.pause()
        finally:
            os._exit(0)
    try:
        st = procfs.stat(child)
        assert st is not None
        c = container.Container(id="c1", state_dir=str(state_dir), bundle=str(work.base),
                                rootfs=str(work.base), pid=child, start_time=st.start_time)
        os.mkfifo(state_dir / "exec.fifo", 0o622)
        assert c.init_alive() and c.status() == "created", "init runs, exec.fifo is there"
        os.unlink(state_dir / "exec.fifo")
        assert c.status() == "running", "init runs, exec.fifo is gone (start happened)"
        assert c.oci_state()["status"] == "running" and c.oci_state()["pid"] == child
        reused = container.Container(id="c1", state_dir=str(state_dir), bundle="/", rootfs="/",
                                     pid=child, start_time=st.start_time + 1)
        assert not reused.init_alive() and reused.status() == "stopped", \
            "same pid, another start time: the pid was reused, our init is gone"
        nobody = container.Container(id="c1", state_dir=str(state_dir), bundle="/", rootfs="/")
        assert nobody.status() == "stopped", "pid 0: never started"
        os.kill(child, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while (procfs.stat(child) or st).state != "Z":           # dead, not reaped: a zombie
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert not c.init_alive() and c.status() == "stopped", "a zombie init is stopped"
    finally:
        try:
            os.kill(child, signal.SIGKILL)
        except ProcessLookupError:
            pass
        os.waitpid(child, 0)
    assert c.status() == "stopped" and c.oci_state()["pid"] == 0


@checkpoint("cp04", points=2, hint="run_hook(hook, state): run hook['path'] with hook['args'] as "
            "its argv (args[0] is only a name) and ONLY hook['env'] as its environment, the "
            "state as JSON on its stdin; a non-zero exit, a missing program or more than "
            "hook['timeout'] seconds is a ContainerError naming the hook's path")
def test_run_hook(work):
    hooks = runc_module("hooks")
    error = runc_module("log").ContainerError
    out = work.base / "out"
    out.mkdir()
    # busybox runs the applet its argv[0] names: args[0] "sh" must reach it as argv[0]
    recorder = {"path": str(BUSYBOX), "env": ["LK_HOOK=yes"],
                "args": ["sh", "-c", f'echo "$0|$1|${{LK_HOOK:-unset}}|${{HOME:-unset}}" '
                         f'> {out}/args; cat > {out}/state', "my-hook", "first"]}
    state = {"ociVersion": "1.0.2", "id": "cp04-hook", "status": "created", "pid": 4242,
             "bundle": str(work.base), "annotations": {"course": "cp04"}}
    hooks.run_hook(recorder, state)
    assert (out / "args").read_text() == "my-hook|first|yes|unset\n", \
        "argv and environment of the hook"
    assert json.loads((out / "state").read_text()) == state, "the state on the hook's stdin"

    failing = work.base / "fail.sh"
    failing.write_text("#!/bin/sh\necho broken >&2\nexit 3\n")
    failing.chmod(0o755)
    with pytest.raises(error, match=str(failing)) as info:
        hooks.run_hook({"path": str(failing)}, state)
    assert "3" in str(info.value) and "broken" in str(info.value)
    with pytest.raises(error, match=str(work.base / "missing")):
        hooks.run_hook({"path": str(work.base / "missing")}, state)
    slow = work.base / "slow.sh"
    slow.write_text("#!/bin/sh\nexec sleep 10\n")
    slow.chmod(0o755)
    began = time.monotonic()
    with pytest.raises(error, match=str(slow)):
        hooks.run_hook({"path": str(slow), "timeout": 1}, state)
    assert time.monotonic() - began < 5, "the hook's timeout was not applied"

    # poststart/poststop (warn=…): a failure is reported and the next hook still runs
    said: list[str] = []
    (out / "state").unlink()
    hooks.run_hooks([{"path": str(failing)}, recorder], state, warn=said.append)
    assert len(said) == 1 and (out / "state").is_file()


@checkpoint("cp04", points=2, hint="set_identity(process, warn), in this order: drop from the "
            "bounding set every capability not listed; PR_SET_KEEPCAPS; setgroups, setgid, setuid; "
            "set effective/permitted/inheritable exactly as listed; raise each ambient one (one "
            "that is not permitted AND inheritable: warn, go on); no_new_privs last. Read "
            "/proc/self/status: Uid, Groups, CapBnd, CapPrm, CapEff, CapInh, CapAmb, NoNewPrivs")
def test_set_identity(in_child):
    process_mod = runc_module("process")

    def become(process: dict):
        said: list[str] = []
        process_mod.set_identity(process, said.append)
        with open("/proc/self/status") as f:
            status = read_status(f.read())
        return status, said

    caps = {"bounding": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
            "permitted": ["CAP_KILL", "CAP_NET_BIND_SERVICE"],
            "effective": ["CAP_KILL", "CAP_NET_BIND_SERVICE"],
            "inheritable": ["CAP_KILL"],
            "ambient": ["CAP_KILL", "CAP_CHOWN"]}
    status, said = in_child(lambda: become({
        "user": {"uid": 1000, "gid": 1001, "additionalGids": [1002]},
        "capabilities": caps, "noNewPrivileges": True}))
    assert status["Uid"].split() == ["1000"] * 4 and status["Gid"].split() == ["1001"] * 4
    assert status["Groups"].split() == ["1002"]
    for field, names in (("CapBnd", caps["bounding"]), ("CapPrm", caps["permitted"]),
                         ("CapEff", caps["effective"]), ("CapInh", caps["inheritable"]),
                         ("CapAmb", ["CAP_KILL"])):
        assert int(status[field], 16) == cap_mask(*names), \
            f"{field} is {status[field]}, expected {names}"
    assert status["NoNewPrivs"] == "1"
    assert any("CAP_CHOWN" in w for w in said), \
        f"CAP_CHOWN cannot be ambient (not permitted, not inheritable): a warning, got {said}"

    status, said = in_child(lambda: become({"user": {"uid": 0, "gid": 0},
                                            "noNewPrivileges": False}))
    assert status["NoNewPrivs"] == "0" and status["Uid"].split()[0] == "0"


@checkpoint("cp04", points=2, hint="start(root, id): open exec.fifo O_RDONLY|O_NONBLOCK (that "
            "unblocks init's open for writing), then poll it and read the one byte init writes; "
            "if init dies before writing (check c.init_alive() between polls), give up with "
            "'cannot start a container that has stopped' instead of waiting forever. Afterwards "
            "exec.fifo is gone and the program runs", depends=["test_container_state"])
def test_start_handshake(work):
    start = runc_module("start")
    bundle = work.bundle(["sh", "-c", "echo started as pid $$"])
    out = work.base / "out1"
    cid, pid, _ = work.create(REFERENCE, bundle, out)
    fifo = Path(work.root, cid, "exec.fifo")
    assert fifo.exists() and work.state(cid)["status"] == "created"
    kind, value = call_with_timeout(lambda: start.start(work.root, cid).pid, 15)
    assert (kind, value) == ("value", pid), f"start(root, {cid!r}): {kind} {value}"
    assert not fifo.exists(), "exec.fifo must be gone after start (status derives from it)"
    wait_gone(pid)
    assert out.read_text() == "started as pid 1\n", "the program did not run after start"
    kind, value = call_with_timeout(lambda: start.start(work.root, cid), 15)
    assert kind == "error" and "stopped" in value, f"a second start: {kind} {value}"

    # init dies while `start` waits for its byte: start must notice, not wait forever. A
    # stopped init (SIGSTOP) is still "created" but cannot answer; it is killed 0.5 s later.
    cid, pid, _ = work.create(REFERENCE, bundle, work.base / "out2")
    os.kill(pid, signal.SIGSTOP)

    def start_while_init_dies():
        threading.Timer(0.5, os.kill, (pid, signal.SIGKILL)).start()
        return start.start(work.root, cid)
    kind, value = call_with_timeout(start_while_init_dies, 5)
    assert kind != "timeout", "start() still waits, 4.5 s after its container's init died"
    assert kind == "error" and "stopped" in value, f"init died during start: {kind} {value}"
    kind, value = call_with_timeout(lambda: start.start(work.root, cid), 5)
    assert kind == "error" and "stopped" in value, f"start of a dead container: {kind} {value}"


@checkpoint("cp04", points=2, hint="your container_init's last steps: send 'ready' (then `create` "
            "exits), block opening exec.fifo for writing (wait_for_start) -- the program must NOT "
            "run before `start`; then run the startContainer hooks with the state (status "
            "'running') on their stdin, and execve the program: pid 1 inside, its output on the "
            "container's stdout",
            depends=["test_find_executable", "test_set_identity", "test_run_hook",
                     "test_container_state"])
def test_create_through_your_init(work):
    def edit(spec):
        spec["hooks"] = {"startContainer": [{"path": "/bin/sh",
                                             "args": ["sh", "-c", "cat > /hook-state"]}]}
    bundle = work.bundle(["sh", "-c", "echo hello from pid $$; cat /hook-state"], edit)
    out = work.base / "out"
    cid, pid, _ = work.create(your_runtime(), bundle, out)
    state = work.state(cid)
    assert (state["status"], state["pid"]) == ("created", pid)
    time.sleep(0.2)
    assert os.path.basename(os.readlink(f"/proc/{pid}/exe")) != "busybox" \
        and out.read_text() == "", "the program ran before `start`: init must wait on exec.fifo"
    r = work.cli(REFERENCE, "start", cid)
    assert r.returncode == 0, r.stderr
    wait_gone(pid)
    lines = out.read_text().splitlines()
    assert lines and lines[0] == "hello from pid 1", f"the container's output: {lines}"
    hook = json.loads("\n".join(lines[1:]) or "{}")
    assert hook.get("id") == cid and hook.get("status") == "running", \
        f"the startContainer hook's stdin: {hook}"


@checkpoint("cp04", points=2, hint="seccomp: with noNewPrivileges the filter is loaded LAST, just "
            "before execve; without it, FIRST (become_user, before the capabilities are dropped: "
            "loading a filter needs CAP_SYS_ADMIN or no_new_privs). /proc/self/status inside shows "
            "'Seccomp: 2' and a refused mkdir in both cases, with the configured uid and CapEff",
            depends=["test_set_identity", "test_create_through_your_init"])
def test_seccomp_and_capabilities_in_a_container(work):
    profile = {"defaultAction": "SCMP_ACT_ALLOW",
               "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO",
                             "errnoRet": 1}]}
    script = ("grep -E '^(Uid|CapEff|NoNewPrivs|Seccomp):' /proc/self/status; "
              "mkdir /tmp/d 2>/dev/null && echo mkdir allowed || echo mkdir refused")
    kept = ["CAP_KILL", "CAP_NET_BIND_SERVICE"]
    for nnp, uid in ((True, 1000), (False, 0)):
        def edit(spec, nnp=nnp, uid=uid):
            spec["process"]["user"] = {"uid": uid, "gid": uid}
            spec["process"]["noNewPrivileges"] = nnp
            spec["process"]["capabilities"] = {key: kept for key in
                                               ("bounding", "effective", "permitted")}
            spec["linux"]["seccomp"] = profile
            spec["root"]["readonly"] = False
        bundle = work.bundle(["sh", "-c", script], edit)
        (bundle / "rootfs" / "tmp").chmod(0o1777)
        r = work.cli(your_runtime(), "run", "--bundle", str(bundle), work.new_id())
        assert r.returncode == 0, f"noNewPrivileges={nnp}: {r.stderr.strip()[-600:]}"
        seen = read_status(r.stdout)
        assert seen.get("Seccomp") == "2", f"noNewPrivileges={nnp}: no filter loaded: {r.stdout}"
        assert "mkdir refused" in r.stdout, f"noNewPrivileges={nnp}: {r.stdout}"
        assert seen["NoNewPrivs"] == str(int(nnp)) and seen["Uid"].split()[0] == str(uid)
        assert int(seen["CapEff"], 16) == (cap_mask(*kept) if uid == 0 else 0), seen["CapEff"]


@checkpoint("cp04", points=1, hint="a broken config.json is one clear error naming the field "
            "(process.args must be a list of strings; bad JSON names config.json; an unknown "
            "namespace type names it), create exits non-zero and leaves nothing: the same id "
            "can be created right after", depends=["test_create_through_your_init"])
def test_bad_config(work):
    runtime = your_runtime()
    cid = work.new_id()
    bundle = work.bundle(["true"])
    config = bundle / "config.json"
    good = config.read_text()
    spec = json.loads(good)
    cases = [
        (dict(spec, process=dict(spec["process"], args="true")), "process.args"),
        (dict(spec, linux=dict(spec["linux"], namespaces=[{"type": "bogus"}])), "bogus"),
        (None, "config.json"),
    ]
    for broken, field in cases:
        config.write_text(json.dumps(broken) if broken is not None else '{"process": {')
        _, pid, said = work.create(runtime, bundle, work.base / "out", cid, check=False)
        assert not pid, f"a config.json with a bad {field} was accepted"
        assert field in said and "Traceback" not in said, said[-600:]
        assert not Path(work.root, cid).exists(), "a refused create left its state directory"
    config.write_text(good)
    _, pid, said = work.create(runtime, bundle, work.base / "out", cid, check=False)
    assert pid, f"the same id after the refusals: {said[-600:]}"


@checkpoint("cp04", points=2, hint="the same bundle run by your runtime and by runc must look the "
            "same from inside: identity, capabilities, no_new_privs, hostname, cwd, environment, "
            "/dev, mounts, pid 1 and the exit status. Compare `labkit-runc run` and `runc run` "
            "on one bundle yourself",
            depends=["test_create_through_your_init", "test_start_handshake"])
def test_same_bundle_as_runc(work):
    runc = shutil.which("runc")
    assert runc, "runc is not installed (vagrant/setup.sh installs Debian's runc)"
    # the processes in /proc counted by the shell's own glob: `ls /proc | grep -c` counted
    # grep or not, as it was forked before or after ls read /proc (2 or 3, run by run)
    script = ("id; hostname; pwd; echo HOME=$HOME PATH=$PATH; "
              "grep -E '^(Cap|NoNewPrivs|Seccomp)' /proc/self/status; "
              "tr '\\0' ' ' < /proc/1/cmdline; echo; ls /dev; set -- /proc/[0-9]*; echo $#; "
              "mount | wc -l; exit 3")

    def edit(spec):
        spec["process"]["cwd"] = "/tmp/work"              # created by the runtime if missing
    bundle = work.bundle(["sh", "-c", script], edit)
    results = {}
    for name, runtime in (("yours", your_runtime()), ("runc", [runc])):
        r = work.cli(runtime, "run", "--bundle", str(bundle), work.new_id())
        results[name] = (r.returncode, r.stdout)
        assert r.returncode == 3, f"{name}: exit status {r.returncode}: {r.stderr.strip()[-600:]}"
    assert results["yours"] == results["runc"], \
        f"yours:\n{results['yours'][1]}\nrunc:\n{results['runc'][1]}"


# --- the proof: docker through your runtime ------------------------------------------------

@checkpoint("cp04", points=3, hint="in a lab whose runtime is your workspace, dockerd's "
            "--default-runtime is your bin/labkit-runc: `docker run --rm hello-world` must "
            "print its greeting, `docker run` must return the program's exit status, and "
            "`docker exec` must run in a running container (the docker error names the function "
            "that is not done yet)")
def test_docker_through_your_runtime(private_lab):
    docker = shutil.which("docker")
    assert docker, "no docker CLI on PATH (vagrant/setup.sh installs Debian's docker.io)"
    name = "cp04-" + uuid.uuid4().hex[:8]

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([docker, *args], env=env, capture_output=True, text=True,
                              timeout=120)

    with private_lab() as env:
        hello = run("run", "--rm", "hello-world")
        assert hello.returncode == 0 and "Hello from labkit!" in hello.stdout, \
            _docker_error(hello.stderr)
        status = run("run", "--rm", "busybox", "sh", "-c", "echo $((6 * 7)); exit 3")
        assert (status.returncode, status.stdout) == (3, "42\n"), _docker_error(status.stderr)
        detached = run("run", "-d", "--name", name, "busybox", "sleep", "60")
        try:
            assert detached.returncode == 0, _docker_error(detached.stderr)
            inside = run("exec", name, "sh", "-c", "echo exec as pid $$ of $(ls /proc | "
                         "grep -c '^[0-9]'); exit 5")
            assert inside.returncode == 5 and inside.stdout.startswith("exec as pid "), \
                _docker_error(inside.stderr)
        finally:
            run("rm", "-f", name)


def _docker_error(stderr: str) -> str:
    """The line of docker's error that says what failed (the rest is the pull's progress)."""
    lines = [line for line in stderr.splitlines() if "Error" in line or "error" in line]
    return (lines[-1] if lines else stderr.strip()[-500:])
