"""Container networking end to end: the real docker CLI against labkit-dockerd's networks.

Traffic goes only to 127.0.0.1 and to containers these tests create. Every test checks that
the links it made are gone after (links carry an alias naming their daemon: bridge.py), and
none changes a host-wide setting.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from ipaddress import IPv4Network
from pathlib import Path

import pytest

from dockerd.conftest import DOCKER
from labkit.dockerd.net import bridge, ipam
from labkit.dockerd.networkstore import daemon_tag
from support import free_port

pytestmark = [pytest.mark.root, pytest.mark.e2e,
              pytest.mark.skipif(not os.path.exists(DOCKER), reason="docker CLI not installed")]

HTTPD = ("mkdir -p /www && echo hello from $(hostname) > /www/index.html && "
         "exec httpd -f -p 80 -h /www")


def docker(env: dict, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([DOCKER, *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


def ok(env: dict, *args: str) -> str:
    r = docker(env, *args)
    assert r.returncode == 0, f"docker {' '.join(args)}: {r.stderr}"
    return r.stdout


def our_links(stack) -> list[str]:
    """The host's links made by the stack's labkit-dockerd (by their alias)."""
    prefix = f"{bridge.ALIAS_PREFIX}{daemon_tag(stack.tmp / 'droot')} "
    return sorted(f"{link.name} {link.alias.split()[-1]}" for link in bridge.links()
                  if link.alias.startswith(prefix))


@pytest.fixture
def net_env(stack, docker_env):
    """docker_env, and afterwards: the containers and networks the test named removed, and
    the host's links as they were before the test."""
    before = our_links(stack)
    made: dict[str, list[str]] = {"containers": [], "networks": []}
    yield docker_env, made
    if made["containers"]:
        docker(docker_env, "rm", "-f", *made["containers"])
    for name in made["networks"]:
        docker(docker_env, "network", "rm", name)
    assert our_links(stack) == before


def inspect(env: dict, name: str) -> dict:
    return json.loads(ok(env, "inspect", name))[0]


def http_get(port: int, deadline: float = 10.0) -> str:
    """GET / on 127.0.0.1:port, retried while the container's httpd is not up yet."""
    end = time.monotonic() + deadline
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
                return r.read().decode()
        except (urllib.error.URLError, ConnectionError) as e:
            if time.monotonic() > end:
                raise AssertionError(f"127.0.0.1:{port}: {e}") from None
            time.sleep(0.1)


def test_default_bridge_gives_an_address_route_and_hosts(net_env):
    env, made = net_env
    made["containers"].append("net-default")
    ok(env, "run", "-d", "--name", "net-default", "busybox", "sleep", "60")
    settings = inspect(env, "net-default")["NetworkSettings"]
    endpoint = settings["Networks"]["bridge"]
    bridge_net = json.loads(ok(env, "network", "inspect", "bridge"))[0]
    subnet = bridge_net["IPAM"]["Config"][0]["Subnet"]
    assert subnet != "172.17.0.0/16" or not any(
        "172.17." in line for line in Path("/proc/net/route").read_text().splitlines()[1:])
    ip, gateway = endpoint["IPAddress"], endpoint["Gateway"]
    assert (settings["IPAddress"], settings["Gateway"]) == (ip, gateway)
    assert endpoint["NetworkID"] == bridge_net["Id"]
    assert endpoint["MacAddress"] == "02:42:" + ":".join(f"{int(b):02x}" for b in ip.split("."))
    assert endpoint["IPPrefixLen"] == int(subnet.split("/")[1])
    cid = inspect(env, "net-default")["Id"]
    assert bridge_net["Containers"][cid]["IPv4Address"] == f"{ip}/{endpoint['IPPrefixLen']}"
    inside = ok(env, "exec", "net-default", "sh", "-c",
                "ip -o -4 addr show eth0; ip route; cat /etc/hosts; hostname; "
                f"ping -c1 -W2 {gateway} >/dev/null && echo gateway answers")
    assert f"inet {ip}/{endpoint['IPPrefixLen']}" in inside
    assert f"default via {gateway} dev eth0" in inside
    assert f"{ip}\t{cid[:12]}" in inside
    assert "gateway answers" in inside


