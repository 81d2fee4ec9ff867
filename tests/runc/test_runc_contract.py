"""The OCI runtime contract: black-box tests, each run against labkit-runc, runc and crun.

In crun's style: the base config from tests/support.py, ONE field changed, and a small
probe (a busybox shell line) inside the container that prints what it sees. Where the
real runtimes word an error differently, the test says so: runc's wording is the one the
shim and dockerd rely on, and labkit-runc matches it.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import shutil
import struct
import subprocess
import termios
import time
from pathlib import Path

import pytest

from labkit import procfs
from labkit.runc import cgroups
from labkit.wire.runtime import OCIRuntimeError
from labkit.runc.run import ConsoleListener
from support import cgroup_dirs

pytestmark = pytest.mark.root


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s")


def sh(script: str) -> list[str]:
    return ["sh", "-c", script]


def created(rt, args, edit=None, **spec_kw):
    """create (not start) a container whose stdout/stderr go to a file; returns (id, out)."""
    bundle = rt.bundle(args, edit, **spec_kw)
    cid = rt.new_id()
    out = bundle / "out.txt"
    with open(out, "wb") as f:
        pid = rt.api.create(cid, str(bundle), str(bundle / "init.pid"),
                            stdio=(None, f.fileno(), f.fileno()))
    return cid, out, pid


# --- the basics ----------------------------------------------------------------------------
def test_echo_output_and_exit_status(rt):
    code, out, err = rt.run(sh("echo hello; echo oops >&2; exit 3"))
    assert code == 3
    assert out == "hello\n"
    assert "oops" in err


def test_hostname(rt):
    code, out, _ = rt.run(["hostname"], hostname="probe-host")
    assert code == 0 and out.strip() == "probe-host"


def test_pid_1_and_own_proc(rt):
    code, out, _ = rt.run(sh("echo $$; ls /proc | grep -c '^[0-9]'"))
    pid, count = out.split()
    assert code == 0 and pid == "1"
    # the container's /proc shows its own processes only: sh and the ls/grep it forked
    assert int(count) <= 4


def test_network_namespace_has_only_lo(rt):
    code, out, _ = rt.run(sh("ls /sys/class/net"))
    assert code == 0 and out.split() == ["lo"]


def test_env_cwd_and_args(rt):
    def edit(spec, _bundle):
        spec["process"]["env"].append("GREETING=hello world")
        spec["process"]["cwd"] = "/tmp"
    code, out, _ = rt.run(["sh", "-c", 'echo "$GREETING"; pwd; echo "$1|$2"', "sh", "a b", "c"],
                          edit)
    assert code == 0
    assert out.splitlines() == ["hello world", "/tmp", "a b|c"]


def test_missing_cwd_is_created(rt):
    def edit(spec, _bundle):
        spec["process"]["cwd"] = "/work/here"
    code, out, _ = rt.run(["pwd"], edit)
    assert code == 0 and out.strip() == "/work/here"


def test_mount_namespace_does_not_leak(rt):
    marker = f"lkprobe{os.getpid()}"

    def edit(spec, _bundle):                    # mounting needs CAP_SYS_ADMIN
        for caps in spec["process"]["capabilities"].values():
            caps.append("CAP_SYS_ADMIN")
    cid, out, _ = created(rt, sh(f"mkdir -p /mnt/x && mount -t tmpfs {marker} /mnt/x "
                                 "&& echo mounted; sleep 30"), edit)
    rt.api.start(cid)
    wait_for(lambda: "mounted" in out.read_text())
    host_mounts = Path("/proc/self/mountinfo").read_text()
    assert marker not in host_mounts                     # the container's own mount
    assert str(out.parent / "rootfs") not in host_mounts   # nor its root, /proc, /dev …


# --- lifecycle -----------------------------------------------------------------------------
def test_create_start_kill_delete(rt):
    cid, out, pid = created(rt, sh("echo started; sleep 30"))
    state = rt.api.state(cid)
    assert state["status"] == "created" and state["pid"] == pid
    assert state["id"] == cid and state["bundle"] == str(out.parent)
    assert int((out.parent / "init.pid").read_text()) == pid
    assert out.read_text() == ""                  # blocked before execve: nothing ran yet

    rt.api.start(cid)
    wait_for(lambda: out.read_text() == "started\n")
    assert rt.api.state(cid)["status"] == "running"
    with pytest.raises(OCIRuntimeError):
        rt.api.delete(cid)                        # running: needs --force

    rt.api.kill(cid, "KILL")
    wait_for(lambda: rt.api.state(cid)["status"] == "stopped")
    rt.api.delete(cid)
    with pytest.raises(OCIRuntimeError):
        rt.api.state(cid)
    assert not os.path.exists(os.path.join(rt.root, cid))


def test_kill_with_signal_name_reaches_a_handler(rt):
    # pid 1 ignores signals it has no handler for, so the probe installs one
    cid, out, _ = created(rt, sh('trap "echo got-term; exit 7" TERM; echo ready; '
                                 'while :; do sleep 0.1; done'))
    rt.api.start(cid)
    wait_for(lambda: "ready" in out.read_text())
    rt.api.kill(cid, "TERM")
    wait_for(lambda: "got-term" in out.read_text())
    wait_for(lambda: rt.api.state(cid)["status"] == "stopped")


def test_kill_all_signals_every_process(rt):
    cid, out, _ = created(rt, sh("sleep 30 & sleep 30 & echo ready; wait"))
    rt.api.start(cid)
    wait_for(lambda: "ready" in out.read_text())
    rt.api.kill(cid, 9, all=True)
    wait_for(lambda: rt.api.state(cid)["status"] == "stopped")


def test_kill_stopped_container_fails(rt):
    cid, out, _ = created(rt, ["true"])
    rt.api.start(cid)
    wait_for(lambda: rt.api.state(cid)["status"] == "stopped")
    with pytest.raises(OCIRuntimeError) as e:
        rt.api.kill(cid, 15)
    if rt.name != "crun":                          # crun: "kill container: No such process"
        assert "container not running" in e.value.message


def test_delete_created_container(rt):
    cid, _out, pid = created(rt, ["sleep", "30"])
    rt.api.delete(cid)                             # never started: delete kills it (runc)
    wait_for(lambda: not procfs.alive(pid))
    with pytest.raises(OCIRuntimeError):
        rt.api.state(cid)


def is_gone(pid: int) -> bool:
    """No such process, or a zombie (dead; its parent has yet to reap it)."""
    return not procfs.alive(pid)


@pytest.mark.parametrize("force", [False, True], ids=["delete", "delete-force"])
def test_delete_created_container_leaves_no_process(rt, force):
    """A created container's init waits on exec.fifo; delete (and delete --force) kills it
    before the state goes, so no init is left waiting for a start that cannot come."""
    cid = rt.new_id()

    def edit(spec, _bundle):
        spec["linux"]["cgroupsPath"] = rt.cgroup_path(cid)
    bundle = rt.bundle(["sleep", "30"], edit)
    out = bundle / "out.txt"
    with open(out, "wb") as f:
        pid = rt.api.create(cid, str(bundle), str(bundle / "init.pid"),
                            stdio=(None, f.fileno(), f.fileno()))
    try:
        assert rt.api.state(cid)["status"] == "created"
        # the cgroup.procs of the container's cgroup, where this host's hierarchy keeps it
        procs = [d / "cgroup.procs" for d in cgroup_dirs(rt.cgroup_parents[-1] + "/" + cid)]
        assert procs and all(str(pid) in p.read_text().split() for p in procs)
        rt.api.delete(cid, force=force)
        assert is_gone(pid)                       # dead when delete returns, not later
        assert not os.path.exists(os.path.join(rt.root, cid))
        assert not any(p.exists() and p.read_text().strip() for p in procs)
        assert out.read_text() == ""              # and the program never ran
    finally:
        if not is_gone(pid):
            os.kill(pid, 9)


def test_init_gives_up_when_its_state_is_removed(rt):
    """Should the state directory go while init waits for `start` (a reset that deletes
    the runtime's root), no start or delete can reach init any more: labkit-runc's init
    notices its exec.fifo is gone and exits instead of waiting forever."""
    if rt.name != "labkit-runc":
        pytest.skip("runc and crun leave such an init waiting (kill it by pid)")
    cid, _out, pid = created(rt, ["sleep", "30"])
    try:
        shutil.rmtree(os.path.join(rt.root, cid))
        wait_for(lambda: is_gone(pid), timeout=5)
    finally:
        if not is_gone(pid):
            os.kill(pid, 9)


def test_state_names_init_while_create_is_still_running(rt):
    """labkit-runc writes init's pid into state.json as soon as it learns it, so even a
    create killed halfway (say, during a slow prestart hook) leaves a container that
    `delete` can find and kill."""
    if rt.name != "labkit-runc":
        pytest.skip("state.json is labkit-runc's own format")
    seen = rt.workdir / "seen.json"
    cid = rt.new_id()

    def edit(spec, _bundle):
        state = os.path.join(rt.root, cid, "state.json")
        spec["hooks"] = {"prestart": [{"path": "/bin/sh", "args": [
            "sh", "-c", f"cat {state} > {seen}"]}]}
    bundle = rt.bundle(["sleep", "30"], edit)
    pid = rt.api.create(cid, str(bundle), str(bundle / "init.pid"))
    assert json.loads(seen.read_text())["pid"] == pid
    rt.api.delete(cid)
    assert is_gone(pid)


# --- errors --------------------------------------------------------------------------------
def test_missing_executable_fails_at_create(rt):
    bundle = rt.bundle(["nosuchcmd"])
    cid = rt.new_id()
    p = rt.cli("create", "--bundle", str(bundle), "--pid-file", str(bundle / "init.pid"), cid)
    assert p.returncode != 0
    msg = rt.last_error()
    assert "nosuchcmd" in msg and "not found in $PATH" in msg
    if rt.name != "crun":   # crun: "executable file `nosuchcmd` not found in $PATH: No such…"
        assert msg == ('runc create failed: unable to start container process: '
                       'exec: "nosuchcmd": executable file not found in $PATH')
    with pytest.raises(OCIRuntimeError):
        rt.api.state(cid)                          # and nothing is left behind


def test_unknown_id(rt):
    p = rt.cli("state", "no-such-container")
    assert p.returncode == 1
    if rt.name != "crun":                          # crun: "error opening file …: No such file"
        assert rt.last_error() == "container does not exist"
    p = rt.cli("delete", "--force", "no-such-container")
    assert p.returncode == 0                       # delete --force of nothing is fine


def test_duplicate_id(rt):
    cid, _out, _pid = created(rt, ["sleep", "30"])
    bundle = rt.bundle(["true"])
    p = rt.cli("create", "--bundle", str(bundle), "--pid-file", str(bundle / "p"), cid)
    assert p.returncode != 0
    assert rt.api.state(cid)["status"] == "created"   # the first one is untouched


# --- filesystem ----------------------------------------------------------------------------
def test_readonly_root(rt):
    def edit(spec, _bundle):
        spec["root"]["readonly"] = True
    code, out, _ = rt.run(sh("touch /probe 2>/dev/null && echo writable || echo readonly; "
                             "touch /dev/shm/ok && echo tmpfs-writable"), edit)
    assert code == 0 and out.split() == ["readonly", "tmpfs-writable"]


def test_masked_and_readonly_paths(rt):
    def edit(spec, bundle):
        (bundle / "rootfs/etc/secret").write_text("s3cret\n")
        (bundle / "rootfs/opt/hidden").mkdir(parents=True)
        (bundle / "rootfs/opt/hidden/file").write_text("x")
        spec["linux"]["maskedPaths"] += ["/etc/secret", "/opt/hidden", "/no/such/path"]
    code, out, _ = rt.run(sh("echo \"[$(cat /etc/secret)]\"; ls /opt/hidden | wc -l; "
                             "echo x > /proc/sys/kernel/hostname 2>/dev/null "
                             "&& echo sys-writable || echo sys-readonly"), edit)
    assert code == 0
    assert out.split() == ["[]", "0", "sys-readonly"]


def test_bind_mounts(rt):
    def edit(spec, bundle):
        data = bundle / "hostdata"
        data.mkdir()
        (data / "f").write_text("from the host\n")
        (bundle / "host.conf").write_text("conf\n")
        spec["mounts"] += [
            {"destination": "/data", "type": "bind", "source": str(data),
             "options": ["rbind", "ro", "rprivate"]},
            {"destination": "/etc/probe/app.conf", "type": "bind",
             "source": str(bundle / "host.conf"), "options": ["bind"]},
        ]
    code, out, _ = rt.run(sh("cat /data/f; touch /data/new 2>/dev/null && echo rw || echo ro; "
                             "cat /etc/probe/app.conf"), edit)
    assert code == 0
    assert out.splitlines() == ["from the host", "ro", "conf"]


def test_dev_is_minimal(rt):
    code, out, _ = rt.run(sh("ls /dev; echo hi > /dev/null && echo null-ok; "
                             "head -c 4 /dev/zero | wc -c"))
    names = out.split()
    assert code == 0
    for expected in ("null", "zero", "full", "random", "urandom", "tty", "pts", "shm",
                     "ptmx", "fd", "stdin", "stdout", "stderr", "null-ok", "4"):
        assert expected in names
    assert "sda" not in names and "vda" not in names   # no host devices
    # runc's /dev/core -> /proc/kcore, where the kernel has one (CONFIG_PROC_KCORE; a Debian
    # VM has it, this sandbox's /proc does not); crun makes it everywhere
    if rt.name != "crun":
        assert ("core" in names) == os.path.exists("/proc/kcore"), names


# --- process -------------------------------------------------------------------------------
def test_user_and_groups(rt):
    def edit(spec, _bundle):
        spec["process"]["user"] = {"uid": 1000, "gid": 1001, "additionalGids": [10, 20]}
    code, out, _ = rt.run(sh("id -u; id -g; id -G; grep CapEff /proc/self/status"), edit)
    lines = out.splitlines()
    assert code == 0
    assert lines[0] == "1000" and lines[1] == "1001"
    assert set(lines[2].split()) == {"1001", "10", "20"}
    assert lines[3].split()[1] == "0000000000000000"   # not root: no effective capabilities


def test_capabilities_and_no_new_privs(rt):
    def edit(spec, _bundle):
        caps = ["CAP_CHOWN", "CAP_KILL"]                # bits 0 and 5
        spec["process"]["capabilities"] = {k: caps for k in
                                           ("bounding", "effective", "permitted")}
    code, out, _ = rt.run(sh("grep -E '^(CapBnd|CapEff|NoNewPrivs)' /proc/self/status"), edit)
    fields = dict(line.split(":\t") for line in out.splitlines())
    assert code == 0
    assert fields["CapBnd"] == fields["CapEff"] == "0000000000000021"
    assert fields["NoNewPrivs"] == "1"


def test_rlimits(rt):
    def edit(spec, _bundle):
        spec["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": 100, "hard": 200}]
    code, out, _ = rt.run(sh("ulimit -n; ulimit -Hn"), edit)
    assert code == 0 and out.split() == ["100", "200"]


def test_exec_joins_the_container(rt):
    cid, out, _ = created(rt, sh("echo ready; sleep 30"), hostname="exec-probe")
    rt.api.start(cid)
    wait_for(lambda: "ready" in out.read_text())
    process = {"args": ["sh", "-c", "hostname; echo $$ > /tmp/exec.pid; ls /proc | grep -c '^[0-9]'"],
               "cwd": "/", "env": ["PATH=/bin"], "user": {"uid": 0, "gid": 0}}
    result = out.parent / "exec.out"
    with open(result, "wb") as f:
        pid = rt.api.exec(cid, process, str(out.parent / "exec.pid"),
                          str(out.parent / "process.json"), stdio=(None, f.fileno(), None))
    assert pid > 0
    wait_for(lambda: len(result.read_text().split()) == 2)
    hostname, nprocs = result.read_text().split()
    assert hostname == "exec-probe" and int(nprocs) <= 5


# --- console socket --------------------------------------------------------------------------
class ConsoleReceiver:
    """The caller's side of --console-socket: labkit-runc's own listener (a socket at a
    short path under /tmp), whose receive() returns the pty master the runtime sends. The
    masters are closed by close() or at teardown."""

    def __init__(self) -> None:
        self.listener = ConsoleListener(True)
        self.path = self.listener.path
        self.masters: list[int] = []

    def receive(self) -> int:
        master = self.listener.receive()
        self.masters.append(master)
        return master

    def close(self, master: int) -> None:
        self.masters.remove(master)
        os.close(master)

    def close_all(self) -> None:
        for fd in list(self.masters):
            self.close(fd)
        self.listener.close()


@pytest.fixture
def console_socket():
    receiver = ConsoleReceiver()
    try:
        yield receiver
    finally:
        receiver.close_all()


def read_pty(master: int, until: bytes, timeout: float = 10) -> bytes:
    """What the container writes to its terminal, until `until` appears or the slave closes."""
    output = b""
    deadline = time.monotonic() + timeout
    while until not in output and time.monotonic() < deadline:
        try:
            chunk = os.read(master, 1024)
        except OSError:                           # EIO: the slave side is closed
            break
        if not chunk:
            break
        output += chunk
    return output


def run_in_pty(rt, console_socket, script: str, until: bytes, edit=None) -> bytes:
    """create a process.terminal container, take its pty master from the console socket,
    start it and return what it writes to its terminal (until `until`)."""
    bundle = rt.bundle(sh(script), edit, terminal=True)
    cid = rt.new_id()
    rt.api.create(cid, str(bundle), str(bundle / "init.pid"),
                  console_socket=console_socket.path)
    master = console_socket.receive()
    rt.api.start(cid)
    return read_pty(master, until)


def test_console_socket_receives_the_pty_master(rt, console_socket):
    output = run_in_pty(rt, console_socket, "tty; echo tty-ok", b"tty-ok")
    assert b"/dev/pts/0" in output or b"/dev/console" in output
    assert b"tty-ok" in output


def test_console_size_is_set_before_the_process_starts(rt, console_socket):
    """process.consoleSize is the pty's size (TIOCSWINSZ) before init's program runs:
    `docker run -it` puts the terminal's size there, so `stty size` is right at once."""
    def edit(spec, _bundle):
        spec["process"]["consoleSize"] = {"height": 37, "width": 101}
    output = run_in_pty(rt, console_socket, "stty size; echo size-done", b"size-done", edit)
    assert b"37 101\r\n" in output                 # rows, columns (and the pty's \r\n)


def test_exec_with_a_terminal_again_and_again(rt, console_socket):
    """`docker exec -it`: the exec'd process gets a pty slave of its own as stdio (with
    process.consoleSize) and nothing else: /dev/console stays init's. Each exec's pty is
    freed when it exits, and the next exec must not trip over it (labkit-runc once
    bind-mounted every exec's slave onto /dev/console, and the second exec failed with
    "mount /dev/console: ENOENT")."""
    cid, out, _ = created(rt, sh("echo ready; sleep 30"))
    rt.api.start(cid)
    wait_for(lambda: "ready" in out.read_text())
    for n, (rows, cols) in enumerate([(24, 80), (40, 132), (25, 90)]):
        process = {"args": ["sh", "-c", "tty; stty size; echo exec-done"], "cwd": "/",
                   "env": ["PATH=/bin"], "user": {"uid": 0, "gid": 0}, "terminal": True,
                   "consoleSize": {"height": rows, "width": cols}}
        rt.api.exec(cid, process, str(out.parent / f"exec{n}.pid"),
                    str(out.parent / f"process{n}.json"), console_socket=console_socket.path)
        master = console_socket.receive()
        output = read_pty(master, b"exec-done")
        console_socket.close(master)              # frees the pty, as the shim does
        assert b"/dev/pts/" in output, output
        assert b"exec-done" in output
        size = f"{rows} {cols}\r\n".encode()
        if rt.name == "crun":                     # crun 1.8 races its consoleSize, at times
            assert size in output or b"stty: standard input" in output, output
        else:
            assert size in output, output
    # the container is still fine, and its init never had a terminal
    assert rt.api.state(cid)["status"] == "running"


def in_a_terminal(argv: list[str], rows: int, cols: int, timeout: float = 20) -> bytes:
    """Run `argv` with a new pty of rows x cols as its terminal (as a user at a shell);
    return everything it wrote there."""
    pid, master = pty.fork()
    if pid == 0:                                  # the child: the pty's slave is its stdio
        try:
            fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
            os.execvp(argv[0], argv)
        finally:
            os._exit(127)
    try:
        return read_pty(master, b"\0", timeout)    # until the child closes the terminal
    finally:
        os.close(master)
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass
        os.waitpid(pid, 0)


def test_run_and_exec_in_our_terminal_get_its_size(rt):
    """`run` of a process.terminal container, and `exec -t`, with no --console-socket: the
    runtime relays between OUR terminal and the container's pty, whose size labkit-runc
    makes ours before the program looks (stty size runs at once). runc 1.1 sets it (for
    exec) once the program runs: a race the program may win (0x0, which busybox stty
    reports as "stty: standard input")."""
    if rt.name == "crun":
        pytest.skip("crun 1.8 sizes the pty after start and may exit before relaying "
                    "the output")

    def assert_size(output: bytes, size: bytes) -> None:
        if rt.name == "labkit-runc":
            assert size + b"\r\n" in output, output
        else:
            assert size + b"\r\n" in output or b"stty: standard input" in output, output

    bundle = rt.bundle(["stty", "size"], terminal=True)
    cid = rt.new_id()
    assert_size(in_a_terminal(rt.api.argv("run", "--bundle", str(bundle), cid), 29, 93),
                b"29 93")
    cid, out, _ = created(rt, sh("echo ready; sleep 30"))
    rt.api.start(cid)
    wait_for(lambda: "ready" in out.read_text())
    assert_size(in_a_terminal(rt.api.argv("exec", "-t", cid, "stty", "size"), 27, 88), b"27 88")


# --- cgroups -------------------------------------------------------------------------------
def test_cgroup_limits_and_removal(rt):
    holder = {}

    def edit(spec, _bundle):
        holder["path"] = rt.cgroup_path("c")
        spec["linux"]["cgroupsPath"] = holder["path"]
        spec["linux"]["resources"] = {"memory": {"limit": 64 * 1024 * 1024},
                                      "pids": {"limit": 20}}
    cid, out, pid = created(rt, sh("echo ready; sleep 30"), edit)
    rt.api.start(cid)
    wait_for(lambda: "ready" in out.read_text())
    mem, pids = limit_files(holder["path"])
    assert mem.read_text().strip() == str(64 * 1024 * 1024)
    assert pids.read_text().strip() == "20"
    assert str(pid) in (pids.parent / "cgroup.procs").read_text().split()
    rt.api.delete(cid, force=True)
    dirs = cgroup_dirs(holder["path"], every_cgroup2=True)
    wait_for(lambda: not any(d.exists() for d in dirs))


def limit_files(path: str) -> tuple[Path, Path]:
    """The memory limit and pids.max files of cgroupsPath `path` on this host's hierarchy
    (the runtime's own detection): v2 memory.max and pids.max in the one directory; v1
    memory.limit_in_bytes in the memory hierarchy, pids.max in the pids one."""
    paths = cgroups.paths_for(path, "")
    if cgroups.is_v2():
        return Path(paths[""], "memory.max"), Path(paths[""], "pids.max")
    by = {c: d for name, d in paths.items() for c in name.split(",")}
    return Path(by["memory"], "memory.limit_in_bytes"), Path(by["pids"], "pids.max")


def test_cgroup_namespace(rt):
    """linux.namespaces "cgroup": the container's own cgroup is its root ("0::/" on v2,
    "/" for every v1 hierarchy), while the host sees the real path; on v2, the cgroup2
    mount at /sys/fs/cgroup shows the container's memory.max at its top."""
    holder = {}

    def edit(spec, _bundle):
        holder["path"] = rt.cgroup_path("ns")
        spec["linux"]["cgroupsPath"] = holder["path"]
        spec["linux"]["namespaces"].append({"type": "cgroup"})
        spec["linux"]["resources"] = {"memory": {"limit": 64 * 1024 * 1024}}
        spec["mounts"].append({"destination": "/sys/fs/cgroup", "type": "cgroup",
                               "source": "cgroup", "options": ["ro", "nosuid", "nodev"]})
    probe = "cat /proc/self/cgroup; echo ---; cat /sys/fs/cgroup/memory.max 2>/dev/null || " \
            "cat /sys/fs/cgroup/memory/memory.limit_in_bytes"
    code, out, err = rt.run(sh(probe), edit)
    assert code == 0, err
    inside, limit = out.split("---\n")
    paths = {line.split(":", 2)[1]: line.split(":", 2)[2] for line in inside.splitlines()}
    if cgroups.is_v2():
        assert paths == {"": "/"}
    else:
        v1 = {k: v for k, v in paths.items() if k}     # the hybrid host's 0:: line aside
        assert v1 and set(v1.values()) == {"/"}, inside
    assert limit.strip() == str(64 * 1024 * 1024)


# --- hooks ---------------------------------------------------------------------------------
def test_hooks_get_the_state_on_stdin(rt):
    def edit(spec, bundle):
        for name in ("prestart", "createRuntime", "poststart", "poststop"):
            script = bundle / f"{name}.sh"
            # a hook runs in the runtime's namespaces: it can see the container's netns
            script.write_text(f"#!/bin/sh\ncat > {bundle}/{name}.json\n")
            script.chmod(0o755)
            spec.setdefault("hooks", {})[name] = [{"path": str(script)}]
    cid, out, pid = created(rt, sh("echo ready; sleep 30"), edit)
    bundle = out.parent
    for name in ("prestart", "createRuntime"):
        state = json.loads((bundle / f"{name}.json").read_text())
        assert state["id"] == cid and state["pid"] == pid
        assert state["bundle"] == str(bundle)
    if rt.name != "runc":
        # the spec: poststart runs after start. runc 1.1 runs it at the end of create
        # already (changed in runc 1.2).
        assert not (bundle / "poststart.json").exists()
    rt.api.start(cid)
    wait_for(lambda: (bundle / "poststart.json").exists()
             and (bundle / "poststart.json").read_text())
    rt.api.delete(cid, force=True)
    wait_for(lambda: (bundle / "poststop.json").exists())


def test_failing_prestart_hook_fails_create(rt):
    def edit(spec, bundle):
        spec["hooks"] = {"prestart": [{"path": "/bin/false"}]}
    bundle = rt.bundle(["true"], edit)
    cid = rt.new_id()
    p = rt.cli("create", "--bundle", str(bundle), "--pid-file", str(bundle / "p"), cid)
    assert p.returncode != 0
    with pytest.raises(OCIRuntimeError):
        rt.api.state(cid)


def test_preserve_fds_passes_extra_fds_and_nothing_else(rt):
    bundle = rt.bundle(sh("cat <&3; ls /proc/self/fd | wc -l"))
    cid = rt.new_id()
    r, w = os.pipe()
    stray = os.open("/etc/hostname", os.O_RDONLY)
    try:
        os.write(w, b"through fd 3\n")
        os.close(w)
        # the runtime sees the pipe as fd 3 (and a stray fd it must not pass on)
        p = rt.cli("run", "--preserve-fds", "1", "--bundle", str(bundle), cid,
                   pass_fds=(3, stray), preexec_fn=lambda: os.dup2(r, 3))
    finally:
        os.close(r)
        os.close(stray)
    lines = p.stdout.splitlines()
    assert p.returncode == 0 and lines[0] == "through fd 3"
    assert int(lines[1]) == 5          # 0, 1, 2, 3 and the fd ls uses to read the directory


def test_pause_and_resume(rt):
    def edit(spec, _bundle):
        spec["linux"]["cgroupsPath"] = rt.cgroup_path("p")
    cid, out, _ = created(rt, sh("i=0; while :; do i=$((i+1)); echo $i > /tmp/n; "
                                 "sleep 0.02; done"), edit)
    rt.api.start(cid)
    counter = out.parent / "rootfs/tmp/n"
    wait_for(lambda: counter.exists() and counter.read_text().strip())
    p = rt.cli("pause", cid)
    assert p.returncode == 0, p.stderr
    assert rt.api.state(cid)["status"] == "paused"
    frozen_at = counter.read_text()
    time.sleep(0.3)
    assert counter.read_text() == frozen_at          # nothing runs while frozen
    assert rt.cli("resume", cid).returncode == 0
    assert rt.api.state(cid)["status"] == "running"
    wait_for(lambda: counter.read_text() != frozen_at)
    if rt.name != "crun":                              # crun resumes a running one quietly
        assert rt.cli("resume", cid).returncode != 0   # not paused any more


# --- seccomp -------------------------------------------------------------------------------
REFERENCE_CONFIG = Path(__file__).parent.parent / "fixtures" / "dockerd-generated-config.json"


@pytest.mark.parametrize("nnp", [True, False], ids=["no_new_privs", "privileged-load"])
def test_seccomp_filter_denies_a_syscall(rt, nnp):
    def edit(spec, _bundle):
        spec["process"]["noNewPrivileges"] = nnp
        spec["linux"]["seccomp"] = {
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO",
                          "errnoRet": 13}],                       # EACCES
        }
    code, out, err = rt.run(sh("grep '^Seccomp:' /proc/self/status; mkdir /tmp/d 2>&1; "
                               "echo mkdir=$?"), edit)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["Seccomp:", "2"]            # 2 = filter mode
    assert "Permission denied" in out and lines[-1] == "mkdir=1"


