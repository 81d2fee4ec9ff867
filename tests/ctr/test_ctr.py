"""labkit-ctr against both containerds: a private labkit-containerd and a private REAL
containerd 1.6, each on its own socket under one short temporary directory; the same
commands, the same output shape.

A labkit-registry on 127.0.0.1:<ephemeral> holds a two-layer busybox image (an OCI index
with one linux/amd64 manifest). Each daemon is started by this module and stopped by PID;
every mount below the directory is undone, also when a test fails. Never the host's
containerd: the real one has its own root, state, socket and no CRI plugin.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from containerd.layers import entry, make_tar, push_image, tar_directory
from labkit.ctr import output
from labkit.ctr.backend import connect
from labkit.distribution.client import RegistryClient
from labkit.distribution.layers import chain_ids
from labkit.lab.reset import mounts_under
from labkit.registry.server import serve
from support import cgroup_dirs, make_busybox_rootfs, short_tmpdir

pytestmark = [pytest.mark.root, pytest.mark.slow]

NS = "lkctr"
CONTAINERD = shutil.which("containerd")
REAL_CONFIG = """version = 2
root = "{d}/root"
state = "{d}/state"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.aufs"]
[grpc]
  address = "{d}/c.sock"
[ttrpc]
  address = "{d}/c.sock.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
