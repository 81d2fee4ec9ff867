"""Checkpoint cp08 -- chapter 08, networking (labkit/dockerd/net/: ipam.py and bridge.py).

Graded with `labkit grade cp08`. The first group tests one exercise each. The IPAM ones are
pure (a subnet the host does not route, the lowest free address). The kernel ones run in a
child process that unshared a network namespace of its own -- "the host" of the test -- with
a second namespace beside it as "the container" (conftest.py's in_child and process_in): the
bridges and veths they make die with those namespaces, whatever the student's code did, and
nothing of the real host (its links, routes, ip_forward) is touched. What they check is read
from the kernel with pyroute2 directly, never with the code under test. The last one runs the
real docker CLI through a private lab whose network layer (loaded into labkit-dockerd) is the
graded code: `docker run` gets its address on the bridge, two containers on a user network
ping each other by name, and `-p 127.0.0.1:PORT:80` reaches a busybox httpd.
"""

from __future__ import annotations

import os
import socket
import threading
from ipaddress import IPv4Network

import pytest
from pyroute2 import IPRoute

from labkit import syscalls
from labkit.course.grading import checkpoint
from labkit.lab.implementations import resolve_module

pytestmark = pytest.mark.root

IFF_UP = 1
BRIDGE, GATEWAY, PREFIX = "lkcp08br", "10.77.0.1", 24


def ipam():
    """labkit.dockerd.net.ipam as this grading run configured it (reference or workspace)."""
    return resolve_module("network", "labkit.dockerd.net.ipam")


def bridge_mod():
    return resolve_module("network", "labkit.dockerd.net.bridge")


def nets(*texts: str) -> list[IPv4Network]:
    return [IPv4Network(t) for t in texts]


# --- helpers: the kernel's view, read with pyroute2 (never with the code under test) --------

def describe_links(ipr: IPRoute) -> dict[str, dict]:
    """{name: {kind, alias, up, master, mac, addresses}} of the namespace `ipr` talks to."""
    names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}
    out = {}
    for link in ipr.get_links():
        info = link.get_attr("IFLA_LINKINFO")
        out[link.get_attr("IFLA_IFNAME")] = {
            "kind": info.get_attr("IFLA_INFO_KIND") if info else "",
            "alias": link.get_attr("IFLA_IFALIAS") or "",
            "up": bool(link["flags"] & IFF_UP),
            "master": names.get(link.get_attr("IFLA_MASTER")),
            "mac": link.get_attr("IFLA_ADDRESS"),
            "addresses": sorted(f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}"
                                for a in ipr.get_addr(index=link["index"], family=2))}
    return out


def default_gateways(ipr: IPRoute) -> list[str]:
    return [r.get_attr("RTA_GATEWAY") for r in ipr.get_routes(family=2, table=254)
            if r["dst_len"] == 0]


def look_inside(pid: int) -> tuple[dict, list[str]]:
    """(links, default gateways) of the network namespace of `pid`, from a thread that entered
    it with the reference setns (it ends there; the caller's thread stays where it was)."""
    out: list = []
    fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)

    def run() -> None:
        try:
            syscalls.setns(fd, syscalls.CLONE_NEWNET)
            with IPRoute() as ipr:
                out.append((describe_links(ipr), default_gateways(ipr)))
        except BaseException as e:
            out.append(e)
    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    os.close(fd)
    if isinstance(out[0], BaseException):
        raise out[0]
    return out[0]


def make_bridge(name: str = BRIDGE, address: str = GATEWAY) -> None:
    """The test's own bridge, up with its address (in the caller's namespace)."""
    with IPRoute() as ipr:
        ipr.link("add", ifname=name, kind="bridge")
        index = ipr.link_lookup(ifname=name)[0]
        ipr.addr("add", index=index, address=address, prefixlen=PREFIX)
        ipr.link("set", index=index, state="up")


def host_links() -> dict:
    with IPRoute() as ipr:
        return describe_links(ipr)


