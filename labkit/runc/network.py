"""The one piece of networking a runtime does: bring `lo` up in a new network namespace.

A new network namespace (man 7 network_namespaces) starts with a single interface, the
loopback `lo`, and it is DOWN: `ping 127.0.0.1` says "Network is unreachable", and a program
that talks to itself over 127.0.0.1 (a database and its client, `podman --network none`)
fails. runc brings it up in every network namespace it creates (its spec conversion adds a
"loopback" network); so does labkit-runc. Everything else (veths, addresses, routes) is the
job of the layers above (labkit-dockerd's bridge, CNI for podman), done from outside.

How: an interface's flags are read and written with two ioctls on any socket (man 7
netdevice: SIOCGIFFLAGS, SIOCSIFFLAGS, a `struct ifreq` naming the interface), the
interface `ifconfig lo up` has always used. `ip link set lo up` says the same over rtnetlink
(man 7 rtnetlink: RTM_NEWLINK with IFF_UP); runc does that. Both act on the network namespace
the socket was CREATED in. (Not pyroute2 here: importing it takes ~0.1 s, more than the
rest of `labkit-runc run` together, for one flag; and the standard library has the ioctl.)

Who does it, and when: the runtime itself (R in init.py's diagram), the moment the bootstrap
child reports init's pid, while init goes on building mounts. R steps into the container's
namespace with setns(2), opens the socket there, steps back, and talks through the socket.
"""

from __future__ import annotations

import fcntl
import os
import socket
import struct

from labkit import syscalls as sc

LOOPBACK = "lo"

# linux/sockios.h and linux/if.h
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1
# struct ifreq: the name (IFNAMSIZ = 16 bytes), then a union whose first member, for these
# two requests, is `short ifr_flags`; the union is 24 bytes (its largest member, struct
# ifmap), 40 in all.
IFREQ = struct.Struct("16sh22x")


def loopback_up(pid: int) -> None:
    """Set `lo` up in the network namespace of process `pid` (its /proc/<pid>/ns/net)."""
    own = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    target = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        sc.setns(target, sc.CLONE_NEWNET)
        try:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # in the container's netns
        finally:
            sc.setns(own, sc.CLONE_NEWNET)     # back home before anything else happens
        with sock:
            set_up(sock, LOOPBACK)
    finally:
        os.close(own)
        os.close(target)


def set_up(sock: socket.socket, name: str) -> None:
    """Add IFF_UP to interface `name`'s flags, in the network namespace of `sock`."""
    request = IFREQ.pack(name.encode(), 0)
    _, flags = IFREQ.unpack(fcntl.ioctl(sock.fileno(), SIOCGIFFLAGS, request))
    if not flags & IFF_UP:
        fcntl.ioctl(sock.fileno(), SIOCSIFFLAGS, IFREQ.pack(name.encode(), flags | IFF_UP))
