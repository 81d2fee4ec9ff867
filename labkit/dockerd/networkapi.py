"""`docker network create/ls/inspect/rm/connect/disconnect/prune` (moby's daemon/network.go).

Thin: each method checks the request and changes the records (networkstore.py); joining and
leaving a running container's namespace is network.py's (`_join`, `_leave`), reached
through `self` as the rooms do.
"""

from __future__ import annotations

import logging
import secrets
from ipaddress import IPv4Network

from labkit.dockerd.errors import Conflict, DaemonError, Forbidden, InvalidParameter
from labkit.dockerd.jsonlog import ZERO_TIME, rfc3339nano
from labkit.dockerd.net import bridge, ipam
from labkit.dockerd.networkstore import (DEFAULT, PREDEFINED, NetworkRecord, NetworkStore,
                                         _builtin_id, _endpoint_settings)
from labkit.dockerd.validate import check_network_config

log = logging.getLogger("labkit.dockerd")


class NetworkAPI(NetworkStore):
    """The Daemon's `docker network …` (mixed in through network.Networks)."""

    def network_list(self, filters: dict[str, list[str]] | None = None) -> list[dict]:
        self._net_init()
        out = [self.network_inspect(name) for name in ("host", "none")]
        with self._net_lock:
            out += [self._net_view(n) for n in self._nets.values()]
        return sorted((n for n in out if _net_matches(n, filters or {})),
                      key=lambda n: n["Name"])

    def network_inspect(self, name: str) -> dict:
        self._net_init()
        if name in ("host", "none") or name in (_builtin_id("host"), _builtin_id("none")):
            wanted = name if name in ("host", "none") else (
                "host" if name == _builtin_id("host") else "none")
            return {"Name": wanted, "Id": _builtin_id(wanted), "Created": ZERO_TIME,
                    "Scope": "local", "Driver": "null" if wanted == "none" else "host",
                    "EnableIPv4": True, "EnableIPv6": False,
                    "IPAM": {"Driver": "default", "Options": None, "Config": []},
                    "Internal": False, "Attachable": False, "Ingress": False,
                    "ConfigFrom": {"Network": ""}, "ConfigOnly": False, "Containers": {},
                    "Options": {}, "Labels": {}}
        with self._net_lock:
            return self._net_view(self._find_net(name))

    def _net_view(self, net: NetworkRecord) -> dict:
        containers = {cid: {"Name": e.name, "EndpointID": e.endpoint_id, "MacAddress": e.mac,
                            "IPv4Address": f"{e.ip}/{net.subnet.prefixlen}", "IPv6Address": ""}
                      for cid, e in net.endpoints().items()}
        return {"Name": net.Name, "Id": net.Id, "Created": net.Created, "Scope": "local",
                "Driver": "bridge", "EnableIPv4": True, "EnableIPv6": False,
                "IPAM": {"Driver": "default", "Options": None,
                         "Config": [{"Subnet": net.Subnet, "Gateway": net.Gateway}]
                         if net.Subnet else []},
                "Internal": net.Internal, "Attachable": net.Attachable, "Ingress": False,
                "ConfigFrom": {"Network": ""}, "ConfigOnly": False, "Containers": containers,
                "Options": dict(net.Options), "Labels": dict(net.Labels)}

    def network_create(self, body: dict) -> dict:
        """POST /networks/create: a user-defined bridge network."""
        self._net_init()
        check_network_config(body)
        name = body.get("Name")
        if not isinstance(name, str) or not name:
            raise InvalidParameter("invalid network Name: expected a non-empty string")
        driver = body.get("Driver") or "bridge"
        if driver != "bridge":
            raise InvalidParameter(f"plugin \"{driver}\" not found: labkit-dockerd has the "
                                   "bridge driver only")
        if name in PREDEFINED:
            raise Forbidden(f"{name} is a pre-defined network and cannot be created")
        if body.get("EnableIPv6"):
            raise InvalidParameter("labkit-dockerd has IPv4 networks only: EnableIPv6 is "
                                   "not supported")
        ipam_config = (body.get("IPAM") or {}).get("Config") or []
        if not isinstance(ipam_config, list) or len(ipam_config) > 1:
            raise InvalidParameter("invalid IPAM.Config: labkit-dockerd takes one IPv4 subnet")
        subnet = gateway = ""
        if ipam_config:
            entry = ipam_config[0] if isinstance(ipam_config[0], dict) else {}
            try:
                if entry.get("Subnet"):
                    subnet = str(ipam.parse_subnet(entry["Subnet"]))
                if entry.get("Gateway"):
                    if not subnet:
                        raise ValueError("a gateway needs a subnet")
                    gateway = ipam.allocate(IPv4Network(subnet), [], entry["Gateway"])
            except ValueError as e:
                raise InvalidParameter(str(e)) from None
        net_id = secrets.token_hex(32)
        net = NetworkRecord(Name=name, Id=net_id, Created=rfc3339nano(), Subnet=subnet,
                            Gateway=gateway or (str(ipam.gateway_of(IPv4Network(subnet)))
                                                if subnet else ""),
                            Bridge=f"lk-{net_id[:12]}", Internal=bool(body.get("Internal")),
                            Attachable=bool(body.get("Attachable")), UserSubnet=bool(subnet),
                            Labels=body.get("Labels") or {}, Options=body.get("Options") or {})
        with self._net_lock:
            if any(n.Name == name for n in self._nets.values()):
                raise Conflict(f"network with name {name} already exists")
            if subnet and any(n.Subnet and n.subnet.overlaps(net.subnet)
                              for n in self._nets.values()):
                raise Forbidden("Pool overlaps with other one on this address space")
            self._nets[net_id] = net
            try:
                self._bring_up(net)
            except (OSError, ValueError) as e:
                self._nets.pop(net_id, None)
                bridge.delete_link(net.Bridge)
                raise Forbidden(f"cannot create network {name}: {e}") from None
        self.event_bus.publish("network", "create", net_id, {"name": name, "type": "bridge"})
        return {"Id": net_id, "Warning": ""}

    def network_remove(self, ref: str) -> None:
        self._net_init()
        if ref in PREDEFINED:
            raise Forbidden(f"{ref} is a pre-defined network and cannot be removed")
        with self._net_lock:
            net = self._find_net(ref)
            if net.Name == DEFAULT:
                raise Forbidden(f"{DEFAULT} is a pre-defined network and cannot be removed")
            if net.Endpoints:
                users = ", ".join(f'name:"{e["name"]}" id:"{cid[:12]}"'
                                  for cid, e in net.Endpoints.items())
                raise Forbidden(f"error while removing network: network {net.Name} id "
                                f"{net.Id} has active endpoints ({users})")
            bridge.delete_link(net.Bridge)
            self._nets.pop(net.Id, None)
            (self._net_dir / f"{net.Id}.json").unlink(missing_ok=True)
        self.event_bus.publish("network", "destroy", net.Id, {"name": net.Name,
                                                              "type": "bridge"})

    def network_prune(self) -> list[str]:
        self._net_init()
        removed = []
        with self._lock:
            wanted = {n for c in self._containers.values()
                      for n in (c.NetworkSettings.get("Networks") or {})}
        with self._net_lock:
            candidates = [n for n in self._nets.values() if n.Name != DEFAULT
                          and not n.Endpoints and n.Name not in wanted]
        for net in candidates:
            try:
                self.network_remove(net.Id)
                removed.append(net.Name)
            except DaemonError as e:
                log.warning("network prune: %s: %s", net.Name, e)
        return removed

    def network_connect(self, ref: str, container: str, endpoint_config: dict | None) -> None:
        """`docker network connect`: now if the container runs, at its next start if not."""
        self._net_init()
        if ref in ("host", "none"):
            raise Forbidden("container cannot be disconnected from host network or connected "
                            "to host network")
        net = self._find_net(ref)
        c = self._get(container)
        mode = c.HostConfig.get("NetworkMode") or "default"
        if mode in ("host", "none") or mode.startswith("container:"):
            raise Forbidden("container sharing network namespace with another container or "
                            "host cannot be connected to any other network")
        with self._lock:
            networks = c.NetworkSettings.setdefault("Networks", {})
            if net.Name in networks:
                raise Forbidden(f"endpoint with name {c.Name} already exists in network "
                                f"{net.Name}")
            networks[net.Name] = _endpoint_settings(net, endpoint_config)
            c.save(self.config.root)
            running = c.State.Running and c.State.Pid
        if running:
            with self._net_lock:   # a second network adds an interface, not a default route
                first = not any(c.ID in n.Endpoints for n in self._nets.values())
            try:
                self._join(c, net, c.State.Pid, default_route=first)
            except Exception:
                with self._lock:
                    networks.pop(net.Name, None)
                    c.save(self.config.root)
                raise
            self._refresh_hosts(net)
        self.event_bus.publish("network", "connect", net.Id, {"container": c.ID,
                                                              "name": net.Name, "type": "bridge"})

    def network_disconnect(self, ref: str, container: str, force: bool) -> None:
        self._net_init()
        net = self._find_net(ref)
        c = self._get(container)
        with self._lock:
            networks = c.NetworkSettings.get("Networks") or {}
            if net.Name not in networks:
                raise Forbidden(f"container {c.ID} is not connected to network {net.Name}")
            networks.pop(net.Name)
            c.save(self.config.root)
        self._leave(c, net)
        self._refresh_hosts(net)
        self.event_bus.publish("network", "disconnect", net.Id, {
            "container": c.ID, "name": net.Name, "type": "bridge"})


def _net_matches(view: dict, filters: dict[str, list[str]]) -> bool:
    """`docker network ls --filter`: name, id, driver, label, type (custom/builtin)."""
    for key, values in filters.items():
        if not values:
            continue
        if key == "name":
            ok = any(v in view["Name"] for v in values)
        elif key == "id":
            ok = any(view["Id"].startswith(v) for v in values)
        elif key == "driver":
            ok = view["Driver"] in values
        elif key == "label":
            labels = view.get("Labels") or {}
            ok = all(labels.get(v.partition("=")[0]) == v.partition("=")[2] if "=" in v
                     else v in labels for v in values)
        elif key == "type":
            builtin = view["Name"] in PREDEFINED
            ok = ("builtin" in values and builtin) or ("custom" in values and not builtin)
        elif key == "scope":
            ok = "local" in values
        else:
            raise InvalidParameter(f"invalid filter '{key}'")
        if not ok:
            return False
    return True