# --- IPAM ----------------------------------------------------------------------------------

@checkpoint("cp08", points=3, hint="choose_subnet: the first subnet of the pool (default_pool() "
            "when none is given) that overlaps nothing in use; a default route (0.0.0.0/0) "
            "overlaps everything and must be ignored; none left is a ValueError")
def test_choose_subnet():
    m = ipam()
    assert m.choose_subnet([]) == IPv4Network("172.17.0.0/16")
    # a host with Docker (docker0) and a LAN route inside 172.18/16: labkit takes 172.19/16
    assert m.choose_subnet(nets("172.17.0.0/16", "172.18.5.0/24", "0.0.0.0/0", "10.0.0.0/8")) \
        == IPv4Network("172.19.0.0/16")
    # a route wider than a candidate covers it too
    assert m.choose_subnet(nets("172.16.0.0/12")) == IPv4Network("192.168.0.0/20")
    pool = nets("10.1.0.0/24", "10.1.1.0/24", "10.1.2.0/24")
    assert m.choose_subnet(nets("10.1.0.128/25", "10.1.1.7/32"), pool) == IPv4Network("10.1.2.0/24")
    with pytest.raises(ValueError):
        m.choose_subnet(nets("10.1.0.0/16"), pool)


@checkpoint("cp08", points=3, hint="allocate: `wanted` if it is a host address of the subnet and "
            "free (else ValueError); otherwise the lowest host address not in `used`; a full "
            "subnet is a ValueError")
def test_allocate():
    m = ipam()
    subnet = IPv4Network("10.9.0.0/29")            # hosts .1 to .6
    assert m.allocate(subnet, ["10.9.0.1"]) == "10.9.0.2"
    assert m.allocate(subnet, ["10.9.0.1", "10.9.0.2", "10.9.0.4"]) == "10.9.0.3"
    assert m.allocate(subnet, ["10.9.0.1"], "10.9.0.5") == "10.9.0.5"
    for wanted in ("10.9.0.4", "10.9.0.0", "10.9.0.7", "10.9.1.2"):
        with pytest.raises(ValueError):           # in use, network, broadcast, elsewhere
            m.allocate(subnet, ["10.9.0.1", "10.9.0.4"], wanted)
    with pytest.raises(ValueError):
        m.allocate(subnet, [f"10.9.0.{n}" for n in range(1, 7)])
    assert m.allocate(IPv4Network("10.9.0.0/30"), ["10.9.0.1"]) == "10.9.0.2"


# --- the kernel side, in namespaces this test makes -----------------------------------------

@checkpoint("cp08", points=3, hint="ensure_bridge: ipr.link('add', ifname=name, kind='bridge') "
            "if link_lookup finds none, ifalias=alias, addr('add', …) unless the bridge has the "
            "address already, then state='up'; a second call finds it all there")
def test_ensure_bridge(in_child):
    def fn():
        m = bridge_mod()
        m.ensure_bridge(BRIDGE, GATEWAY, PREFIX, "labkit cp08 test")
        first = host_links()[BRIDGE]
        m.ensure_bridge(BRIDGE, GATEWAY, PREFIX, "labkit cp08 test")   # a restarted daemon
        return first, host_links()
    first, links = in_child(fn, syscalls.CLONE_NEWNET)
    assert first["kind"] == "bridge", first
    assert first["alias"] == "labkit cp08 test", "the alias is how a restarted daemon finds it"
    assert first["addresses"] == [f"{GATEWAY}/{PREFIX}"] and first["up"], first
    assert links[BRIDGE] == first, "a second call changes nothing"
    assert set(links) == {"lo", BRIDGE}, sorted(links)


@checkpoint("cp08", points=3, hint="in_netns: open /proc/PID/ns/net, run a thread that does "
            "setns(fd, CLONE_NEWNET) and only then makes its IPRoute(); join it, close the fd, "
            "return fn's value or raise its exception in the caller's thread")
