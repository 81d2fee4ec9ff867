"""Networking in parts: IPAM choices, /etc/hosts, port bindings, network filters (no kernel);
the port proxy between two sockets on 127.0.0.1; the reset of a lab's links (root)."""

from __future__ import annotations

import os
import socket
import threading
from ipaddress import IPv4Network

import pytest

from labkit.dockerd import etcfiles, portproxy
from labkit.dockerd.errors import InvalidParameter
from labkit.dockerd.net import bridge, ipam
from labkit.dockerd.network import _port_bindings, check_ports, daemon_tag
from labkit.dockerd.networkapi import _net_matches
from labkit.lab.reset import remove_network


def test_choose_subnet_skips_what_the_host_routes():
    assert ipam.choose_subnet([]) == IPv4Network("172.17.0.0/16")
    # a real Docker's docker0 and a /24 inside 172.18: the next whole free /16
    taken = [IPv4Network("172.17.0.0/16"), IPv4Network("172.18.5.0/24")]
    assert ipam.choose_subnet(taken) == IPv4Network("172.19.0.0/16")
    # the default route overlaps everything and must not count
    assert ipam.choose_subnet([IPv4Network("0.0.0.0/0")]) == IPv4Network("172.17.0.0/16")


def test_choose_subnet_falls_back_to_192_168_then_fails():
    all_172 = [IPv4Network("172.16.0.0/12")]
    assert ipam.choose_subnet(all_172) == IPv4Network("192.168.0.0/20")
    with pytest.raises(ValueError, match="non-overlapping"):
        ipam.choose_subnet(all_172 + [IPv4Network("192.168.0.0/16")])


def test_allocate_lowest_free_wanted_and_full():
    net = IPv4Network("10.9.0.0/29")       # hosts .1 to .6
    gateway = str(ipam.gateway_of(net))
    assert gateway == "10.9.0.1"
    assert ipam.allocate(net, [gateway]) == "10.9.0.2"
    assert ipam.allocate(net, [gateway, "10.9.0.2"]) == "10.9.0.3"
    # released (forgotten) addresses are given again, lowest first
    assert ipam.allocate(net, [gateway, "10.9.0.3"]) == "10.9.0.2"
    assert ipam.allocate(net, [gateway], wanted="10.9.0.5") == "10.9.0.5"
    with pytest.raises(ValueError, match="already in use"):
        ipam.allocate(net, [gateway, "10.9.0.5"], wanted="10.9.0.5")
    with pytest.raises(ValueError, match="does not belong"):
        ipam.allocate(net, [gateway], wanted="10.9.1.5")
    with pytest.raises(ValueError, match="no available"):
        ipam.allocate(net, [f"10.9.0.{i}" for i in range(1, 7)])


def test_parse_subnet_and_mac():
    assert ipam.parse_subnet("10.10.0.0/24") == IPv4Network("10.10.0.0/24")
    for bad in ("10.10.0.1/24", "fd00::/64", "10.0.0.0/31", "nonsense"):
        with pytest.raises(ValueError):
            ipam.parse_subnet(bad)
    assert ipam.mac_for("172.18.0.2") == "02:42:ac:12:00:02"


def test_hosts_file_names_own_address_and_peers():
    text = etcfiles.hosts_file("abc123", ["db:10.0.0.9", "gw:host-gateway"], own_ip="172.18.0.2",
                               peers=[("172.18.0.3", ["web", "www", "0123456789ab"])],
                               host_gateway="172.17.0.1")
    lines = text.splitlines()
    assert "127.0.0.1\tlocalhost" in lines
    assert "10.0.0.9\tdb" in lines and "172.17.0.1\tgw" in lines
    assert "172.18.0.3\tweb www 0123456789ab" in lines
    assert lines[-1] == "172.18.0.2\tabc123"
    assert etcfiles.hosts_file("abc123").splitlines()[-1] == "127.0.1.1\tabc123"
    with pytest.raises(ValueError, match="host-gateway"):
        etcfiles.hosts_file("x", ["gw:host-gateway"])


def test_port_bindings_and_their_checks():
    host_config = {"PortBindings": {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8080"}],
                                    "53/udp": [{"HostIp": "", "HostPort": ""}]},
                   "PublishAllPorts": True}
    config = {"ExposedPorts": {"80/tcp": {}, "443/tcp": {}}}
    check_ports(host_config)
    assert sorted(_port_bindings(host_config, config)) == [
        ("443/tcp", "0.0.0.0", 0), ("53/udp", "0.0.0.0", 0), ("80/tcp", "127.0.0.1", 8080)]
    for bad in ({"PortBindings": {"80/sctp": []}}, {"PortBindings": {"x/tcp": []}},
                {"PortBindings": {"80/tcp": [{"HostPort": "8000-8010"}]}},
                {"PortBindings": {"80/tcp": [{"HostPort": "70000"}]}},
                {"PortBindings": {"80/tcp": ["8080"]}}, {"PortBindings": []}):
        with pytest.raises(InvalidParameter):
            check_ports(bad)