def test_two_containers_on_a_user_network_ping_each_other_by_name(net_env):
    env, made = net_env
    made["containers"] += ["net-ping-a", "net-ping-b"]
    made["networks"].append("net-ping")
    # a subnet of our choosing (one the host does not route: another test run may hold one)
    subnet = ipam.choose_subnet(bridge.host_subnets(),
                                IPv4Network("10.231.0.0/16").subnets(new_prefix=24))
    net = str(subnet.network_address)[:-1]      # "10.231.N."
    ok(env, "network", "create", "--subnet", str(subnet), "net-ping")
    listed = ok(env, "network", "ls", "--format", "{{.Name}} {{.Driver}}").splitlines()
    assert {"bridge bridge", "host host", "none null", "net-ping bridge"} <= set(listed)
    ok(env, "run", "-d", "--name", "net-ping-a", "--network", "net-ping", "busybox", "sleep", "60")
    ok(env, "run", "-d", "--name", "net-ping-b", "--network", "net-ping",
       "--network-alias", "bee", "busybox", "sleep", "60")
    a = inspect(env, "net-ping-a")["NetworkSettings"]["Networks"]["net-ping"]
    b = inspect(env, "net-ping-b")["NetworkSettings"]["Networks"]["net-ping"]
    assert (a["IPAddress"], b["IPAddress"], a["Gateway"]) == (net + "2", net + "3", net + "1")
    assert "bee" in b["DNSNames"] and "net-ping-b" in b["DNSNames"]
    for target in ("net-ping-b", "bee"):
        out = ok(env, "exec", "net-ping-a", "ping", "-c1", "-W2", target)
        assert "1 packets received" in out and net + "3" in out
    out = ok(env, "exec", "net-ping-b", "ping", "-c1", "-W2", "net-ping-a")
    assert "1 packets received" in out and net + "2" in out

    # in use: refused with Docker's message; the network is still there
    r = docker(env, "network", "rm", "net-ping")
    assert r.returncode != 0 and "has active endpoints" in r.stderr, r.stderr
    assert len(json.loads(ok(env, "network", "inspect", "net-ping"))[0]["Containers"]) == 2
    # a container that stops gives its address back, and leaves the others' /etc/hosts
    ok(env, "rm", "-f", "net-ping-b")
    hosts = ok(env, "exec", "net-ping-a", "cat", "/etc/hosts")
    assert "net-ping-b" not in hosts
    ok(env, "run", "-d", "--name", "net-ping-b", "--network", "net-ping", "busybox", "sleep", "60")
    assert inspect(env, "net-ping-b")["NetworkSettings"]["Networks"]["net-ping"][
        "IPAddress"] == net + "3"


def test_connect_and_disconnect_a_running_container(net_env):
    env, made = net_env
    made["containers"].append("net-conn")
    made["networks"].append("net-conn-net")
    ok(env, "network", "create", "net-conn-net")
    ok(env, "run", "-d", "--name", "net-conn", "busybox", "sleep", "60")
    ok(env, "network", "connect", "--alias", "cee", "net-conn-net", "net-conn")
    settings = inspect(env, "net-conn")["NetworkSettings"]["Networks"]
    assert set(settings) == {"bridge", "net-conn-net"}
    ip = settings["net-conn-net"]["IPAddress"]
    assert f"inet {ip}/" in ok(env, "exec", "net-conn", "ip", "-o", "-4", "addr", "show", "eth1")
    ok(env, "network", "disconnect", "net-conn-net", "net-conn")
    links = ok(env, "exec", "net-conn", "ip", "-o", "link")
    assert "eth1" not in links and "eth0" in links
    assert not json.loads(ok(env, "network", "inspect", "net-conn-net"))[0]["Containers"]


def test_published_ports_reach_busybox_httpd_from_127_0_0_1(net_env):
    env, made = net_env
    made["containers"] += ["net-web", "net-web-all"]
    port = free_port()
    ok(env, "run", "-d", "--name", "net-web", "-p", f"127.0.0.1:{port}:80", "busybox",
       "sh", "-c", HTTPD)
    cid = inspect(env, "net-web")["Id"]
    assert http_get(port) == f"hello from {cid[:12]}\n"
    assert ok(env, "port", "net-web").strip() == f"80/tcp -> 127.0.0.1:{port}"
    assert f"127.0.0.1:{port}->80/tcp" in ok(env, "ps", "--filter", "name=net-web",
                                              "--format", "{{.Ports}}")

    # -P: every exposed port on 0.0.0.0, a port the kernel picks (reached here on 127.0.0.1)
    ok(env, "run", "-d", "--name", "net-web-all", "--expose", "80", "-P", "busybox",
       "sh", "-c", HTTPD)
    bindings = inspect(env, "net-web-all")["NetworkSettings"]["Ports"]["80/tcp"]
    assert bindings[0]["HostIp"] == "0.0.0.0"
    assert http_get(int(bindings[0]["HostPort"])).startswith("hello from ")

    proxies = [p for p in _pids_mentioning("labkit.dockerd.portproxy") if cid in _cmdline(p)]
    assert len(proxies) == 1
    ok(env, "rm", "-f", "net-web")
    assert not any("portproxy" in _cmdline(p) for p in proxies)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