def test_in_netns(in_child, process_in):
    def fn():
        m = bridge_mod()
        with process_in(syscalls.CLONE_NEWNET) as pid:
            with IPRoute() as ipr:                 # a mark inside, made from outside
                ipr.link("add", ifname="lkhost0", kind="veth",
                         peer={"ifname": "lkinside0", "net_ns_pid": pid})
            mine = os.readlink("/proc/thread-self/ns/net")
            fds, threads = len(os.listdir("/proc/self/fd")), threading.active_count()
            names = m.in_netns(pid, lambda ipr: sorted(link.get_attr("IFLA_IFNAME")
                                                       for link in ipr.get_links()))
            where = m.in_netns(pid, lambda ipr: os.readlink("/proc/thread-self/ns/net"))
            try:
                m.in_netns(pid, lambda ipr: int("not a number"))
                raised = None
            except ValueError as e:
                raised = str(e)
            return dict(names=names, where=where, theirs=os.readlink(f"/proc/{pid}/ns/net"),
                        mine=mine, after=os.readlink("/proc/thread-self/ns/net"), raised=raised,
                        fds=(fds, len(os.listdir("/proc/self/fd"))),
                        threads=(threads, threading.active_count()))
    r = in_child(fn, syscalls.CLONE_NEWNET)
    assert r["names"] == ["lkinside0", "lo"], f"fn talked to the wrong namespace: {r['names']}"
    assert r["where"] == r["theirs"] != r["mine"], "fn runs in the container's namespace"
    assert r["after"] == r["mine"], "the caller's thread must stay in its own namespace"
    assert r["raised"] and "not a number" in r["raised"], "fn's exception is raised to the caller"
    assert r["fds"][1] == r["fds"][0], f"file descriptors leaked: {r['fds']}"
    assert r["threads"][1] == r["threads"][0], "the thread ends"


@checkpoint("cp08", points=4, hint="plug: the veth pair with its peer made in the container's "
            "namespace (peer={'ifname': eth name, 'address': mac, 'net_ns_pid': pid}); host end: "
            "alias, master=bridge, up; inside: address, up, default route via gateway (none "
            "when gateway is None); on failure delete the host end and raise")
def test_plug(in_child, process_in):
    def fn():
        m = bridge_mod()
        make_bridge()
        make_bridge("lkcp08br2", "10.78.0.1")
        with process_in(syscalls.CLONE_NEWNET) as pid:
            eth = m.plug(pid, BRIDGE, "lkveth0", GATEWAY, "10.77.0.2", PREFIX,
                         "02:42:0a:4d:00:02", "labkit cp08 veth")
            host, (inside, gateways) = host_links(), look_inside(pid)
            try:                                 # the wire: the container's kernel answers
                socket.create_connection(("10.77.0.2", 9), timeout=5).close()
                reached = "connected"
            except ConnectionRefusedError:
                reached = "refused"
            except OSError as e:
                reached = f"{type(e).__name__}: {e}"
            second = m.plug(pid, "lkcp08br2", "lkveth1", None, "10.78.0.2", PREFIX,
                            "02:42:0a:4e:00:02", "labkit cp08 veth")
            inside2, gateways2 = look_inside(pid)
            try:
                m.plug(pid, "lkcp08nobr", "lkveth2", GATEWAY, "10.77.0.3", PREFIX,
                       "02:42:0a:4d:00:03", "labkit cp08 veth")
                missing = None
            except Exception as e:   # OSError or pyroute2's NetlinkError
                missing = type(e).__name__
            after = host_links(), look_inside(pid)[0]
        return dict(eth=eth, host=host, inside=inside, gateways=gateways, reached=reached,
                    second=second, inside2=inside2, gateways2=gateways2, missing=missing,
                    after=after)
    r = in_child(fn, syscalls.CLONE_NEWNET)
    assert r["eth"] == "eth0", r["eth"]
    veth = r["host"].get("lkveth0")
    assert veth and veth["kind"] == "veth", f"no veth lkveth0 on the host: {sorted(r['host'])}"
    assert veth["master"] == BRIDGE and veth["up"], veth
    assert veth["alias"] == "labkit cp08 veth", veth
    eth0 = r["inside"].get("eth0")
    assert eth0, f"no eth0 in the container: {sorted(r['inside'])}"
    assert eth0["addresses"] == [f"10.77.0.2/{PREFIX}"] and eth0["up"], eth0
    assert eth0["mac"] == "02:42:0a:4d:00:02", eth0
    assert r["gateways"] == [GATEWAY], f"default route inside: {r['gateways']}"
    assert r["reached"] == "refused", f"connecting to 10.77.0.2 from the host: {r['reached']}"
    # a second network: eth1, no second default route
    assert r["second"] == "eth1" and r["inside2"]["eth1"]["addresses"] == [f"10.78.0.2/{PREFIX}"]
    assert r["gateways2"] == [GATEWAY], "gateway None: the first network keeps the default route"
    # a bridge that does not exist: an error, and nothing left behind
    assert r["missing"], "plugging into a missing bridge must fail"
    host, inside = r["after"]
    assert "lkveth2" not in host and set(inside) == {"lo", "eth0", "eth1"}, (sorted(host),
                                                                           sorted(inside))


