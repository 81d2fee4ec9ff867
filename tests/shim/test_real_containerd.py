"""Swapping layers for real: Debian's containerd 1.6 (and its `ctr`) driving labkit-shim.

A private containerd (its own socket, root and state under /tmp) finds its shims by name in
PATH: runtime io.containerd.runc.v2 means the binary containerd-shim-runc-v2. We put a
two-line wrapper by that name first in its PATH, so every container containerd runs goes
through labkit-shim, which runs real runc (`ctr run --runc-binary runc` sends
containerd.runc.v1.Options{binary_name: "runc"} in Task.Create). If labkit-shim speaks the
shim v2 protocol correctly, containerd cannot tell the difference.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from labkit.wire.shim.client import ShimClient
from realdocker import RealContainerd

from .conftest import alive, make_bundle, wait_until

pytestmark = [pytest.mark.root, pytest.mark.slow]

CONTAINERD = shutil.which("containerd")
CTR = shutil.which("ctr")
SHIM = Path(sys.executable).parent / "labkit-shim"


@pytest.fixture
def containerd():
    if os.geteuid() != 0:
        pytest.skip("needs root")
    if not (CONTAINERD and CTR and shutil.which("runc")):
        pytest.skip("containerd, ctr and runc are needed for this test")
    d = Path(tempfile.mkdtemp(dir="/tmp", prefix="lkctd-"))
    make_bundle(d / "image", ["true"])          # only for its rootfs/
    c = RealContainerd(d, shim=str(SHIM))
    shim_pids: list[int] = []
    c.shim_pids = shim_pids
    try:
        c.start()
        yield c
    finally:
        c.remove(["detached"])
        c.kill()
        for pid in shim_pids:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        subprocess.run(["runc", "--root", str(d / "root" / "runc"), "delete", "-f", "detached"],
                       capture_output=True)
        shutil.rmtree(d, ignore_errors=True)


def test_ctr_run_goes_through_labkit_shim(containerd):
    proc = containerd.ctr("run", "--rm", "--runc-binary", "runc", "--rootfs",
                          str(containerd.dir / "image" / "rootfs"), "once",
                          "/bin/sh", "-c", "echo hello through labkit-shim; exit 5", check=False)
    assert proc.stdout == "hello through labkit-shim\n", proc.stderr
    assert proc.returncode == 5
    log = (containerd.dir / "containerd.log").read_text()
    assert "shim[" in log, "the shim that ran was not labkit-shim"


def test_container_survives_containerd_and_is_found_again(containerd):
    rootfs = str(containerd.dir / "image" / "rootfs")
    containerd.ctr("run", "-d", "--runc-binary", "runc", "--rootfs", rootfs, "detached", "/bin/sleep", "60")
    bundle = containerd.state / "io.containerd.runtime.v2.task" / "default" / "detached"
    address = (bundle / "address").read_text()
    # containerd sent containerd.runc.v1.Options{binary_name: "runc"}; the shim recorded it
    assert json.loads((bundle / "options.json").read_text())["binary_name"] == "runc"
    # an exec, the way `docker exec` reaches a shim: Exec + Start + Wait with an exec id
    proc = containerd.ctr("task", "exec", "--exec-id", "e1", "detached", "/bin/sh", "-c",
                          "echo exec through labkit-shim; exit 3", check=False)
    assert (proc.stdout, proc.returncode) == ("exec through labkit-shim\n", 3), proc.stderr
    with ShimClient(address) as shim:
        info = shim.connect()
        containerd.shim_pids.append(info["shim_pid"])
        assert info["version"].startswith("labkit-shim")
        pid = shim.state("detached").pid

    containerd.kill()                      # containerd dies ...
    assert alive(pid) and alive(info["shim_pid"])
    with ShimClient(address) as shim:      # ... the shim still answers, the container still runs
        assert shim.state("detached").status == "running"

    containerd.start()                     # a new containerd reconnects through <bundle>/address
    tasks = containerd.ctr("task", "ls").stdout
    assert "detached" in tasks and "RUNNING" in tasks
    containerd.ctr("task", "kill", "-s", "9", "detached")
    assert wait_until(lambda: "STOPPED" in containerd.ctr("task", "ls").stdout, 10)
    containerd.ctr("task", "delete", "detached")
    containerd.ctr("container", "delete", "detached")
    assert wait_until(lambda: not alive(info["shim_pid"])), "the shim did not exit after delete"


def test_events_reach_containerd(containerd):
    events = subprocess.Popen([CTR, "--address", str(containerd.sock), "events"], env=containerd.env,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        time.sleep(0.3)   # subscribed before the container runs
        containerd.ctr("run", "--rm", "--runc-binary", "runc", "--rootfs",
                       str(containerd.dir / "image" / "rootfs"), "evented", "/bin/sh", "-c", "exit 2",
                       check=False)
        time.sleep(0.5)
    finally:
        events.terminate()
        out, _ = events.communicate(timeout=10)
    # Lines are "<date> <time> +0000 UTC <namespace> <topic> <event>"; /tasks/ ones come from the shim.
    topics = re.findall(r" default (/tasks/\S+) .*\"evented\"", out)
    for topic in ("/tasks/create", "/tasks/start", "/tasks/exit", "/tasks/delete"):
        assert topic in topics, out
    exit_line = next(line for line in out.splitlines() if "/tasks/exit" in line)
    assert '"exit_status":2' in exit_line.replace(" ", ""), exit_line