"""


class Daemon:
    """One containerd of either kind, on <d>/c.sock."""

    def __init__(self, kind: str, d: Path) -> None:
        self.kind, self.dir, self.sock = kind, d, str(d / "c.sock")
        d.mkdir()
        if kind == "labkit":
            self.argv = [sys.executable, "-m", "labkit.containerd.main", "--address", self.sock,
                         "--root", str(d / "root"), "--state", str(d / "state")]
        else:
            (d / "config.toml").write_text(REAL_CONFIG.format(d=d))
            self.argv = [CONTAINERD, "--config", str(d / "config.toml")]
        self.env = dict(os.environ, LABKIT_RUN_DIR=str(d / "run"))
        # runc (under either shim) keeps its state here, the fifos go here: nothing in /run
        self.run_flags = ["--runc-binary", "runc", "--runc-root", str(d / "runc"),
                          "--fifo-dir", str(d)]
        log = open(d / "daemon.log", "ab")
        self.proc = subprocess.Popen(self.argv, env=self.env, stdout=log, stderr=log,
                                     start_new_session=True)
        log.close()
        deadline = time.time() + 15
        while not os.path.exists(self.sock):
            if self.proc.poll() is not None or time.time() > deadline:
                self.stop()
                raise RuntimeError(f"{kind} containerd did not start: " +
                                   (d / "daemon.log").read_text()[-2000:])
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def ctr(self, *args: str, check: bool = True, text: bool = True) -> subprocess.CompletedProcess:
        """labkit-ctr as a user runs it (the worktree's labkit, through PYTHONPATH)."""
        proc = subprocess.run([sys.executable, "-m", "labkit.ctr.main", "-a", self.sock,
                               "-n", NS, *args], capture_output=True, text=text, timeout=120,
                              env=dict(os.environ, PYTHONPATH=str(Path(__file__).parents[2])))
        if check:
            assert proc.returncode == 0, f"labkit-ctr {' '.join(args)}: {proc.stderr}"
        return proc


@pytest.fixture(scope="module")
def base():
    with short_tmpdir("lkr-") as d:
        try:
            yield d
        finally:
            for point in mounts_under([d]):   # never rmtree through a mount
                subprocess.run(["umount", "-l", point], check=False)


@pytest.fixture(scope="module")
def image(base):
    srv = serve(base / "registry", log=None)
    try:
        rootfs = make_busybox_rootfs(base / "bb")
        layer1 = tar_directory(rootfs)
        shutil.rmtree(rootfs)
        layer2 = make_tar(entry("etc/", "dir"), entry("etc/motd", "file", b"labkit\n"))
        info = push_image(RegistryClient(srv.url), "lab/busybox", "latest", [layer1, layer2],
                          index=True)
        info["ref"] = f"{srv.address}/lab/busybox:latest"
        yield info
    finally:
        srv.close()


@pytest.fixture(scope="module", params=["labkit", "containerd"])
def daemon(request, base):
    if request.param == "containerd" and not CONTAINERD:
        pytest.skip("a real containerd is needed")
    d = Daemon(request.param, base / request.param)
    try:
        yield d
    finally:
        try:
            cleanup(d)
        finally:
            d.stop()
            sweep(d)


def cleanup(d: Daemon) -> None:
    """Whatever a failed test left: tasks killed and deleted, containers removed, through
    the daemon (each step on its own: one failure must not leave the rest)."""
    with connect(d.sock, NS) as backend:
        for t in backend.tasks():
            for step in (lambda: backend.kill(t.id, signal.SIGKILL, all=True),
                         lambda: backend.wait(t.id), lambda: backend.delete_task(t.id)):
                try:
                    step()
                except Exception:
                    pass
        for c in backend.containers():
            try:
                backend.delete_container(c.id)
            except Exception:
                pass


def sweep(d: Daemon) -> None:
    """Last resort, after the daemon stopped: kill OUR shims (their command line names our
    socket) and whatever still runs in the spec's cgroups (/<NS>/<id>), then remove those."""
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if args and b"shim" in args[0] and d.sock.encode() in args:
                os.kill(int(pid), signal.SIGKILL)
    for top in cgroup_dirs(f"/{NS}", every_cgroup2=True):
        if not top.is_dir():
            continue
        for path in sorted((p for p in top.rglob("*") if p.is_dir()), reverse=True) + [top]:
            deadline = time.time() + 10
            while pids := (path / "cgroup.procs").read_text().split():
                for pid in pids:
                    try:
                        os.kill(int(pid), signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                assert time.time() < deadline, f"{path}: processes survive SIGKILL"
                time.sleep(0.05)
            path.rmdir()


@pytest.fixture(scope="module")
def pulled(daemon, image):
    return daemon.ctr("images", "pull", image["ref"]).stdout


def rows(text: str) -> list[list[str]]:
    return [line.split() for line in text.splitlines()]


def test_version_names_the_dialect(daemon):
    out = daemon.ctr("version").stdout
    assert out.startswith("Client:\n")
    assert "Server:\n  Version:  " in out
    assert f"Dialect:  {daemon.kind}" in out
    forced = daemon.ctr("--dialect", "labkit" if daemon.kind == "containerd" else "containerd",
                        "version", check=False)
    assert forced.returncode == 1 and forced.stderr.startswith("ctr: ")


def test_pull_then_images_ls(daemon, image, pulled):
    assert pulled.splitlines()[0] == f"{image['ref']}: resolved {image['top']}"
    assert pulled.splitlines()[-1] == f"{image['ref']}: pulled {image['top']}"
    out = daemon.ctr("images", "ls").stdout
    table = rows(out)
    assert table[0] == ["REF", "TYPE", "DIGEST", "SIZE", "PLATFORMS", "LABELS"]
    row = next(r for r in table[1:] if r[0] == image["ref"])
    assert row[1] == "application/vnd.oci.image.index.v1+json"
    assert row[2] == image["top"]
    # the size of what this platform uses: index, manifest, config, layers ("1.2 MiB")
    index = daemon.ctr("content", "get", image["top"], text=False).stdout
    manifest = json.loads(daemon.ctr("content", "get", image["manifest"], text=False).stdout)
    total = len(index) + sum(d["size"] for d in
                             [json.loads(index)["manifests"][1], manifest["config"],
                              *manifest["layers"]])
    assert " ".join(row[3:5]) == output.size(total)
    assert row[5] == "linux/s390x,linux/amd64" and row[6] == "-"
    assert daemon.ctr("images", "ls", "-q").stdout.splitlines() == [image["ref"]]


def test_content_ls_and_get(daemon, image, pulled):
    table = rows(daemon.ctr("content", "ls").stdout)
    assert table[0] == ["DIGEST", "SIZE", "AGE", "LABELS"]
    digests = {r[0] for r in table[1:]}
    assert {image["top"], image["manifest"], image["config"]} <= digests
    raw = daemon.ctr("content", "get", image["manifest"], text=False).stdout
    assert "sha256:" + hashlib.sha256(raw).hexdigest() == image["manifest"]
    missing = daemon.ctr("content", "get", "sha256:" + "0" * 64, check=False)
    assert missing.returncode == 1 and missing.stderr.startswith("ctr: ")


def test_empty_listings_have_ctr_headers(daemon, pulled):
    assert rows(daemon.ctr("containers", "ls").stdout) == [["CONTAINER", "IMAGE", "RUNTIME"]]
    assert rows(daemon.ctr("tasks", "ls").stdout) == [["TASK", "PID", "STATUS"]]


def test_pull_unpacked_one_snapshot_per_layer(daemon, image, pulled):
    # labkit-containerd unpacks in Transfer.Pull; against a real containerd labkit-ctr does
    # it (Snapshots.Prepare, Diff.Apply, Snapshots.Commit): the same snapshots either way
    chains = chain_ids(image["diff_ids"])
    snaps = rows(daemon.ctr("snapshots", "ls").stdout)
    assert snaps[0] == ["KEY", "PARENT", "KIND"]
    assert sorted(snaps[1:]) == sorted([[chains[0], "Committed"],
                                        [chains[1], chains[0], "Committed"]])


def test_run_prints_and_exits_with_the_status(daemon, image, pulled, base):
    proc = daemon.ctr("run", "--rm", *daemon.run_flags, image["ref"], "once",
                      "/bin/sh", "-c", "cat /etc/motd; echo oops >&2; exit 3", check=False)
    assert (proc.returncode, proc.stdout, proc.stderr) == (3, "labkit\n", "oops\n")
    assert daemon.ctr("containers", "ls", "-q").stdout == ""
    assert "once" not in daemon.ctr("snapshots", "ls").stdout   # --rm took its snapshot too


def test_detached_task_ls_kill_rm(daemon, image, pulled):
    daemon.ctr("run", "-d", *daemon.run_flags, image["ref"], "sleeper", "sleep", "60")
    table = rows(daemon.ctr("tasks", "ls").stdout)
    assert table[0] == ["TASK", "PID", "STATUS"]
    [task] = table[1:]
    assert task[0] == "sleeper" and int(task[1]) > 0 and task[2] == "RUNNING"
    runtime = "io.containerd.runc.v2" if daemon.kind == "containerd" else "labkit-shim"
    assert rows(daemon.ctr("containers", "ls").stdout)[1:] == [["sleeper", image["ref"], runtime]]
    info = json.loads(daemon.ctr("containers", "info", "sleeper").stdout)
    assert info["ID"] == "sleeper" and info["SnapshotKey"] == "sleeper"
    assert info["Runtime"] == {"Name": runtime}
    refused = daemon.ctr("tasks", "rm", "sleeper", check=False)     # still running
    assert refused.returncode == 1 and refused.stderr.startswith("ctr: ")
    daemon.ctr("run", "-d", *daemon.run_flags, image["ref"], "forced", "sleep", "60")
    daemon.ctr("tasks", "rm", "-f", "forced")                      # killed, waited, deleted
    daemon.ctr("containers", "rm", "forced")
    assert [r[0] for r in rows(daemon.ctr("tasks", "ls").stdout)[1:]] == ["sleeper"]
    daemon.ctr("tasks", "kill", "-s", "KILL", "sleeper")
    deadline = time.time() + 20
    while "STOPPED" not in daemon.ctr("tasks", "ls").stdout:
        assert time.time() < deadline, "the task did not stop"
        time.sleep(0.1)
    proc = daemon.ctr("tasks", "rm", "sleeper")
    assert "137" in proc.stderr                                   # ctr warns of the status
    daemon.ctr("containers", "rm", "sleeper")
    assert daemon.ctr("tasks", "ls", "-q").stdout == ""
    assert daemon.ctr("containers", "ls", "-q").stdout == ""
    assert "sleeper" not in daemon.ctr("snapshots", "ls").stdout


def test_snapshots_rm(daemon, image, pulled):
    top = chain_ids(image["diff_ids"])[-1]
    daemon.ctr("snapshots", "rm", top)
    assert top not in daemon.ctr("snapshots", "ls").stdout
    missing = daemon.ctr("snapshots", "rm", top, check=False)
    assert missing.returncode == 1 and missing.stderr.startswith("ctr: ")


def test_namespaces_ls(daemon, pulled):
    proc = daemon.ctr("namespaces", "ls", check=False)
    if daemon.kind == "containerd":
        table = rows(proc.stdout)
        assert table[0] == ["NAME", "LABELS"] and [NS] in table[1:]
    else:
        assert proc.returncode == 1 and "no namespaces service" in proc.stderr


def test_images_rm(daemon, image, pulled):
    proc = daemon.ctr("images", "rm", image["ref"])
    assert proc.stdout == image["ref"] + "\n"
    assert daemon.ctr("images", "ls", "-q").stdout == ""
    again = daemon.ctr("images", "rm", image["ref"], check=False)
    assert again.returncode == 1 and "not found" in again.stderr
