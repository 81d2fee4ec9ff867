"""labkit-runc under the REAL containerd 1.6 and its containerd-shim-runc-v2 (via `ctr`).

The swap test: the real shim calls labkit-runc exactly as it calls runc (ctr --runc-binary),
so create/start/state/kill/delete/exec/ps, the --log error path and the exit status must
all be runc-compatible. A private containerd (its own sockets, root and state under /tmp)
is started for the module and stopped afterwards, with every shim it spawned.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from support import make_busybox_rootfs

pytestmark = [pytest.mark.root, pytest.mark.slow]

LABKIT_RUNC = str(Path(sys.executable).parent / "labkit-runc")


def _shims_of(address: str) -> list[int]:
    """The shims serving our containerd (their command line names its socket)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if cmdline and cmdline[0].endswith(b"containerd-shim-runc-v2") and \
                    address.encode() in cmdline:
                found.append(int(entry))
    return found


@pytest.fixture(scope="module")
def ctr():
    if os.geteuid() != 0:
        pytest.skip("needs root")
    for program in ("containerd", "ctr", "containerd-shim-runc-v2"):
        if shutil.which(program) is None:
            pytest.skip(f"{program} is not installed")
    if not os.path.exists(LABKIT_RUNC):
        pytest.skip("labkit-runc is not installed next to this python")
    # containerd puts shim sockets under /run/containerd/s whatever its config says
    leftovers = [p for p in (Path("/run/containerd/s"), Path("/run/containerd/runc"),
                             Path("/run/containerd/fifo"), Path("/run/containerd"))
                 if not p.exists()]
    d = Path(tempfile.mkdtemp(prefix="lkrs-", dir="/tmp"))
    sock = str(d / "c.sock")
    (d / "config.toml").write_text(f"""version = 2
root = "{d}/root"
state = "{d}/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "{sock}"
[ttrpc]
  address = "{sock}.ttrpc"
""")
    make_busybox_rootfs(d / "rootfs")
    with open(d / "containerd.log", "wb") as log:
        daemon = subprocess.Popen(["containerd", "--config", str(d / "config.toml")],
                                  stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                  start_new_session=True)

    def run(*args: str, timeout: float = 30) -> subprocess.CompletedProcess:
        return subprocess.run(["ctr", "--address", sock, *args], capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while run("version").returncode != 0:
            assert daemon.poll() is None, (d / "containerd.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "containerd did not come up"
            time.sleep(0.2)
        yield run, d / "rootfs"
    finally:
        for line in run("tasks", "ls", "-q").stdout.split():
            run("tasks", "kill", "-s", "KILL", line)
        time.sleep(0.3)
        for line in run("containers", "ls", "-q").stdout.split():
            run("tasks", "rm", "-f", line)
            run("containers", "rm", line)
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(20)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()
        for pid in _shims_of(sock):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(d, ignore_errors=True)
        for path in leftovers:
            try:
                path.rmdir()          # only if empty: never take what another engine put there
            except OSError:
                pass


def labkit_run(ctr, flags: list[str], task_id: str, *command: str):
    """ctr run [flags] --rootfs ROOTFS ID COMMAND… with labkit-runc as the shim's runc."""
    run, rootfs = ctr
    return run("run", "--runc-binary", LABKIT_RUNC, "--env", "PATH=/bin", *flags,
               "--rootfs", str(rootfs), task_id, *command)


def test_run_output_and_exit_status(ctr):
    r = labkit_run(ctr, ["--rm"], "rs1", "sh", "-c", "echo from-labkit-runc; exit 4")
    assert r.stdout.strip() == "from-labkit-runc"
    assert r.returncode == 4


def test_missing_executable_reaches_the_caller_in_runcs_words(ctr):
    r = labkit_run(ctr, ["--rm"], "rs2", "nosuchcmd")
    assert r.returncode != 0
    assert ('OCI runtime create failed: runc create failed: unable to start container process: '
            'exec: "nosuchcmd": executable file not found in $PATH') in r.stderr


def test_detached_task_exec_ps_and_kill(ctr):
    run, _ = ctr
    r = labkit_run(ctr, ["-d"], "rs3", "sleep", "60")
    assert r.returncode == 0, r.stderr
    try:
        tasks = run("tasks", "ls").stdout
        assert "rs3" in tasks and "RUNNING" in tasks
        e = run("tasks", "exec", "--exec-id", "e1", "rs3", "sh", "-c", "echo exec-ok; echo $$")
        assert e.returncode == 0, e.stderr
        assert e.stdout.split()[0] == "exec-ok"
        ps = run("tasks", "ps", "rs3")
        assert ps.returncode == 0 and len(ps.stdout.splitlines()) >= 2
        run("tasks", "kill", "-s", "KILL", "rs3")
        deadline = time.monotonic() + 10
        while "STOPPED" not in run("tasks", "ls").stdout:
            assert time.monotonic() < deadline, "task did not stop"
            time.sleep(0.1)
    finally:
        run("tasks", "rm", "-f", "rs3")
        run("containers", "rm", "rs3")
