"""Networks: the default bridge, user-defined bridges, NetworkMode, `docker network …`, -p.

Theory of operation
-------------------
A network is a bridge on the host (net/bridge.py) with a subnet (net/ipam.py). A container
on it has a veth pair: one end, eth0, in its network namespace with an address of the subnet
and a default route through the bridge's address; the other end a port of the bridge.

    docker network create mynet        a record (<root>/network/<id>.json): name, subnet
                                       chosen from the pool, gateway; the bridge lk-<id12>
    docker run --network mynet busybox create: NetworkSettings.Networks names mynet (no
                                       address yet: Docker gives addresses at start)
      start   Tasks.Create             the runtime makes the namespaces; init waits, not
                                       yet exec'd, its pid known
              _network_up(c, pid)      per network: an address (IPAM, saved in the
                                       network's record), the veth pair into /proc/<pid>/ns/
                                       net, address + route inside; /etc/hosts; -p proxies
              Tasks.Start              the program runs with its network in place
      exit    _network_down(c)         proxies stopped, veths deleted, addresses given back
    docker network rm mynet            refused while a running container is on it

Where the namespace comes from. dockerd 20.10 had the runtime call it back (a `prestart` hook,
libnetwork-setkey, run by runc with the namespace's path); dockerd 28 does what labkit does:
it lets the runtime create the namespaces (Tasks.Create: the container is "created", its init
blocked before execve), learns the init's pid from the answer, works on /proc/<pid>/ns/net,
then Tasks.Start. No hook, so it works the same under labkit-runc, runc and crun, and a
failure is dockerd's own, reported by `docker start` with nothing to undo in the runtime.

Lifetimes, and a clean host.
- An address, its veth and its proxies live while the container runs (as in Docker, a
  stopped container has no IP): given at start, taken back at exit, after a failed start,
  at `docker rm`, and by a restarted daemon for containers that no longer run.
- The bridges live while the daemon runs: made at start (or at `network create`), deleted at
  `network rm`, and — those with no container left on them — when the daemon stops. (Docker
  keeps docker0 forever; labkit leaves the host as it found it once nothing runs.) Running
  containers keep theirs across a daemon restart, as they keep running.
- Every link carries an alias naming this daemon (net/bridge.py); at start the daemon deletes the
  links with its alias that no running container and no network owns any more.

Names between containers. On a user-defined network, containers find each other by name
(and alias, and short id). Docker runs a DNS server inside every container's namespace
(127.0.0.11, NAT'd to a socket of dockerd). labkit keeps /etc/hosts up to date instead: each
container's hosts file lists the other running containers of its user networks, rewritten
in place (the file is bind-mounted: same inode) whenever one starts or stops. No server, no
NAT rule, nothing in the namespace but the file; what it cannot do: tools that ask DNS
directly (nslookup, dig) do not see the names. The default "bridge" network has no names,
as in Docker (there, `--link` was the old way).

NetworkMode, as `docker run --network` gives it:
    default, bridge     the default bridge network "bridge"
    <name or id>        a user-defined network (and more from NetworkingConfig)
    none                a namespace of its own with only loopback (up: the runtime does that)
    host                the host's namespace: no veth, no address of its own
    container:<name>    another running container's namespace (its addresses, its ports)

Published ports (-p/-P) are portproxy.py's.

Beyond the host. Containers reach each other, the host (the bridge's address) and published
ports. Reaching other machines needs the host to forward packets between interfaces
(net.ipv4.ip_forward=1) and to masquerade the containers' addresses behind its own (an
nftables/iptables MASQUERADE rule); Docker turns both on at start. Those are host-wide
settings, and a teaching engine does not change them behind a student's back: labkit does
neither, and `docker info` says IPv4Forwarding as the host has it. (With forwarding on, a
masquerade rule in labkit's own nftables table would be the missing piece.)
"""
from __future__ import annotations

import hashlib
import logging
import secrets
from dataclasses import asdict

from labkit.dockerd import etcfiles, portproxy
from labkit.dockerd.container import Container
from labkit.dockerd.errors import (Conflict, DaemonError, InvalidParameter, NotFound,
                                   SystemError_)
from labkit.dockerd.net import bridge, ipam
from labkit.dockerd.networkapi import NetworkAPI
from labkit.dockerd.networkstore import (DEFAULT, Endpoint, NetworkRecord, _builtin_id,
                                         _endpoint_settings, daemon_tag)

__all__ = ["Networks", "check_ports", "daemon_tag"]

log = logging.getLogger("labkit.dockerd")


