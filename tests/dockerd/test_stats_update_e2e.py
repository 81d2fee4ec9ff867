"""End to end: `docker stats` and `docker update`, through the real docker CLI (28, and Debian's
20.10 where installed) and docker-py, against labkit-dockerd on the private stack.

The numbers must be the kernel's: a container that fills 20 MiB of /dev/shm (tmpfs, charged to
its memory cgroup) shows at least that much; a container with -m 64m shows a 64MiB limit; the
update's limits are read back from the container's cgroup files on the host, before and after a
restart. Every test removes what it makes, also when it fails.
"""

from __future__ import annotations

import json
import os
import re
import subprocess

import pytest

from dockerd.conftest import DOCKER
from dockerd.httpunix import call
from dockerd.test_api_e2e import containers, docker_py, wait_until
from dockerd.test_e2e import docker
from labkit import procfs

pytestmark = [pytest.mark.root, pytest.mark.e2e,
              pytest.mark.skipif(not os.path.exists(DOCKER), reason="docker CLI not installed")]

V2 = os.path.exists("/sys/fs/cgroup/cgroup.controllers")
DEBIAN_DOCKER = "/usr/bin/docker"     # docker.io 20.10 (API 1.41)
CLIS = [DOCKER] + ([DEBIAN_DOCKER] if os.path.exists(DEBIAN_DOCKER)
                   and os.path.realpath(DEBIAN_DOCKER) != os.path.realpath(DOCKER) else [])
MiB = 1024 * 1024
# --memory-swap needs the kernel to account swap (v1: memory.memsw.* files, swapaccount=1;
# v2: memory.swap.max files in the cgroups below the root)
SWAP_ACCOUNTED = (os.path.exists("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes")
                  or any(os.path.exists(os.path.join("/sys/fs/cgroup", d, "memory.swap.max"))
                         for d in (os.listdir("/sys/fs/cgroup") if V2 else [])))
# Fill 20 MiB of tmpfs (charged to the container's memory cgroup as shmem), send two pings to
# the bridge's gateway (traffic on eth0), then wait.
FILL = ("dd if=/dev/zero of=/dev/shm/fill bs=1M count=20 2>/dev/null; "
        "ping -c 2 -W 1 $(ip route | awk '/default/ {print $3}') >/dev/null 2>&1; "
        "echo ready; sleep 300")


