"""The records of the networks and the bridges they stand for (the store half of network.py).

A network is a JSON record under <root>/network/<id>.json (NetworkRecord: name, subnet,
gateway, bridge device, and the endpoints of the containers running on it, which are its IPAM
allocations) and a bridge on the host. This room loads the records when the daemon starts and
makes sure their bridges exist (`_networks_load`, `_bring_up`: a subnet no route of the host
uses, chosen under a host-wide lock), gives back what no running container holds any more
once the containers are restored (`_networks_reconcile`), and deletes the unused bridges when
the daemon stops (`_networks_close`). network.py tells the whole story.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import secrets
import threading
from dataclasses import asdict, dataclass, field
from ipaddress import IPv4Network
from pathlib import Path

from labkit.dockerd.core import DaemonCore
from labkit.dockerd.errors import InvalidParameter, NotFound
from labkit.dockerd.jsonlog import rfc3339nano
from labkit.dockerd.net import bridge, ipam

log = logging.getLogger("labkit.dockerd")

DEFAULT = "bridge"                      # the default network's name, as Docker's
PREDEFINED = ("bridge", "host", "none")
# one host-wide lock while a subnet is chosen and its bridge made: two daemons starting at
# once would otherwise both see 172.18/16 free
HOST_LOCK = Path("/run/lock/labkit-network.lock")


@dataclass
class Endpoint:
    """A running container's place on a network (the IPAM allocation is `ip`)."""
    container: str
    name: str
    endpoint_id: str
    ip: str
    mac: str
    veth: str
    aliases: list[str] = field(default_factory=list)


@dataclass
class NetworkRecord:
    """A bridge network as <root>/network/<id>.json keeps it."""
    Name: str
    Id: str
    Created: str
    Subnet: str
    Gateway: str
    Bridge: str                           # the bridge device on the host
    Internal: bool = False
    Attachable: bool = False
    UserSubnet: bool = False              # given by the user (kept) or chosen from the pool
    Labels: dict = field(default_factory=dict)
    Options: dict = field(default_factory=dict)
    Endpoints: dict = field(default_factory=dict)   # container id -> Endpoint as a dict

    @property
    def subnet(self) -> IPv4Network:
        return IPv4Network(self.Subnet)

    def endpoints(self) -> dict[str, Endpoint]:
        return {cid: Endpoint(**e) for cid, e in self.Endpoints.items()}


def daemon_tag(root: Path) -> str:
    """8 hex digits naming one daemon (its --root): in link aliases and bridge names."""
    return hashlib.sha256(str(Path(root).resolve()).encode()).hexdigest()[:8]


def _builtin_id(name: str) -> str:
    return hashlib.sha256(f"labkit-network-{name}".encode()).hexdigest()