def test_port_in_use_fails_the_start_and_leaves_nothing(net_env, stack):
    env, made = net_env
    made["containers"].append("net-busy")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        r = docker(env, "run", "-d", "--name", "net-busy", "-p", f"127.0.0.1:{port}:80",
                   "busybox", "sleep", "60")
    assert r.returncode == 125 and "port is already allocated" in r.stderr, r.stderr
    state = inspect(env, "net-busy")["State"]
    assert not state["Running"] and "port is already allocated" in state["Error"]
    assert not json.loads(ok(env, "network", "inspect", "bridge"))[0]["Containers"]
    # a start that fails later, in the runtime (after the network was set up): the same
    made["containers"].append("net-noexec")
    r = docker(env, "run", "--name", "net-noexec", "-p", "127.0.0.1::80", "busybox",
               "/no/such/program")
    assert r.returncode == 127, r.stderr
    assert not json.loads(ok(env, "network", "inspect", "bridge"))[0]["Containers"]
    assert not [p for p in _pids_mentioning("labkit.dockerd.portproxy")
                if inspect(env, "net-noexec")["Id"] in _cmdline(p)]
    # (the fixture checks no veth is left)


def test_network_none_host_and_container_modes(net_env):
    env, made = net_env
    made["containers"].append("net-mode-a")
    out = ok(env, "run", "--rm", "--network", "none", "busybox", "ip", "-o", "link")
    assert [line.split(":")[1].strip() for line in out.splitlines()] == ["lo"]
    assert "UP" in out.split("<")[1].split(">")[0]
    assert "1 packets received" in ok(env, "run", "--rm", "--network", "none", "busybox",
                                      "ping", "-c1", "-W2", "127.0.0.1")
    # host: the host's own network namespace (the same inode)
    out = ok(env, "run", "--rm", "--network", "host", "busybox", "readlink", "/proc/self/ns/net")
    assert out.strip() == os.readlink("/proc/self/ns/net")
    ok(env, "run", "-d", "--name", "net-mode-a", "busybox", "sleep", "60")
    ip = inspect(env, "net-mode-a")["NetworkSettings"]["IPAddress"]
    out = ok(env, "run", "--rm", "--network", "container:net-mode-a", "busybox",
             "ip", "-o", "-4", "addr", "show", "eth0")
    assert f"inet {ip}/" in out


def test_restart_keeps_addresses_and_cleans_up_what_died_meanwhile(net_env, stack):
    env, made = net_env
    made["containers"] += ["net-keep", "net-dies", "net-after"]
    made["networks"].append("net-restart")
    ok(env, "network", "create", "net-restart")
    ok(env, "run", "-d", "--name", "net-keep", "--network", "net-restart", "busybox",
       "sleep", "300")
    ok(env, "run", "-d", "--name", "net-dies", "--network", "net-restart", "-p",
       f"127.0.0.1:{free_port()}:80", "busybox", "sleep", "300")
    keep = inspect(env, "net-keep")["NetworkSettings"]["Networks"]["net-restart"]["IPAddress"]
    dies = inspect(env, "net-dies")
    dies_veths = [line for line in our_links(stack) if line.endswith(dies["Id"])]
    assert len(dies_veths) == 1
    proxies = [p for p in _pids_mentioning("labkit.dockerd.portproxy")
               if dies["Id"] in _cmdline(p)]
    assert proxies

    def while_away() -> None:
        os.kill(dies["State"]["Pid"], signal.SIGKILL)   # our container, dying meanwhile

    stack.restart_dockerd(while_away)
    deadline = time.monotonic() + 15
    while inspect(env, "net-dies")["State"]["Running"] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not inspect(env, "net-dies")["State"]["Running"]
    # the exit is recorded first, then the network is taken down: wait for that
    while time.monotonic() < deadline and (
            any(line.endswith(dies["Id"]) for line in our_links(stack))
            or any("portproxy" in _cmdline(p) for p in proxies)):
        time.sleep(0.05)
    assert not any(line.endswith(dies["Id"]) for line in our_links(stack))
    assert not any("portproxy" in _cmdline(p) for p in proxies)   # (a zombie has none)
    # the survivor keeps its address, and the saved allocations hold after the restart
    assert inspect(env, "net-keep")["NetworkSettings"]["Networks"]["net-restart"][
        "IPAddress"] == keep
    ok(env, "run", "-d", "--name", "net-after", "--network", "net-restart", "busybox",
       "sleep", "60")
    after = inspect(env, "net-after")["NetworkSettings"]["Networks"]["net-restart"]
    assert after["IPAddress"] != keep
    assert "1 packets received" in ok(env, "exec", "net-after", "ping", "-c1", "-W2", "net-keep")