def test_network_list_filters():
    view = {"Name": "mynet", "Id": "abcdef" + "0" * 58, "Driver": "bridge",
            "Labels": {"com.example": "x"}}
    assert _net_matches(view, {"name": ["myn"], "driver": ["bridge"], "type": ["custom"]})
    assert _net_matches(view, {"label": ["com.example=x"], "id": ["abc"]})
    assert not _net_matches(view, {"type": ["builtin"]})
    assert not _net_matches(view, {"label": ["com.example=y"]})
    with pytest.raises(InvalidParameter):
        _net_matches(view, {"colour": ["blue"]})


def test_daemon_tag_is_per_root(tmp_path):
    assert daemon_tag(tmp_path / "a") != daemon_tag(tmp_path / "b")
    assert len(daemon_tag(tmp_path)) == 8


# ---------------------------------------------------------------- with the kernel (root)

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="links need root (CAP_NET_ADMIN)")


@pytest.fixture
def echo_servers():
    """A TCP and a UDP echo server on 127.0.0.1 (standing in for a container's port)."""
    tcp = socket.socket()
    tcp.bind(("127.0.0.1", 0))
    tcp.listen(4)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    stop = threading.Event()

    def serve_tcp() -> None:
        while not stop.is_set():
            try:
                conn, _ = tcp.accept()
            except OSError:
                return
            with conn:
                data = b""
                while chunk := conn.recv(4096):   # until the client's half-close
                    data += chunk
                conn.sendall(data.upper())

    def serve_udp() -> None:
        while not stop.is_set():
            try:
                data, peer = udp.recvfrom(4096)
            except OSError:
                return
            udp.sendto(data.upper(), peer)

    threads = [threading.Thread(target=f, daemon=True) for f in (serve_tcp, serve_udp)]
    for t in threads:
        t.start()
    yield tcp.getsockname()[1], udp.getsockname()[1]
    stop.set()
    tcp.close()
    udp.close()


def test_port_proxy_forwards_tcp_with_half_close_and_udp(tmp_path, echo_servers):
    tcp_port, udp_port = echo_servers
    owner = tmp_path / "container"
    owner.mkdir()
    proxies = []
    try:
        for proto, port in (("tcp", tcp_port), ("udp", udp_port)):
            proxies.append(portproxy.publish(owner, portproxy.Proxy(
                proto=proto, host_ip="127.0.0.1", host_port=0, container_ip="127.0.0.1",
                container_port=port), owner / "proxy.log"))
        tcp, udp = proxies
        assert tcp.host_port and udp.host_port and portproxy.is_ours(tcp.pid, owner)
        # a port in use is refused with Docker's words, before any process is started
        with pytest.raises(OSError, match="port is already allocated"):
            portproxy.bind("tcp", "127.0.0.1", tcp.host_port)
        with socket.create_connection(("127.0.0.1", tcp.host_port), timeout=5) as c:
            c.sendall(b"hello ")
            c.sendall(b"proxy")
            c.shutdown(socket.SHUT_WR)     # the server answers only after our half-close
            assert c.makefile("rb").read() == b"HELLO PROXY"
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.settimeout(5)
            u.sendto(b"datagram", ("127.0.0.1", udp.host_port))
            assert u.recvfrom(100)[0] == b"DATAGRAM"
    finally:
        for proxy in proxies:
            portproxy.stop(proxy.pid, owner)
    assert not any(portproxy.is_ours(p.pid, owner) for p in proxies)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", proxies[0].host_port), timeout=2).close()
    # a pid that is not the owner's proxy is never signalled
    assert not portproxy.is_ours(os.getpid(), owner)


@root_only
def test_reset_deletes_the_links_of_a_lab_dockerd(tmp_path):
    root = tmp_path / "docker"
    name = f"lk{daemon_tag(root)}"
    alias = f"{bridge.ALIAS_PREFIX}{daemon_tag(root)} bridge test"
    # a subnet the host does not route (the test must not disturb it)
    subnet = ipam.choose_subnet(bridge.host_subnets(),
                                IPv4Network("10.231.0.0/16").subnets(new_prefix=24))
    gateway = str(ipam.gateway_of(subnet))
    try:
        bridge.ensure_bridge(name, gateway, 24, alias)
        assert bridge.bridge_address(name) == (gateway, 24)
        said: list[str] = []
        remove_network(root, said.append)
        assert said == [f"deleted link {name}"]
        assert bridge.bridge_address(name) is None
    finally:
        bridge.delete_link(name)
