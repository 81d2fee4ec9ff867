"""End to end: the real docker CLI and docker-py against labkit-dockerd on a private stack.

The order matters a little: the first test runs hello-world, which is not pulled yet, so it
exercises create -> 404 -> pull -> create -> attach -> wait -> start.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from dockerd.conftest import DOCKER, cgroups_under, processes_mentioning
from dockerd.httpunix import call
from labkit.lab.reset import mounts_under
from labkit.runc import cgroups

pytestmark = [pytest.mark.root, pytest.mark.e2e,
              pytest.mark.skipif(not os.path.exists(DOCKER), reason="docker CLI not installed")]


def docker(env: dict, *args: str, input: str | None = None, timeout: float = 60):
    return subprocess.run([DOCKER, *args], env=env, capture_output=True, text=True,
                          input=input, timeout=timeout)


def test_docker_version(docker_env):
    r = docker(docker_env, "version", "--format", "{{json .Server}}")
    assert r.returncode == 0, r.stderr
    server = json.loads(r.stdout)
    assert server["Version"] == "0.1.0-labkit"
    assert server["ApiVersion"] == "1.45"
    assert "labkit-containerd" in [c["Name"] for c in server["Components"]]


def test_tcp_listener(stack, docker_env):
    env = dict(docker_env, DOCKER_HOST=f"tcp://127.0.0.1:{stack.tcp_port}")
    r = docker(env, "version", "--format", "{{.Server.Version}}")
    assert (r.returncode, r.stdout.strip()) == (0, "0.1.0-labkit"), r.stderr


def test_run_hello_world_pulls_then_runs(docker_env):
    r = docker(docker_env, "run", "--name", "e2e-hello", "hello-world")
    assert r.returncode == 0, r.stderr
    assert "Unable to find image 'hello-world:latest' locally" in r.stderr
    assert "Pulling from library/hello-world" in r.stderr
    assert "Status: Downloaded newer image for hello-world:latest" in r.stderr
    assert "Hello from labkit!" in r.stdout
    assert docker(docker_env, "rm", "e2e-hello").returncode == 0


def test_run_rm_echo(docker_env):
    r = docker(docker_env, "run", "--rm", "--name", "e2e-rm", "busybox", "echo", "hi")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "hi\n"
    names = docker(docker_env, "ps", "-a", "--format", "{{.Names}}").stdout.split()
    assert "e2e-rm" not in names


def test_pull_busybox_is_up_to_date(docker_env):
    r = docker(docker_env, "pull", "busybox")
    assert r.returncode == 0, r.stderr
    assert "Pulling from library/busybox" in r.stdout
    assert "Digest: sha256:" in r.stdout
    assert "busybox:latest" in r.stdout


def test_image_by_digest_and_by_id(docker_env):
    assert docker(docker_env, "pull", "busybox").returncode == 0
    digest = docker(docker_env, "images", "--digests", "--format", "{{.Digest}}", "busybox")
    digest = digest.stdout.strip()
    assert digest.startswith("sha256:") and "\n" not in digest, digest
    r = docker(docker_env, "run", "--rm", f"busybox@{digest}", "echo", "by-digest")
    assert (r.returncode, r.stdout) == (0, "by-digest\n"), r.stderr
    history = docker(docker_env, "history", "--no-trunc", "--format", "{{.ID}} {{.Size}}", "busybox")
    assert history.returncode == 0 and history.stdout.startswith("sha256:"), history.stderr
    image_id = docker(docker_env, "image", "inspect", "busybox", "--format", "{{.Id}}").stdout
    r = docker(docker_env, "run", "--rm", image_id.strip()[7:19], "echo", "by-id")
    assert (r.returncode, r.stdout) == (0, "by-id\n"), r.stderr


def test_exit_code_stdout_and_stderr(docker_env):
    r = docker(docker_env, "run", "--name", "e2e-exit", "busybox", "sh", "-c",
               "echo out; echo err >&2; exit 3")
    assert (r.returncode, r.stdout, r.stderr) == (3, "out\n", "err\n")
    ps = docker(docker_env, "ps", "-a", "--filter", "name=e2e-exit", "--format",
                "{{.Names}} {{.Status}}")
    assert ps.stdout.startswith("e2e-exit Exited (3)")
    logs = docker(docker_env, "logs", "e2e-exit")
    assert (logs.stdout, logs.stderr) == ("out\n", "err\n")
    inspect = json.loads(docker(docker_env, "inspect", "e2e-exit").stdout)[0]
    assert inspect["State"]["ExitCode"] == 3 and inspect["Name"] == "/e2e-exit"
    assert inspect["Config"]["Hostname"] == inspect["Id"][:12]
    assert docker(docker_env, "rm", "e2e-exit").returncode == 0
    assert docker(docker_env, "inspect", "e2e-exit").returncode != 0


def test_cap_add_drop_dns_and_port_warning(docker_env):
    r = docker(docker_env, "run", "--rm", "--cap-add", "NET_ADMIN", "--cap-drop", "CHOWN",
               "--dns", "192.0.2.53", "-p", "127.0.0.1::80", "busybox", "sh", "-c",
               "grep CapEff /proc/self/status; grep nameserver /etc/resolv.conf")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split("\n")[:2] == ["CapEff:\t00000000a80435fa", "nameserver 192.0.2.53"]
    assert "WARNING" not in r.stderr   # published for real now (test_network.py)


def test_container_sees_dockers_setup(docker_env):
    r = docker(docker_env, "run", "--rm", "busybox", "sh", "-c",
               "hostname; cat /etc/hostname; grep CapEff /proc/self/status; echo $HOSTNAME")
    assert r.returncode == 0, r.stderr
    hostname, etc_hostname, capeff, env_hostname = r.stdout.split("\n")[:4]
    assert hostname == etc_hostname == env_hostname and len(hostname) == 12
    assert capeff.split()[1] == "00000000a80425fb"  # Docker's 14 default capabilities


def test_nosuchimage_fails_and_daemon_survives(docker_env):
    r = docker(docker_env, "run", "nosuchimage")
    assert r.returncode == 125
    assert "Unable to find image 'nosuchimage:latest' locally" in r.stderr
    assert "nosuchimage" in r.stderr.splitlines()[-3] or "not found" in r.stderr
    assert docker(docker_env, "version").returncode == 0


def test_nosuchcmd_exits_127(docker_env):
    r = docker(docker_env, "run", "--name", "e2e-nocmd", "busybox", "nosuchcmd")
    assert r.returncode == 127
    assert "executable file not found" in r.stderr
    inspect = json.loads(docker(docker_env, "inspect", "e2e-nocmd").stdout)[0]
    assert inspect["State"]["Status"] == "created"
    assert "executable file not found" in inspect["State"]["Error"]
    assert docker(docker_env, "rm", "e2e-nocmd").returncode == 0


def test_detach_logs_stop_rm(docker_env):
    script = 'echo started; trap "echo stopping; exit 7" TERM; while true; do sleep 0.1; done'
    r = docker(docker_env, "run", "-d", "--name", "e2e-bg", "busybox", "sh", "-c", script)
    assert r.returncode == 0, r.stderr
    cid = r.stdout.strip()
    assert len(cid) == 64
    deadline = time.monotonic() + 10
    while "started" not in docker(docker_env, "logs", "e2e-bg").stdout:
        assert time.monotonic() < deadline, "no output from the detached container"
        time.sleep(0.1)
    assert "e2e-bg" in docker(docker_env, "ps", "--format", "{{.Names}}").stdout
    rm = docker(docker_env, "rm", "e2e-bg")
    assert rm.returncode != 0 and "You cannot remove a running container" in rm.stderr
    assert docker(docker_env, "stop", cid[:8]).returncode == 0
    inspect = json.loads(docker(docker_env, "inspect", "e2e-bg").stdout)[0]
    assert inspect["State"]["ExitCode"] == 7
    assert docker(docker_env, "logs", "e2e-bg").stdout == "started\nstopping\n"
    assert docker(docker_env, "rm", "e2e-bg").returncode == 0


def test_restart(docker_env):
    """restart = stop (a stopped container is fine too), then start: the same container again."""
    script = 'echo run; trap "exit 3" TERM; while true; do sleep 0.1; done'
    r = docker(docker_env, "run", "-d", "--name", "e2e-restart", "busybox", "sh", "-c", script)
    assert r.returncode == 0, r.stderr

    def runs(count: int) -> None:
        deadline = time.monotonic() + 10
        while docker(docker_env, "logs", "e2e-restart").stdout.count("run\n") < count:
            assert time.monotonic() < deadline, f"the container did not run {count} times"
            time.sleep(0.1)

    try:
        runs(1)
        first = json.loads(docker(docker_env, "inspect", "e2e-restart").stdout)[0]["State"]
        assert docker(docker_env, "restart", "-t", "5", "e2e-restart").returncode == 0
        runs(2)
        again = json.loads(docker(docker_env, "inspect", "e2e-restart").stdout)[0]["State"]
        assert again["Running"] and again["Pid"] != first["Pid"]
        assert again["StartedAt"] > first["StartedAt"]
        assert docker(docker_env, "stop", "e2e-restart").returncode == 0
        assert docker(docker_env, "restart", "e2e-restart").returncode == 0  # from stopped
        runs(3)
    finally:
        docker(docker_env, "rm", "-f", "e2e-restart")


def test_exec(docker_env):
    r = docker(docker_env, "run", "-d", "--name", "e2e-exec", "busybox", "sleep", "60")
    assert r.returncode == 0, r.stderr
    try:
        top = docker(docker_env, "top", "e2e-exec")
        assert top.returncode == 0 and "sleep 60" in top.stdout, top.stderr
        r = docker(docker_env, "exec", "-e", "X=42", "e2e-exec", "sh", "-c",
                   "echo out $X; echo err >&2; hostname; exit 5")
        assert r.returncode == 5
        out = r.stdout.split("\n")
        assert out[0] == "out 42" and out[1] == r.stdout.split("\n")[1] and len(out[1]) == 12
        assert r.stderr == "err\n"
        r = docker(docker_env, "exec", "e2e-exec", "nosuchcmd")
        assert r.returncode == 127 and "executable file not found" in r.stdout + r.stderr
        r = docker(docker_env, "exec", "-i", "e2e-exec", "head", "-n", "1", input="piped\n")
        assert (r.returncode, r.stdout) == (0, "piped\n")
        assert docker(docker_env, "exec", "-d", "e2e-exec", "touch", "/tmp/detached").returncode == 0
        deadline = time.monotonic() + 5
        while docker(docker_env, "exec", "e2e-exec", "test", "-e", "/tmp/detached").returncode:
            assert time.monotonic() < deadline
            time.sleep(0.1)
    finally:
        docker(docker_env, "rm", "-f", "e2e-exec")
    r = docker(docker_env, "exec", "e2e-exec", "true")
    assert r.returncode != 0 and "No such container" in r.stderr


def test_stdin_with_i(docker_env):
    r = docker(docker_env, "run", "-i", "--rm", "busybox", "head", "-n", "2",
               input="line1\nline2\n")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "line1\nline2\n"


def test_stdin_eof_ends_cat(docker_env):
    r = docker(docker_env, "run", "-i", "--rm", "busybox", "cat", input="line1\nline2\n",
               timeout=20)
    assert (r.returncode, r.stdout) == (0, "line1\nline2\n")


def test_prune(docker_env):
    assert docker(docker_env, "create", "--name", "e2e-prune", "busybox", "true").returncode == 0
    r = docker(docker_env, "container", "prune", "-f")
    assert r.returncode == 0, r.stderr
    assert "Deleted Containers:" in r.stdout
    assert "e2e-prune" not in docker(docker_env, "ps", "-a", "--format", "{{.Names}}").stdout


def test_events(docker_env):
    since = int(time.time()) - 1
    assert docker(docker_env, "run", "--rm", "--name", "e2e-events", "busybox",
                  "sh", "-c", "exit 3").returncode == 3
    r = docker(docker_env, "events", "--since", str(since), "--until", str(int(time.time()) + 2),
               "--filter", "container=e2e-events", "--format",
               "{{.Action}} {{.Actor.Attributes.name}} {{.Actor.Attributes.exitCode}}")
    assert r.returncode == 0, r.stderr
    actions = [line.split()[0] for line in r.stdout.splitlines()]
    assert actions == ["create", "attach", "start", "die", "destroy"]
    assert "die e2e-events 3" in r.stdout


def test_volumes(stack, docker_env):
    host_dir = stack.tmp / "volume"
    r = docker(docker_env, "run", "--rm", "-v", f"{host_dir}:/data", "busybox", "sh", "-c",
               "echo written > /data/f")
    assert r.returncode == 0, r.stderr
    assert (host_dir / "f").read_text() == "written\n"  # -v created the directory
    r = docker(docker_env, "run", "--rm", "-v", f"{host_dir}:/data:ro", "busybox", "sh", "-c",
               "cat /data/f; echo x > /data/g")
    assert r.returncode != 0 and r.stdout == "written\n" and "Read-only" in r.stderr


def test_named_volumes(docker_env):
    assert docker(docker_env, "volume", "create", "e2e-vol").stdout.strip() == "e2e-vol"
    r = docker(docker_env, "run", "--name", "e2e-voluser", "-v", "e2e-vol:/data", "busybox",
               "sh", "-c", "echo kept > /data/f")
    assert r.returncode == 0, r.stderr
    r = docker(docker_env, "run", "--rm", "--mount", "type=volume,source=e2e-vol,target=/d",
               "busybox", "cat", "/d/f")
    assert (r.returncode, r.stdout) == (0, "kept\n"), r.stderr  # outlived its first container
    mounts = json.loads(docker(docker_env, "inspect", "--format", "{{json .Mounts}}",
                               "e2e-voluser").stdout)
    assert mounts[0]["Type"] == "volume" and mounts[0]["Name"] == "e2e-vol"
    assert "e2e-vol" in docker(docker_env, "volume", "ls", "-q").stdout.split()
    r = docker(docker_env, "volume", "rm", "e2e-vol")
    assert r.returncode != 0 and "volume is in use" in r.stderr
    assert docker(docker_env, "rm", "e2e-voluser").returncode == 0
    assert docker(docker_env, "volume", "rm", "e2e-vol").returncode == 0
    r = docker(docker_env, "volume", "inspect", "e2e-vol")
    # the daemon says "no such volume"; Debian's docker CLI 20.10 says "Error: No such volume"
    assert r.returncode != 0 and "no such volume" in r.stderr.lower()


def test_network_modes(docker_env):
    own = docker(docker_env, "run", "--rm", "busybox", "cat", "/proc/net/dev")
    assert own.returncode == 0 and [line.split(":")[0].strip() for line in
                                    own.stdout.splitlines()[2:]] == ["lo", "eth0"]
    none = docker(docker_env, "run", "--rm", "--network", "none", "busybox", "cat", "/proc/net/dev")
    assert none.returncode == 0 and [line.split(":")[0].strip() for line in
                                     none.stdout.splitlines()[2:]] == ["lo"]
    host = docker(docker_env, "run", "--rm", "--network", "host", "busybox", "cat", "/proc/net/dev")
    assert host.returncode == 0 and len(host.stdout.splitlines()) > 3
    assert docker(docker_env, "run", "-d", "--name", "e2e-net", "busybox", "sleep", "30").returncode == 0
    try:
        joined = docker(docker_env, "run", "--rm", "--network", "container:e2e-net", "busybox",
                        "readlink", "/proc/self/ns/net")
        inside = docker(docker_env, "exec", "e2e-net", "readlink", "/proc/self/ns/net")
        assert joined.returncode == 0 and joined.stdout == inside.stdout != ""
    finally:
        docker(docker_env, "rm", "-f", "e2e-net")
    ls = docker(docker_env, "network", "ls", "--format", "{{.Name}} {{.Driver}}")
    assert ls.returncode == 0 and ls.stdout.split("\n")[:3] == ["bridge bridge", "host host",
                                                                 "none null"], ls.stderr
    r = docker(docker_env, "run", "--rm", "--network", "nosuch", "busybox", "true")
    assert r.returncode == 125 and "network nosuch not found" in r.stderr
    assert "Unable to find image" not in r.stderr


def test_parallel_runs(docker_env):
    procs = [subprocess.Popen([DOCKER, "run", "--rm", "busybox", "echo", f"par{i}"],
                              env=docker_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for i in range(4)]
    try:
        results = [p.communicate(timeout=60) + (p.returncode,) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert [(out, code) for out, _, code in results] == [(f"par{i}\n", 0) for i in range(4)]


def test_images_rm_rmi(docker_env):
    images = docker(docker_env, "images", "--format", "{{.Repository}}:{{.Tag}}")
    assert {"busybox:latest", "hello-world:latest"} <= set(images.stdout.split())
    assert docker(docker_env, "create", "--name", "e2e-user", "hello-world").returncode == 0
    r = docker(docker_env, "rmi", "hello-world")
    assert r.returncode == 1 and "container" in r.stderr and "is using" in r.stderr
    assert docker(docker_env, "rm", "e2e-user").returncode == 0
    r = docker(docker_env, "rmi", "hello-world")
    assert r.returncode == 0, r.stderr
    assert "Untagged: hello-world:latest" in r.stdout and "Deleted: sha256:" in r.stdout
    images = docker(docker_env, "images", "--format", "{{.Repository}}")
    assert "hello-world" not in images.stdout.split()


def test_docker_py_run(docker_env, monkeypatch):
    docker_py = pytest.importorskip("docker")
    for key in ("DOCKER_HOST", "DOCKER_CONFIG"):
        monkeypatch.setenv(key, docker_env[key])
    client = docker_py.from_env()
    try:
        out = client.containers.run("busybox", ["sh", "-c", "echo from docker-py"], remove=False,
                                    name="e2e-py")
        assert out == b"from docker-py\n"
        container = client.containers.get("e2e-py")
        assert container.status == "exited"
        assert container.logs() == b"from docker-py\n"
        container.remove()
        worker = client.containers.run("busybox", ["sleep", "30"], detach=True, name="e2e-py2")
        try:
            outputs = [worker.exec_run(["echo", str(i)]).output for i in range(5)]
            assert outputs == [f"{i}\n".encode() for i in range(5)]  # nothing lost after the 101
            assert worker.exec_run(["sh", "-c", "exit 3"]).exit_code == 3
        finally:
            worker.remove(force=True)
        events = list(client.events(since=0, until=time.time() + 1, decode=True,
                                    filters={"container": "e2e-py2"}))
        assert [e["Action"] for e in events][:2] == ["create", "start"]
        with pytest.raises(docker_py.errors.ContainerError):
            client.containers.run("busybox", ["sh", "-c", "exit 4"], remove=True)
    finally:
        client.close()


@pytest.mark.parametrize("body", [
    b'{"Image":"busybox","Labels":[1]}', b'{"Image":"busybox","User":5}',
    b'{"Image":"busybox","WorkingDir":"relative"}', b'{"Image":"busybox","User":"nobody"}',
    b'{"Image":"BusyBox"}', b'{"Image":"busybox","HostConfig":{"Runtime":"nope"}}',
    b'{"Image":"busybox","Cmd":[1]}', b'{"Image":"busybox","StopSignal":"SIGNOPE"}', b'{',
])
def test_bad_create_requests_are_400(labkit_stack, body):
    status, headers, reply = call(labkit_stack, "POST", "/v1.45/containers/create", body,
                                  {"Content-Type": "application/json"})
    assert status == 400, reply
    assert headers["Content-Type"] == "application/json"
    assert json.loads(reply)["message"]


def test_container_survives_a_dockerd_restart(stack, docker_env):
    """Live restore: the shim keeps the container and its output while dockerd is away."""
    script = "i=0; while true; do i=$((i+1)); echo tick $i; sleep 0.1; done"
    try:
        r = docker(docker_env, "run", "-d", "--name", "e2e-live", "busybox", "sh", "-c", script)
        assert r.returncode == 0, r.stderr
        r = docker(docker_env, "run", "-d", "--name", "e2e-gone", "busybox", "sh", "-c",
                   "trap 'echo bye; exit 4' USR1; while true; do sleep 0.05; done")
        assert r.returncode == 0, r.stderr
        pid = int(docker(docker_env, "inspect", "-f", "{{.State.Pid}}", "e2e-gone").stdout)

        def exit_while_away() -> None:
            # the container prints and exits now, while no dockerd reads its output
            os.kill(pid, signal.SIGUSR1)
            deadline = time.monotonic() + 10
            while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
                time.sleep(0.05)
            assert not os.path.exists(f"/proc/{pid}"), "e2e-gone did not exit"

        stack.restart_dockerd(while_away=exit_while_away)
        time.sleep(0.5)
        ps = docker(docker_env, "ps", "--filter", "name=e2e-live", "--format", "{{.Status}}")
        assert ps.stdout.startswith("Up"), ps.stdout + ps.stderr
        ticks = docker(docker_env, "logs", "e2e-live").stdout.split("\n")
        assert ticks[:3] == ["tick 1", "tick 2", "tick 3"] and len(ticks) > 6  # nothing lost
        assert docker(docker_env, "wait", "e2e-gone").stdout.strip() == "4"
        assert docker(docker_env, "logs", "e2e-gone").stdout == "bye\n"
        assert docker(docker_env, "rm", "e2e-gone").returncode == 0
        assert docker(docker_env, "stop", "-t", "1", "e2e-live").returncode == 0
        assert docker(docker_env, "rm", "e2e-live").returncode == 0
    finally:   # a failure here must not leave them to the next tests
        docker(docker_env, "rm", "-f", "e2e-live", "e2e-gone")


def test_a_start_cut_short_by_a_crash_is_taken_over(stack, docker_env):
    """dockerd killed in the middle of `docker start`, after the task started but before it
    saved "running": the next dockerd finds the task of a container saved as created, and
    takes it over (its output and exit are recorded) instead of leaving it unaccounted for."""
    script = "trap 'echo bye; exit 5' USR1; echo hello; while true; do sleep 0.05; done"
    try:
        r = docker(docker_env, "run", "-d", "--name", "e2e-cut", "busybox", "sh", "-c", script)
        assert r.returncode == 0, r.stderr
        cid = r.stdout.strip()
        pid = int(docker(docker_env, "inspect", "-f", "{{.State.Pid}}", cid).stdout)
        config = stack.tmp / "droot" / "containers" / cid / "config.v2.json"

        def as_if_killed_during_start() -> None:
            # what was on disk in that moment: the container as created, never started
            record = json.loads(config.read_text())
            record["State"] = {"Status": "created"}
            config.write_text(json.dumps(record))

        stack.restart_dockerd(while_away=as_if_killed_during_start)
        ps = docker(docker_env, "ps", "--filter", "name=e2e-cut", "--format", "{{.Status}}")
        assert ps.stdout.startswith("Up"), ps.stdout + ps.stderr
        os.kill(pid, signal.SIGUSR1)
        assert docker(docker_env, "wait", "e2e-cut").stdout.strip() == "5"
        assert docker(docker_env, "logs", "e2e-cut").stdout == "hello\nbye\n"
    finally:
        docker(docker_env, "rm", "-f", "e2e-cut")


def test_limits_reach_the_cgroup(docker_env):
    """-m, --pids-limit and --cpus, read inside the container from the files of the host's
    hierarchy (the runtime's own detection): v1 one directory per controller, v2 one, with
    the container's cgroup as the root of its private cgroup namespace."""
    if cgroups.is_v2():
        files = "/sys/fs/cgroup/memory.max /sys/fs/cgroup/pids.max /sys/fs/cgroup/cpu.max"
        want = [str(32 * 1024 * 1024), "50", "50000", "100000"]
    else:
        files = ("/sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max "
                 "/sys/fs/cgroup/cpu/cpu.cfs_quota_us")
        want = [str(32 * 1024 * 1024), "50", "50000"]
    r = docker(docker_env, "run", "--rm", "-m", "32m", "--pids-limit", "50", "--cpus", "0.5",
               "busybox", "sh", "-c", "cat " + files)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == want


@pytest.mark.parametrize("mode", ["", "private", "host"])
def test_cgroupns_modes(docker_env, mode):
    """--cgroupns: private gives the container a cgroup namespace rooted at its own cgroup
    (/proc/self/cgroup shows "/"), host shows the host's path; unset is dockerd 20.10's
    default: private on a v2 host, host on v1. On v2 the container's limit is memory.max in
    its own cgroup, at the path /proc/self/cgroup gives: the top of /sys/fs/cgroup when
    private, /sys/fs/cgroup/<the host's path> when host (the host's root has no memory.max)."""
    default = "private" if cgroups.is_v2() else "host"
    args = ["--cgroupns", mode] if mode else []
    name = f"e2e-cgns-{mode or 'default'}"
    r = docker(docker_env, "run", "--name", name, *args, "-m", "64m", "busybox", "sh", "-c",
               "cat /proc/self/cgroup; ls /proc/self/ns/cgroup && readlink /proc/self/ns/cgroup;"
               + (" cat /sys/fs/cgroup$(sed -n 's/^0:://p' /proc/self/cgroup)/memory.max"
                  if cgroups.is_v2() else ""))
    try:
        assert r.returncode == 0, r.stderr
        inspect = json.loads(docker(docker_env, "inspect", name).stdout)[0]
        assert inspect["HostConfig"]["CgroupnsMode"] == (mode or default)
        lines = r.stdout.splitlines()
        paths = [line.split(":", 2)[2] for line in lines if line.count(":") >= 2
                 and line.split(":", 1)[0].isdigit()]
        host_ns = os.readlink("/proc/self/ns/cgroup")
        if (mode or default) == "private":
            assert set(paths) == {"/"}, lines
            assert host_ns not in lines
        else:
            assert any(p.endswith(inspect["Id"]) for p in paths), lines
            assert host_ns in lines
        if cgroups.is_v2():
            assert lines[-1] == str(64 << 20), lines
    finally:
        docker(docker_env, "rm", "-f", name)
    bad = docker(docker_env, "run", "--rm", "--cgroupns", "nope", "busybox", "true")
    assert bad.returncode != 0


def test_pause_unpause(docker_env):
    """docker pause freezes every process of the container (the runtime's freezer: v1
    freezer.state, v2 cgroup.freeze); ps shows "(Paused)"; unpause lets it go on; a paused
    container refuses exec and can still be removed with -f."""
    r = docker(docker_env, "run", "-d", "--name", "e2e-pause", "busybox", "sh", "-c",
               "i=0; while true; do i=$((i+1)); echo $i > /tmp/n; sleep 0.05; done")
    assert r.returncode == 0, r.stderr
    try:
        assert docker(docker_env, "pause", "e2e-pause").returncode == 0
        ps = docker(docker_env, "ps", "--format", "{{.Names}} {{.Status}}").stdout
        assert any(line.startswith("e2e-pause ") and line.endswith("(Paused)")
                   for line in ps.splitlines()), ps
        state = json.loads(docker(docker_env, "inspect", "e2e-pause").stdout)[0]["State"]
        assert state["Status"] == "paused" and state["Paused"] and state["Running"]
        pid = state["Pid"]
        frozen = _freezer_of(pid)
        assert frozen(), "the container's cgroup is not frozen"
        assert Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0] in ("S", "D")
        again = docker(docker_env, "pause", "e2e-pause")
        assert again.returncode != 0 and "already paused" in again.stderr
        ex = docker(docker_env, "exec", "e2e-pause", "true")
        assert ex.returncode != 0 and "is paused" in ex.stderr
        assert docker(docker_env, "unpause", "e2e-pause").returncode == 0
        assert not frozen()
        assert docker(docker_env, "exec", "e2e-pause", "cat", "/tmp/n").returncode == 0
        not_paused = docker(docker_env, "unpause", "e2e-pause")
        assert not_paused.returncode != 0 and "is not paused" in not_paused.stderr
        assert docker(docker_env, "pause", "e2e-pause").returncode == 0
    finally:
        rm = docker(docker_env, "rm", "-f", "e2e-pause")     # paused: killed, then thawed
    assert rm.returncode == 0, rm.stderr
    assert "e2e-pause" not in docker(docker_env, "ps", "-a", "--format", "{{.Names}}").stdout