def test_a_stopped_daemon_leaves_no_bridge_when_nothing_runs(net_env, stack):
    env, _ = net_env
    if ok(env, "ps", "-q").strip():
        pytest.skip("containers of other tests are running on this stack")
    assert our_links(stack), "the default bridge exists while the daemon runs"
    seen: list[list[str]] = []
    stack.restart_dockerd(lambda: seen.append(our_links(stack)))
    assert seen == [[]]


# LABKIT_DOCKER_COMPOSE: another docker-compose command (one unpacked from the .deb, say)
COMPOSE = os.environ.get("LABKIT_DOCKER_COMPOSE") or shutil.which("docker-compose")


@pytest.mark.skipif(not COMPOSE, reason="docker-compose (Debian's 1.29) is not installed "
                                        "(or set LABKIT_DOCKER_COMPOSE)")
def test_docker_compose_two_services_user_network_named_volume(net_env, tmp_path):
    env, _ = net_env
    (tmp_path / "docker-compose.yml").write_text(
        "version: '3'\n"
        "services:\n"
        "  web:\n"
        "    image: busybox\n"
        "    command: sh -c 'echo kept > /data/f; mkdir /www; echo hello from web >"
        " /www/index.html; exec httpd -f -p 80 -h /www'\n"
        "    volumes: [data:/data]\n"
        "    networks: [back]\n"
        "  client:\n"
        "    image: busybox\n"
        "    command: sleep 60\n"
        "    networks: [back]\n"
        "networks:\n"
        "  back: {}\n"
        "volumes:\n"
        "  data: {}\n")
    compose = [COMPOSE, "-p", "lknet", "-f", str(tmp_path / "docker-compose.yml")]
    try:
        r = subprocess.run(compose + ["up", "-d"], env=env, capture_output=True, text=True,
                           timeout=120)
        assert r.returncode == 0, r.stderr
        r = subprocess.run(compose + ["exec", "-T", "client", "wget", "-qO-", "http://web/"],
                           env=env, capture_output=True, text=True, timeout=60)
        assert (r.returncode, r.stdout) == (0, "hello from web\n"), r.stderr
        volumes = ok(env, "volume", "ls", "--format", "{{.Name}}").split()
        assert "lknet_data" in volumes
        assert "lknet_back" in ok(env, "network", "ls", "--format", "{{.Name}}").split()
        r = subprocess.run(compose + ["down", "-v", "-t", "1"], env=env, capture_output=True,
                           text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        assert "lknet_back" not in ok(env, "network", "ls", "--format", "{{.Name}}").split()
        assert "lknet_data" not in ok(env, "volume", "ls", "--format", "{{.Name}}").split()
    finally:
        subprocess.run(compose + ["down", "-v", "-t", "1"], env=env, capture_output=True,
                       timeout=120)


def _pids_mentioning(text: str) -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit() and text in _cmdline(int(p))]


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


@pytest.mark.parametrize("runtime", ["runc", "crun"])
def test_networks_under_other_runtimes(net_env, runtime):
    """dockerd plugs the namespace between create and start, whatever runtime made it."""
    if not shutil.which(runtime):
        pytest.skip(f"{runtime} is not installed")
    env, made = net_env
    made["containers"].append(f"net-rt-{runtime}")
    made["networks"].append(f"net-rt-{runtime}")
    ok(env, "network", "create", f"net-rt-{runtime}")
    ok(env, "run", "-d", "--runtime", runtime, "--name", f"net-rt-{runtime}", "--network",
       f"net-rt-{runtime}", "busybox", "sleep", "60")
    out = ok(env, "run", "--rm", "--runtime", runtime, "--network", f"net-rt-{runtime}",
             "busybox", "ping", "-c1", "-W2", f"net-rt-{runtime}")
    assert "1 packets received" in out