def test_dockers_default_seccomp_profile(rt):
    if not REFERENCE_CONFIG.exists():
        pytest.skip("the captured dockerd config is not available")
    profile = json.loads(REFERENCE_CONFIG.read_text())["linux"]["seccomp"]

    def edit(spec, _bundle):
        spec["process"]["noNewPrivileges"] = False            # as docker runs it
        spec["linux"]["seccomp"] = profile
    code, out, _ = rt.run(sh("echo works; ls / >/dev/null && echo ls-ok; "
                             "unshare -U true 2>/dev/null || echo unshare-denied"), edit)
    assert code == 0
    assert out.split() == ["works", "ls-ok", "unshare-denied"]


def test_update_changes_limits_of_a_running_container(rt):
    holder = {}

    def edit(spec, _bundle):
        holder["path"] = rt.cgroup_path("u")
        spec["linux"]["cgroupsPath"] = holder["path"]
        spec["linux"]["resources"] = {"pids": {"limit": 20}}
    cid, out, _ = created(rt, sh("echo ready; sleep 30"), edit)
    rt.api.start(cid)
    wait_for(lambda: "ready" in out.read_text())
    p = rt.cli("update", "--resources", "-", cid,
               input=json.dumps({"memory": {"limit": 32 * 1024 * 1024}, "pids": {"limit": 7}}))
    assert p.returncode == 0, p.stderr
    mem, pids = limit_files(holder["path"])
    assert mem.read_text().strip() == str(32 * 1024 * 1024)
    assert pids.read_text().strip() == "7"