class Networks(NetworkAPI):
    """The Daemon's networks (mixed into labkit.dockerd.daemon.Daemon): what create, start,
    the exit and rm do with them. The records are networkstore.py's, the API networkapi.py's."""

    # ================================================================ create, start, exit

    def _network(self, mode: str) -> str:
        """HostConfig.NetworkMode -> oci.container_spec's `network`: "private" (a namespace
        of its own, which the runtime makes), "host", or the path of another container's
        namespace (looked up now, at create, as Docker does)."""
        self._net_init()
        if mode in ("default", "bridge", "none"):
            return "private"
        if mode == "host":
            return "host"
        if mode.startswith("container:"):
            other = self._get(mode.split(":", 1)[1])
            if not other.State.Running or not other.State.Pid:
                raise Conflict(f"cannot join network of a non running container: {other.ID}")
            return f"/proc/{other.State.Pid}/ns/net"
        try:
            self._find_net(mode)
        except NotFound:
            # 400, not 404: a 404 on create makes the CLI think the IMAGE is missing and pull
            raise InvalidParameter(f"network {mode} not found") from None
        return "private"

    def _network_settings(self, mode: str, networking_config: dict | None) -> dict:
        """The NetworkSettings of a new container: which networks it will join at start."""
        self._net_init()
        wanted = (networking_config or {}).get("EndpointsConfig") or {}
        if not isinstance(wanted, dict):
            raise InvalidParameter("invalid NetworkingConfig.EndpointsConfig: expected an "
                                   "object")
        networks: dict[str, dict] = {}
        if mode in ("host", "none"):
            networks[mode] = _endpoint_settings(None, None, _builtin_id(mode))
        elif not mode.startswith("container:"):
            first = DEFAULT if mode in ("default", "bridge") else mode
            # the CLI names the first network as NetworkMode does ("default" included)
            same = {mode, first}
            for ref in [first] + [k for k in wanted if k not in same]:
                net = self._find_or_400(ref)
                config = (next((wanted[k] for k in same if wanted.get(k)), None)
                          if ref == first else wanted.get(ref))
                if net.Name == DEFAULT and config and config.get("Aliases"):
                    raise InvalidParameter("network-scoped alias is supported only for "
                                           "containers in user defined networks")
                networks[net.Name] = _endpoint_settings(net, config)
        return {"Networks": networks, "Ports": {}}

    def _find_or_400(self, ref: str) -> NetworkRecord:
        try:
            return self._find_net(ref)
        except NotFound:
            raise InvalidParameter(f"network {ref} not found") from None

    def _network_up(self, c: Container, pid: int) -> None:
        """At start, between Tasks.Create and Tasks.Start: join the container's networks,
        write its /etc/hosts, publish its ports. On failure everything done is undone."""
        self._net_init()
        joined: list[NetworkRecord] = []
        try:
            for name in list((c.NetworkSettings.get("Networks") or {})):
                if name in ("host", "none"):
                    continue
                try:
                    net = self._find_net(name)
                except NotFound:
                    raise NotFound(f"network {name} not found: it was removed after the "
                                   f"container was created; docker network disconnect it "
                                   "or create it again") from None
                self._join(c, net, pid, default_route=not joined)
                joined.append(net)
            self._publish(c)
        except DaemonError:
            self._network_down(c)
            raise
        except Exception as e:
            # anything else (a bug; a student's exercise not done yet) still fails the start
            # cleanly: start.py deletes the task for a DaemonError
            self._network_down(c)
            raise SystemError_(f"failed to set up container networking: {e}") from None
        except BaseException:
            self._network_down(c)
            raise
        for net in joined:
            self._refresh_hosts(net)

    def _join(self, c: Container, net: NetworkRecord, pid: int,
              default_route: bool = True) -> None:
        """An address, a veth pair into the namespace of `pid`, address and route inside."""
        if not net.Subnet:   # its bridge could not be made at daemon start: once more now
            try:
                self._bring_up(net)
            except Exception as e:
                raise SystemError_(f"failed to set up container networking: network "
                                   f"{net.Name}: {e}") from None
        with self._net_lock:
            if c.ID in net.Endpoints:
                return
            settings = c.NetworkSettings["Networks"][net.Name]
            wanted = ((settings.get("IPAMConfig") or {}).get("IPv4Address") or None)
            used = [net.Gateway] + [e["ip"] for e in net.Endpoints.values()]
            try:
                ip = ipam.allocate(net.subnet, used, wanted)
            except ValueError as e:
                raise InvalidParameter(str(e)) from None
            endpoint = Endpoint(container=c.ID, name=c.Name, endpoint_id=secrets.token_hex(32),
                                ip=ip, mac=ipam.mac_for(ip), veth=bridge.new_veth_name(),
                                aliases=list(settings.get("Aliases") or []))
            net.Endpoints[c.ID] = asdict(endpoint)   # saved before the veth exists: a
            self._save_net(net)                       # crash now leaves nothing unowned
        try:
            if not bridge.bridge_address(net.Bridge):
                self._bring_up(net)
            bridge.plug(pid, net.Bridge, endpoint.veth,
                        net.Gateway if default_route else None, ip, net.subnet.prefixlen,
                        endpoint.mac, self._alias("veth", c.ID))
        except Exception as e:   # OSError, ValueError, pyroute2's NetlinkError
            with self._net_lock:
                net.Endpoints.pop(c.ID, None)
                self._save_net(net)
            raise SystemError_(f"failed to set up container networking: network "
                               f"{net.Name}: {e}") from None
        with self._lock:
            settings.update(NetworkID=net.Id, EndpointID=endpoint.endpoint_id,
                            Gateway=net.Gateway, IPAddress=ip,
                            IPPrefixLen=net.subnet.prefixlen, MacAddress=endpoint.mac,
                            DNSNames=[c.Name, c.ID[:12], *endpoint.aliases]
                            if net.Name != DEFAULT else None)
            if net.Name == DEFAULT:  # the old top-level fields describe the default bridge
                c.NetworkSettings.update(IPAddress=ip, IPPrefixLen=net.subnet.prefixlen,
                                         Gateway=net.Gateway, MacAddress=endpoint.mac,
                                         EndpointID=endpoint.endpoint_id, Bridge=net.Bridge)
            # the namespace's id in Docker's sense: where the network lives (here: init's)
            c.NetworkSettings["SandboxKey"] = f"/proc/{pid}/ns/net"
            c.NetworkSettings["SandboxID"] = hashlib.sha256(
                f"{c.ID}/{c.State.StartedAt}/{pid}".encode()).hexdigest()

    def _leave(self, c: Container, net: NetworkRecord) -> None:
        """The address back, the veth deleted (the container may still run: disconnect)."""
        with self._net_lock:
            endpoint = net.Endpoints.pop(c.ID, None)
            if endpoint is None:
                return
            self._save_net(net)
        try:
            bridge.delete_link(endpoint["veth"])
        except OSError as e:
            log.warning("container %s: deleting %s: %s", c.ID[:12], endpoint["veth"], e)
        with self._lock:
            settings = (c.NetworkSettings.get("Networks") or {}).get(net.Name)
            if settings is not None:
                settings.update(EndpointID="", Gateway="", IPAddress="", IPPrefixLen=0,
                                MacAddress="", DNSNames=None)

    def _network_down(self, c: Container) -> None:
        """The container stopped (or failed to start, or goes): proxies, veths, addresses."""
        self._net_init()
        self._stop_proxies(c)
        left = []
        with self._net_lock:
            nets = [n for n in self._nets.values() if c.ID in n.Endpoints]
        for net in nets:
            self._leave(c, net)
            left.append(net)
        with self._lock:
            c.NetworkSettings.update(IPAddress="", IPPrefixLen=0, Gateway="", MacAddress="",
                                     EndpointID="", SandboxKey="", SandboxID="", Ports={})
        for net in left:
            self._refresh_hosts(net)

    # ================================================================ /etc/hosts

    def _refresh_hosts(self, net: NetworkRecord) -> None:
        """Rewrite /etc/hosts of every running container on `net` (user networks: names)."""
        with self._net_lock:
            members = list(net.Endpoints)
        for cid in members:
            try:
                c = self._get(cid)
            except NotFound:
                continue
            self._write_hosts(c)

    def _write_hosts(self, c: Container) -> None:
        """The container's /etc/hosts from its networks: its own address for its hostname,
        and on user networks, the other running containers by name, alias and short id."""
        mode = c.HostConfig.get("NetworkMode") or "default"
        if mode == "host" or mode.startswith("container:") or not c.HostsPath:
            return
        own: str | None = None
        peers: list[tuple[str, list[str]]] = []
        with self._net_lock:
            for net in self._nets.values():
                mine = net.Endpoints.get(c.ID)
                if mine is None:
                    continue
                own = own or mine["ip"]
                if net.Name == DEFAULT:
                    continue
                for cid, e in net.Endpoints.items():
                    if cid != c.ID:
                        peers.append((e["ip"], [e["name"], *e["aliases"], cid[:12]]))
        text = etcfiles.hosts_file(c.Config.get("Hostname") or c.ID[:12],
                                   c.HostConfig.get("ExtraHosts"), own_ip=own, peers=peers,
                                   host_gateway=self._host_gateway())
        try:
            # In place: the file is bind-mounted into the container (a new file would not be
            # seen there). Overwrite, then cut what is left of the old text: a reader never
            # finds the file empty, as it could between a truncate and the write.
            with open(c.HostsPath, "r+b") as f:
                f.write(text.encode())
                f.truncate()
        except OSError as e:
            log.warning("container %s: /etc/hosts: %s", c.ID[:12], e)

    def _host_gateway(self) -> str | None:
        """What --add-host NAME:host-gateway means: the default bridge's address."""
        if not hasattr(self, "_nets"):
            return None
        with self._net_lock:
            return next((n.Gateway for n in self._nets.values() if n.Name == DEFAULT), None)

    # ================================================================ published ports

    def _publish(self, c: Container) -> None:
        """Start a proxy per published port (-p, and every exposed port with -P)."""
        bindings = _port_bindings(c.HostConfig, c.Config)
        networks = c.NetworkSettings.get("Networks") or {}
        target = next((s.get("IPAddress") for s in networks.values() if s.get("IPAddress")),
                      None)
        ports: dict[str, list | None] = {p: None for p in (c.Config.get("ExposedPorts") or {})}
        if not bindings or target is None:
            with self._lock:
                c.NetworkSettings["Ports"] = ports if target else {}
            return
        cdir = Container.dir_for(self.config.root, c.ID)
        started: list[portproxy.Proxy] = []
        try:
            for key, host_ip, host_port in bindings:
                port, proto = key.split("/")
                proxy = portproxy.publish(cdir, portproxy.Proxy(
                    proto=proto, host_ip=host_ip, host_port=host_port, container_ip=target,
                    container_port=int(port)), cdir / "proxy.log")
                started.append(proxy)
                portproxy.save(cdir / "ports.json", started)
                ports.setdefault(key, None)
                ports[key] = (ports[key] or []) + [{"HostIp": host_ip,
                                                    "HostPort": str(proxy.host_port)}]
        except OSError as e:
            raise SystemError_(str(e.strerror or e)) from None
        with self._lock:
            c.NetworkSettings["Ports"] = ports

    def _stop_proxies(self, c: Container) -> None:
        cdir = Container.dir_for(self.config.root, c.ID)
        for proxy in portproxy.load(cdir / "ports.json"):
            portproxy.stop(proxy.pid, cdir)
        (cdir / "ports.json").unlink(missing_ok=True)



