"""labkit.mountopts: the one table of mount options, checked by sorting option lists and by
mounting a real tmpfs with what it gives and asking the kernel (statvfs, mountinfo)."""

from __future__ import annotations

import os
import tempfile

import pytest

from labkit import mountopts, procfs, syscalls


def test_flags_propagation_and_data_are_sorted_apart():
    o = mountopts.parse(["ro", "nosuid", "rw", "mode=755", "rslave", "tmpcopyup", "x-gvfs-show"])
    assert o.flags == syscalls.MS_NOSUID            # "rw" after "ro" wins; dropped options gone
    assert o.propagation == [syscalls.MS_SLAVE | syscalls.MS_REC]
    assert o.data == "mode=755"


def test_later_options_win_and_clearing_options_clear():
    assert mountopts.parse(["rw", "ro"]).flags == syscalls.MS_RDONLY
    assert mountopts.parse(["nosuid", "suid", "noexec"]).flags == syscalls.MS_NOEXEC
    assert mountopts.parse(["noatime", "atime"]).flags == 0
    assert mountopts.parse(["defaults"]).flags == 0 and mountopts.parse(["defaults"]).data == ""


def test_bind_and_propagation_kinds():
    assert mountopts.parse(["rbind", "ro"]).flags == \
        syscalls.MS_BIND | syscalls.MS_REC | syscalls.MS_RDONLY
    assert mountopts.parse(["bind"]).flags == syscalls.MS_BIND
    o = mountopts.parse(["private", "rshared", "unbindable"])
    assert o.flags == 0 and o.data == ""
    assert o.propagation == [syscalls.MS_PRIVATE, syscalls.MS_SHARED | syscalls.MS_REC,
                             syscalls.MS_UNBINDABLE]


def test_the_filesystems_own_options_keep_their_order():
    o = mountopts.parse(["lowerdir=/a:/b", "upperdir=/u", "ro", "workdir=/w"])
    assert o.data == "lowerdir=/a:/b,upperdir=/u,workdir=/w"
    assert mountopts.parse([]) == mountopts.MountOptions()


def test_every_option_has_one_meaning():
    """An option is a flag, a propagation or dropped -- never two of them."""
    kinds = [set(mountopts.FLAGS), set(mountopts.PROPAGATION), set(mountopts.IGNORED)]
    for i, a in enumerate(kinds):
        for b in kinds[i + 1:]:
            assert not a & b


@pytest.mark.root
def test_the_kernel_takes_what_parse_gives():
    target = tempfile.mkdtemp(prefix="lk-mountopts-", dir="/tmp")
    o = mountopts.parse(["ro", "nosuid", "nodev", "noexec", "size=1m", "mode=711", "rprivate"])
    try:
        syscalls.mount("lk-mountopts", target, "tmpfs", o.flags, o.data)
        try:
            for propagation in o.propagation:
                syscalls.mount(None, target, None, propagation)
            f = os.statvfs(target).f_flag
            assert f & os.ST_RDONLY and f & os.ST_NOSUID and f & os.ST_NODEV and f & os.ST_NOEXEC
            (m,) = [m for m in procfs.mountinfo() if m.mount_point == target]
            assert "mode=711" in m.super_options and "size=1024k" in m.super_options
            assert not any(tag.startswith("shared:") for tag in m.optional)   # private
        finally:
            syscalls.umount2(target, syscalls.MNT_DETACH)
    finally:
        os.rmdir(target)