# --- smaller config fields -------------------------------------------------------------------
def test_no_pivot(rt):
    bundle = rt.bundle(sh("cat /proc/self/mountinfo | head -1; echo ok"))
    cid = rt.new_id()
    p = rt.cli("run", "--no-pivot", "--bundle", str(bundle), cid)
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines()[-1] == "ok"


def test_sysctl_oom_score_and_devices(rt):
    def edit(spec, _bundle):
        spec["linux"]["sysctl"] = {"net.ipv4.ip_unprivileged_port_start": "100"}
        spec["process"]["oomScoreAdj"] = 500
        spec["linux"]["devices"] = [{"path": "/dev/fuse", "type": "c", "major": 10,
                                     "minor": 229, "fileMode": 0o600, "uid": 0, "gid": 0}]
    code, out, err = rt.run(sh("cat /proc/sys/net/ipv4/ip_unprivileged_port_start; "
                               "cat /proc/self/oom_score_adj; stat -c '%F %t,%T %a' /dev/fuse"),
                            edit)
    assert code == 0, err
    assert out.splitlines() == ["100", "500", "character special file a,e5 600"]


def test_annotations_appear_in_state(rt):
    def edit(spec, _bundle):
        spec["annotations"] = {"org.labkit.test": "yes"}
    cid, _out, _pid = created(rt, ["sleep", "30"], edit)
    assert rt.api.state(cid).get("annotations") == {"org.labkit.test": "yes"}


