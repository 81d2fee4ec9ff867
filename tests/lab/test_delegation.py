"""labkit.lab.delegation: on a systemd host with cgroup v2, `labkit lab up` starts containerd in
a scope whose cgroup systemd delegates, moved into its leaf, so that the runtime's containers
go below a cgroup the lab may write to.

What runs here: the decision (a directory tree with the trusted.delegate mark), the command
line, and the move into the leaf on this host's real cgroup2 mount (the test plays systemd,
putting the process in the scope). The whole of it, systemd included, needs systemd as PID 1
on a cgroup v2 host (the class VM): that test says so and skips elsewhere."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import uuid
from pathlib import Path

import pytest

from labkit import paths, procfs
from labkit.lab import delegation
from labkit.runc import cgroups


def test_needed_only_on_v2_under_systemd_outside_a_delegated_cgroup(tmp_path):
    root = str(tmp_path)
    (tmp_path / "system.slice" / "labkit.service" / "supervisor").mkdir(parents=True)
    (tmp_path / "user.slice" / "session-1.scope").mkdir(parents=True)
    os.setxattr(tmp_path / "system.slice" / "labkit.service", "trusted.delegate", b"1")
    session = "/user.slice/session-1.scope"
    assert delegation.needed(root, v2=True, systemd=True, own=session)
    assert not delegation.needed(root, v2=False, systemd=True, own=session)        # v1
    assert not delegation.needed(root, v2=True, systemd=False, own=session)        # no systemd
    # `labkit lab up` run from a Delegate=yes service: its daemons are delegated already
    assert not delegation.needed(root, v2=True, systemd=True,
                                 own="/system.slice/labkit.service/supervisor")


def test_containerd_runs_in_a_delegated_scope_of_its_lab(monkeypatch, tmp_path):
    argv = ["labkit-containerd", "--address", "/run/labkit/containerd/containerd.sock"]
    scoped = delegation.scoped(argv)
    assert scoped[:2] == ["systemd-run", "--scope"] and "--property=Delegate=yes" in scoped
    assert scoped[scoped.index("--") + 1:] == argv
    ours = delegation.unit()
    assert f"--unit={ours}" in scoped and ours.endswith(".scope")
    monkeypatch.setattr(paths, "RUN", tmp_path / "run")        # a private lab: its own unit
    assert delegation.unit() != ours


@pytest.fixture
def cgroup2():
    """This host's cgroup2 mount and a top directory of the test's, removed afterwards."""
    root = next((m.mount_point for m in procfs.mountinfo() if m.fstype == "cgroup2"), None)
    if root is None:
        pytest.skip("this host mounts no cgroup2 hierarchy")
    top = f"/labkit-test-{uuid.uuid4().hex[:8]}"
    yield root, top
    for d in sorted((d for d, _s, _f in os.walk(root + top)), key=len, reverse=True):
        os.rmdir(d)


@pytest.mark.root
def test_supervise_moves_the_daemon_into_the_scopes_leaf(cgroup2):
    """[real cgroup2] once the process is in the scope (systemd's part, played here), it
    moves into <scope>/supervisor: the scope itself holds no process, so it may enable
    controllers for the containers' cgroups beside that leaf."""
    root, top = cgroup2
    name = "labkit-containerd-test.scope"
    scope = root + top + "/" + name
    os.makedirs(scope)
    daemon = subprocess.Popen(["sleep", "60"])
    try:
        Path(scope, "cgroup.procs").write_text(str(daemon.pid))          # systemd's move
        assert delegation.supervise(daemon.pid, name, root) == scope
        assert Path(scope, "supervisor", "cgroup.procs").read_text().split() == [str(daemon.pid)]
        assert Path(scope, "cgroup.procs").read_text() == ""
        assert cgroups.own_cgroups(daemon.pid)[""] == f"{top}/{name}/supervisor"
    finally:
        daemon.kill()
        daemon.wait()


@pytest.mark.root
def test_supervise_says_where_the_daemon_is_when_systemd_did_not_move_it(cgroup2):
    root, _top = cgroup2
    daemon = subprocess.Popen(["sleep", "60"])
    try:
        with pytest.raises(RuntimeError, match=f"process {daemon.pid} is not in the systemd "
                                               "scope nowhere.scope after 0s"):
            delegation.supervise(daemon.pid, "nowhere.scope", root, timeout=0.2)
    finally:
        daemon.kill()
        daemon.wait()


@pytest.mark.root
@pytest.mark.slow
@pytest.mark.e2e
@pytest.mark.cgroup_v2
def test_lab_containers_go_below_containerds_delegated_scope(private_lab):
    """[systemd + cgroup v2: the class VM] `labkit lab up` from a shell (a session scope, not
    delegated): containerd runs in <scope>/supervisor, the scope carries trusted.delegate=1,
    and a container started with a memory limit has its cgroup at <scope>/labkit/<id>."""
    if not cgroups.under_systemd():
        pytest.skip("needs systemd as PID 1 (a delegated scope is systemd's to make): "
                    "the class VM; this host has no /run/systemd/system")
    if not delegation.needed():
        pytest.skip("this shell runs in a delegated cgroup already: nothing for the lab to do")
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("no docker CLI on PATH (vagrant/setup.sh installs docker.io)")
    assert private_lab.labkit("lab", "images").returncode == 0
    up = private_lab.labkit("lab", "up")
    assert up.returncode == 0, up.stdout + up.stderr
    pid = int((private_lab.run_dir / "labkit-containerd.pid").read_text())
    own = cgroups.own_cgroups(pid)[""]
    scope = cgroups.V2_ROOT + os.path.dirname(own)
    assert os.path.basename(own) == delegation.SUPERVISOR, own
    assert os.getxattr(scope, "trusted.delegate") == b"1"
    assert (private_lab.run_dir / delegation.RECORD).read_text().strip() == scope
    env = dict(private_lab.env, DOCKER_HOST=private_lab.docker_host)
    r = subprocess.run([docker, "run", "-d", "-m", "64m", "busybox", "sleep", "60"],
                       env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    cid = r.stdout.strip()
    inspect = subprocess.run([docker, "inspect", "-f", "{{.State.Pid}}", cid], env=env,
                             capture_output=True, text=True, timeout=60)
    container = int(inspect.stdout)
    assert cgroups.V2_ROOT + cgroups.own_cgroups(container)[""] == f"{scope}/labkit/{cid}"
    assert Path(scope, "labkit", cid, "memory.max").read_text().strip() == str(64 << 20)
    os.kill(container, signal.SIGKILL)
