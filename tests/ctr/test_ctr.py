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
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from containerd.layers import entry, make_tar, push_image, tar_directory
from labkit.containerd.client import Client, pb
from labkit.distribution.client import RegistryClient
from labkit.lab.reset import mounts_under
from labkit.registry.server import serve
from support import make_busybox_rootfs, short_tmpdir

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
        d.stop()


@pytest.fixture(scope="module")
def pulled(daemon, image):
    proc = daemon.ctr("images", "pull", image["ref"])
    return proc.stdout


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
    assert pulled.splitlines()[-1].startswith(f"{image['ref']}: pulled {image['top']}")
    out = daemon.ctr("images", "ls").stdout
    table = rows(out)
    assert table[0] == ["REF", "TYPE", "DIGEST", "SIZE", "PLATFORMS", "LABELS"]
    row = next(r for r in table[1:] if r[0] == image["ref"])
    assert row[1] == "application/vnd.oci.image.index.v1+json"
    assert row[2] == image["top"]
    assert row[4] in ("KiB", "MiB") and float(row[3]) > 0   # "1.2 MiB": two cells when split
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
    assert rows(daemon.ctr("containers", "ls").stdout)[0] == ["CONTAINER", "IMAGE", "RUNTIME"]
    assert rows(daemon.ctr("tasks", "ls").stdout)[0] == ["TASK", "PID", "STATUS"]
    snaps = rows(daemon.ctr("snapshots", "ls").stdout)
    assert snaps[0] == ["KEY", "PARENT", "KIND"]
    # labkit-containerd unpacks on pull; against a real one the pull is not unpacked
    kinds = {r[-1] for r in snaps[1:]}
    assert kinds == ({"Committed"} if daemon.kind == "labkit" else set())


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
