"""A private, REAL Docker engine: dockerd 20.10 + containerd 1.6 on their own sockets.

    registry (the caller's: the tests' in-process one, or the lab's)
        ^ --registry-mirror
    dockerd 20.10  -H unix:///tmp/lkd-*/docker.sock   (--bridge=none by default, no iptables)
        | --containerd
    containerd 1.6 on its own socket, root and state (a config file in the temp dir)

Everything lives in one temporary directory under /tmp (short: unix socket paths must fit in
108 bytes) and is torn down by PID, unmounted from /proc/self/mountinfo (deepest first) and
removed -- also when the caller fails. Never the host's dockerd: its sockets, its
/etc/docker/daemon.json, its iptables are left alone (--ip-forward=false --iptables=false, as
this host requires). Used by tests/cli (the labkit client against a real engine) and by
benchmarks/bench.py --start-real-dockerd (labkit against the real thing, side by side);
its RealContainerd alone by tests/shim/test_real_containerd.py and benchmarks/shim_memory.py.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import socket
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator

from labkit.client import APIError, Client, DaemonNotRunning
from support import stop_process, wait_for_daemon


class Unavailable(Exception):
    """This machine cannot run a real dockerd (the message says why)."""


CONTAINERD_CONFIG = """\
version = 2
root = "{d}/root"
state = "{d}/state"
# no Kubernetes CRI plugin (it would set up CNI networking on the host), no snapshotters this
# host has no use for, no debug or metrics sockets
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.aufs"]
[grpc]
  address = "{d}/containerd.sock"
[ttrpc]
  address = "{d}/containerd.sock.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
"""


class RealContainerd:
    """A private, real containerd 1.6 in directory `d`: its own socket (d/containerd.sock),
    root (d/root), state (d/state) and log; `ctr` drives it.

    The one launcher of a real containerd: private_real_dockerd below runs dockerd on it,
    tests/shim/test_real_containerd.py and benchmarks/shim_memory.py put labkit-shim under it.
    `shim`: a program for containerd to run as its shim. containerd finds the shim of runtime
    io.containerd.runc.v2 by name in its PATH, so a two-line wrapper named
    containerd-shim-runc-v2 in d/bin, first in that PATH, execs `shim` instead."""

    def __init__(self, d: Path, shim: str | None = None) -> None:
        d.mkdir(exist_ok=True)
        self.dir, self.root, self.state = d, d / "root", d / "state"
        self.sock = d / "containerd.sock"
        self.proc: subprocess.Popen | None = None
        (d / "bin").mkdir(exist_ok=True)
        if shim:
            wrapper = d / "bin" / "containerd-shim-runc-v2"
            wrapper.write_text(f"#!/bin/sh\nexec {shim} \"$@\"\n")
            wrapper.chmod(0o755)
        (d / "containerd.toml").write_text(CONTAINERD_CONFIG.format(d=d))
        # labkit-shim's sockets and runtime state go to a private /run/labkit as well
        self.env = dict(os.environ, PATH=f"{d}/bin:{os.environ['PATH']}",
                        LABKIT_RUN_DIR=str(d / "run"))

    def start(self) -> None:
        log = self.dir / "containerd.log"
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(
                [shutil.which("containerd") or "containerd", "--config",
                 str(self.dir / "containerd.toml")], env=self.env, stdin=subprocess.DEVNULL,
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        wait_for_daemon(self._accepts, "containerd", self.proc, log)

    def _accepts(self) -> bool:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            try:
                s.connect(str(self.sock))
                return True
            except OSError:
                return False

    def ctr(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """`ctr --address <ours> ARGS` (ctr's stdio fifos kept in our directory, not in
        /run/containerd/fifo); `check`: a failure raises, with ctr's message."""
        if args[:1] == ("run",) or args[:2] == ("task", "exec"):
            args = (*args[:2], "--fifo-dir", str(self.dir / "fifo"), *args[2:])
        proc = subprocess.run([shutil.which("ctr") or "ctr", "--address", str(self.sock), *args],
                              env=self.env, capture_output=True, text=True, timeout=60)
        if check and proc.returncode:
            raise RuntimeError(f"ctr {' '.join(args)}: {proc.stderr.strip()}")
        return proc

    def remove(self, ids: Iterable[str]) -> None:
        """Kill (SIGKILL) and delete the containers `ids`, whatever state they are in."""
        ids = list(ids)
        for id in ids:
            self.ctr("task", "kill", "-s", "9", id, check=False)
        for id in ids:
            for _ in range(50):
                if self.ctr("task", "delete", id, check=False).returncode == 0:
                    break
                time.sleep(0.1)
            self.ctr("container", "delete", id, check=False)

    def kill(self) -> None:
        """containerd dies (SIGKILL), as in a crash; its shims and containers live on."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        stop_process(self.proc)


def _our_shims(containerd_sock: str) -> list[int]:
    """PIDs of containerd shims started for OUR containerd (their -address names our socket)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            args = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if args and args[0].endswith(b"containerd-shim-runc-v2") and containerd_sock.encode() in args:
            pids.append(int(entry))
    return pids


