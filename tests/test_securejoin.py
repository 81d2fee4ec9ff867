"""labkit.securejoin: the path walk (secure_join) and the kernel's (open_in_root, openat2 with
RESOLVE_IN_ROOT) agree, and neither leaves the root."""

from __future__ import annotations

import errno
import os

import pytest

from labkit.securejoin import open_in_root, secure_join


@pytest.fixture
def root(tmp_path):
    r = tmp_path / "rootfs"
    (r / "etc").mkdir(parents=True)
    (r / "etc" / "passwd").write_text("inside\n")
    (r / "abs").symlink_to("/etc")                 # absolute: means <root>/etc
    (r / "up").symlink_to("../../../../..")        # .. clamps at the root
    (r / "host").symlink_to("/usr/share")          # exists on the host, not in the root
    (r / "loop").symlink_to("loop")
    return r


@pytest.mark.parametrize("unsafe, expected", [("/abs/passwd", "etc/passwd"),
                                              ("up/etc/passwd", "etc/passwd"),
                                              ("/../../etc/./passwd", "etc/passwd"),
                                              ("", "")])
def test_both_resolve_inside_the_root(root, unsafe, expected):
    assert secure_join(str(root), unsafe) == os.path.normpath(str(root / expected))
    root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fd = open_in_root(root_fd, unsafe, os.O_PATH)
        try:
            assert os.readlink(f"/proc/self/fd/{fd}") == os.path.normpath(str(root / expected))
        finally:
            os.close(fd)
    finally:
        os.close(root_fd)


def test_loops_and_missing_components(root):
    root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with pytest.raises(OSError) as e:
            open_in_root(root_fd, "loop/x")
        assert e.value.errno == errno.ELOOP and "openat2 loop/x: ELOOP" in str(e.value)
        with pytest.raises(OSError) as e:
            secure_join(str(root), "loop/x")
        assert e.value.errno == errno.ELOOP
        with pytest.raises(FileNotFoundError):        # the host's /usr/share is not in the root
            open_in_root(root_fd, "host/doc", os.O_PATH)
    finally:
        os.close(root_fd)