class NetworkStore(DaemonCore):
    """The Daemon's network records and bridges (mixed in through network.Networks)."""

    # ================================================================ the records

    def _net_init(self) -> None:
        """This room's own state, made on first use: rooms have no constructor (DaemonCore's
        is the one), and a daemon that never touches a network pays nothing for them."""
        if hasattr(self, "_nets"):
            return
        self._net_lock = threading.RLock()
        self._nets: dict[str, NetworkRecord] = {}
        self._net_dir = self.config.root / "network"
        self._net_dir.mkdir(parents=True, exist_ok=True)
        self._tag = daemon_tag(self.config.root)

    def _alias(self, kind: str, owner: str) -> str:
        return f"{bridge.ALIAS_PREFIX}{self._tag} {kind} {owner}"

    def _default_bridge_name(self) -> str:
        """labkit0 for the default lab (as docker0); a private daemon (tests, a second lab)
        gets a name of its own, so that two daemons never share a bridge."""
        # The default lab's own root, not paths.DOCKERD_ROOT: a private lab moves that with
        # LABKIT_LIB_DIR, and every private lab would then take labkit0 too -- one lab's
        # containers on another lab's bridge, with its subnet
        if Path(self.config.root).resolve() == Path("/var/lib/labkit/docker").resolve():
            return "labkit0"
        return f"lk{self._tag}"

    def _save_net(self, net: NetworkRecord) -> None:
        tmp = self._net_dir / f"{net.Id}.json.tmp"
        tmp.write_text(json.dumps(asdict(net), indent=1))
        os.replace(tmp, self._net_dir / f"{net.Id}.json")

    def _find_net(self, ref: str) -> NetworkRecord:
        """A network by name, full id or unique id prefix (Docker's order)."""
        with self._net_lock:
            for net in self._nets.values():
                if net.Name == ref or net.Id == ref:
                    return net
            matches = [n for n in self._nets.values() if ref and n.Id.startswith(ref)]
            if len(matches) == 1:
                return matches[0]
        raise NotFound(f"network {ref} not found")

    def _networks_load(self) -> None:
        """At daemon start: load the records, make sure every bridge exists (the default
        network is made on first start)."""
        self._net_init()
        for path in sorted(self._net_dir.glob("*.json")):
            try:
                net = NetworkRecord(**json.loads(path.read_text()))
            except (OSError, ValueError, TypeError) as e:
                log.warning("skipping network record %s: %s", path, e)
                continue
            self._nets[net.Id] = net
        if not any(n.Name == DEFAULT for n in self._nets.values()):
            net = NetworkRecord(Name=DEFAULT, Id=secrets.token_hex(32),
                                Created=rfc3339nano(), Subnet="", Gateway="",
                                Bridge=self._default_bridge_name(),
                                Options={"com.docker.network.bridge.default_bridge": "true",
                                         "com.docker.network.bridge.name":
                                             self._default_bridge_name()})
            self._nets[net.Id] = net
        for net in list(self._nets.values()):
            try:
                self._bring_up(net)
            except Exception as e:   # the daemon serves anyway: a container's start tries again
                # (and says why it fails), also when a student's network layer is not done yet
                log.warning("network %s: its bridge %s: %s", net.Name, net.Bridge, e)

    def _bring_up(self, net: NetworkRecord) -> None:
        """The bridge of `net`, with its subnet: kept if the bridge is there already (running
        containers use it), else checked against the host's routes (chosen anew if taken and
        the user did not give it), under the host-wide lock."""
        existing = bridge.bridge_address(net.Bridge)
        if existing is not None:
            address, prefixlen = existing
            net.Gateway = address
            net.Subnet = str(IPv4Network(f"{address}/{prefixlen}", strict=False))
            self._save_net(net)
            return
        HOST_LOCK.parent.mkdir(parents=True, exist_ok=True)
        with open(HOST_LOCK, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            mine = {n.Bridge for n in self._nets.values()}
            in_use = bridge.host_subnets(exclude=mine) + [
                n.subnet for n in self._nets.values() if n.Subnet and n.Id != net.Id]
            if not net.Subnet or (not net.UserSubnet and any(net.subnet.overlaps(s)
                                                              for s in in_use)):
                net.Subnet = str(ipam.choose_subnet(in_use))
                net.Gateway = str(ipam.gateway_of(net.subnet))
            elif any(net.subnet.overlaps(s) for s in in_use):
                raise ValueError(f"its subnet {net.Subnet} overlaps a route of the host now")
            bridge.ensure_bridge(net.Bridge, net.Gateway, net.subnet.prefixlen,
                                 self._alias("bridge", net.Id))
        self._save_net(net)
        log.info("network %s: bridge %s, subnet %s", net.Name, net.Bridge, net.Subnet)

    def _networks_reconcile(self) -> None:
        """After the containers were restored: give back what no running container holds
        (addresses, veths, proxies) and delete links of ours that nothing owns."""
        with self._lock:
            running = {cid for cid, c in self._containers.items() if c.State.Running}
            containers = list(self._containers.values())
        with self._net_lock:
            for net in self._nets.values():
                stale = [cid for cid in net.Endpoints if cid not in running]
                for cid in stale:
                    bridge.delete_link(net.Endpoints.pop(cid)["veth"])
                if stale:
                    self._save_net(net)
            owned = {n.Bridge for n in self._nets.values()} | {
                e["veth"] for n in self._nets.values() for e in n.Endpoints.values()}
        for c in containers:
            if c.ID not in running:
                self._stop_proxies(c)
        for link in bridge.links():
            if link.alias.startswith(f"{bridge.ALIAS_PREFIX}{self._tag} ") and \
                    link.name not in owned:
                log.info("deleting %s, left behind by an earlier run", link.name)
                bridge.delete_link(link.name)

    def _networks_close(self) -> None:
        """The daemon stops: delete the bridges no container is on (running containers
        keep theirs, and the next start finds them)."""
        if not hasattr(self, "_nets"):
            return
        with self._net_lock:
            for net in self._nets.values():
                if not net.Endpoints and not bridge.has_ports(net.Bridge):
                    bridge.delete_link(net.Bridge)


def _endpoint_settings(net: NetworkRecord | None, config: dict | None,
                       network_id: str = "") -> dict:
    """One NetworkSettings.Networks entry (EndpointSettings), before start: no address."""
    config = config if isinstance(config, dict) else {}
    aliases = config.get("Aliases") or None
    if aliases is not None and (not isinstance(aliases, list)
                                or not all(isinstance(a, str) for a in aliases)):
        raise InvalidParameter("invalid EndpointsConfig Aliases: expected a list of strings")
    return {"IPAMConfig": config.get("IPAMConfig") or None, "Links": config.get("Links"),
            "Aliases": aliases, "MacAddress": "", "DriverOpts": None, "GwPriority": 0,
            "NetworkID": net.Id if net else network_id, "EndpointID": "", "Gateway": "",
            "IPAddress": "", "IPPrefixLen": 0, "IPv6Gateway": "", "GlobalIPv6Address": "",
            "GlobalIPv6PrefixLen": 0, "DNSNames": None}
