"""Networks: what HostConfig.NetworkMode can name, and `docker network ls/inspect`.

labkit has no bridge (veths, IPAM, NAT) yet: "bridge", the default, is a network
namespace of the container's own with only loopback, like "none"; "host" shares the
host's; "container:<name>" joins a running container's.
"""

from __future__ import annotations

import hashlib

from labkit.dockerd.core import DaemonCore
from labkit.dockerd.errors import Conflict, InvalidParameter, NotFound
from labkit.dockerd.jsonlog import ZERO_TIME


class Networks(DaemonCore):
    """The Daemon's networks (mixed into labkit.dockerd.daemon.Daemon)."""

    # What NetworkMode can name. labkit has no bridge (veths, IPAM, NAT) yet: "bridge", the
    # default, is a network namespace of the container's own with only loopback, like "none".
    NETWORKS = {"bridge": "a namespace of its own with loopback only (no bridge yet)",
                "host": "the host's network namespace", "none": "loopback only"}

    def network_list(self) -> list[dict]:
        return [self.network_inspect(name) for name in self.NETWORKS]

    def network_inspect(self, name: str) -> dict:
        wanted = name if name in self.NETWORKS else next(
            (n for n in self.NETWORKS if _network_id(n).startswith(name) and len(name) >= 3), None)
        if wanted is None:
            raise NotFound(f"network {name} not found")
        return {"Name": wanted, "Id": _network_id(wanted), "Created": ZERO_TIME,
                "Scope": "local", "Driver": "null" if wanted == "none" else wanted,
                "EnableIPv6": False, "IPAM": {"Driver": "default", "Options": None, "Config": []},
                "Internal": False, "Attachable": False, "Ingress": False, "Containers": {},
                "Options": {}, "Labels": {"labkit.note": self.NETWORKS[wanted]}}

    def _network(self, mode: str) -> str:
        """HostConfig.NetworkMode -> oci.container_spec's `network`.

        labkit has no bridge network (yet): "default", "bridge" and "none" all give the
        container a network namespace of its own with only a loopback interface. "host"
        shares the host's; "container:<name>" joins a running container's (its namespace
        is looked up now, at create)."""
        if mode in ("default", "bridge", "none"):
            return "private"
        if mode == "host":
            return "host"
        if mode.startswith("container:"):
            other = self._get(mode.split(":", 1)[1])
            if not other.State.Running or not other.State.Pid:
                raise Conflict(f"cannot join network of a non running container: {other.ID}")
            return f"/proc/{other.State.Pid}/ns/net"
        # 400, not 404: a 404 on create makes the CLI think the IMAGE is missing and pull it
        raise InvalidParameter(f"network {mode} not found (labkit-dockerd knows default, "
                               "bridge, none, host and container:<name>)")


def _network_id(name: str) -> str:
    """A stable 64-hex id per built-in network (Docker's are random, made at first start)."""
    return hashlib.sha256(f"labkit-network-{name}".encode()).hexdigest()
