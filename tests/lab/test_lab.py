"""`labkit lab up|status|down|reset` on a private lab (see conftest.py)."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from labkit import procfs
from labkit.lab.daemons import probe_registry


def _status_rows(lab) -> dict[str, list[str]]:
    r = lab.labkit("lab", "status")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["LAYER", "IMPLEMENTATION", "PID", "ANSWERING", "ADDRESS"]
    rows = {}
    for line in lines[1:]:
        if not line.strip():
            break       # the daemons' table ends; JupyterLab's URL and the implementations follow
        cells = [c.strip() for c in line.split("   ") if c.strip()]
        rows[cells[0]] = cells
    return rows


def test_status_of_a_lab_that_is_down(private_lab):
    rows = _status_rows(private_lab)
    assert set(rows) == {"registry", "L3 containerd", "L4 dockerd", "jupyter"}
    assert all(r[2] == "-" and r[3] == "no" for r in rows.values())
    assert rows["registry"][4] == private_lab.registry
    assert rows["L4 dockerd"][4] == f"{private_lab.run_dir}/docker.sock"
    assert rows["jupyter"][4] == f"127.0.0.1:{private_lab.jupyter_port}"
    # `status` has no side effects: no token is made for a JupyterLab that is not running
    assert not (private_lab.run_dir / "jupyter" / "token").exists()


def test_registry_up_is_idempotent_and_down_stops_it(private_lab):
    up = "from labkit.lab import control; control.up(names=['labkit-registry'])"
    r = private_lab.python(up)
    assert r.returncode == 0, r.stderr
    assert "labkit-registry: started, pid" in r.stdout
    pid = int((private_lab.run_dir / "labkit-registry.pid").read_text())
    assert procfs.alive(pid) and probe_registry(private_lab.registry, timeout=2)
    assert (private_lab.log_dir / "labkit-registry.log").exists()
    # the process is its own session leader: it outlives the terminal that started it
    assert os.getsid(pid) == pid

    rows = _status_rows(private_lab)
    assert rows["registry"][2:4] == [str(pid), "yes"]

    again = private_lab.python(up)
    assert f"labkit-registry: already answering on {private_lab.registry} (pid {pid})" in again.stdout

    down = private_lab.labkit("lab", "down")
    assert down.returncode == 0, down.stderr
    assert "labkit-registry: stopped" in down.stdout
    assert not procfs.alive(pid) and not probe_registry(private_lab.registry, timeout=2)
    assert not (private_lab.run_dir / "labkit-registry.pid").exists()


def test_a_daemon_that_dies_is_reported_with_its_log(private_lab):
    # a registry that cannot listen: its address is taken by a bound socket of ours
    import socket
    host, _, port = private_lab.registry.rpartition(":")
    with socket.socket() as s:
        s.bind((host, int(port)))
        s.listen()
        r = private_lab.python("from labkit.lab import control; control.up(names=['labkit-registry'])")
    assert r.returncode != 0
    assert "labkit-registry" in r.stderr and str(private_lab.log_dir) in r.stderr


@pytest.mark.root
def test_reset_stops_recorded_processes_unmounts_and_removes(private_lab):
    from labkit import syscalls
    from labkit.lab.reset import mounts_under

    bundle = private_lab.run_dir / "containerd" / "io.containerd.runtime.v2.task" / "moby" / "c1"
    bundle.mkdir(parents=True)
    sleeper = subprocess.Popen(["sleep", "300"])   # stands in for a container left behind
    (bundle / "init.pid").write_text(str(sleeper.pid))
    bystander = subprocess.Popen(["sleep", "300"])  # NOT recorded: must survive
    snap = private_lab.lib_dir / "snapshots" / "1"
    snap.mkdir(parents=True)
    try:
        syscalls.mount("tmpfs", str(snap), "tmpfs")
        syscalls.mount("tmpfs", str(snap), "tmpfs")   # stacked: two unmounts needed
        (snap / "x").mkdir()
        syscalls.mount("tmpfs", str(snap / "x"), "tmpfs")
        assert len(mounts_under([private_lab.lib_dir])) == 3
        (private_lab.log_dir).mkdir(parents=True)

        r = private_lab.labkit("lab", "reset")
        assert r.returncode == 0, r.stderr
        assert sleeper.wait(timeout=10) == -signal.SIGKILL
        assert bystander.poll() is None
        assert mounts_under([private_lab.root]) == []
        for d in (private_lab.run_dir, private_lab.lib_dir, private_lab.log_dir):
            assert not d.exists(), r.stdout
    finally:
        for p in (sleeper, bystander):
            if p.poll() is None:
                p.kill()
                p.wait()
        for target in mounts_under([private_lab.root]):
            syscalls.umount2(target, syscalls.MNT_DETACH)


def _have(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


@pytest.mark.root
@pytest.mark.slow
@pytest.mark.e2e
def test_whole_lab_runs_hello_world(private_lab):
    for module in ("labkit.containerd.main", "labkit.dockerd.main", "labkit.shim.main",
                   "labkit.runc.main"):
        if not _have(module):
            pytest.skip(f"{module} is not written yet")
    push = private_lab.labkit("lab", "images")
    assert push.returncode == 0, push.stderr
    up = private_lab.labkit("lab", "up")
    assert up.returncode == 0, up.stdout + up.stderr
    rows = _status_rows(private_lab)
    assert all(r[3] == "yes" for r in rows.values()), rows
    again = private_lab.labkit("lab", "up")
    assert again.stdout.count("already answering") == 4
    # dockerd's runtime is LIB/bin/labkit-runc: labkit-runc started without the site module
    # (labkit.lab.launch.write_program), which the containers below run under
    runtime = private_lab.lib_dir / "bin" / "labkit-runc"
    assert runtime.read_text().splitlines()[0].endswith(" -S"), runtime.read_text()
    dockerd = int((private_lab.run_dir / "labkit-dockerd.pid").read_text())
    argv = procfs.cmdline(dockerd)
    assert argv[argv.index("--default-runtime") + 1] == str(runtime), argv

    private_lab.env["DOCKER_HOST"] = private_lab.docker_host
    r = private_lab.labkit("run", "--rm", "hello-world")
    assert r.returncode == 0, r.stderr
    assert "Hello from labkit!" in r.stdout
    if shutil.which("docker"):
        r = subprocess.run(["docker", "run", "--rm", "hello-world"], env=private_lab.env,
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        assert "Hello from labkit!" in r.stdout

    # a container left running: `down` leaves it to its shim, `reset` stops both
    r = private_lab.labkit("run", "-d", "busybox", "sleep", "300")
    assert r.returncode == 0, r.stderr
    cid = r.stdout.strip()
    from labkit.client import Client
    container_pid = Client(private_lab.docker_host).inspect_container(cid)["State"]["Pid"]
    assert container_pid > 0 and procfs.alive(container_pid)

    down = private_lab.labkit("lab", "down")
    assert down.returncode == 0
    time.sleep(0.2)
    assert all(r[3] == "no" for r in _status_rows(private_lab).values())
    assert procfs.alive(container_pid), "down must leave containers to their shims"

    reset = private_lab.labkit("lab", "reset")
    assert reset.returncode == 0, reset.stderr
    assert not procfs.alive(container_pid)
    assert not private_lab.run_dir.exists() and not private_lab.lib_dir.exists()
    from labkit import paths
    from labkit.runc import cgroups
    left = [d for d in cgroups.paths_for(f"{paths.CGROUP_PARENT}/{cid}", cid).values()
            if os.path.exists(d)]
    assert not left, f"reset left the container's cgroups: {left}"


def test_course_commands_pass_through(private_lab):
    r = private_lab.labkit("lab", "workspace", "--help")
    assert r.returncode == 0 and "workspace" in r.stdout and "--force" in r.stdout
    r = private_lab.labkit("lab", "grade", "--help")
    assert r.returncode == 0 and "--workspace" in r.stdout


@pytest.mark.parametrize("runtime", ["crun", "runc"])
def test_the_configured_runtime_runs_the_containers(private_lab, runtime):
    """issue 3's "choosing implementations": `runtime = binary:<name>` in the configuration
    reaches labkit-dockerd (--default-runtime), and through containerd and the shim the
    container really runs under that binary (the bundle's options.json names it)."""
    binary = shutil.which(runtime)
    if binary is None:
        pytest.skip(f"{runtime} is not installed")
    private_lab.etc_dir.mkdir(parents=True, exist_ok=True)
    (private_lab.etc_dir / "implementations.toml").write_text(
        f'[layers]\nruntime = "binary:{runtime}"\n')
    assert private_lab.labkit("lab", "images").returncode == 0
    up = private_lab.labkit("lab", "up")
    assert up.returncode == 0, up.stdout + up.stderr
    status = private_lab.labkit("lab", "status")
    assert f"binary:{runtime}" in status.stdout, status.stdout

    private_lab.env["DOCKER_HOST"] = private_lab.docker_host
    r = private_lab.labkit("run", "-d", "busybox", "sleep", "60")
    assert r.returncode == 0, r.stderr
    cid = r.stdout.strip()
    bundles = list(private_lab.run_dir.glob(f"containerd/*/*/{cid}*/options.json"))
    assert bundles, f"no bundle for {cid} under {private_lab.run_dir}/containerd"
    options = json.loads(bundles[0].read_text())
    assert Path(options["binary_name"]).name == runtime, options
    r = private_lab.labkit("rm", "-f", cid)
    assert r.returncode == 0, r.stderr
    r = private_lab.labkit("run", "--rm", "busybox", "echo", f"hi from {runtime}")
    assert r.returncode == 0 and f"hi from {runtime}" in r.stdout, r.stdout + r.stderr


def test_lab_use_puts_the_workspace_under_docker_run(private_lab, tmp_path):
    """`labkit lab use namespaces workspace:DIR`: one command writes the configuration,
    rewrites LIB/bin/labkit-runc (dockerd's --default-runtime: now it runs labkit-runc with
    chapter 01's module from the workspace) and says what runs where; no daemon restarts, as
    dockerd's command line stays the same. A blank
    workspace then makes `docker run` fail naming the function; back to the reference, it runs.
    A bad choice is one line and leaves the file as it was."""
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("no docker CLI on PATH (vagrant/setup.sh installs docker.io)")
    ws = tmp_path / "ws"
    assert private_lab.labkit("lab", "workspace", str(ws)).returncode == 0
    assert private_lab.labkit("lab", "images").returncode == 0
    assert private_lab.labkit("lab", "up").returncode == 0
    pids = {d: (private_lab.run_dir / f"labkit-{d}.pid").read_text() for d in ("containerd", "dockerd")}

    use = private_lab.labkit("lab", "use", "namespaces", f"workspace:{ws}")
    assert use.returncode == 0, use.stdout + use.stderr
    assert f"namespaces: workspace:{ws}" in use.stdout
    assert "restarted" not in use.stdout, use.stdout
    assert "runs in labkit-runc: from the workspace" in use.stdout
    assert {d: (private_lab.run_dir / f"labkit-{d}.pid").read_text()
            for d in ("containerd", "dockerd")} == pids
    wrapper = (private_lab.lib_dir / "bin" / "labkit-runc").read_text()
    assert "labkit.lab.launch" in wrapper and f"--layer=namespaces={ws}" in wrapper
    config = (private_lab.etc_dir / "implementations.toml").read_text()
    assert f'namespaces = "workspace:{ws}"' in config

    env = dict(private_lab.env, DOCKER_HOST=private_lab.docker_host)
    r = subprocess.run([docker, "run", "--rm", "busybox", "true"], env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 125
    assert "exercise in namespace_flags() (labkit_student/namespaces.py): not done yet" in r.stderr
    assert "Traceback" not in r.stderr

    bad = private_lab.labkit("lab", "use", "namespaces", "binary:runc")
    assert bad.returncode == 2 and "in-process layer cannot be a binary" in bad.stderr
    assert (private_lab.etc_dir / "implementations.toml").read_text() == config

    back = private_lab.labkit("lab", "use", "namespaces", "reference")
    assert back.returncode == 0 and "restarted" not in back.stdout, back.stdout
    wrapper = (private_lab.lib_dir / "bin" / "labkit-runc").read_text()
    assert "--layer=" not in wrapper and wrapper.splitlines()[0].endswith(" -S"), wrapper
    r = subprocess.run([docker, "run", "--rm", "busybox", "echo", "back"], env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout == "back\n", r.stderr


def test_lab_use_dockerd_workspace_runs_and_stops_the_workspaces_program(private_lab, tmp_path):
    """`labkit lab use dockerd workspace:DIR` (chapter 09): labkit-dockerd becomes the
    workspace's program, run as labkit_student.dockerd.main through labkit.lab.launch, so the
    lab recognises it by PID (status), `docker` reaches it -- a blank workspace's router answers
    500 naming the function -- and `lab down` stops it. (The workspace's bin/labkit-dockerd
    runs `python -c …`: a command line the lab could not tell from any other python.)"""
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("no docker CLI on PATH (vagrant/setup.sh installs docker.io)")
    ws = tmp_path / "ws"
    assert private_lab.labkit("lab", "workspace", str(ws)).returncode == 0
    assert private_lab.labkit("lab", "up").returncode == 0
    use = private_lab.labkit("lab", "use", "dockerd", f"workspace:{ws}")
    assert use.returncode == 0 and "labkit-dockerd: restarted" in use.stdout, use.stdout + use.stderr
    pid = int((private_lab.run_dir / "labkit-dockerd.pid").read_text())
    cmdline = procfs.cmdline(pid)
    assert "labkit.lab.launch" in cmdline and "labkit_student.dockerd.main:main" in cmdline, cmdline
    assert _status_rows(private_lab)["L4 dockerd"][2] == str(pid)

    env = dict(private_lab.env, DOCKER_HOST=private_lab.docker_host)
    r = subprocess.run([docker, "ps"], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    assert "exercise in Router.dispatch() (labkit_student/dockerd/router.py): not done yet" \
        in r.stderr, r.stderr

    assert private_lab.labkit("lab", "down").returncode == 0
    assert not procfs.alive(pid), "lab down stops the workspace's dockerd"