def _freezer_of(pid: int):
    """A function telling whether the cgroup of process `pid` is frozen, read from the file
    of the host's hierarchy (cgroup.freeze on v2, freezer.state on v1)."""
    own = {}
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _hid, controllers, path = line.split(":", 2)
        own[controllers] = path
    if cgroups.is_v2():
        f = Path("/sys/fs/cgroup" + own[""]) / "cgroup.freeze"
        return lambda: f.read_text().strip() == "1"
    key = next(k for k in own if "freezer" in k.split(","))
    f = Path("/sys/fs/cgroup/freezer" + own[key]) / "freezer.state"
    return lambda: f.read_text().strip() == "FROZEN"


def test_attach_to_a_removed_container_ends(labkit_stack, docker_env):
    """A client attached to a container that never started is released when it is removed."""
    import socket as socketlib
    r = docker(docker_env, "create", "--name", "e2e-never", "busybox", "true")
    assert r.returncode == 0, r.stderr
    s = socketlib.socket(socketlib.AF_UNIX, socketlib.SOCK_STREAM)
    s.settimeout(10)
    s.connect(labkit_stack)
    try:
        s.sendall(b"POST /v1.45/containers/e2e-never/attach?stream=1&stdout=1 HTTP/1.1\r\n"
                  b"Host: x\r\nContent-Length: 0\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n")
        assert s.recv(4096).startswith(b"HTTP/1.1 101")
        assert docker(docker_env, "rm", "e2e-never").returncode == 0
        assert s.recv(4096) == b""  # EOF, not a hang
    finally:
        s.close()