def _unmount_under(root: Path) -> None:
    from labkit import syscalls
    from labkit.lab.reset import mounts_under

    for target in mounts_under([root]):
        try:
            syscalls.umount2(target, syscalls.MNT_DETACH)
        except OSError:
            pass


@contextmanager
def private_real_dockerd(registry: str, bridge: str = "none") -> Iterator[str]:
    """The host URL (unix://…) of a private real dockerd that pulls through `registry`
    (host:port); `bridge`: "none", or an existing bridge device for its containers."""
    if os.geteuid() != 0:
        raise Unavailable("a real dockerd needs root")
    for program in ("dockerd", "containerd", "containerd-shim-runc-v2", "runc"):
        if shutil.which(program) is None:
            raise Unavailable(f"{program} is not installed (apt-get install docker.io containerd)")
    # dockerd and containerd create these default directories whatever their flags say
    # (plugin sockets, shim sockets); remove them afterwards if they were not there and are empty.
    leftovers = [p for p in (Path("/run/docker/plugins"), Path("/run/docker"),
                             Path("/run/containerd/s"), Path("/run/containerd")) if not p.exists()]
    d = Path(tempfile.mkdtemp(prefix="lkd-", dir="/tmp"))
    containerd = RealContainerd(d)
    ctd_sock = str(containerd.sock)
    dockerd = None
    try:
        containerd.start()
        host = f"unix://{d}/docker.sock"
        # Our own daemon.json: never read the host's /etc/docker/daemon.json, and keep the
        # engine's identity key (20.10 writes /etc/docker/key.json by default) in the temp dir.
        (d / "daemon.json").write_text(json.dumps({"deprecated-key-path": str(d / "key.json")}))
        d_log = d / "dockerd.log"
        with open(d_log, "wb") as log:
            dockerd = subprocess.Popen(
                ["dockerd", "-H", host, "--containerd", ctd_sock,
                 "--data-root", str(d / "data"), "--exec-root", str(d / "exec"),
                 "--pidfile", str(d / "dockerd.pid"),
                 "--config-file", str(d / "daemon.json"),
                 "--ip-forward=false", "--iptables=false", f"--bridge={bridge}",
                 "--add-runtime", f"labkit={shutil.which('labkit-runc') or '/opt/labkit/venv/bin/labkit-runc'}",
                 "--registry-mirror", f"http://{registry}",
                 "--insecure-registry", registry],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)

        def answers() -> bool:
            try:
                Client(host, timeout=2).ping()
                return True
            except (DaemonNotRunning, APIError):
                return False

        wait_for_daemon(answers, "dockerd", dockerd, d_log)
        yield host
    finally:
        if dockerd is not None and dockerd.poll() is None:
            # Remove what the tests left, so that dockerd and the shims have nothing to keep.
            try:
                c = Client(f"unix://{d}/docker.sock", timeout=30)
                for item in c.containers(all=True):
                    c.remove_container(item["Id"], force=True)
            except (APIError, DaemonNotRunning):
                pass
        stop_process(dockerd)
        containerd.stop()
        for pid in _our_shims(ctd_sock):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        _unmount_under(d)
        shutil.rmtree(d, ignore_errors=True)
        for path in leftovers:
            try:
                path.rmdir()  # only if empty: never take anything another engine put there
            except OSError:
                pass