def run_cli(cli: str, env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([cli, *args], env=env, capture_output=True, text=True, timeout=60)


def cgroup_file(pid: int, controller: str, name: str) -> str:
    """A cgroup file of process `pid`, read on the host (v1: the controller's hierarchy)."""
    lines = [line.split(":", 2) for line in open(f"/proc/{pid}/cgroup").read().splitlines()]
    if V2:
        path = next(p for _h, c, p in lines if c == "")
        return open(f"/sys/fs/cgroup{path}/{name}").read().strip()
    path = next(p for _h, c, p in lines if controller in c.split(","))
    mount = next(m for m in procfs.mountinfo()
                 if m.fstype == "cgroup" and controller in m.super_options)
    return open(os.path.join(mount.mount_point, path.lstrip("/"), name)).read().strip()


def pid_of(env: dict, name: str) -> int:
    return int(docker(env, "inspect", "--format", "{{.State.Pid}}", name).stdout)


def size(text: str) -> float:
    """"20.5MiB" -> bytes (the CLI's units)."""
    units = {"B": 1, "KiB": 1024, "MiB": MiB, "GiB": 1024 * MiB, "kB": 1000, "MB": 10**6,
             "GB": 10**9}
    for unit in sorted(units, key=len, reverse=True):
        if text.endswith(unit):
            return float(text[:-len(unit)]) * units[unit]
    raise ValueError(text)


@pytest.fixture(scope="module")
def filled(docker_env):
    """A running container with -m 64m --pids-limit 20 that filled 20 MiB and pinged."""
    name = "lk-stats"
    docker(docker_env, "rm", "-f", name)
    r = docker(docker_env, "run", "-d", "--name", name, "-m", "64m", "--pids-limit", "20",
               "busybox", "sh", "-c", FILL)
    assert r.returncode == 0, r.stderr
    try:
        assert wait_until(lambda: "ready" in docker(docker_env, "logs", name).stdout, 20)
        yield name
    finally:
        docker(docker_env, "rm", "-f", name)


# ------------------------------------------------------------------ docker stats

@pytest.mark.parametrize("cli", CLIS)
def test_stats_no_stream_shows_the_cgroups_numbers(cli, docker_env, filled):
    r = run_cli(cli, docker_env, "stats", "--no-stream", "--format", "{{json .}}", filled)
    assert r.returncode == 0, r.stderr
    row = json.loads(r.stdout)
    used, limit = (size(s.strip()) for s in row["MemUsage"].split("/"))
    assert limit == 64 * MiB, row
    assert 20 * MiB <= used < 64 * MiB, row
    assert 1 <= int(row["PIDs"]) <= 20, row
    net_in, net_out = (size(s.strip()) for s in row["NetIO"].split("/"))
    assert net_out > 0, row               # the pings left through eth0
    assert row["CPUPerc"].endswith("%") and row["Name"] == filled


@pytest.mark.parametrize("cli", CLIS)
def test_stats_of_every_running_container(cli, docker_env, filled):
    """No name: the CLI lists the running containers (/containers/json), then asks each."""
    r = run_cli(cli, docker_env, "stats", "--no-stream", "--format", "{{.Name}} {{.MemUsage}}")
    assert r.returncode == 0, r.stderr
    rows = dict(line.split(" ", 1) for line in r.stdout.splitlines())
    assert rows[filled].endswith("/ 64MiB"), rows


def test_stats_api_one_sample_with_precpu(labkit_stack, filled):
    status, _, body = call(labkit_stack, "GET", f"/v1.45/containers/{filled}/stats?stream=0")
    assert status == 200, body
    s = json.loads(body)
    assert s["name"] == "/" + filled and len(s["id"]) == 64
    cpu, pre = s["cpu_stats"], s["precpu_stats"]
    assert cpu["cpu_usage"]["total_usage"] >= pre["cpu_usage"]["total_usage"] > 0
    assert cpu["system_cpu_usage"] > pre["system_cpu_usage"] > 0
    assert cpu["online_cpus"] >= 1 and s["read"] > s["preread"]
    assert s["memory_stats"]["limit"] == 64 * MiB
    assert s["memory_stats"]["usage"] >= 20 * MiB
    # v1: the kernel's own names (total_inactive_file …); v2: anon, file, inactive_file …
    assert ("inactive_file" in s["memory_stats"]["stats"]
            or "total_inactive_file" in s["memory_stats"]["stats"])
    assert s["pids_stats"] == {"current": s["pids_stats"]["current"], "limit": 20}
    assert s["networks"]["eth0"]["tx_packets"] >= 2
    assert "lo" not in s["networks"]
    # one-shot: at once, without the previous sample
    status, _, body = call(labkit_stack, "GET",
                           f"/v1.45/containers/{filled}/stats?stream=0&one-shot=1")
    assert status == 200 and json.loads(body)["precpu_stats"]["cpu_usage"]["total_usage"] == 0


def test_stats_streams_a_sample_a_second_docker_py(docker_env, filled):
    with docker_py(docker_env) as client:
        stream = client.api.stats(filled, stream=True, decode=True)
        first, second = next(stream), next(stream)
        stream.close()
    assert first["id"] == second["id"]
    assert second["preread"] == first["read"]
    assert second["precpu_stats"] == first["cpu_stats"]


def test_stats_streaming_cli(docker_env, filled):
    """`docker stats` (streaming) redraws its table for every sample until interrupted (the
    CLI moves the cursor home and clears lines: ANSI sequences, taken out here)."""
    proc = subprocess.Popen([DOCKER, "stats", "--format", "{{.Name}} {{.MemUsage}}", filled],
                            env=docker_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        rows = [re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", proc.stdout.readline()).strip()
                for _ in range(2)]
    finally:
        proc.kill()
        proc.wait()
    assert all(row.startswith(filled + " ") and row.endswith("/ 64MiB") for row in rows), rows


def test_stats_of_a_stopped_and_a_missing_container(docker_env, labkit_stack):
    with containers(docker_env, "lk-stats-stopped"):
        assert docker(docker_env, "create", "--name", "lk-stats-stopped", "busybox",
                      "true").returncode == 0
        r = docker(docker_env, "stats", "--no-stream", "--format", "{{.MemUsage}}",
                   "lk-stats-stopped")
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == "0B / 0B"
    r = docker(docker_env, "stats", "--no-stream", "lk-no-such")
    assert r.returncode != 0 and "No such container: lk-no-such" in r.stderr
    status, _, body = call(labkit_stack, "GET", "/containers/lk-no-such/stats?stream=0")
    assert status == 404 and b"No such container" in body


# ------------------------------------------------------------------ docker update

def test_update_changes_the_cgroup_now_and_after_a_restart(docker_env):
    name = "lk-update"
    with containers(docker_env, name):
        r = docker(docker_env, "run", "-d", "--name", name, "-m", "64m", "busybox",
                   "sleep", "300")
        assert r.returncode == 0, r.stderr
        pid = pid_of(docker_env, name)
        memory_file = "memory.max" if V2 else "memory.limit_in_bytes"
        assert int(cgroup_file(pid, "memory", memory_file)) == 64 * MiB
        swap = ["--memory-swap", "256m"] if SWAP_ACCOUNTED else []   # (else not asked for)
        r = docker(docker_env, "update", "-m", "128m", *swap, "--cpus", "0.5",
                   "--pids-limit", "40", "--cpu-shares", "512", "--restart", "on-failure:3",
                   name)
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == name

        def limits(pid: int) -> tuple:
            if V2:
                return (int(cgroup_file(pid, "memory", "memory.max")),
                        cgroup_file(pid, "cpu", "cpu.max"), cgroup_file(pid, "pids", "pids.max"))
            return (int(cgroup_file(pid, "memory", "memory.limit_in_bytes")),
                    cgroup_file(pid, "cpu", "cpu.cfs_quota_us") + " "
                    + cgroup_file(pid, "cpu", "cpu.cfs_period_us"),
                    cgroup_file(pid, "pids", "pids.max"))
        assert limits(pid) == (128 * MiB, "50000 100000", "40")
        if not V2:
            assert cgroup_file(pid, "cpu", "cpu.shares") == "512"
        host_config = json.loads(docker(docker_env, "inspect", "--format",
                                        "{{json .HostConfig}}", name).stdout)
        assert host_config["Memory"] == 128 * MiB
        if SWAP_ACCOUNTED:
            assert host_config["MemorySwap"] == 256 * MiB
            memsw = ("memory.swap.max", 128 * MiB) if V2 else \
                ("memory.memsw.limit_in_bytes", 256 * MiB)   # v2: swap alone; v1: memory+swap
            assert int(cgroup_file(pid, "memory", memsw[0])) == memsw[1]
        assert host_config["NanoCpus"] == 500_000_000 and host_config["PidsLimit"] == 40
        assert host_config["CpuShares"] == 512
        assert host_config["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 3}
        # a restart is a new task, made from the spec containerd keeps: the same limits
        assert docker(docker_env, "restart", "-t", "1", name).returncode == 0
        new_pid = pid_of(docker_env, name)
        assert new_pid != pid
        assert limits(new_pid) == (128 * MiB, "50000 100000", "40")
        r = docker(docker_env, "stats", "--no-stream", "--format", "{{.MemUsage}}", name)
        assert r.stdout.strip().endswith("/ 128MiB"), r.stdout
        # --pids-limit -1 undoes the limit
        assert docker(docker_env, "update", "--pids-limit", "-1", name).returncode == 0
        assert cgroup_file(new_pid, "pids", "pids.max") == "max"


def test_update_docker_py_restart_policy_of_a_stopped_container(docker_env):
    name = "lk-update-py"
    with containers(docker_env, name), docker_py(docker_env) as client:
        c = client.containers.create("busybox", ["true"], name=name)
        result = client.api.update_container(c.id, mem_limit="32m",
                                             restart_policy={"Name": "always"})
        assert result == {"Warnings": []}
        c.reload()
        assert c.attrs["HostConfig"]["Memory"] == 32 * MiB
        assert c.attrs["HostConfig"]["RestartPolicy"]["Name"] == "always"


def test_update_errors_are_4xx_naming_the_problem(docker_env, labkit_stack):
    r = docker(docker_env, "update", "-m", "64m", "lk-no-such")
    assert r.returncode != 0 and "No such container: lk-no-such" in r.stderr
    name = "lk-update-bad"
    with containers(docker_env, name):
        assert docker(docker_env, "create", "--name", name, "busybox", "true").returncode == 0
        r = docker(docker_env, "update", "-m", "1m", name)
        assert r.returncode != 0 and "Minimum memory limit allowed is 6MB" in r.stderr
        r = docker(docker_env, "update", "--restart", "sometimes", name)
        assert r.returncode != 0
        for body, words in ((b'{"Memory": "lots"}', b"Memory"),
                            (b'[1]', b"expected a JSON object"),
                            (b'{"RestartPolicy": {"Name": "sometimes"}}', b"sometimes"),
                            (b'{"CpuPeriod": 10}', b"CPU cfs period")):
            status, headers, answer = call(labkit_stack, "POST",
                                           f"/v1.45/containers/{name}/update", body,
                                           {"Content-Type": "application/json"})
            assert status == 400, (body, answer)
            assert words in answer and headers["Content-Type"] == "application/json"
        status, _, answer = call(labkit_stack, "POST", "/v1.45/containers/lk-no-such/update",
                                 b"{}", {"Content-Type": "application/json"})
        assert status == 404 and b"No such container" in answer
