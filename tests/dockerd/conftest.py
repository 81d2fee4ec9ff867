"""A private labkit stack for end-to-end tests: registry + containerd + dockerd in tmp dirs.

    labkit-registry     in this process (labkit.registry.serve, an ephemeral port), with the
                        lab's hello-world and busybox pushed by labkit.images.build_and_push
    labkit-containerd   a subprocess on <tmp>/c.sock, its own --root and --state
    labkit-dockerd      a subprocess on <tmp>/d.sock, --registry-mirror pointing at the registry

LABKIT_RUN_DIR/LABKIT_LIB_DIR move the remaining defaults (shim sockets, runtime root) into
the same tmp dir, so nothing touches a lab in use. `labkit_stack` yields the Engine API
socket path; `docker_env` is the environment for the docker CLI (DOCKER_HOST set).
Teardown removes every container, stops both daemons by PID, and checks the host is clean.

Environment: LABKIT_TEST_DOCKERD=<command> tests another labkit-dockerd implementation;
LABKIT_KEEP_TEST_DIR=1 keeps the tmp dir (daemon logs: <tmp>/dockerd.log, containerd.log).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import pytest

from labkit import procfs
from labkit.lab.reset import mounts_under
from support import free_port, stop_process, wait_for_daemon

VENV_BIN = Path(sys.executable).parent
# The docker CLI a user of this host runs: the first on PATH, as vagrant/setup.sh reports it
# (Debian's docker.io installs /usr/bin/docker; a newer one in /usr/local/bin wins).
DOCKER = shutil.which("docker") or "/usr/bin/docker"


def docker_cli_major(env: dict | None = None) -> int:
    """The major version of the docker CLI the tests run (28 at /usr/local/bin here, Debian's
    20.10 on a fresh machine: labkit must work with both, and some of their output differs)."""
    out = subprocess.run([DOCKER, "version", "--format", "{{.Client.Version}}"], env=env,
                         capture_output=True, text=True, timeout=60).stdout
    return int(out.strip().split(".")[0])


def cgroups_under(parent: str) -> list[str]:
    """The directories of cgroup `parent` in every mounted v1 hierarchy (and v2)."""
    return [m.mount_point + parent for m in procfs.mountinfo()
            if m.fstype in ("cgroup", "cgroup2") and os.path.isdir(m.mount_point + parent)]


def processes_mentioning(text: str, exclude: set[int]) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in exclude or int(entry) == os.getpid():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if text.encode() in cmdline:
            pids.append(int(entry))
    return pids


def accepts(path: Path) -> bool:
    """Whether a daemon listens on the unix socket `path`."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(str(path))
        return True
    except OSError:
        return False
    finally:
        s.close()


