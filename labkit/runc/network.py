"""The one piece of networking a runtime does: bring `lo` up in a new network namespace.

A new network namespace (man 7 network_namespaces) starts with a single interface, the
loopback `lo`, and it is DOWN: `ping 127.0.0.1` says "Network is unreachable", and a program
that talks to itself over 127.0.0.1 (a database and its client, `podman --network none`)
fails. runc brings it up in every network namespace it creates (its spec conversion adds a
"loopback" network); so does labkit-runc. Everything else (veths, addresses, routes) is the
job of the layers above (labkit-dockerd's bridge, CNI for podman), done from outside.

Who does it, and when: the runtime itself (R in init.py's diagram), the moment the bootstrap
child reports init's pid, while init goes on building mounts. Setting a link up is one
rtnetlink request (man 7 rtnetlink: RTM_NEWLINK with IFF_UP in ifi_flags), and a netlink
socket talks to the network namespace it was CREATED in. So R steps into the container's
namespace with setns(2), opens the socket there, steps back, and talks through the socket.
Doing it in R rather than in init costs nothing extra: pyroute2 takes ~0.1 s to import, and
R would otherwise only be waiting while init works on the other CPU. (It could not be init's
bootstrap child: it shares init's mount namespace, and init's pivot_root would swap the
files under its feet while it imports.)
"""

from __future__ import annotations

import os

from labkit import syscalls as sc

LOOPBACK = "lo"


def loopback_up(pid: int) -> None:
    """Set `lo` up in the network namespace of process `pid` (its /proc/<pid>/ns/net)."""
    own = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    target = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        # pyroute2 lazily: only a container with a new network namespace pays for the import
        from pyroute2 import IPRoute

        sc.setns(target, sc.CLONE_NEWNET)
        try:
            ipr = IPRoute()                    # its netlink socket: in the container's netns
        finally:
            sc.setns(own, sc.CLONE_NEWNET)     # back home before anything else happens
        with ipr:
            (index,) = ipr.link_lookup(ifname=LOOPBACK)
            ipr.link("set", index=index, state="up")
    finally:
        os.close(own)
        os.close(target)