# --- the proof: docker run through your network layer --------------------------------------

@checkpoint("cp08", points=4, hint="labkit-dockerd gives containers their network with your "
            "labkit/dockerd/net/: `docker run` must get an address on the bridge, containers on "
            "a user network reach each other by name, and -p 127.0.0.1:PORT:80 reaches them "
            "(the docker error names the function that is not done yet)")
@pytest.mark.root
def test_docker_run_gets_its_network_from_you(private_lab):
    import shutil
    import subprocess
    from pathlib import Path

    docker = shutil.which("docker")
    assert docker, "no docker CLI on PATH (vagrant/setup.sh installs Debian's docker.io)"

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
        r = subprocess.run([docker, *args], env=env, capture_output=True, text=True, timeout=120)
        if check:
            assert r.returncode == 0, f"docker {' '.join(args)}: {_docker_error(r.stderr)}"
        return r

    with private_lab() as env:
        try:
            _proof(run)
        except BaseException as e:   # a timeout too: say where the daemon was
            log = Path(env["LABKIT_LOG_DIR"]) / "labkit-dockerd.log"
            tail = log.read_text(errors="replace").splitlines()[-8:] if log.exists() else []
            e.add_note("labkit-dockerd's log ends:\n" + "\n".join(tail))
            raise


def _proof(run) -> None:
    import time
    import urllib.request

    ip = run("run", "--rm", "busybox", "ip", "-4", "-o", "addr", "show", "eth0").stdout
    address = ip.split("inet ")[1].split()[0] if "inet " in ip else ""
    assert address, f"no IPv4 address on eth0: {ip!r}"
    run("network", "create", "cp08net")
    run("run", "-d", "--name", "cp08-a", "--network", "cp08net", "busybox", "sleep", "120")
    ping = run("run", "--rm", "--network", "cp08net", "busybox",
               "ping", "-c", "1", "-W", "5", "cp08-a", check=False)
    assert ping.returncode == 0, f"ping cp08-a by name: {ping.stdout}{ping.stderr}"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    run("run", "-d", "--name", "cp08-web", "-p", f"127.0.0.1:{port}:80", "busybox", "sh",
        "-c", "mkdir /www && echo cp08-proof > /www/index.html && httpd -f -p 80 -h /www")
    body, deadline = None, time.monotonic() + 30
    while body is None:        # until httpd listens (the proxy accepts at once)
        try:
            body = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).read()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    assert body == b"cp08-proof\n", body
    run("rm", "-f", "cp08-a", "cp08-web")
    run("network", "rm", "cp08net")


def _docker_error(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if "rror" in line]
    return lines[-1] if lines else stderr.strip()[-500:]
