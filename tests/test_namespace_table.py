"""labkit.namespaces.NAMESPACES, the one kind -> (CLONE_NEW* flag, /proc/<pid>/ns file) table
(chapter 01's; labkit-runc and the course's diagrams use it), checked against the kernel:
ioctl(NS_GET_NSTYPE) on an open ns file answers the CLONE_NEW* flag of that namespace."""

from __future__ import annotations

import fcntl
import os

from labkit import namespaces

NS_GET_NSTYPE = 0xB703      # linux/nsfs.h: _IO(0xb7, 0x3), Linux 4.11 (man 2 ioctl_ns)


def test_each_kind_names_its_file_and_flag():
    for kind, (flag, file) in namespaces.NAMESPACES.items():
        fd = os.open(f"/proc/self/ns/{file}", os.O_RDONLY)
        try:
            assert fcntl.ioctl(fd, NS_GET_NSTYPE) == flag, kind
        finally:
            os.close(fd)


def test_the_oci_kinds_and_chapter_01s():
    # config.json's linux.namespaces[].type values labkit-runc accepts (OCI runtime spec)
    assert set(namespaces.NAMESPACES) == {"mount", "uts", "ipc", "pid", "network", "user",
                                          "cgroup"}
    assert set(namespaces.KINDS) <= set(namespaces.NAMESPACES)
    assert namespaces.NS_FILES["mount"] == "mnt" and namespaces.NS_FILES["network"] == "net"
    assert namespaces.NAMESPACES["network"].flag == namespaces.NAMESPACES["network"][0]
