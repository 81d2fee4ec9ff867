"""IPAM, IP address management: which subnet a network gets, which address a container gets.

No I/O here: the caller says what is in use, these functions choose (moby's libnetwork/ipam
and ipamutils, much simplified).

Subnets. A bridge network needs a subnet nobody else on the host routes: were 172.17.0.0/16
already reached through eth0 (a real Docker's docker0, a VPN, the office LAN), a second route
for it through our bridge would send that traffic into our containers. So the pool is walked
in order and the first subnet that overlaps no route and no address of the host wins. The pool
is Docker's default one: 172.17.0.0/16 to 172.31.0.0/16, then 192.168.0.0/16 cut in /20s —
on a host running Docker, docker0 holds 172.17/16 and labkit takes the next free one.

Addresses. In a subnet the first address is the bridge's, the gateway containers route
through (172.18.0.1); the network address (.0) and the broadcast address (.255.255) are never
given out; containers take the lowest free address from there (Docker hands them out in
order too). The allocations live in the network's record (network.py), saved on every
change, so a restarted daemon never gives an address in use a second time; a container that
stops gives its address back (`release` is simply forgetting it).

MAC addresses. Docker derives a container's MAC from its IPv4 address: 02:42 (a locally
administered prefix, the 0x02 bit) followed by the four bytes of the address, so the
pair is unique wherever the address is.
"""

from __future__ import annotations

import ipaddress
from ipaddress import IPv4Address, IPv4Network
from typing import Iterable, Iterator


def default_pool() -> Iterator[IPv4Network]:
    """Docker's default address pools, in the order it tries them."""
    for second in range(17, 32):
        yield IPv4Network(f"172.{second}.0.0/16")
    yield from IPv4Network("192.168.0.0/16").subnets(new_prefix=20)


def choose_subnet(in_use: Iterable[IPv4Network],
                  pool: Iterable[IPv4Network] | None = None) -> IPv4Network:
    """The first subnet of `pool` that overlaps nothing in `in_use` (the host's routes and
    addresses, and the subnets of the other networks). ValueError if all are taken."""
    # BEGIN SOLUTION chapter="08" hint="IPv4Network.overlaps(); a /0 (the default route) overlaps everything and must not count"
    # TODO: walk `pool` (default_pool() when None) and return the first candidate that overlaps
    # none of `in_use`; the default route (prefixlen 0) is not a reason to refuse a subnet
    taken = [n for n in in_use if n.prefixlen > 0]  # a default route overlaps everything
    for candidate in pool if pool is not None else default_pool():
        if not any(candidate.overlaps(n) for n in taken):
            return candidate
    # END SOLUTION
    raise ValueError("could not find an available, non-overlapping IPv4 address pool "
                     "among the defaults to assign to the network")


def parse_subnet(text: str) -> IPv4Network:
    """A user's --subnet, "10.10.0.0/24". ValueError for host bits set or IPv6."""
    try:
        net = ipaddress.ip_network(text, strict=True)
    except ValueError as e:
        raise ValueError(f"invalid subnet {text!r}: {e}") from None
    if not isinstance(net, IPv4Network):
        raise ValueError(f"invalid subnet {text!r}: labkit-dockerd has IPv4 networks only")
    if net.prefixlen > 30:
        raise ValueError(f"invalid subnet {text!r}: too small for a gateway and a container")
    return net


def gateway_of(subnet: IPv4Network) -> IPv4Address:
    """The subnet's first host address: the bridge's own, the containers' default gateway."""
    return subnet.network_address + 1


def allocate(subnet: IPv4Network, used: Iterable[str], wanted: str | None = None) -> str:
    """An address of `subnet` not in `used` (which holds the gateway too): `wanted` if given
    and free, else the lowest free one. ValueError when there is none."""
    # BEGIN SOLUTION chapter="08" hint="IPv4Network.hosts() skips the network and broadcast addresses; `used` holds strings"
    # TODO: `wanted` (if given): it must be a host address of `subnet` and not in `used`, else
    # ValueError; without it the lowest address of subnet.hosts() not in `used`; none left is
    # a ValueError too
    taken = set(used)
    if wanted:
        address = IPv4Address(wanted)
        if address not in subnet or address in (subnet.network_address,
                                                subnet.broadcast_address):
            raise ValueError(f"invalid address {wanted}: it does not belong to the network's "
                             f"subnet {subnet}")
        if wanted in taken:
            raise ValueError(f"Address already in use: {wanted}")
        return wanted
    for address in subnet.hosts():
        if str(address) not in taken:
            return str(address)
    raise ValueError(f"no available IPv4 addresses on the network's subnet {subnet}")
    # END SOLUTION


def mac_for(address: str) -> str:
    """Docker's MAC for an IPv4 address: 02:42:ac:12:00:02 for 172.18.0.2."""
    return "02:42:" + ":".join(f"{b:02x}" for b in IPv4Address(address).packed)