def test_nested_bind_mounts_in_destination_order(docker_env, tmp_path):
    """`-v outer:/v -v inner:/v/link/sub`: the docker CLI sends the binds in no particular
    order; dockerd sorts them by destination depth, so /v/link/sub is never hidden by /v."""
    outer, inner = tmp_path / "outer", tmp_path / "inner"
    (outer / "link" / "sub").mkdir(parents=True)
    inner.mkdir()
    (inner / "marker").write_text("inner\n")
    for attempt in range(6):                  # the CLI's order varies from run to run
        r = docker(docker_env, "run", "--rm", "-v", f"{outer}:/v", "-v", f"{inner}:/v/link/sub",
                   "busybox", "cat", "/v/link/sub/marker")
        assert (r.returncode, r.stdout) == (0, "inner\n"), (attempt, r.stderr)


def test_failed_start_leaves_no_cgroup(stack, docker_env):
    """A limit the kernel refuses (a CFS quota above its maximum, 2**44-1 us: EINVAL; one
    that dockerd, like Docker, does not check at create) fails the container's create in
    the runtime: after `docker rm` nothing of it is left in any cgroup hierarchy."""
    r = docker(docker_env, "run", "--name", "e2e-badpids", "--cpu-quota", str(2**50),
               "busybox", "true")
    try:
        assert r.returncode != 0
        inspect = docker(docker_env, "inspect", "--format", "{{.Id}}", "e2e-badpids")
        cid = inspect.stdout.strip()
    finally:
        docker(docker_env, "rm", "-f", "e2e-badpids")
    assert cid, (r.stderr, inspect.stderr)
    assert [d for d in cgroups_under(f"{stack.cgroup_parent}/{cid}")] == []


def test_no_leftover_mounts_or_processes(stack, docker_env):
    """After every container exited: no mount under the stack, no shim still running,
    no container cgroup left."""
    running = docker(docker_env, "ps", "-q").stdout.split()
    assert running == []
    deadline = time.monotonic() + 10
    while True:
        mounts = mounts_under([stack.tmp])
        shims = processes_mentioning(str(stack.tmp), {p.pid for p in stack.procs})
        cgroups = [c for d in cgroups_under(stack.cgroup_parent) for c in os.listdir(d)
                   if os.path.isdir(os.path.join(d, c))]
        if not mounts and not shims and not cgroups:
            break
        assert time.monotonic() < deadline, \
            f"left over: mounts {mounts}, processes {shims}, cgroups {cgroups}"
        time.sleep(0.2)