def _port_bindings(host_config: dict, config: dict) -> list[tuple[str, str, int]]:
    """("80/tcp", host ip, host port (0: any)) for every port to publish. ValueError-free:
    bad values are 400s at create (check_ports)."""
    out = []
    bindings = host_config.get("PortBindings") or {}
    for key, entries in bindings.items():
        for entry in entries or [{}]:
            host_ip = (entry or {}).get("HostIp") or "0.0.0.0"
            host_port = (entry or {}).get("HostPort") or "0"
            out.append((_port_key(key), host_ip, int(host_port)))
    if host_config.get("PublishAllPorts"):
        published = {k for k, _, _ in out}
        for key in config.get("ExposedPorts") or {}:
            if _port_key(key) not in published:
                out.append((_port_key(key), "0.0.0.0", 0))
    return out


def _port_key(key: str) -> str:
    return key if "/" in key else key + "/tcp"


def check_ports(host_config: dict) -> None:
    """HostConfig.PortBindings as Docker's API declares it: {"80/tcp": [{"HostIp",
    "HostPort"}]}. InvalidParameter naming the wrong part."""
    bindings = host_config.get("PortBindings")
    if bindings is None:
        return
    if not isinstance(bindings, dict):
        raise InvalidParameter("invalid HostConfig.PortBindings: expected an object")
    for key, entries in bindings.items():
        port, _, proto = _port_key(key).partition("/")
        if proto not in ("tcp", "udp") or not port.isdigit() or not 0 < int(port) < 65536:
            raise InvalidParameter(f"invalid port specification: \"{key}\"")
        for entry in entries or []:
            if not isinstance(entry, dict):
                raise InvalidParameter(f"invalid PortBindings[{key!r}]: expected objects")
            host_port = entry.get("HostPort") or "0"
            if not isinstance(host_port, str) or not host_port.isdigit() \
                    or not 0 <= int(host_port) < 65536:
                raise InvalidParameter(f"invalid HostPort {host_port!r} for {key} "
                                       "(labkit-dockerd takes one port, not a range)")
            host_ip = entry.get("HostIp") or "0.0.0.0"
            if not isinstance(host_ip, str) or ":" in host_ip:
                raise InvalidParameter(f"invalid HostIp {host_ip!r} for {key} "
                                       "(labkit-dockerd publishes on IPv4 addresses)")
