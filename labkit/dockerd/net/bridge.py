"""The bridge driver's kernel side: bridges, veth pairs, addresses and routes, over rtnetlink.

Everything here is one netlink conversation with the kernel (man 7 rtnetlink), through
pyroute2 — what `ip link`, `ip addr` and `ip route` say, without running them:

    host                                         container's network namespace
    ┌────────────────────────────────┐           ┌──────────────────────────────────┐
    │ labkit0 (bridge) 172.18.0.1/16 │           │ eth0  172.18.0.2/16              │
    │   └─ vethab12cd3 ──────────────┼─── veth ──┼─ (its peer)  02:42:ac:12:00:02   │
    │ 172.18.0.0/16 dev labkit0      │   pair    │ default via 172.18.0.1           │
    └────────────────────────────────┘           └──────────────────────────────────┘

- the bridge is a virtual switch in the host's namespace; its own address is the network's
  gateway, and the kernel adds the route to the subnet through it;
- a veth pair is two interfaces joined by a wire: whatever enters one leaves the other. One
  end is created directly in the container's namespace (IFLA_NET_NS_PID: "make the peer in
  the namespace of this pid"), named eth0 there, given the container's MAC; the other stays
  on the host and becomes a port of the bridge (its "master");
- inside, the address and the default route are set by a thread that has entered the
  container's namespace with setns(2) (a thread's namespace is its own: the daemon's other
  threads stay on the host), opens its netlink socket there, and ends — it never comes back,
  so nothing can run on the host side by mistake with the container's network.

Every link labkit makes carries an alias (IFLA_IFALIAS, what `ip link show` prints as
"alias …"): "labkit <daemon tag> <owner>". That is how a restarted daemon finds what an
earlier run left behind, and how tests check that a host is as clean as it was, even with
other daemons (and other labkits) on the same host.

When the container's namespace dies (its last process exits) the kernel destroys the veth
pair with it: `unplug` only matters while the container still runs (network disconnect).
"""

from __future__ import annotations

import errno
import os
import secrets
import threading
from dataclasses import dataclass
from ipaddress import IPv4Network, ip_network
from typing import Callable, TypeVar

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from labkit import syscalls as sc

T = TypeVar("T")

ALIAS_PREFIX = "labkit "
IFNAMSIZ = 15   # the longest interface name Linux takes (16 bytes with the NUL)


@dataclass
class LinkInfo:
    name: str
    index: int
    alias: str
    kind: str
    master: int


def new_veth_name() -> str:
    """A host-side veth name as Docker makes them: "veth" and 7 random hex digits."""
    return "veth" + secrets.token_hex(4)[:7]


def links() -> list[LinkInfo]:
    """Every link of the host's namespace, with its alias and kind."""
    out = []
    with IPRoute() as ipr:
        for link in ipr.get_links():
            info = link.get_attr("IFLA_LINKINFO")
            out.append(LinkInfo(name=link.get_attr("IFLA_IFNAME"), index=link["index"],
                                alias=link.get_attr("IFLA_IFALIAS") or "",
                                kind=info.get_attr("IFLA_INFO_KIND") if info else "",
                                master=link.get_attr("IFLA_MASTER") or 0))
    return out


def host_subnets(exclude: set[str] = frozenset()) -> list[IPv4Network]:
    """The IPv4 subnets the host reaches already: its routes (every table) and the networks
    of its addresses, but not those through the links named in `exclude` (our own bridges)."""
    out: list[IPv4Network] = []
    with IPRoute() as ipr:
        names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}
        for route in ipr.get_routes(family=2):
            dst = route.get_attr("RTA_DST")
            if dst is None or names.get(route.get_attr("RTA_OIF")) in exclude:
                continue
            out.append(ip_network(f"{dst}/{route['dst_len']}", strict=False))
        for addr in ipr.get_addr(family=2):
            if names.get(addr["index"]) in exclude:
                continue
            out.append(ip_network(f"{addr.get_attr('IFA_ADDRESS')}/{addr['prefixlen']}",
                                  strict=False))
    return out


def ensure_bridge(name: str, gateway: str, prefixlen: int, alias: str) -> None:
    """The bridge `name`, up, with `gateway`/`prefixlen` as its address (made if missing)."""
    # BEGIN SOLUTION chapter="08" hint="pyroute2: ipr.link_lookup(ifname=…), ipr.link('add', ifname=…, kind='bridge'), ipr.link('set', index=…, ifalias=…, state='up'), ipr.addr('add', index=…, address=…, prefixlen=…)"
    # TODO: make the bridge if it is missing (with `alias` as its IFLA_IFALIAS), give it
    # gateway/prefixlen unless it has that address already (a restarted daemon finds it
    # there: no error), and set it up
    with IPRoute() as ipr:
        found = ipr.link_lookup(ifname=name)
        if not found:
            ipr.link("add", ifname=name, kind="bridge")
            found = ipr.link_lookup(ifname=name)
            ipr.link("set", index=found[0], ifalias=alias)
        index = found[0]
        have = {(a.get_attr("IFA_ADDRESS"), a["prefixlen"]) for a in ipr.get_addr(index=index,
                                                                                   family=2)}
        if (gateway, prefixlen) not in have:
            ipr.addr("add", index=index, address=gateway, prefixlen=prefixlen)
        ipr.link("set", index=index, state="up")
    # END SOLUTION