class Stack:
    def __init__(self, tmp: Path, dockerd_args: tuple[str, ...] = ()) -> None:
        self.tmp = tmp
        self.dockerd_args = list(dockerd_args)   # more flags: --storage-driver native
        self.socket = tmp / "d.sock"
        self.env = dict(os.environ, LABKIT_RUN_DIR=str(tmp / "run"), LABKIT_LIB_DIR=str(tmp / "lib"),
                        PATH=f"{VENV_BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}")
        self.procs: list[subprocess.Popen] = []
        self.daemons: dict[str, subprocess.Popen] = {}   # "containerd", "dockerd"
        self.registry = None
        self.cgroup_parent = f"/labkit-test-{tmp.name[-8:]}"
        self.tcp_port = free_port()

    def start(self) -> None:
        from labkit.images import build_and_push
        from labkit.registry.server import serve
        self.registry = serve(self.tmp / "registry", port=0, log=None)
        build_and_push(self.registry.url)
        self._spawn("containerd", [str(VENV_BIN / "labkit-containerd"), "--address",
                                   str(self.tmp / "c.sock"), "--root", str(self.tmp / "croot"),
                                   "--state", str(self.tmp / "cstate")], self.tmp / "c.sock")
        # LABKIT_TEST_DOCKERD runs the same tests against another implementation of L4
        # (a student's labkit-dockerd, say) that takes the same command line.
        dockerd = os.environ.get("LABKIT_TEST_DOCKERD") or str(VENV_BIN / "labkit-dockerd")
        self._spawn("dockerd", [dockerd, "-H", f"unix://{self.socket}",
                                "-H", f"tcp://127.0.0.1:{self.tcp_port}",
                                "--containerd", str(self.tmp / "c.sock"),
                                "--root", str(self.tmp / "droot"),
                                "--exec-root", str(self.tmp / "dexec"),
                                "--registry-mirror", self.registry.url,
                                "--cgroup-parent", self.cgroup_parent, "--debug",
                                *self.dockerd_args], self.socket)

    def restart_dockerd(self, while_away: Callable[[], None] = lambda: None) -> None:
        """Stop labkit-dockerd (SIGTERM), call `while_away`, and start dockerd again on the
        same root and socket."""
        old = self.daemons["dockerd"]
        stop_process(old, timeout=10)
        self.procs.remove(old)
        while_away()
        self._spawn("dockerd", list(old.args), self.socket)

    def crash_and_restart(self, first: str = "containerd") -> None:
        """kill -9 labkit-containerd and labkit-dockerd (by PID), as a crash or the OOM killer
        would, then start both again on the same roots and sockets, `first` first ("dockerd"
        first: its live restore runs while containerd is still away)."""
        old = dict(self.daemons)
        for proc in old.values():
            proc.kill()
        for proc in old.values():
            proc.wait()
            self.procs.remove(proc)
        sockets = {"containerd": self.tmp / "c.sock", "dockerd": self.socket}
        for name in sorted(old, key=lambda n: n != first):
            self._spawn(name, list(old[name].args), sockets[name])

    def _spawn(self, name: str, argv: list[str], sock: Path) -> None:
        log = self.tmp / f"{name}.log"
        with open(log, "ab") as out:
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=self.env,
                                    start_new_session=True)
        self.procs.append(proc)
        self.daemons[name] = proc
        # Accepting, not just there: a killed daemon leaves its socket file behind.
        wait_for_daemon(lambda: accepts(sock), proc.args[0], proc, log, timeout=20)

    def stop(self) -> None:
        if self.socket.exists() and os.path.exists(DOCKER):
            ids = subprocess.run([DOCKER, "ps", "-aq"], env=docker_env_for(self),
                                 capture_output=True, text=True, timeout=30).stdout.split()
            if ids:
                subprocess.run([DOCKER, "rm", "-f", *ids], env=docker_env_for(self),
                               capture_output=True, timeout=60)
        for proc in reversed(self.procs):
            stop_process(proc, timeout=10)
        if self.registry is not None:
            self.registry.close()
        # Safety nets, so that a failing test leaves the host clean: shims started for this
        # stack (they name our tmp dir on their command line) and mounts under it.
        for pid in processes_mentioning(str(self.tmp), {p.pid for p in self.procs}):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for target in mounts_under([self.tmp]):   # deepest first
            subprocess.run(["umount", "-l", target], capture_output=True)
        # Links (bridges, veths) of this stack's dockerd carry its tag in their alias; the
        # daemon deletes them when it stops, this catches those a killed daemon left.
        from labkit.dockerd.net import bridge
        from labkit.dockerd.networkstore import daemon_tag
        tag = f"{bridge.ALIAS_PREFIX}{daemon_tag(self.tmp / 'droot')} "
        leftover = [link.name for link in bridge.links() if link.alias.startswith(tag)]
        for name in leftover:
            bridge.delete_link(name)
        if leftover:
            print(f"deleted links left behind by the stack's dockerd: {leftover}")
        # Container processes outlive a killed shim (they are in their own pid namespace):
        # whatever is still in the stack's cgroups is ours, and goes too.
        for _ in range(2):
            for directory in cgroups_under(self.cgroup_parent):
                for procs in Path(directory).glob("*/cgroup.procs"):
                    for pid in procs.read_text().split():
                        try:
                            os.kill(int(pid), signal.SIGKILL)
                        except ProcessLookupError:
                            pass
            time.sleep(0.2)
        for directory in cgroups_under(self.cgroup_parent):
            for child in Path(directory).glob("*/"):
                if (child / "cgroup.procs").exists():
                    try:
                        os.rmdir(child)
                    except OSError:
                        pass
            try:
                os.rmdir(directory)
            except OSError as e:
                print(f"cannot remove cgroup {directory}: {e}")


def docker_env_for(stack: Stack) -> dict:
    return dict(stack.env, DOCKER_HOST=f"unix://{stack.socket}", DOCKER_CONFIG=str(stack.tmp))


@pytest.fixture(scope="session")
def _stack():
    if os.geteuid() != 0:
        pytest.skip("the labkit stack needs root (mounts, namespaces)")
    tmp = Path(tempfile.mkdtemp(prefix="lkd-e2e-", dir="/tmp"))
    stack = Stack(tmp)
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()
        if os.environ.get("LABKIT_KEEP_TEST_DIR") != "1":
            shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="session")
def labkit_stack(_stack) -> str:
    """The Engine API socket path of a private, running labkit stack."""
    return str(_stack.socket)


@pytest.fixture(scope="session")
def docker_env(_stack) -> dict:
    """Environment for the docker CLI / docker-py against the private stack."""
    return docker_env_for(_stack)


@pytest.fixture(scope="session")
def stack(_stack) -> Stack:
    return _stack