# --- user namespace --------------------------------------------------------------------------
def test_user_namespace_maps_root_to_an_unprivileged_host_uid(rt):
    host_id = 200000

    def edit(spec, bundle):
        spec["linux"]["namespaces"].append({"type": "user"})
        spec["linux"]["uidMappings"] = [{"containerID": 0, "hostID": host_id, "size": 65536}]
        spec["linux"]["gidMappings"] = [{"containerID": 0, "hostID": host_id, "size": 65536}]
        # the path to the rootfs must be searchable by the mapped uid (mkdtemp made 0700)
        for d in (bundle, bundle.parent):
            d.chmod(0o755)
        # the image's files belong to the container's root: shift them like the ids
        subprocess.run(["chown", "-R", f"{host_id}:{host_id}", str(bundle / "rootfs")],
                       check=True)
    cid, out, pid = created(rt, sh("cat /proc/self/uid_map; id -u; stat -c %u /bin/busybox; "
                                   "echo > /dev/null && echo null-ok; touch /x && echo rw; "
                                   "sleep 30"), edit)
    rt.api.start(cid)
    wait_for(lambda: "rw" in out.read_text())
    lines = out.read_text().split("\n")
    assert lines[0].split() == ["0", str(host_id), "65536"]
    assert lines[1:5] == ["0", "0", "null-ok", "rw"]
    # seen from the host, the container's root is the unprivileged uid it is mapped to
    assert procfs.status(pid)["Uid"].split()[0] == str(host_id)