def bridge_address(name: str) -> tuple[str, int] | None:
    """The (address, prefixlen) of bridge `name`, None if it does not exist or has none."""
    with IPRoute() as ipr:
        found = ipr.link_lookup(ifname=name)
        if not found:
            return None
        for a in ipr.get_addr(index=found[0], family=2):
            return a.get_attr("IFA_ADDRESS"), a["prefixlen"]
    return None


def delete_link(name: str) -> bool:
    """Delete link `name` (for a veth, its peer goes too). False if there was none."""
    with IPRoute() as ipr:
        found = ipr.link_lookup(ifname=name)
        if not found:
            return False
        try:
            ipr.link("del", index=found[0])
        except NetlinkError as e:
            if e.code != errno.ENODEV:   # gone meanwhile (its namespace died): fine
                raise
            return False
    return True


def has_ports(bridge: str) -> bool:
    """Whether any link is a port of `bridge`."""
    with IPRoute() as ipr:
        found = ipr.link_lookup(ifname=bridge)
        return bool(found) and any(link.get_attr("IFLA_MASTER") == found[0]
                                   for link in ipr.get_links())


def in_netns(pid: int, fn: Callable[[IPRoute], T]) -> T:
    """fn(an IPRoute talking to the network namespace of process `pid`), in a thread of its
    own that enters that namespace and ends there (see the module docstring)."""
    # BEGIN SOLUTION chapter="08" hint="open /proc/PID/ns/net; in a new threading.Thread: sc.setns(fd, sc.CLONE_NEWNET), then IPRoute() (its socket belongs to the namespace it is made in); join, close the fd, hand back fn's value or raise its exception"
    # TODO: run fn(IPRoute()) in a thread that first joins the network namespace of `pid`;
    # return fn's value, or raise the exception it raised, here in the caller's thread
    result: list = []
    failure: list[BaseException] = []
    ns = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)

    def run() -> None:
        try:
            sc.setns(ns, sc.CLONE_NEWNET)
            with IPRoute() as ipr:   # its socket is made here, in the container's namespace
                result.append(fn(ipr))
        except BaseException as e:  # handed to the caller's thread
            failure.append(e)

    try:
        thread = threading.Thread(target=run, name=f"netns-{pid}", daemon=True)
        thread.start()
        thread.join()
    finally:
        os.close(ns)
    if failure:
        raise failure[0]
    return result[0]
    # END SOLUTION


def plug(pid: int, bridge: str, host_name: str, gateway: str | None, address: str,
         prefixlen: int, mac: str, alias: str) -> str:
    """Connect the network namespace of `pid` to `bridge` with a veth pair; the name of the
    container's end (eth0, or the next free ethN). `gateway` None: no default route (the
    container has one already, through its first network)."""
    # BEGIN SOLUTION chapter="08" hint="ipr.link('add', ifname=host_name, kind='veth', peer={'ifname': …, 'address': mac, 'net_ns_pid': pid}); then master=bridge and up on the host; inside (in_netns) the address, up, and ipr.route('add', dst='0.0.0.0/0', gateway=…)"
    # TODO: the container's name for its end: in_netns(pid, _free_eth_name). Make the pair
    # with that peer created in the namespace of `pid` (with `mac`), give the host end `alias`,
    # make it a port of `bridge` and set it up; then inside: `address`/`prefixlen` on the
    # peer, up, and the default route through `gateway` unless it is None. On any failure
    # delete the host end (its peer goes with it) and raise again.
    ifname = in_netns(pid, _free_eth_name)
    with IPRoute() as ipr:
        master = ipr.link_lookup(ifname=bridge)
        if not master:
            raise OSError(errno.ENODEV, f"bridge {bridge} does not exist")
        ipr.link("add", ifname=host_name, kind="veth",
                 peer={"ifname": ifname, "address": mac, "net_ns_pid": pid})
        try:
            index = ipr.link_lookup(ifname=host_name)[0]
            ipr.link("set", index=index, ifalias=alias)
            ipr.link("set", index=index, master=master[0], state="up")
        except BaseException:
            delete_link(host_name)
            raise

    def inside(ipr: IPRoute) -> None:
        index = ipr.link_lookup(ifname=ifname)[0]
        ipr.addr("add", index=index, address=address, prefixlen=prefixlen)
        ipr.link("set", index=index, state="up")
        if gateway:
            ipr.route("add", dst="0.0.0.0/0", gateway=gateway)

    try:
        in_netns(pid, inside)
    except BaseException:
        delete_link(host_name)
        raise
    return ifname
    # END SOLUTION


def _free_eth_name(ipr: IPRoute) -> str:
    names = {link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}
    return next(f"eth{n}" for n in range(len(names) + 1) if f"eth{n}" not in names)


def netns_links(pid: int) -> list[tuple[str, bool]]:
    """(name, up) of every link in the network namespace of `pid` (for tests and inspect)."""
    return in_netns(pid, lambda ipr: [(link.get_attr("IFLA_IFNAME"),
                                       bool(link["flags"] & 1)) for link in ipr.get_links()])
